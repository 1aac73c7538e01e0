package backfill

import (
	"context"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// dryRunBatch is how many scripts a dry run previews at once.
const dryRunBatch = 100

// DryRun previews every item of src with preview, a batch at a time, and
// counts what would change; show gets each batch's previews (to print
// them). Nothing is written anywhere: Summary.DryRun is set, and Changed
// counts the scripts that would change.
func DryRun(ctx context.Context, src *Source, prefix string,
	preview func(context.Context, []*event.Event) []tools.Preview, show func([]tools.Preview) error) (*Summary, error) {
	sum := &Summary{Run: src.RunID, DryRun: true}
	var events []*event.Event
	flush := func() error {
		previews := preview(ctx, events)
		events = events[:0]
		for _, pv := range previews {
			sum.Scripts++
			switch {
			case pv.Err != nil:
				sum.Failed++
				sum.Failures = append(sum.Failures, Failure{Script: pv.Ref.String(), Reason: "plan", Error: pv.Err.Error()})
			case pv.Plan.NoOp():
				sum.Unchanged++
			default:
				sum.Changed++
			}
		}
		return show(previews)
	}
	err := src.Each(ctx, func(it Item) error {
		ev, err := event.DecodeEvent(it.Event, "", prefix)
		if err != nil {
			return err
		}
		if events = append(events, ev); len(events) < dryRunBatch {
			return nil
		}
		return flush()
	}, func(where string, err error) {
		sum.Scripts++
		sum.Failed++
		sum.Invalid++
		sum.Failures = append(sum.Failures, Failure{Script: where, Reason: "invalid_input", Error: err.Error()})
	})
	if err == nil && len(events) > 0 {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return sum, nil
}
