package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/state"
)

// UntilCancelled returns a context that ends, with a cause that wraps
// ErrCancelled, when run id is cancelled (Cancel, on any machine), so that
// the process that started the run stops waiting for the results of the
// items the cancel dropped. stop releases the watch. When the run's record
// cannot be watched the context ends with ctx alone.
func UntilCancelled(ctx context.Context, res *state.Resources, id string) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	w, err := res.Runs.Watch(wctx, id)
	if err != nil {
		return wctx, func() { cancel(nil) } // the wait goes on as before
	}
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var rec state.BackfillRun
			if json.Unmarshal(e.Value(), &rec) == nil && rec.CancelledAt != nil {
				cancel(fmt.Errorf("%w on %s (`reconciler backfill cancel %s`): the items still queued were dropped", ErrCancelled,
					rec.CancelledAt.UTC().Format(time.RFC3339), id))
				return
			}
		}
	}()
	return wctx, func() { _ = w.Stop(); cancel(nil) }
}
