package process

import (
	"context"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// NotifySignals returns a context cancelled on the first SIGINT or
// SIGTERM, whether a SIGINT came, and a stop that releases the signals.
// After the first signal the default handling is back: a second Ctrl-C
// stops the process at once.
func NotifySignals(parent context.Context) (ctx context.Context, interrupted func() bool, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	var sigint atomic.Bool
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			sigint.Store(s == syscall.SIGINT)
			signal.Stop(ch)
			cancel()
		case <-done:
		}
	}()
	return ctx, sigint.Load, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}
