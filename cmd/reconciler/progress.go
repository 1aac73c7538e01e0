package main

import (
	"context"
	"io"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/progress"
)

// watchBudget writes a one-line notice to w when tool has waited for the
// API budget of lim for a few seconds: the budget, and what spends or
// pauses it. The returned stop ends the watch.
func watchBudget(ctx context.Context, tool string, lim *ratelimit.Limiter, w io.Writer) (stop func()) {
	n := &progress.WaitNotice{Tool: tool, Budget: progress.LimiterBudget(lim), Out: w}
	return n.Watch(ctx)
}
