package reconcile

import (
	"strings"

	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// changesOf returns what plan changes, by name: a rename (a desired
// inherit with old_name that the plan carries out) is one ChangeRename
// under the new name instead of an add and a remove.
func changesOf(plan *planner.Plan) []state.Change {
	if plan == nil {
		return nil
	}
	renamedFrom := map[string]bool{}
	for _, a := range plan.Actions {
		if from, ok := strings.CutPrefix(a.Reason, "renamed from "); ok && a.Kind == planner.ActionAdd {
			renamedFrom[from] = true
		}
	}
	var out []state.Change
	for _, a := range plan.Actions {
		if !a.Changes() {
			continue
		}
		c := state.Change{Name: a.Name, Kind: string(a.Kind), Type: a.Type}
		switch a.Kind {
		case planner.ActionUpdate:
			if a.OldType != a.Type {
				c.OldType = a.OldType
			}
		case planner.ActionAdd:
			if from, ok := strings.CutPrefix(a.Reason, "renamed from "); ok {
				c.Kind, c.From = state.ChangeRename, from
			}
		case planner.ActionRemove:
			if renamedFrom[a.Name] {
				continue // part of the rename under the new name
			}
		}
		out = append(out, c)
	}
	return out
}
