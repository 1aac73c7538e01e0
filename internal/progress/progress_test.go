package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/reconciler/reconciler/internal/jobs/backfill"
)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fakeTerminal is a terminal's screen: it keeps the lines written, and
// applies carriage returns and the erase-line sequence to the last one.
type fakeTerminal struct {
	raw  bytes.Buffer
	done []string // finished lines
	cur  string   // the line the cursor is on
}

func (f *fakeTerminal) Write(p []byte) (int, error) {
	f.raw.Write(p)
	s := string(p)
	for len(s) > 0 {
		switch {
		case strings.HasPrefix(s, clearLine):
			f.cur, s = "", s[len(clearLine):]
		case s[0] == '\r':
			f.cur, s = "", s[1:]
		case s[0] == '\n':
			f.done, f.cur, s = append(f.done, f.cur), "", s[1:]
		default:
			f.cur, s = f.cur+s[:1], s[1:]
		}
	}
	return len(p), nil
}

func on() *bool { t := true; return &t }

// TestBarOnATerminal: nothing is drawn before there is a total, and no
// bar while the input is read (no "0% (0/1)"); the end of reading is
// drawn at once, counts are the results of the run's scripts, one ETA is
// shown, redraws are throttled on the injected clock, a log line written
// through the console lands on its own line with the bar drawn again
// below it, and Finish leaves no bar line behind.
func TestBarOnATerminal(t *testing.T) {
	term := &fakeTerminal{}
	c := NewConsole(term, on())
	clk := newClock()
	v := New("auto", c, zap.NewNop(), clk.now)
	if _, ok := v.(*Bar); !ok {
		t.Fatalf("auto on a terminal is %T, want a bar", v)
	}
	v.Show(backfill.Progress{})
	if term.raw.Len() != 0 {
		t.Fatalf("drew %q before anything was counted", term.raw.String())
	}
	v.Show(backfill.Progress{Done: 0, Total: 1, Counting: true})
	if want := "reading the run's input: 1 scripts so far, 0 done"; term.cur != want {
		t.Fatalf("while the input is read: %q, want %q (no bar over a growing total)", term.cur, want)
	}
	v.Show(backfill.Progress{Done: 1, Total: 4, Totals: backfill.Totals{Scripts: 1, Changed: 1}, Elapsed: 2 * time.Second, ETA: 90 * time.Second})
	want := "[=======                       ]  25% (1/4) changed 1 unchanged 0 failed 0 | 0.5/s | ETA 1m30s"
	if term.cur != want {
		t.Fatalf("bar line\n%q, want\n%q", term.cur, want)
	}
	if n := strings.Count(term.cur, "ETA"); n != 1 {
		t.Errorf("%d ETAs in %q", n, term.cur)
	}
	// Within the throttle: not drawn again.
	v.Show(backfill.Progress{Done: 2, Total: 4, Totals: backfill.Totals{Scripts: 2, Changed: 2}, Elapsed: 2 * time.Second})
	if term.cur != want {
		t.Errorf("redrawn within the throttle: %q", term.cur)
	}
	// A log line through the console.
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(c), zap.InfoLevel))
	log.Info("hello")
	if len(term.done) != 1 || !strings.Contains(term.done[0], "hello") || strings.Contains(term.done[0], "[=") {
		t.Errorf("log line shares a line with the bar: %q", term.done)
	}
	if term.cur != want {
		t.Errorf("bar not drawn again below the log line: %q", term.cur)
	}
	clk.add(time.Second)
	v.Show(backfill.Progress{Done: 4, Total: 4, Totals: backfill.Totals{Scripts: 4, Changed: 3, Unchanged: 1}, Elapsed: 4 * time.Second, ETA: time.Second})
	if !strings.Contains(term.cur, "100% (4/4)") || strings.Contains(term.cur, "ETA") {
		t.Errorf("done bar %q: want 100%% (4/4) and no ETA", term.cur)
	}
	v.Finish()
	if term.cur != "" {
		t.Errorf("Finish left %q on the line", term.cur)
	}
	if len(term.done) != 1 {
		t.Errorf("lines after Finish %q: want only the log line", term.done)
	}
}

