package progress

import (
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal: a Console on one, or an
// *os.File that is one.
func IsTerminal(w io.Writer) bool {
	switch v := w.(type) {
	case *Console:
		return v.tty
	case *os.File:
		return term.IsTerminal(int(v.Fd()))
	}
	return false
}

// Console is stderr shared by log lines and at most one bar line. Every
// Write (a log line) first clears the bar's line, then draws the bar
// again below it, so that the two never interleave. It is safe for
// concurrent use.
type Console struct {
	w   io.Writer
	tty bool

	mu   sync.Mutex
	line string // the bar's line as drawn; "" when none is
}

// NewConsole returns the console on w; a terminal says whether w is one
// (IsTerminal(w) when nil).
func NewConsole(w io.Writer, terminal *bool) *Console {
	tty := IsTerminal(w)
	if terminal != nil {
		tty = *terminal
	}
	return &Console{w: w, tty: tty}
}

// clearLine returns to the start of the line and erases it.
const clearLine = "\r\x1b[2K"

// Write writes p (whole log lines) above the bar.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.line == "" {
		return c.w.Write(p)
	}
	if _, err := io.WriteString(c.w, clearLine); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err == nil {
		_, err = io.WriteString(c.w, c.line)
	}
	return n, err
}

// Sync is a no-op, so that a logger may sync the console.
func (c *Console) Sync() error { return nil }

// draw replaces the bar's line with line ("" erases it).
func (c *Console) draw(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if line == c.line {
		return
	}
	if c.line != "" || line != "" {
		_, _ = io.WriteString(c.w, clearLine+line)
	}
	c.line = line
}
