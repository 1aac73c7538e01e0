package cfapitest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

func betaPath(worker string) string { return "/accounts/" + acct + "/workers/workers/" + worker }

const indexSrc = "export default { fetch() { return new Response('beta') } }"

// betaBody is a beta version body with index.js and the given bindings.
func betaBody(bindings ...any) map[string]any {
	if bindings == nil {
		bindings = []any{}
	}
	return map[string]any{
		"main_module": "index.js",
		"modules": []any{
			map[string]any{"name": "util.js", "content_type": "application/javascript+module",
				"content_base64": base64.StdEncoding.EncodeToString([]byte("export const x = 1"))},
			map[string]any{"name": "index.js", "content_type": "application/javascript+module",
				"content_base64": base64.StdEncoding.EncodeToString([]byte(indexSrc))},
		},
		"bindings":           bindings,
		"compatibility_date": "2025-09-01",
		"annotations":        map[string]any{"workers/message": "m", "workers/triggered_by": "reconciler e1"},
	}
}

type betaVersion struct {
	ID                string            `json:"id"`
	Number            int               `json:"number"`
	CreatedOn         string            `json:"created_on"`
	MainModule        string            `json:"main_module"`
	CompatibilityDate string            `json:"compatibility_date"`
	Annotations       map[string]string `json:"annotations"`
	Bindings          json.RawMessage   `json:"bindings"`
	Source            string            `json:"source"`
	Modules           []struct {
		Name          string `json:"name"`
		ContentType   string `json:"content_type"`
		ContentBase64 string `json:"content_base64"`
	} `json:"modules"`
}

func TestBetaGetWorker(t *testing.T) {
	s, a := newAPI(t, Options{})
	expect(t, a.get(betaPath("w")), http.StatusNotFound, CodeWorkerNotFound)
	seedScript(t, s, "", "w")
	r := a.get(betaPath("w"))
	expect(t, r, http.StatusOK, 0)
	var wk struct {
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Subdomain map[string]bool `json:"subdomain"`
		Tags      []string        `json:"tags"`
		CreatedOn string          `json:"created_on"`
		UpdatedOn string          `json:"updated_on"`
	}
	r.result(t, &wk)
	if wk.Name != "w" || len(wk.ID) != 32 || wk.Subdomain == nil || wk.Tags == nil || wk.CreatedOn == "" || wk.UpdatedOn == "" {
		t.Errorf("worker %s", r.Env.Result)
	}
	// By id too.
	expect(t, a.get(betaPath(wk.ID)), http.StatusOK, 0)
	// A dispatch namespace script is no Worker of the beta API.
	seedScript(t, s, "my-ns", "d")
	expect(t, a.get(betaPath("d")), http.StatusNotFound, CodeWorkerNotFound)
}

