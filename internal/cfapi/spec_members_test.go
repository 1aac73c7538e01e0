package cfapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil/specschema"
)

const specScript = "tenant-0001"

// TestRequestMembersAreInTheSpec: every write body the client builds (a
// settings PATCH, a script upload, a version upload, a deployment, a beta
// version; ordinary and dispatch-namespace scripts; every binding type of
// the corpus) has only members that the SDK's request type for that
// endpoint lists, recursively and per binding type. The settings come from
// a GET that also carries response-only members, so the upload's
// allow-list is what is checked, not an echo of GET.
func TestRequestMembersAreInTheSpec(t *testing.T) {
	schema, err := specschema.Load("workers", "workers_for_platforms")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range specschema.Writes {
		if !schema.Has(w.Pkg, w.Type) {
			t.Fatalf("the SDK has no %s.%s", w.Pkg, w.Type)
		}
	}
	corpus := specCorpus(t)
	// Settings as GET answers them, response-only members included.
	var got cfapi.Settings
	if err := json.Unmarshal([]byte(`{
		"bindings": [],
		"compatibility_date": "2025-01-01", "compatibility_flags": ["nodejs_compat"],
		"limits": {"cpu_ms": 50}, "logpush": false,
		"observability": {"enabled": true, "head_sampling_rate": 1},
		"placement": {"mode": "smart", "status": "SUCCESS", "last_analyzed_at": "2026-01-01T00:00:00Z"},
		"tags": ["seeded"], "tail_consumers": [{"service": "tail"}], "usage_model": "standard",
		"exports_reconciliation": {"x": 1}, "cache_options": {"enabled": false},
		"migration_tag": "v1", "annotations": {"workers/message": "hi"}
	}`), &got); err != nil {
		t.Fatal(err)
	}
	modules := []cfapi.Module{
		{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default {}")},
		{Name: "blob.bin", ContentType: "application/octet-stream", Data: []byte{1}},
		{Name: "text.txt", ContentType: "text/plain", Data: []byte("t")},
		{Name: "mod.wasm", ContentType: "application/wasm", Data: []byte{0, 'a', 's', 'm'}},
	}
	kept := specKept(t)
	ctx := context.Background()

	for _, dispatch := range []bool{false, true} {
		fx := setup(t)
		ns := ""
		if dispatch {
			ns = dispatchNS
		}
		fx.seed(t, ns, 1)
		ref := cfapi.ScriptRef{AccountID: account, Namespace: ns, Script: specScript}
		// The emulator may refuse some of these (a part it lacks, an
		// endpoint of the other script kind): what is checked is what the
		// client sent.
		// The product's PATCH carries bindings alone.
		_, _ = fx.client.PatchSettings(ctx, ref, cfapi.SettingsPatch{Bindings: append(append(wire.Bindings{}, corpus...), kept...)})
		_, _ = fx.client.UploadScript(ctx, ref, cfapi.ScriptUpload{Metadata: cfapi.UploadMetadata{
			MainModule: "index.js", Bindings: corpus, KeepBindings: []string{"secret_text", "secret_key"},
			Other: cfapi.SettingsForUpload(&got, false)}, Modules: modules})
		if !dispatch {
			v, err := fx.client.CreateVersion(ctx, ref, cfapi.ScriptUpload{Metadata: cfapi.UploadMetadata{
				MainModule: "index.js", Bindings: corpus, KeepBindings: []string{"secret_text"},
				Annotations: map[string]string{"workers/message": "reconciler: bindings", "workers/tag": "t1", "workers/triggered_by": "x"},
				Other:       cfapi.SettingsForUpload(&got, true)}, Modules: modules})
			id := "00000000-0000-4000-8000-000000000000"
			if err == nil {
				id = v.ID
			}
			_, _ = fx.client.DeployVersion(ctx, ref, id, "reconciler: events e1, e2")
			_, _ = fx.client.CreateDeployment(ctx, ref, []cfapi.DeploymentShare{{VersionID: id, Percentage: 100}},
				map[string]string{"workers/message": "reconciler", "workers/triggered_by": "x"})
			_, _ = fx.client.CreateWorkerVersion(ctx, ref, cfapi.NewWorkerVersion{MainModule: "index.js",
				Modules:  []cfapi.WorkerModule{{Name: "index.js", ContentType: "application/javascript+module", Content: []byte("export default {}")}},
				Bindings: append(append(wire.Bindings{}, corpus...), cfapi.InheritFrom("NEW", "OLD", id)), CompatibilityDate: "2025-01-01",
				CompatibilityFlags: []string{"nodejs_compat"}, Annotations: map[string]string{"workers/message": "m", "workers/tag": "t"},
				Other: map[string]json.RawMessage{"usage_model": json.RawMessage(`"standard"`), "limits": json.RawMessage(`{"cpu_ms":50}`),
					"placement": json.RawMessage(`{"mode":"smart"}`)}}, false)
		}

		checked := 0
		for _, req := range fx.wire.requests() {
			if req.Method == "GET" {
				continue
			}
			st := specschema.WriteFor(req.Method, req.URL.Path)
			if st == nil {
				t.Logf("%s %s: not in the spec (SDK v7.9.0), not checked", req.Method, req.URL.Path)
				continue
			}
			body, err := st.JSON(req.Header.Get("Content-Type"), req.Body)
			if err != nil {
				t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
				continue
			}
			bad, err := schema.Check(st.Pkg, st.Type, body)
			if err != nil {
				t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
			}
			for _, b := range bad {
				if why := specschema.SDKFault(b); why != "" {
					t.Logf("%s %s: %s: not failed: %s", req.Method, req.URL.Path, b, why)
					continue
				}
				t.Errorf("%s %s (%s.%s): %s", req.Method, req.URL.Path, st.Pkg, st.Type, b)
			}
			checked++
		}
		want := 2 // settings, upload
		if !dispatch {
			want = 6 // and a version upload, two deployments, a beta version
		}
		if checked < want {
			t.Errorf("dispatch=%v: %d write bodies checked, want %d", dispatch, checked, want)
		}
	}
}

// TestSpecSchemaFindsForeignMembers: the checker reports a member the SDK
// type does not list, at every depth, and a binding type it has no variant
// for; so TestRequestMembersAreInTheSpec can fail.
func TestSpecSchemaFindsForeignMembers(t *testing.T) {
	schema, err := specschema.Load("workers")
	if err != nil {
		t.Fatal(err)
	}
	const typ = "ScriptScriptAndVersionSettingEditParamsSettings"
	for _, tc := range []struct{ body, want string }{
		{`{"bindings":[],"triggered_by":"x"}`, "triggered_by: not a member"},
		{`{"bindings":[{"type":"kv_namespace","name":"K","namespace_id":"n","text":"t"}]}`, "bindings[0](kv_namespace).text: not a member"},
		{`{"bindings":[{"type":"no_such_type","name":"K"}]}`, `type "no_such_type" is not a variant`},
		{`{"annotations":{"workers/triggered_by":"x"}}`, "annotations.workers/triggered_by: not a member"},
		{`{"limits":{"cpu_ms":1,"memory":2}}`, "limits.memory: not a member"},
	} {
		bad, err := schema.Check("workers", typ, []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) != 1 || !strings.Contains(bad[0], tc.want) {
			t.Errorf("%s: %q, want one finding containing %q", tc.body, bad, tc.want)
		}
	}
	if bad, _ := schema.Check("workers", typ, []byte(`{"bindings":[{"type":"kv_namespace","name":"K","namespace_id":"n"}],"compatibility_date":"2025-01-01"}`)); len(bad) != 0 {
		t.Errorf("a body of the spec's members: %q", bad)
	}
}

// specCorpus is one binding of every type of the corpus.
func specCorpus(t *testing.T) wire.Bindings {
	t.Helper()
	corpus := testutil.CorpusBindings(t)
	var out wire.Bindings
	for _, raw := range corpus {
		b, err := wire.ParseBinding(raw)
		if err != nil {
			t.Fatalf("corpus %s: %v", raw, err)
		}
		out = append(out, b)
	}
	if len(out) < 30 {
		t.Fatalf("the corpus has %d bindings", len(out))
	}
	return out
}

// specKept are the {type, name} entries the default write sends to keep a
// binding's value.
func specKept(t *testing.T) wire.Bindings {
	t.Helper()
	var out wire.Bindings
	for _, typ := range []string{"secret_text", "kv_namespace"} {
		b, err := wire.NewBinding(typ, "KEPT_"+strings.ToUpper(typ), nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
