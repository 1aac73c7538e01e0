package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/backfill"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
)

// progressState is what a progress view shows.
type progressState struct {
	done, total int
	totals      backfill.Totals
	elapsed     time.Duration
	eta         time.Duration
}

// progressView shows the progress of a backfill: a bar on a terminal,
// periodic structured log lines otherwise, or nothing.
type progressView interface {
	show(progressState)
	finish()
}

func newProgressView(mode string, w io.Writer, log *zap.Logger) progressView {
	if mode == "auto" {
		mode = "log"
		if isTerminal(w) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return &barView{w: w}
	case "log":
		return &logView{log: log, every: 10 * time.Second}
	}
	return noView{}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type noView struct{}

func (noView) show(progressState) {}
func (noView) finish()            {}

// barView draws a progress bar with the counts, the rate and the ETA.
type barView struct {
	w   io.Writer
	mu  sync.Mutex
	bar *progressbar.ProgressBar
	max int
}

func (b *barView) show(st progressState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil {
		b.bar = progressbar.NewOptions(max(st.total, 1),
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	if st.total != b.max && st.total > 0 {
		b.max = st.total
		b.bar.ChangeMax(st.total)
	}
	rate := 0.0
	if s := st.elapsed.Seconds(); s > 0 {
		rate = float64(st.done) / s
	}
	b.bar.Describe(fmt.Sprintf("changed %d unchanged %d failed %d | %.1f/s | ETA %s",
		st.totals.Changed, st.totals.Unchanged, st.totals.Failed, rate, st.eta.Round(time.Second)))
	_ = b.bar.Set(st.done)
}

func (b *barView) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

// logView logs the progress at most once per interval.
type logView struct {
	log   *zap.Logger
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	st    progressState
}

func (l *logView) show(st progressState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st = st
	if time.Since(l.last) < l.every {
		return
	}
	l.last = time.Now()
	l.emit()
}

func (l *logView) emit() {
	rate := 0.0
	if s := l.st.elapsed.Seconds(); s > 0 {
		rate = float64(l.st.done) / s
	}
	l.log.Info("backfill progress", zap.Int("done", l.st.done), zap.Int("total", l.st.total),
		zap.Int("changed", l.st.totals.Changed), zap.Int("unchanged", l.st.totals.Unchanged), zap.Int("failed", l.st.totals.Failed),
		zap.Float64("scripts_per_second", rate), zap.Duration("eta", l.st.eta.Round(time.Second)))
}

func (l *logView) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit()
}