func TestBetaCreateVersion(t *testing.T) {
	s, a := newAPI(t, Options{})
	expect(t, a.postJSON(betaPath("w")+"/versions", betaBody()), http.StatusNotFound, CodeWorkerNotFound)
	seedScript(t, s, "", "w", secretAPI, plainGr)
	before := mustScript(t, s, "", "w")
	s.ResetStats()

	// Without deploy: a version, nothing live changes.
	r := a.postJSON(betaPath("w")+"/versions", betaBody(
		map[string]any{"type": "inherit", "name": "API_KEY"},
		map[string]any{"type": "inherit", "name": "HELLO", "old_name": "GREETING"},
		json.RawMessage(kvUser)))
	expect(t, r, http.StatusOK, 0)
	var v betaVersion
	r.result(t, &v)
	if v.Number != 2 || v.MainModule != "index.js" || v.CompatibilityDate != "2025-09-01" || v.CreatedOn == "" ||
		v.Annotations["workers/triggered_by"] != "reconciler e1" || v.Source != "api" || v.Modules != nil {
		t.Errorf("version %s", r.Env.Result)
	}
	got := bindingsOf(t, v.Bindings)
	if len(got) != 3 || got["HELLO"]["text"] != "hello" || got["API_KEY"] == nil || got["API_KEY"]["text"] != nil {
		t.Errorf("bindings %s", v.Bindings)
	}
	after := mustScript(t, s, "", "w")
	if after.Deployment.ID != before.Deployment.ID || len(after.Bindings) != 2 || after.ModifiedOn != after.Versions[1].CreatedOn {
		t.Errorf("a version without deploy changed the live script: %+v", after.Deployment)
	}
	stored := after.Versions[1]
	if val, _ := findStored(stored.Bindings, "API_KEY"); val != "s3cr3t-value" {
		t.Errorf("inherited secret %q", val)
	}
	if stored.Modules[0].Name != "index.js" || string(stored.Modules[0].Data) != indexSrc || len(stored.Modules) != 2 {
		t.Errorf("stored modules %+v", stored.Modules)
	}

	// With deploy=true: one call, deployed at 100%.
	r = a.postJSON(betaPath("w")+"/versions?deploy=true", betaBody(map[string]any{"type": "inherit", "name": "API_KEY", "version_id": before.Versions[0].ID}))
	expect(t, r, http.StatusOK, 0)
	r.result(t, &v)
	sc := mustScript(t, s, "", "w")
	if len(sc.Deployment.Versions) != 1 || sc.Deployment.Versions[0].VersionID != v.ID || sc.Deployment.Versions[0].Percentage != 100 {
		t.Fatalf("deploy=true: deployment %+v, want %s at 100%%", sc.Deployment, v.ID)
	}
	if live := storedByName(t, s, "", "w"); len(live) != 1 || live["API_KEY"].IsZero() || string(sc.Settings["compatibility_date"]) != `"2025-09-01"` {
		t.Errorf("live after deploy: %v %s", live, sc.Settings["compatibility_date"])
	}
	if s.Stats().Writes != 2 {
		t.Errorf("writes %d, want 2 (one per version)", s.Stats().Writes)
	}

	// Inherit of a missing name: 10057, one entry per binding.
	r = a.postJSON(betaPath("w")+"/versions?deploy=true", betaBody(
		map[string]any{"type": "inherit", "name": "NOPE"}, map[string]any{"type": "inherit", "name": "NEW", "old_name": "GONE"}))
	expect(t, r, http.StatusBadRequest, CodeInvalidInherit)
	if len(r.Env.Errors) != 2 || r.Env.Errors[1].Code != CodeInvalidInherit || !strings.Contains(r.Env.Errors[0].Message, "NOPE") {
		t.Errorf("errors %+v", r.Env.Errors)
	}

	bad := func(name string, edit func(map[string]any), query string, code int) {
		t.Helper()
		body := betaBody()
		edit(body)
		r := a.postJSON(betaPath("w")+"/versions"+query, body)
		if r.Status != http.StatusBadRequest || r.code() != code {
			t.Errorf("%s: HTTP %d code %d %s", name, r.Status, r.code(), r.Body)
		}
	}
	bad("invalid base64", func(b map[string]any) {
		b["modules"].([]any)[1].(map[string]any)["content_base64"] = "!!"
	}, "", CodeValidation)
	bad("main module not among modules", func(b map[string]any) { b["main_module"] = "main.js" }, "", CodeValidation)
	bad("no main module", func(b map[string]any) { delete(b, "main_module") }, "", CodeValidation)
	bad("no modules", func(b map[string]any) { b["modules"] = []any{} }, "", CodeValidation)
	bad("duplicate module", func(b map[string]any) {
		m := b["modules"].([]any)
		b["modules"] = append(m, m[0])
	}, "", CodeValidation)
	bad("tag too long", func(b map[string]any) {
		b["annotations"] = map[string]any{"workers/tag": strings.Repeat("t", 101)}
	}, "", CodeValidation)
	bad("secret without text", func(b map[string]any) {
		b["bindings"] = []any{map[string]any{"type": "secret_text", "name": "S"}}
	}, "", CodeValidation)
	bad("bad deploy", func(map[string]any) {}, "?deploy=maybe", CodeValidation)
	bad("bad compatibility_date", func(b map[string]any) { b["compatibility_date"] = 5 }, "", CodeValidation)
	expect(t, a.do(http.MethodPost, betaPath("w")+"/versions", []byte("{"), "application/json"), http.StatusBadRequest, CodeUnparsableBody)

	// workers/message is cut to 1000 bytes.
	body := betaBody()
	body["annotations"] = map[string]any{"workers/message": strings.Repeat("m", 1200)}
	a.postJSON(betaPath("w")+"/versions", body).result(t, &v)
	if len(v.Annotations["workers/message"]) != 1000 {
		t.Errorf("message of %d bytes", len(v.Annotations["workers/message"]))
	}
}

