package jobs

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
	"k8s.io/utils/clock"

	"github.com/reconciler/reconciler/internal/jobs/reconcile"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// history records each write in the script's history.
type history struct {
	res   *state.Resources
	m     *metrics.Metrics
	clock clock.PassiveClock
}

// record appends a write to the script's history (state.HistoryEntry):
// the bindings it changed and how, its strategy, and the events it settled.
// A write on the backfill lane that settled no event is a resync's drift
// repair: it is counted in reconciler_drift_repaired_total. A failure is
// logged, never returned: the write and its record stand.
func (r history) record(ctx context.Context, key string, l lane, res reconcile.Result, settled []*waitingEvent, log *zap.Logger) {
	if !res.Wrote {
		return
	}
	e := state.HistoryEntry{Script: key, At: r.clock.Now().UTC(), Strategy: string(res.Strategy), Changes: res.Changes,
		DesiredRevision: res.Revision, Lane: l.String()}
	for _, h := range settled {
		if h.id != "" && !slices.Contains(e.EventIDs, h.id) {
			e.EventIDs = append(e.EventIDs, h.id)
		}
		if h.backfill != nil && !slices.Contains(e.Runs, h.backfill.run) {
			e.Runs = append(e.Runs, h.backfill.run)
		}
	}
	if l == laneBackfill && len(settled) == 0 {
		// No event asked for this write: a resync found the live bindings
		// drifted from what was applied or is wanted, and repaired them.
		for _, c := range res.Changes {
			r.m.DriftRepaired.WithLabelValues(c.Kind).Inc()
		}
		log.Info("resync repaired drift", zap.Strings("changed", changedBindings(res.Changes)))
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.res.RecordHistory(hctx, e); err != nil {
		log.Warn("recording the script's history", zap.Error(err))
	}
}

// changedBindings returns "kind name" for each change, for the
// `reconciled` log line (names only, never values).
func changedBindings(cs []state.Change) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}