// TestNoBarOffATerminal: auto on a pipe logs progress lines at most every
// 10s of the injected clock, plus the last one at Finish; the console
// passes log lines through unchanged.
func TestNoBarOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	off := false
	c := NewConsole(&buf, &off)
	core, logs := observer.New(zap.InfoLevel)
	clk := newClock()
	v := New("auto", c, zap.New(core), clk.now)
	if _, ok := v.(*LogView); !ok {
		t.Fatalf("auto off a terminal is %T, want log lines", v)
	}
	for i := 1; i <= 5; i++ {
		v.Show(backfill.Progress{Done: i, Total: 5})
		clk.add(3 * time.Second)
	}
	v.Finish()
	// Lines at 0s and 12s, then Finish.
	if n := logs.Len(); n != 3 {
		t.Fatalf("%d progress lines, want 3", n)
	}
	last := logs.All()[2].ContextMap()
	if last["done"] != int64(5) || last["total"] != int64(5) {
		t.Errorf("last line %v", last)
	}
	if buf.Len() != 0 {
		t.Errorf("a log view drew on the console: %q", buf.String())
	}
	if _, err := c.Write([]byte("line\n")); err != nil || buf.String() != "line\n" {
		t.Errorf("console off a terminal wrote %q", buf.String())
	}
}

// fakeBudget is a Budget with set answers.
type fakeBudget struct {
	rate, avail float64
	paused      time.Time
	waiting     int
}

func (f *fakeBudget) Rate() float64          { return f.rate }
func (f *fakeBudget) Available() float64     { return f.avail }
func (f *fakeBudget) PausedUntil() time.Time { return f.paused }
func (f *fakeBudget) Waiting() int           { return f.waiting }
func (f *fakeBudget) Describe(now time.Time) string {
	return "shared budget 1200/5m0s" + pauseText(f.paused, now)
}

// TestBudgetETA: the ETA counts what the available requests do not
// cover at the budget's rate, after the pause in force.
func TestBudgetETA(t *testing.T) {
	clk := newClock()
	b := &fakeBudget{rate: 4, avail: 20}
	eta := BudgetETA(b, clk.now)
	if got := eta(100); got != 20*time.Second {
		t.Errorf("100 requests, 20 available, 4/s: %s, want 20s", got)
	}
	if got := eta(10); got != 0 {
		t.Errorf("10 requests, 20 available: %s, want 0", got)
	}
	b.paused = clk.now().Add(30 * time.Second)
	if got := eta(100); got != 30*time.Second+25*time.Second {
		t.Errorf("paused 30s: %s, want 55s (nothing is available during a pause)", got)
	}
	b.rate = 0
	if got := eta(100); got != 0 {
		t.Errorf("no rate: %s, want 0 (unknown)", got)
	}
}

// TestWaitNotice: one line once a tool has waited 5s of the injected
// clock, naming the budget and the pause; none for short waits, none
// again in the same wait, and none within a minute of the last.
func TestWaitNotice(t *testing.T) {
	clk := newClock()
	b := &fakeBudget{rate: 4}
	var out bytes.Buffer
	n := &WaitNotice{Tool: "plan", Budget: b, Out: &out, Now: clk.now}
	// A short wait.
	b.waiting = 1
	n.Check()
	clk.add(3 * time.Second)
	n.Check()
	b.waiting = 0
	n.Check()
	if out.Len() != 0 {
		t.Fatalf("a 3s wait was noticed: %q", out.String())
	}
	// A long wait under a pause.
	b.waiting, b.paused = 2, clk.now().Add(40*time.Second)
	for range 8 {
		n.Check()
		clk.add(time.Second)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d notices, want 1: %q", len(lines), out.String())
	}
	if !strings.HasPrefix(lines[0], "plan: waiting 5s for the API budget: shared budget 1200/5m0s: paused for 35s") || !strings.Contains(lines[0], "429") {
		t.Errorf("notice %q", lines[0])
	}
	// The wait ends and a new one starts at once: within a minute, quiet.
	b.waiting = 0
	n.Check()
	b.waiting = 1
	for range 10 {
		n.Check()
		clk.add(time.Second)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("noticed again within a minute: %q", out.String())
	}
	clk.add(time.Minute)
	n.Check()
	if strings.Count(out.String(), "\n") != 2 {
		t.Errorf("a wait a minute later was not noticed: %q", out.String())
	}
}
