package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// TestEventsSource: every valid line is an item; a bad line and a second
// event of one script are reported with the file and line, and the lines
// after them are read; the run id derives from the input.
func TestEventsSource(t *testing.T) {
	ev := func(id, script string) string {
		return fmt.Sprintf(`{"schema":"bindings.change/v1","id":%q,"account_id":%q,"dispatch_namespace":"customers","script":%q,"op":"patch","upsert":[{"type":"plain_text","name":"K","text":"1"}]}`, id, acct, script)
	}
	data := []byte(strings.Join([]string{ev("1", "a"), "# comment", "not json", ev("2", "a"), ev("3", "b")}, "\n"))
	src := EventsSource("events.jsonl", data, "bindings")
	if src.RunID != src.DefaultRunID() || !strings.HasPrefix(src.RunID, "bf-") || len(src.RunID) != 15 {
		t.Errorf("run id %q", src.RunID)
	}
	if again := EventsSource("other name", data, "bindings"); again.RunID != src.RunID {
		t.Errorf("the same input got run ids %q and %q", src.RunID, again.RunID)
	}
	var items []string
	var bad []string
	err := src.Each(context.Background(), func(it Item) error { items = append(items, it.Ref.Script); return nil },
		func(where string, err error) { bad = append(bad, where+": "+err.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(items) != "[a b]" {
		t.Errorf("items %v, want [a b]", items)
	}
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "events.jsonl line 3: ") || !strings.HasPrefix(bad[1], "events.jsonl line 4: ") ||
		!strings.Contains(bad[1], "already in this run (line 1)") {
		t.Errorf("bad input reported as %q", bad)
	}
}

// lister is a Lister over a fixed list, or failing with err.
type lister struct {
	scripts []string
	err     error
}

func (l lister) EachScript(ctx context.Context, account, namespace string, opts cfapi.ListScriptsOptions, fn func(cfapi.ScriptInfo) error) error {
	if l.err != nil {
		return l.err
	}
	if fmt.Sprint(opts.Tags) != "[plan:pro:yes tier:no]" {
		return fmt.Errorf("tags %v", opts.Tags)
	}
	for _, s := range l.scripts {
		if err := fn(cfapi.ScriptInfo{ID: s, ModifiedOn: "2026-01-01T00:00:00Z"}); err != nil {
			return err
		}
	}
	return nil
}

// TestNamespaceSource: a bad patch is refused before any listing; each
// listed script gets the patch as an event carrying the run id; a
// missing namespace says nothing was written.
func TestNamespaceSource(t *testing.T) {
	ns := Namespace{Account: acct, Namespace: "customers", Tags: []string{"plan:pro:yes", "tier:no"}, SubjectPrefix: "bindings"}
	for patch, want := range map[string]string{
		`{"upsert":[], "extra":1}`: `want a JSON object with "upsert" and/or "remove"`,
		`{}`:                       `needs "upsert" or "remove"`,
		`[1]`:                      `want a JSON object`,
	} {
		ns.Patch = []byte(patch)
		if _, err := NamespaceSource(ns); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("patch %s: error %v, want %q", patch, err, want)
		}
	}
	ns.Patch = []byte(`{"remove":["OLD"]}`)
	ns.Lister = lister{scripts: []string{"x", "y"}}
	src, err := NamespaceSource(ns)
	if err != nil {
		t.Fatal(err)
	}
	src.RunID = "my-run"
	var got []map[string]any
	err = src.Each(context.Background(), func(it Item) error {
		var ev map[string]any
		if err := json.Unmarshal(it.Event, &ev); err != nil {
			return err
		}
		if it.ModifiedOn == "" {
			return errors.New("listed item without modified_on")
		}
		got = append(got, ev)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0]["script"] != "x" || got[1]["id"] != "my-run" || got[0]["op"] != "patch" {
		t.Errorf("events %v", got)
	}
	ns.Lister = lister{err: &cfapi.APIError{StatusCode: 404}}
	src, _ = NamespaceSource(ns)
	if err := src.Each(context.Background(), func(Item) error { return nil }, nil); err == nil || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("listing a missing namespace: %v", err)
	}
}
