package cfapitest

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

const kvUser = `{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`

func notFoundCode(ns string) int {
	if ns == "" {
		return CodeWorkerNotFound
	}
	return CodeDispatchNotFound
}

func (a *api) putJSON(path string, v any) *apiResponse {
	a.t.Helper()
	return a.do(http.MethodPut, path, mustJSON(a.t, v), "application/json")
}

func (a *api) patchJSON(path string, v any, contentType string) *apiResponse {
	a.t.Helper()
	return a.do(http.MethodPatch, path, mustJSON(a.t, v), contentType)
}

// names returns the "name" members of a list result.
func names(t *testing.T, r *apiResponse) []string {
	t.Helper()
	var list []struct{ Name string }
	r.result(t, &list)
	out := []string{}
	for _, e := range list {
		out = append(out, e.Name)
	}
	return out
}

// secretNames returns the names of a secrets-bulk result, an object keyed
// by secret name, after checking each entry's own name matches its key.
func secretNames(t *testing.T, r *apiResponse) []string {
	t.Helper()
	var m map[string]struct{ Name, Type string }
	r.result(t, &m)
	out := []string{}
	for k, e := range m {
		if e.Name != k || e.Type == "" {
			t.Errorf("secrets-bulk entry %q: %+v", k, e)
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestGetService(t *testing.T) {
	s, a := newAPI(t, Options{})
	expect(t, a.get("/accounts/"+acct+"/workers/services/w"), http.StatusNotFound, CodeServiceNotFound)
	seedScript(t, s, "", "w", secretAPI)
	r := a.get("/accounts/" + acct + "/workers/services/w")
	expect(t, r, http.StatusOK, 0)
	var res struct {
		ID                 string `json:"id"`
		CreatedOn          string `json:"created_on"`
		ModifiedOn         string `json:"modified_on"`
		DefaultEnvironment struct {
			Environment string `json:"environment"`
			Script      struct {
				ID               string   `json:"id"`
				Tag              string   `json:"tag"`
				Tags             []string `json:"tags"`
				MigrationTag     string   `json:"migration_tag"`
				LastDeployedFrom string   `json:"last_deployed_from"`
				DeploymentID     string   `json:"deployment_id"`
				Etag             string   `json:"etag"`
			} `json:"script"`
		} `json:"default_environment"`
	}
	r.result(t, &res)
	sc := res.DefaultEnvironment.Script
	if res.ID != "w" || res.DefaultEnvironment.Environment != "production" || sc.ID != "w" ||
		!regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(sc.Tag) || sc.Tags == nil ||
		sc.LastDeployedFrom != "api" || sc.DeploymentID != mustScript(t, s, "", "w").Deployment.ID || sc.Etag == "" {
		t.Errorf("service %s", r.Env.Result)
	}

	// A wrangler upload is "last deployed from" wrangler and carries the
	// migration tag.
	a.hdr.Set("User-Agent", "wrangler/4.164.0")
	body, ct := moduleUpload(t, map[string]any{"bindings": []any{},
		"migrations": map[string]any{"new_tag": "v1", "steps": []any{}}})
	expect(t, a.do(http.MethodPut, scriptPath("", "w"), body, ct), http.StatusOK, 0)
	a.get("/accounts/"+acct+"/workers/services/w").result(t, &res)
	if res.DefaultEnvironment.Script.LastDeployedFrom != "wrangler" || res.DefaultEnvironment.Script.MigrationTag != "v1" {
		t.Errorf("after a wrangler upload: %+v", res.DefaultEnvironment.Script)
	}
	// Dispatch namespace scripts are no services.
	seedScript(t, s, "my-ns", "d")
	expect(t, a.get("/accounts/"+acct+"/workers/services/d"), http.StatusNotFound, CodeServiceNotFound)
}

func TestSecrets(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		clock := newFakeClock()
		s, a := newAPI(t, Options{Now: clock.Now})
		p := scriptPath(ns, "w")
		if ns != "" {
			if err := s.CreateNamespace(acct, ns); err != nil {
				t.Fatal(err)
			}
		}
		expect(t, a.get(p+"/secrets"), http.StatusNotFound, notFoundCode(ns))
		expect(t, a.putJSON(p+"/secrets", map[string]any{"name": "S", "text": "x", "type": "secret_text"}),
			http.StatusNotFound, notFoundCode(ns))
		seedScript(t, s, ns, "w", secretAPI, plainGr)
		if got := names(t, a.get(p+"/secrets")); !cmp.Equal(got, []string{"API_KEY"}) {
			t.Errorf("secrets %v", got)
		}

		// PUT: a new version, deployed; the value is stored, never shown.
		before := mustScript(t, s, ns, "w")
		clock.Advance(time.Second)
		r := a.putJSON(p+"/secrets", map[string]any{"name": "NEW", "text": "n3w", "type": "secret_text"})
		expect(t, r, http.StatusOK, 0)
		if string(r.Env.Result) != `{"name":"NEW","type":"secret_text"}` {
			t.Errorf("put result %s", r.Env.Result)
		}
		after := mustScript(t, s, ns, "w")
		if len(after.Versions) != len(before.Versions)+1 || after.Deployment.Versions[0].VersionID != after.Versions[len(after.Versions)-1].ID ||
			!after.ModifiedOn.After(before.ModifiedOn) {
			t.Errorf("secret put: versions %d→%d, deployment %+v, modified %v→%v", len(before.Versions), len(after.Versions),
				after.Deployment, before.ModifiedOn, after.ModifiedOn)
		}
		if v, _ := storedByName(t, s, ns, "w")["NEW"].String("text"); v != "n3w" {
			t.Errorf("stored NEW %q", v)
		}
		if strings.Contains(string(a.get(p+"/settings").Body), "n3w") || strings.Contains(string(a.get(p+"/secrets").Body), "n3w") {
			t.Error("a GET shows the secret's text")
		}
		if got := names(t, a.get(p+"/secrets")); !cmp.Equal(got, []string{"API_KEY", "NEW"}) {
			t.Errorf("secrets %v", got)
		}
		expect(t, a.get(p+"/secrets/NEW"), http.StatusOK, 0)
		expect(t, a.get(p+"/secrets/GREETING"), http.StatusNotFound, CodeBindingNotFound)
		expect(t, a.get(p+"/secrets/NOPE"), http.StatusNotFound, CodeBindingNotFound)

		for _, tc := range []struct {
			name string
			body []byte
			code int
		}{
			{"invalid JSON", []byte("{"), CodeUnparsableBody},
			{"not a secret type", mustJSON(t, map[string]any{"name": "X", "text": "x", "type": "plain_text"}), CodeValidation},
			{"no text", mustJSON(t, map[string]any{"name": "X", "type": "secret_text"}), CodeValidation},
			{"no name", mustJSON(t, map[string]any{"text": "x", "type": "secret_text"}), CodeBindingNoName},
			{"too large", mustJSON(t, map[string]any{"name": "X", "text": strings.Repeat("x", 5121), "type": "secret_text"}), CodeValueTooLarge},
		} {
			r := a.do(http.MethodPut, p+"/secrets", tc.body, "application/json")
			if r.Status != http.StatusBadRequest || r.code() != tc.code {
				t.Errorf("%s: HTTP %d code %d", tc.name, r.Status, r.code())
			}
		}
		// A missing type means secret_text.
		expect(t, a.putJSON(p+"/secrets", map[string]any{"name": "UNTYPED", "text": "u"}), http.StatusOK, 0)

		// DELETE (wrangler adds ?url_encoded=true).
		r = a.do(http.MethodDelete, p+"/secrets/UNTYPED?url_encoded=true", nil, "")
		expect(t, r, http.StatusOK, 0)
		if string(r.Env.Result) != "null" {
			t.Errorf("delete result %s", r.Env.Result)
		}
		expect(t, a.do(http.MethodDelete, p+"/secrets/UNTYPED", nil, ""), http.StatusNotFound, CodeBindingNotFound)
		expect(t, a.do(http.MethodDelete, p+"/secrets/GREETING", nil, ""), http.StatusNotFound, CodeBindingNotFound)

		// secrets-bulk: merge patch; null deletes, omitted names stay.
		r = a.patchJSON(p+"/secrets-bulk", map[string]any{"secrets": map[string]any{
			"A":   map[string]any{"name": "A", "text": "1", "type": "secret_text"},
			"B":   map[string]any{"text": "2"},
			"NEW": nil, "ABSENT": nil,
		}}, "application/merge-patch+json")
		expect(t, r, http.StatusOK, 0)
		if got := secretNames(t, r); !cmp.Equal(got, []string{"A", "API_KEY", "B"}) {
			t.Errorf("bulk result %v", got)
		}
		stored := storedByName(t, s, ns, "w")
		if v, _ := stored["B"].String("text"); v != "2" || stored["GREETING"].IsZero() {
			t.Errorf("after bulk: %v", stored)
		}
		expect(t, a.patchJSON(p+"/secrets-bulk", map[string]any{"secrets": map[string]any{
			"A": map[string]any{"name": "OTHER", "text": "1"}}}, "application/merge-patch+json"), http.StatusBadRequest, CodeValidation)
		expect(t, a.do(http.MethodPatch, p+"/secrets-bulk", []byte("nope"), "application/merge-patch+json"),
			http.StatusBadRequest, CodeUnparsableBody)
	})
}

func TestEditsNeedTheLatestVersionDeployed(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		p := scriptPath(ns, "w")
		seedScript(t, s, ns, "w", secretAPI, plainGr)
		v1 := mustScript(t, s, ns, "w").Versions[0].ID
		body, ct := moduleUpload(t, map[string]any{"bindings": []any{json.RawMessage(kvUser)},
			"keep_bindings": []string{"secret_text"}})
		r := a.do(http.MethodPost, p+"/versions", body, ct)
		expect(t, r, http.StatusOK, 0)
		var v2 struct{ ID string }
		r.result(t, &v2)

		// The latest version is not deployed: settings and secrets refuse.
		sb, sct := settingsPatch(t, map[string]any{"bindings": []any{}})
		expect(t, a.do(http.MethodPatch, p+"/settings", sb, sct), http.StatusBadRequest, CodeSettingsNotDeployed)
		expect(t, a.putJSON(p+"/secrets", map[string]any{"name": "S", "text": "x", "type": "secret_text"}),
			http.StatusBadRequest, CodeSecretNotDeployed)
		expect(t, a.do(http.MethodDelete, p+"/secrets/API_KEY", nil, ""), http.StatusBadRequest, CodeSecretNotDeployed)
		expect(t, a.patchJSON(p+"/secrets-bulk", map[string]any{"secrets": map[string]any{}}, "application/merge-patch+json"),
			http.StatusBadRequest, CodeSecretNotDeployed)

		// A 50/50 split of v1 and the latest: the default collapses it.
		split := []any{map[string]any{"version_id": v1, "percentage": 50}, map[string]any{"version_id": v2.ID, "percentage": 50}}
		expect(t, a.postJSON(p+"/deployments", map[string]any{"strategy": "percentage", "versions": split}), http.StatusOK, 0)
		expect(t, a.putJSON(p+"/secrets", map[string]any{"name": "S", "text": "x", "type": "secret_text"}), http.StatusOK, 0)
		sc := mustScript(t, s, ns, "w")
		if len(sc.Deployment.Versions) != 1 || sc.Deployment.Versions[0].Percentage != 100 {
			t.Fatalf("secret edit on a split: deployment %+v, want the new version at 100%%", sc.Deployment)
		}
		// The new version builds on the latest one (v2: USER_KV, API_KEY).
		if got := storedByName(t, s, ns, "w"); len(got) != 3 || got["USER_KV"].IsZero() || got["S"].IsZero() || got["API_KEY"].IsZero() {
			t.Errorf("bindings after the collapse: %v", got)
		}
	})
}

