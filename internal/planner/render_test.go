package planner

import (
	"strings"
	"testing"
)

// TestRenderWithoutLeftAlone: RenderWith hides the lines of bindings left
// alone unless asked for them, and the summary counts them either way.
func TestRenderWithoutLeftAlone(t *testing.T) {
	p := &Plan{Strategy: StrategySettings, Actions: []Action{
		{Kind: ActionRemove, Name: "OLD", Type: "plain_text", Reason: ReasonNotDesired},
		{Kind: ActionUnowned, Name: "THEIR_DB", Type: "d1", Reason: ReasonUnowned},
	}}
	var all, quiet strings.Builder
	if err := p.RenderWith(&all, RenderOptions{LeftAlone: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.RenderWith(&quiet, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(all.String(), "THEIR_DB") {
		t.Errorf("with LeftAlone the line of THEIR_DB is missing:\n%s", all.String())
	}
	if strings.Contains(quiet.String(), "THEIR_DB") || !strings.Contains(quiet.String(), "- plain_text OLD") {
		t.Errorf("without LeftAlone:\n%s", quiet.String())
	}
	for _, out := range []string{all.String(), quiet.String()} {
		if !strings.Contains(out, "1 left alone") {
			t.Errorf("summary does not count the binding left alone:\n%s", out)
		}
	}
}
