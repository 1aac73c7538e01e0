package progress

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/backfill"
)

// New returns the view of mode: "bar" (on c), "log" (lines on log every
// 10s), "none", or "auto" (a bar when c is a terminal, else log lines).
// now is the clock (nil: time.Now).
func New(mode string, c *Console, log *zap.Logger, now func() time.Time) backfill.View {
	if now == nil {
		now = time.Now
	}
	if mode == "auto" {
		mode = "log"
		if c.tty {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return &Bar{c: c, now: now, Width: 30, Throttle: 200 * time.Millisecond}
	case "log":
		return &LogView{log: log, now: now, every: 10 * time.Second}
	}
	return none{}
}

type none struct{}

func (none) Show(backfill.Progress) {}
func (none) Finish()                {}

// Bar draws one line: the bar, done/total with the percentage, the counts
// by outcome, the rate and the ETA.
type Bar struct {
	c   *Console
	now func() time.Time
	// Width is the bar's width in cells; Throttle the least time between
	// two draws (the last state is always drawn when done).
	Width    int
	Throttle time.Duration

	mu       sync.Mutex
	last     time.Time
	counting bool // the state last drawn
}

// Show draws p, unless nothing is counted yet or it drew less than
// Throttle ago.
func (b *Bar) Show(p backfill.Progress) {
	if p.Total <= 0 {
		return // nothing to count yet
	}
	b.mu.Lock()
	now := b.now()
	if !b.last.IsZero() && now.Sub(b.last) < b.Throttle && p.Done < p.Total && p.Counting == b.counting {
		b.mu.Unlock()
		return
	}
	b.last, b.counting = now, p.Counting
	b.mu.Unlock()
	b.c.draw(Line(p, b.Width))
}

// Finish erases the bar's line: the summary follows on stdout.
func (b *Bar) Finish() { b.c.draw("") }

// Line renders p as the bar's line, the bar width cells wide.
func Line(p backfill.Progress, width int) string {
	if p.Counting { // no bar over a total that is still growing
		return fmt.Sprintf("reading the run's input: %d scripts so far, %d done", p.Total, p.Done)
	}
	done := min(p.Done, p.Total)
	frac := 0.0
	if p.Total > 0 {
		frac = float64(done) / float64(p.Total)
	}
	full := int(frac * float64(width))
	bar := strings.Repeat("=", full) + strings.Repeat(" ", width-full)
	line := fmt.Sprintf("[%s] %3d%% (%d/%d) changed %d unchanged %d failed %d | %.1f/s",
		bar, int(frac*100), done, p.Total, p.Totals.Changed, p.Totals.Unchanged, p.Totals.Failed, rate(p))
	if eta := p.ETA.Round(time.Second); eta > 0 && done < p.Total {
		line += " | ETA " + eta.String()
	}
	return line
}

func rate(p backfill.Progress) float64 {
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.Done) / s
	}
	return 0
}

// LogView logs the progress at most once per interval, and once more at
// the end.
type LogView struct {
	log   *zap.Logger
	now   func() time.Time
	every time.Duration

	mu   sync.Mutex
	last time.Time
	p    backfill.Progress
	seen bool
}

// Show logs p when the last line is older than the interval.
func (l *LogView) Show(p backfill.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p, l.seen = p, true
	if now := l.now(); l.last.IsZero() || now.Sub(l.last) >= l.every {
		l.last = now
		l.emit()
	}
}

// Finish logs the last progress shown.
func (l *LogView) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen {
		l.emit()
	}
}

func (l *LogView) emit() {
	p := l.p
	l.log.Info("backfill progress", zap.Int("done", p.Done), zap.Int("total", p.Total), zap.Bool("input_read", !p.Counting),
		zap.Int("changed", p.Totals.Changed), zap.Int("unchanged", p.Totals.Unchanged), zap.Int("failed", p.Totals.Failed),
		zap.Float64("scripts_per_second", rate(p)), zap.Duration("eta", p.ETA.Round(time.Second)))
}