func TestSplitEditReject(t *testing.T) {
	s, a := newAPI(t, Options{SplitEdits: SplitEditReject})
	seedScript(t, s, "", "w", secretAPI, plainGr)
	v1 := mustScript(t, s, "", "w").Versions[0].ID
	v2, err := s.AddVersion(acct, "", "w", Script{Bindings: mustBindings(t, plainGr, kvUser)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deploy(acct, "", "w", DeploymentVersion{VersionID: v1, Percentage: 50}, DeploymentVersion{VersionID: v2, Percentage: 50}); err != nil {
		t.Fatal(err)
	}
	p := scriptPath("", "w")
	sb, sct := settingsPatch(t, map[string]any{"bindings": []any{}})
	expect(t, a.do(http.MethodPatch, p+"/settings", sb, sct), http.StatusBadRequest, CodeSettingsNotDeployed)
	expect(t, a.putJSON(p+"/secrets", map[string]any{"name": "S", "text": "x"}), http.StatusBadRequest, CodeSecretNotDeployed)
	if d := mustScript(t, s, "", "w").Deployment; len(d.Versions) != 2 {
		t.Errorf("the split was not kept: %+v", d)
	}
	// The split's versions keep their own bindings.
	for id, want := range map[string][]string{v1: {"API_KEY", "GREETING"}, v2: {"GREETING", "USER_KV"}} {
		var v struct{ Bindings json.RawMessage }
		a.get("/accounts/"+acct+"/workers/workers/w/versions/"+id).result(t, &v)
		got := bindingsOf(t, v.Bindings)
		if len(got) != len(want) {
			t.Errorf("version %s bindings %s, want %v", id, v.Bindings, want)
		}
		for _, n := range want {
			if _, ok := got[n]; !ok {
				t.Errorf("version %s lacks %s: %s", id, n, v.Bindings)
			}
		}
	}
}

func TestSettingsPatchOnSplitCollapsesByDefault(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", secretAPI, plainGr)
	v1 := mustScript(t, s, "", "w").Versions[0].ID
	v2, err := s.AddVersion(acct, "", "w", Script{Bindings: mustBindings(t, plainGr, kvUser),
		Settings: map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-06-01"`)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deploy(acct, "", "w", DeploymentVersion{VersionID: v1, Percentage: 50}, DeploymentVersion{VersionID: v2, Percentage: 50}); err != nil {
		t.Fatal(err)
	}
	sb, sct := settingsPatch(t, map[string]any{"bindings": []any{
		map[string]any{"type": "plain_text", "name": "GREETING"}, map[string]any{"type": "kv_namespace", "name": "USER_KV"},
		map[string]any{"type": "plain_text", "name": "ADDED", "text": "a"}}})
	expect(t, a.do(http.MethodPatch, scriptPath("", "w")+"/settings", sb, sct), http.StatusOK, 0)
	sc := mustScript(t, s, "", "w")
	if len(sc.Deployment.Versions) != 1 || sc.Deployment.Versions[0].VersionID != sc.Versions[2].ID {
		t.Fatalf("deployment %+v, want the new version at 100%%", sc.Deployment)
	}
	if got := sc.Versions[2]; len(got.Bindings) != 3 || string(got.Settings["compatibility_date"]) != `"2025-06-01"` {
		t.Errorf("the new version does not build on the latest one: %+v", got)
	}
}

func TestDeploymentsAndVersionsLists(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		p := scriptPath(ns, "w")
		expect(t, a.get(p+"/deployments"), http.StatusNotFound, notFoundCode(ns))
		expect(t, a.get(p+"/versions"), http.StatusNotFound, notFoundCode(ns))
		seedScript(t, s, ns, "w", plainGr)
		for i := 0; i < 11; i++ {
			body, ct := moduleUpload(t, map[string]any{"bindings": []any{json.RawMessage(plainGr)}})
			expect(t, a.do(http.MethodPut, p, body, ct), http.StatusOK, 0)
		}
		r := a.get(p + "/deployments")
		expect(t, r, http.StatusOK, 0)
		var res struct {
			Deployments []map[string]any `json:"deployments"`
		}
		r.result(t, &res)
		sc := mustScript(t, s, ns, "w")
		if len(res.Deployments) != 10 || res.Deployments[0]["id"] != sc.Deployment.ID {
			t.Fatalf("deployments: %d, first %v; want 10, newest first", len(res.Deployments), res.Deployments[0]["id"])
		}
		for _, k := range []string{"id", "source", "strategy", "author_email", "created_on", "annotations", "versions"} {
			if _, ok := res.Deployments[0][k]; !ok {
				t.Errorf("deployment lacks %s: %v", k, res.Deployments[0])
			}
		}
		if ann := res.Deployments[0]["annotations"].(map[string]any); ann["workers/triggered_by"] != "upload" {
			t.Errorf("annotations of an upload's deployment: %v", ann)
		}

		latest := sc.Versions[len(sc.Versions)-1]
		r = a.get(p + "/versions/" + latest.ID)
		expect(t, r, http.StatusOK, 0)
		var v struct {
			ID        string `json:"id"`
			Number    int    `json:"number"`
			Metadata  map[string]any
			Resources struct {
				Bindings json.RawMessage `json:"bindings"`
				Script   map[string]any  `json:"script"`
			}
		}
		r.result(t, &v)
		if v.ID != latest.ID || v.Number != 12 || v.Metadata["created_on"] == nil || v.Metadata["source"] != "api" ||
			v.Resources.Script["etag"] != latest.ETag || bindingsOf(t, v.Resources.Bindings)["GREETING"] == nil {
			t.Errorf("version %s", r.Env.Result)
		}
		expect(t, a.get(p+"/versions/00000000-0000-4000-8000-000000000000"), http.StatusNotFound, CodeWorkerNotFound)

		var list struct {
			Items []struct {
				ID     string `json:"id"`
				Number int    `json:"number"`
			} `json:"items"`
		}
		r = a.get(p + "/versions?page=2&per_page=5")
		expect(t, r, http.StatusOK, 0)
		r.result(t, &list)
		if len(list.Items) != 5 || list.Items[0].Number != 7 {
			t.Errorf("page 2 of 5: %+v", list.Items)
		}
		a.get(p+"/versions?deployable=true&per_page=1").result(t, &list)
		if len(list.Items) != 12 || list.Items[0].Number != 12 {
			t.Errorf("deployable: %d items, first %d", len(list.Items), list.Items[0].Number)
		}
		expect(t, a.get(p+"/versions?per_page=0"), http.StatusBadRequest, CodeValidation)
		expect(t, a.get(p+"/versions?page=x"), http.StatusBadRequest, CodeValidation)
	})
}

func TestScriptSettings(t *testing.T) {
	clock := newFakeClock()
	s, a := newAPI(t, Options{Now: clock.Now})
	p := scriptPath("", "w") + "/script-settings"
	expect(t, a.get(p), http.StatusNotFound, CodeWorkerNotFound)
	seedScript(t, s, "", "w", plainGr)
	r := a.get(p)
	expect(t, r, http.StatusOK, 0)
	if want := `{"logpush":false,"observability":null,"tags":[],"tail_consumers":null}`; string(r.Env.Result) != want {
		t.Errorf("defaults %s, want %s", r.Env.Result, want)
	}
	before := mustScript(t, s, "", "w")
	clock.Advance(time.Second)
	// What wrangler deploy sends on the versions path.
	r = a.patchJSON(p, map[string]any{"observability": map[string]any{"enabled": false}, "tags": []string{"t"}, "usage_model": "bundled"}, "application/json")
	expect(t, r, http.StatusOK, 0)
	if want := `{"logpush":false,"observability":{"enabled":false},"tags":["t"],"tail_consumers":null}`; string(r.Env.Result) != want {
		t.Errorf("patched %s, want %s", r.Env.Result, want)
	}
	after := mustScript(t, s, "", "w")
	if len(after.Versions) != len(before.Versions) || !after.ModifiedOn.After(before.ModifiedOn) {
		t.Errorf("script-settings: versions %d→%d, modified %v→%v", len(before.Versions), len(after.Versions), before.ModifiedOn, after.ModifiedOn)
	}
	if _, ok := after.Settings["usage_model"]; ok {
		t.Error("script-settings changed a versioned setting")
	}
	var settings map[string]json.RawMessage
	a.get(scriptPath("", "w")+"/settings").result(t, &settings)
	if string(settings["tags"]) != `["t"]` {
		t.Errorf("settings tags %s", settings["tags"])
	}
	expect(t, a.patchJSON(p, map[string]any{"tags": []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}}, "application/json"),
		http.StatusBadRequest, CodeValidation)
	expect(t, a.do(http.MethodPatch, p, []byte("{"), "application/json"), http.StatusBadRequest, CodeUnparsableBody)
}

