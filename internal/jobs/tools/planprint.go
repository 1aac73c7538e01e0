package tools

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/reconciler/reconciler/internal/planner"
)

// PlanPrinter prints previews, as text (like terraform plan) or JSON
// lines (one object per script), and counts them.
type PlanPrinter struct {
	W    io.Writer
	JSON bool
	// Stored says the previews start from the stored state ("base":
	// "stored" in JSON, else "fresh").
	Stored bool
	// ChangesOnly hides the scripts with nothing to do; LeftAlone shows
	// the bindings left alone; SummaryOnly prints nothing per script.
	ChangesOnly, LeftAlone, SummaryOnly bool

	// Failed counts the scripts that could not be planned, Changes those
	// that would change.
	Failed, Changes int
}

// Print prints previews and counts them.
func (o *PlanPrinter) Print(previews []Preview) error {
	for _, pv := range previews {
		switch {
		case pv.Err != nil:
			o.Failed++
		case !pv.Plan.NoOp():
			o.Changes++
		case o.ChangesOnly:
			continue
		}
		if o.SummaryOnly {
			continue
		}
		if o.JSON {
			obj := map[string]any{"script": pv.Ref, "events": pv.EventIDs, "base": map[bool]string{true: "stored", false: "fresh"}[o.Stored]}
			if pv.Err != nil {
				obj["error"] = pv.Err.Error()
			} else {
				obj["plan"] = pv.Plan
			}
			line, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			fmt.Fprintln(o.W, string(line))
			continue
		}
		fmt.Fprintf(o.W, "# %s (events: %d)\n", pv.Ref, len(pv.EventIDs))
		if pv.Err != nil {
			fmt.Fprintf(o.W, "error: %v\n\n", pv.Err)
			continue
		}
		if err := pv.Plan.RenderWith(o.W, planner.RenderOptions{LeftAlone: o.LeftAlone}); err != nil {
			return err
		}
		fmt.Fprintln(o.W)
	}
	return nil
}