func findStored(bs []wire.Binding, name string) (string, bool) {
	for _, b := range bs {
		if b.Name() == name {
			return b.String("text")
		}
	}
	return "", false
}

func TestBetaGetAndListVersions(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", plainGr)
	var v betaVersion
	a.postJSON(betaPath("w")+"/versions", betaBody(json.RawMessage(secretAPI))).result(t, &v)

	r := a.get(betaPath("w") + "/versions/" + v.ID + "?include=modules")
	expect(t, r, http.StatusOK, 0)
	var got betaVersion
	r.result(t, &got)
	if len(got.Modules) != 2 || got.Modules[0].Name != "index.js" || got.Modules[0].ContentType != "application/javascript+module" {
		t.Fatalf("modules %+v", got.Modules)
	}
	if data, _ := base64.StdEncoding.DecodeString(got.Modules[0].ContentBase64); string(data) != indexSrc {
		t.Errorf("module content %q", data)
	}
	if strings.Contains(string(r.Body), "s3cr3t") {
		t.Error("a version GET shows a secret's text")
	}
	got = betaVersion{}
	a.get(betaPath("w")+"/versions/"+v.ID).result(t, &got)
	if got.Modules != nil {
		t.Error("modules without include=modules")
	}
	a.get(betaPath("w")+"/versions/latest").result(t, &got)
	if got.ID != v.ID {
		t.Errorf("latest is %s, want %s", got.ID, v.ID)
	}
	expect(t, a.get(betaPath("w")+"/versions/nope"), http.StatusNotFound, CodeWorkerNotFound)
	expect(t, a.get(betaPath("w")+"/versions/"+v.ID+"?include=code"), http.StatusBadRequest, CodeValidation)

	for i := 0; i < 3; i++ {
		expect(t, a.postJSON(betaPath("w")+"/versions", betaBody()), http.StatusOK, 0)
	}
	r = a.get(betaPath("w") + "/versions?per_page=2&page=2")
	expect(t, r, http.StatusOK, 0)
	var list []betaVersion
	r.result(t, &list)
	var info struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		TotalCount int `json:"total_count"`
	}
	if err := json.Unmarshal(r.Env.ResultIn, &info); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Number != 3 || list[1].Number != 2 || info.Page != 2 || info.PerPage != 2 || info.TotalCount != 5 {
		t.Errorf("page 2: %+v %s", list, r.Env.ResultIn)
	}
	expect(t, a.get(betaPath("w")+"/versions?per_page=101"), http.StatusBadRequest, CodeValidation)
}

// inherit resolves against the latest version, deployed or not; version_id
// names another.
func TestBetaInheritResolvesAgainstTheLatestVersion(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", secretAPI)
	deployed := mustScript(t, s, "", "w").Versions[0].ID
	expect(t, a.postJSON(betaPath("w")+"/versions", betaBody(json.RawMessage(plainGr))), http.StatusOK, 0)
	expect(t, a.postJSON(betaPath("w")+"/versions?deploy=true", betaBody(map[string]any{"type": "inherit", "name": "API_KEY"})),
		http.StatusBadRequest, CodeInvalidInherit)
	expect(t, a.postJSON(betaPath("w")+"/versions?deploy=true", betaBody(map[string]any{"type": "inherit", "name": "API_KEY", "version_id": deployed})),
		http.StatusOK, 0)
	if v, _ := storedByName(t, s, "", "w")["API_KEY"].String("text"); v != "s3cr3t-value" {
		t.Errorf("inherited secret %q", v)
	}
}