func TestSubdomainAndR2(t *testing.T) {
	s, a := newAPI(t, Options{})
	r := a.get("/accounts/" + acct + "/workers/subdomain")
	expect(t, r, http.StatusOK, 0)
	if string(r.Env.Result) != `{"subdomain":"`+AccountSubdomain+`"}` {
		t.Errorf("account subdomain %s", r.Env.Result)
	}
	p := scriptPath("", "w") + "/subdomain"
	expect(t, a.postJSON(p, map[string]any{"enabled": true}), http.StatusNotFound, CodeWorkerNotFound)
	seedScript(t, s, "", "w")
	r = a.get(p)
	expect(t, r, http.StatusOK, 0)
	if string(r.Env.Result) != `{"enabled":false,"previews_enabled":false}` {
		t.Errorf("new script subdomain %s", r.Env.Result)
	}
	r = a.postJSON(p, map[string]any{"enabled": true})
	expect(t, r, http.StatusOK, 0)
	if string(r.Env.Result) != `{"enabled":true,"previews_enabled":true}` {
		t.Errorf("enabled %s", r.Env.Result)
	}
	a.postJSON(p, map[string]any{"enabled": true, "previews_enabled": false}).result(t, &map[string]any{})
	if sc := mustScript(t, s, "", "w"); !sc.Subdomain || sc.PreviewsEnabled {
		t.Errorf("subdomain %v previews %v", sc.Subdomain, sc.PreviewsEnabled)
	}
	expect(t, a.postJSON(p, map[string]any{}), http.StatusBadRequest, CodeValidation)
	expect(t, a.do(http.MethodPost, p, []byte("x"), "application/json"), http.StatusBadRequest, CodeUnparsableBody)

	r = a.get("/accounts/" + acct + "/r2/buckets/my-bucket")
	expect(t, r, http.StatusOK, 0)
	var b map[string]string
	r.result(t, &b)
	if b["name"] != "my-bucket" || b["location"] == "" || b["creation_date"] == "" || b["storage_class"] == "" {
		t.Errorf("bucket %v", b)
	}
}

func TestWranglerRoutesAreCounted(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", secretAPI)
	a.get(scriptPath("", "w") + "/secrets")
	a.putJSON(scriptPath("", "w")+"/secrets", map[string]any{"name": "S", "text": "x"})
	st := s.Stats()
	if st.Requests[EndpointListSecrets][200] != 1 || st.Requests[EndpointPutSecret][200] != 1 || st.Writes != 1 || st.Reads != 1 {
		t.Errorf("stats %+v", st)
	}
}

func mustBindings(t *testing.T, raws ...string) []wire.Binding {
	t.Helper()
	var out []wire.Binding
	for _, r := range raws {
		out = append(out, wire.MustParseBinding(r))
	}
	return out
}
