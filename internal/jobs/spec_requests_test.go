package jobs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/testutil/specschema"
)

// eventCorpus is every binding of the corpus that an event may carry
// (module-backed and inherit entries are the API's, not an event's: the
// decoder refuses them, and the test says which it left out).
func eventCorpus(t *testing.T) []any {
	t.Helper()
	corpus := testutil.CorpusBindings(t)
	var out []any
	var refused []string
	for _, raw := range corpus {
		ev := newEvent("probe", "", "probe", 1, "patch", map[string]any{"upsert": []any{b(string(raw))}})
		data, _ := json.Marshal(ev)
		if _, err := event.DecodeEvent(data, "", "bindings"); err != nil {
			refused = append(refused, string(raw))
			continue
		}
		out = append(out, b(string(raw)))
	}
	t.Logf("%d corpus bindings in events; refused by the event decoder: %s", len(out), strings.Join(refused, " "))
	if len(out) < 25 {
		t.Fatalf("only %d corpus bindings pass the event decoder", len(out))
	}
	return out
}

// seedWithParts puts a script whose upload has the parts the corpus's
// module-backed bindings name, someone else's secret, plain text and KV
// namespace, and a secret for the corpus's inherit entry to inherit.
func seedWithParts(t *testing.T, h *harness, ns, name string) {
	t.Helper()
	var bs []wire.Binding
	for _, raw := range []string{secretKeep, plainTheir, kvOld, `{"type":"secret_text","name":"LEGACY_KEY","text":"old"}`} {
		bs = append(bs, wire.MustParseBinding(raw))
	}
	err := h.emu.PutScript(acct, ns, name, cfapitest.Script{
		MainModule: "index.js",
		Modules: []cfapitest.Module{
			{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default {}")},
			{Name: "blob.bin", ContentType: "application/octet-stream", Data: []byte{1}},
			{Name: "template.txt", ContentType: "text/plain", Data: []byte("t")},
			{Name: "module.wasm", ContentType: "application/wasm", Data: []byte{0, 'a', 's', 'm'}},
		},
		Bindings: bs,
		Settings: map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-01-01"`)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func withoutTypes(bindings []any, types ...string) []any {
	var out []any
	for _, bnd := range bindings {
		if !slices.Contains(types, bnd.(map[string]any)["type"].(string)) {
			out = append(out, bnd)
		}
	}
	return out
}

// TestEveryStrategyWritesOnlySpecMembers: the bodies the pipeline really
// sends, for every write strategy (settings, script, version) on an
// ordinary and a dispatch-namespace script, with every binding type an
// event may carry, a removal, and bindings of someone else's kept live
// (a secret, a KV namespace), have only members that the SDK's request
// type for that endpoint lists. TestRequestMembersAreInTheSpec
// (internal/cfapi/spec_members_test.go) checks the client's builders with
// inputs of its own; this checks what the reconciler feeds them.
func TestEveryStrategyWritesOnlySpecMembers(t *testing.T) {
	schema, err := specschema.Load("workers", "workers_for_platforms")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range specschema.Writes {
		if !schema.Has(w.Pkg, w.Type) {
			t.Fatalf("the SDK has no %s.%s", w.Pkg, w.Type)
		}
	}
	corpus := eventCorpus(t)
	h := newHarness(t, harnessOpts{})
	h.startRunner("r1")
	for _, strategy := range []string{"settings", "script", "version"} {
		for _, ns := range []string{"", "customers"} {
			name := "spec-" + strategy
			if ns != "" {
				name += "-wfp"
			}
			t.Run(name, func(t *testing.T) {
				seedWithParts(t, h, ns, name)
				h.sentBodies()
				deadBefore := len(h.deadLetters())
				upsert := corpus
				if strategy == "settings" {
					// A settings PATCH cannot bind the script's own parts: the
					// planner refuses module-backed types for it.
					upsert = withoutTypes(corpus, "data_blob", "text_blob", "wasm_module")
				}
				h.publish(newEvent(name+"-1", ns, name, 1, "patch", map[string]any{"strategy": strategy, "upsert": upsert}))
				h.waitDrained(60 * time.Second)
				h.publish(newEvent(name+"-2", ns, name, 2, "patch", map[string]any{"strategy": strategy, "remove": []string{"PLAN"},
					"upsert": []any{b(`{"type":"plain_text","name":"ADDED","text":"x"}`)}}))
				h.waitDrained(60 * time.Second)
				for _, dl := range h.deadLetters()[deadBefore:] {
					t.Errorf("dead letter of %s: %s: %s", dl.Record.EventID, dl.Record.Reason, dl.Record.Error)
				}
				if t.Failed() {
					return
				}
				if got := h.stored(ns, name); got["ADDED"] == "" || got["PLAN"] != "" || got["THEIR_SECRET"] == "" {
					t.Fatalf("the events did not apply: %v", got)
				}
				checked, unspecced := 0, 0
				for _, sent := range h.sentBodies() {
					line, body, _ := strings.Cut(sent, "\n")
					method, path, _ := strings.Cut(line, " ")
					if method == "GET" || method == "DELETE" {
						continue
					}
					w := specschema.WriteFor(method, path)
					if w == nil {
						unspecced++
						t.Logf("%s %s: not in the spec (SDK v7.9.0), not checked", method, path)
						continue
					}
					js, err := w.JSON("", []byte(body))
					if err != nil {
						t.Errorf("%s %s: %v", method, path, err)
						continue
					}
					bad, err := schema.Check(w.Pkg, w.Type, js)
					if err != nil {
						t.Fatalf("%s %s: %v", method, path, err)
					}
					for _, finding := range bad {
						if why := specschema.SDKFault(finding); why != "" {
							t.Logf("%s %s: %s: not failed: %s", method, path, finding, why)
							continue
						}
						t.Errorf("%s %s (%s.%s): %s", method, path, w.Pkg, w.Type, finding)
					}
					checked++
				}
				t.Logf("strategy %s: %d write bodies checked against the spec, %d to endpoints it lacks", strategy, checked, unspecced)
				// A dispatch script's versions are not in the spec; every
				// other write must have been checked, at least one per event.
				if checked < 2 && !(ns != "" && strategy == "version") {
					t.Errorf("%d write bodies checked, want at least 2 (one per event)", checked)
				}
			})
		}
	}
}
