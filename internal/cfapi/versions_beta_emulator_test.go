package cfapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// ordinaryTenant starts an emulator with three ordinary tenants and returns
// the fixture and tenant-0001.
func ordinaryTenant(t *testing.T) (fixture, cfapi.ScriptRef) {
	t.Helper()
	fx := setup(t)
	fx.seed(t, "", 3)
	return fx, cfapi.ScriptRef{AccountID: account, Script: cfapitest.TenantName(1)}
}

// nextVersion builds a version from the current one: the same code and
// compatibility date, the secret and TENANT inherited from cur (not from
// the latest version, which may be another), KV renamed to RENAMED_KV and
// a new plain_text binding.
func nextVersion(t *testing.T, cur *cfapi.WorkerVersion) cfapi.NewWorkerVersion {
	t.Helper()
	greeting, err := wire.NewBinding(wire.TypePlainText, "GREETING", map[string]any{"text": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	return cfapi.NewWorkerVersion{
		MainModule: cur.MainModule,
		Modules:    cur.Modules,
		Bindings: wire.Bindings{
			cfapi.InheritFrom("API_TOKEN", "", cur.ID),
			cfapi.InheritFrom("RENAMED_KV", "KV", cur.ID),
			cfapi.InheritFrom("TENANT", "", cur.ID),
			greeting,
		},
		CompatibilityDate: cur.CompatibilityDate,
		Annotations:       map[string]string{"workers/message": "bindings change", "workers/triggered_by": "reconciler event-1"},
	}
}

func TestCreateWorkerVersion(t *testing.T) {
	fx, ref := ordinaryTenant(t)
	ctx := context.Background()
	cur, err := fx.client.GetWorkerVersion(ctx, ref, "latest", true)
	if err != nil {
		t.Fatal(err)
	}
	if cur.MainModule != "index.js" || len(cur.Modules) != 1 || !strings.Contains(string(cur.Modules[0].Content), "tenant-0001") ||
		cur.CompatibilityDate != "2025-01-01" || len(cur.Bindings) != 3 {
		t.Fatalf("current version %+v", cur)
	}
	for _, b := range cur.Bindings {
		if b.HasWriteOnlyValue() {
			t.Errorf("GET version shows %s's value", b.Name())
		}
	}
	before := fx.srv.Stats()
	deployedBefore, _ := fx.srv.Script(account, "", ref.Script)

	// Without deploy: a new version; nothing live changes.
	v, err := fx.client.CreateWorkerVersion(ctx, ref, nextVersion(t, cur), false)
	if err != nil {
		t.Fatal(err)
	}
	if v.ID == "" || v.Number != 2 || v.Annotations["workers/message"] == "" ||
		v.Annotations["workers/triggered_by"] == "reconciler event-1" {
		t.Errorf("version %+v", v)
	}
	if got := fx.stored(t, ref); got["KV"].IsZero() || !got["RENAMED_KV"].IsZero() {
		t.Errorf("a version without deploy changed live bindings: %v", got)
	}

	// With deploy: one request creates and deploys it.
	v, err = fx.client.CreateWorkerVersion(ctx, ref, nextVersion(t, cur), true)
	if err != nil {
		t.Fatal(err)
	}
	st := fx.stats(t)
	if w := st.Writes - before.Writes; w != 2 || st.Requests[cfapi.EPCreateWorkerVersion][http.StatusOK] != 2 {
		t.Errorf("writes %d, requests %v; want 2 create_worker_version", w, st.Requests)
	}
	sc, _ := fx.srv.Script(account, "", ref.Script)
	if len(sc.Deployment.Versions) != 1 || sc.Deployment.Versions[0].VersionID != v.ID || sc.Deployment.Versions[0].Percentage != 100 ||
		sc.Deployment.ID == deployedBefore.Deployment.ID {
		t.Fatalf("deployment %+v, want %s at 100%%", sc.Deployment, v.ID)
	}
	live := fx.stored(t, ref)
	kvID, _ := deployedBefore.Bindings[0].String("namespace_id")
	if text(t, live["API_TOKEN"]) != seedSecret(ref) || !live["KV"].IsZero() || text(t, live["GREETING"]) != "hi" {
		t.Errorf("live bindings %v", live)
	}
	if id, _ := live["RENAMED_KV"].String("namespace_id"); id != kvID || kvID == "" {
		t.Errorf("RENAMED_KV namespace_id %q, want KV's %q", id, kvID)
	}
	if string(sc.Modules[0].Data) != string(cur.Modules[0].Content) || string(sc.Settings["compatibility_date"]) != `"2025-01-01"` {
		t.Errorf("code or settings changed: %q %s", sc.Modules[0].Data, sc.Settings["compatibility_date"])
	}
}

func TestCreateWorkerVersionRetriesSendTheSameJSON(t *testing.T) {
	fx, ref := ordinaryTenant(t)
	ctx := context.Background()
	cur, err := fx.client.GetWorkerVersion(ctx, ref, "latest", true)
	if err != nil {
		t.Fatal(err)
	}
	fx.srv.FailNext(2, http.StatusServiceUnavailable, 10013, 0, cfapitest.EndpointCreateWorkerVersion)
	if _, err := fx.client.CreateWorkerVersion(ctx, ref, nextVersion(t, cur), true); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, r := range fx.wire.requests() {
		if r.Method == http.MethodPost {
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if r.URL.Query().Get("deploy") != "true" {
				t.Errorf("query %q", r.URL.RawQuery)
			}
			bodies = append(bodies, r.Body)
		}
	}
	if len(bodies) != 3 || string(bodies[0]) != string(bodies[1]) || string(bodies[1]) != string(bodies[2]) {
		t.Fatalf("%d attempts, bodies differ: %q", len(bodies), bodies)
	}
	if sc, _ := fx.srv.Script(account, "", ref.Script); len(sc.Versions) != 2 {
		t.Errorf("%d versions, want 2 (the failed attempts created none)", len(sc.Versions))
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(bodies[0], &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"main_module", "modules", "bindings", "compatibility_date", "annotations"} {
		if _, ok := body[k]; !ok {
			t.Errorf("body lacks %s: %s", k, bodies[0])
		}
	}
	if strings.Contains(string(bodies[0]), seedSecret(ref)) {
		t.Error("the body carries the inherited secret's value")
	}
}

func TestCreateWorkerVersionErrors(t *testing.T) {
	fx, ref := ordinaryTenant(t)
	ctx := context.Background()
	cur, err := fx.client.GetWorkerVersion(ctx, ref, "latest", true)
	if err != nil {
		t.Fatal(err)
	}

	// An inherit of a missing binding: 400 with one 10057 per binding, not
	// retried, nothing written.
	nv := nextVersion(t, cur)
	nv.Bindings = append(nv.Bindings, wire.Inherit("MISSING"), cfapi.InheritFrom("NEW", "GONE", cur.ID))
	_, err = fx.client.CreateWorkerVersion(ctx, ref, nv, true)
	var apiErr *cfapi.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !apiErr.CodeIs(cfapi.CodeInvalidInherit) ||
		len(apiErr.Errors) != 2 || apiErr.Retryable() || !strings.Contains(err.Error(), "MISSING") {
		t.Fatalf("err = %v", err)
	}
	if fx.retries.Load() != 0 {
		t.Errorf("a validation error was retried %d times", fx.retries.Load())
	}
	if sc, _ := fx.srv.Script(account, "", ref.Script); len(sc.Versions) != 1 {
		t.Errorf("%d versions after a refused upload", len(sc.Versions))
	}

	// A Worker that does not exist.
	_, err = fx.client.CreateWorkerVersion(ctx, cfapi.ScriptRef{AccountID: account, Script: "nope"}, nextVersion(t, cur), true)
	if !errors.Is(err, cfapi.ErrNotFound) {
		t.Errorf("missing Worker: %v", err)
	}
	_, err = fx.client.GetWorkerVersion(ctx, ref, "00000000-0000-4000-8000-000000000000", false)
	if !errors.Is(err, cfapi.ErrNotFound) {
		t.Errorf("missing version: %v", err)
	}

	// Refused before any request: a dispatch script, a bad body.
	n := len(fx.wire.requests())
	if _, err := fx.client.CreateWorkerVersion(ctx, cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: "x"}, nv, true); err == nil {
		t.Error("dispatch script accepted")
	}
	for name, edit := range map[string]func(*cfapi.NewWorkerVersion){
		"main module missing": func(v *cfapi.NewWorkerVersion) { v.MainModule = "main.js" },
		"no main module":      func(v *cfapi.NewWorkerVersion) { v.MainModule = "" },
		"module without type": func(v *cfapi.NewWorkerVersion) { v.Modules = []cfapi.WorkerModule{{Name: "index.js"}} },
		"duplicate module": func(v *cfapi.NewWorkerVersion) {
			v.Modules = append(slices.Clone(v.Modules), v.Modules[0])
		},
		"invalid other": func(v *cfapi.NewWorkerVersion) { v.Other = map[string]json.RawMessage{"limits": json.RawMessage("{")} },
	} {
		v := nextVersion(t, cur)
		edit(&v)
		if _, err := fx.client.CreateWorkerVersion(ctx, ref, v, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := len(fx.wire.requests()); got != n {
		t.Errorf("%d requests sent for invalid input", got-n)
	}
}

func TestNewWorkerVersionJSON(t *testing.T) {
	v := cfapi.NewWorkerVersion{
		MainModule:  "index.js",
		Modules:     []cfapi.WorkerModule{{Name: "index.js", ContentType: "application/javascript+module", Content: []byte("x")}},
		Bindings:    wire.Bindings{cfapi.InheritFrom("A", "", ""), cfapi.InheritFrom("B", "OLD", "v1")},
		Annotations: map[string]string{"workers/message": strings.Repeat("é", 600)},
		Other:       map[string]json.RawMessage{"limits": json.RawMessage(`{"cpu_ms":50}`)},
	}
	data, err := v.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Annotations map[string]string   `json:"annotations"`
		Bindings    []map[string]string `json:"bindings"`
		Modules     []map[string]string `json:"modules"`
		Limits      map[string]int      `json:"limits"`
		Flags       *[]string           `json:"compatibility_flags"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if msg := got.Annotations["workers/message"]; len(msg) > 1000 || !strings.HasPrefix(strings.Repeat("é", 600), strings.TrimSuffix(msg, "...")) {
		t.Errorf("message of %d bytes", len(msg))
	}
	want := []map[string]string{{"type": "inherit", "name": "A"}, {"type": "inherit", "name": "B", "old_name": "OLD", "version_id": "v1"}}
	if diff := cmp.Diff(want, got.Bindings); diff != "" {
		t.Errorf("bindings (-want +got):\n%s", diff)
	}
	if got.Modules[0]["content_base64"] != "eA==" || got.Limits["cpu_ms"] != 50 || got.Flags != nil {
		t.Errorf("body %s", data)
	}
	again, _ := v.JSON()
	if string(again) != string(data) {
		t.Error("JSON is not deterministic")
	}
}

func TestListWorkerVersions(t *testing.T) {
	fx, ref := ordinaryTenant(t)
	ctx := context.Background()
	cur, err := fx.client.GetWorkerVersion(ctx, ref, "latest", true)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := fx.client.CreateWorkerVersion(ctx, ref, nextVersion(t, cur), false); err != nil {
			t.Fatal(err)
		}
	}
	list, info, err := fx.client.ListWorkerVersions(ctx, ref, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Number != 3 || list[1].Number != 2 || info != (cfapi.PageInfo{Page: 2, PerPage: 2, Count: 2, TotalCount: 5}) {
		t.Errorf("page 2: %+v %+v", list, info)
	}
	if list[0].Modules != nil || list[0].Other["urls"] == nil || list[0].CreatedOn.IsZero() {
		t.Errorf("listed version %+v", list[0])
	}
	all, info, err := fx.client.ListWorkerVersions(ctx, ref, 0, 0)
	if err != nil || len(all) != 5 || all[0].Number != 5 {
		t.Errorf("default page: %d versions, %+v, %v", len(all), info, err)
	}
	if _, _, err := fx.client.ListWorkerVersions(ctx, ref, 1, 1000); !errors.As(err, new(*cfapi.APIError)) {
		t.Errorf("per_page 1000: %v", err)
	}
}

func TestListDeploymentsDetectsASplit(t *testing.T) {
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		ctx := context.Background()
		ds, err := fx.client.ListDeployments(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].Split() || ds[0].Versions[0].Percentage != 100 || ds[0].CreatedOn.IsZero() {
			t.Fatalf("deployments %+v", ds)
		}
		v1 := ds[0].Versions[0].VersionID
		kv := wire.MustParseBinding(`{"type":"kv_namespace","name":"OTHER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`)
		v2, err := fx.srv.AddVersion(account, ref.Namespace, ref.Script, cfapitest.Script{Bindings: []wire.Binding{kv}})
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.srv.Deploy(account, ref.Namespace, ref.Script,
			cfapitest.DeploymentVersion{VersionID: v1, Percentage: 50}, cfapitest.DeploymentVersion{VersionID: v2, Percentage: 50}); err != nil {
			t.Fatal(err)
		}
		ds, err = fx.client.ListDeployments(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		want := []cfapi.DeploymentShare{{VersionID: v1, Percentage: 50}, {VersionID: v2, Percentage: 50}}
		if len(ds) != 2 || !ds[0].Split() || !cmp.Equal(ds[0].Versions, want) || ds[1].Split() {
			t.Fatalf("after the split: %+v", ds)
		}

		// Re-create the split with the same shares.
		d, err := fx.client.CreateDeployment(ctx, ref, want, map[string]string{"workers/message": "keep the split"})
		if err != nil {
			t.Fatal(err)
		}
		// An ordinary Worker's deployment carries the message; a dispatch
		// namespace script's none (the reference has no annotations there).
		wantMsg := "keep the split"
		if ref.Dispatch() {
			wantMsg = ""
		}
		if !d.Split() || d.ID == "" || d.Annotations["workers/message"] != wantMsg {
			t.Errorf("deployment %+v, want message %q", d, wantMsg)
		}
		sc, _ := fx.srv.Script(account, ref.Namespace, ref.Script)
		if len(sc.Deployment.Versions) != 2 || len(sc.Versions[0].Bindings) != 3 || len(sc.Versions[1].Bindings) != 1 {
			t.Errorf("split versions lost their own bindings: %+v", sc.Versions)
		}

		n := len(fx.wire.requests())
		for _, shares := range [][]cfapi.DeploymentShare{nil, {{VersionID: v1, Percentage: 60}, {VersionID: v2, Percentage: 50}},
			{{VersionID: "", Percentage: 100}}, {{v1, 20}, {v2, 20}, {v1, 60}}} {
			if _, err := fx.client.CreateDeployment(ctx, ref, shares, nil); err == nil {
				t.Errorf("shares %v accepted", shares)
			}
		}
		if got := len(fx.wire.requests()); got != n {
			t.Errorf("%d requests for invalid shares", got-n)
		}
		if _, err := fx.client.ListDeployments(ctx, cfapi.ScriptRef{AccountID: account, Namespace: ref.Namespace, Script: "nope"}); !errors.Is(err, cfapi.ErrNotFound) {
			t.Errorf("missing script: %v", err)
		}
	})
}

func TestEndpointNamesMatchTheEmulator(t *testing.T) {
	for ep, emu := range map[string]string{
		cfapi.EPCreateWorkerVersion: cfapitest.EndpointCreateWorkerVersion,
		cfapi.EPGetWorkerVersion:    cfapitest.EndpointGetWorkerVersion,
		cfapi.EPListWorkerVersions:  cfapitest.EndpointListWorkerVersions,
		cfapi.EPListDeployments:     cfapitest.EndpointListDeployments,
	} {
		if ep != emu {
			t.Errorf("client endpoint %q, emulator %q", ep, emu)
		}
	}
}
