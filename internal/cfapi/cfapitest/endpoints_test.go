package cfapitest

import (
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	secretAPI = `{"type":"secret_text","name":"API_KEY","text":"s3cr3t-value"}`
	plainGr   = `{"type":"plain_text","name":"GREETING","text":"hello"}`
	kvBind    = `{"type":"kv_namespace","name":"MY_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`
)

func TestEnvelopeHeadersAndUnknownRoutes(t *testing.T) {
	_, a := newAPI(t, Options{})
	ray := regexp.MustCompile(`^[0-9a-f]{16}-EMU$`)
	for _, path := range []string{
		"/nope",
		"/accounts/" + acct + "/workers/scripts/x/bindings", // no ordinary /bindings route
		"/accounts/" + acct + "/workers/dispatch/namespaces/ns/scripts/x/unknown",
	} {
		r := a.get(path)
		expect(t, r, http.StatusNotFound, CodeNoRoute)
		if !ray.MatchString(r.Header.Get("cf-ray")) {
			t.Errorf("cf-ray = %q", r.Header.Get("cf-ray"))
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content type %q", ct)
		}
		if r.Env.Messages == nil || string(r.Env.Result) != "null" {
			t.Errorf("envelope %s", r.Body)
		}
	}
}

func TestInvalidAccount(t *testing.T) {
	_, a := newAPI(t, Options{})
	r := a.get("/accounts/not-an-account/workers/scripts/x/settings")
	expect(t, r, http.StatusNotFound, CodeInvalidAccount)
	if len(r.Env.Errors) != 2 || r.Env.Errors[1].Code != CodeNoRoute ||
		!strings.Contains(r.Env.Errors[0].Message, "Could not route to /accounts/not-an-account/workers/scripts/x/settings") {
		t.Errorf("errors %+v", r.Env.Errors)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	_, a := newAPI(t, Options{})
	r := a.do(http.MethodDelete, scriptPath("", "x")+"/settings", nil, "")
	expect(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if allow := r.Header.Get("Allow"); allow != "GET, PATCH" {
		t.Errorf("Allow = %q", allow)
	}
}

func TestGetSettingsAndBindings(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		seedScript(t, s, ns, "w", secretAPI, plainGr, kvBind,
			`{"type":"service","name":"AUTH","service":"auth-worker"}`, `{"type":"d1","name":"DB","id":"db-1"}`)

		r := a.get(scriptPath(ns, "w") + "/settings")
		expect(t, r, http.StatusOK, 0)
		var settings map[string]json.RawMessage
		r.result(t, &settings)
		for _, k := range []string{"bindings", "compatibility_date", "compatibility_flags", "limits", "logpush",
			"observability", "tags", "tail_consumers", "usage_model"} {
			if _, ok := settings[k]; !ok {
				t.Errorf("settings lack %s: %s", k, r.Env.Result)
			}
		}
		// Every placement variant of the reference has a member; an unset
		// placement is omitted rather than {}.
		if p, ok := settings["placement"]; ok {
			t.Errorf("settings show placement %s although none was set", p)
		}
		if string(settings["compatibility_date"]) != `"2025-01-01"` || string(settings["usage_model"]) != `"standard"` {
			t.Errorf("settings %s", r.Env.Result)
		}
		got := bindingsOf(t, settings["bindings"])
		if _, ok := got["API_KEY"]["text"]; ok || got["API_KEY"]["type"] != "secret_text" {
			t.Errorf("secret rendered as %v", got["API_KEY"])
		}
		if strings.Contains(string(r.Body), "s3cr3t") {
			t.Error("secret value in GET settings")
		}
		if got["AUTH"]["environment"] != "production" || got["DB"]["database_id"] != "db-1" {
			t.Errorf("defaults not filled: %v %v", got["AUTH"], got["DB"])
		}

		if ns != "" {
			r = a.get(scriptPath(ns, "w") + "/bindings")
			expect(t, r, http.StatusOK, 0)
			if diff := cmp.Diff(string(settings["bindings"]), string(r.Env.Result)); diff != "" {
				t.Errorf("/bindings differs from settings.bindings:\n%s", diff)
			}
			expect(t, a.get(scriptPath(ns, "missing")+"/bindings"), http.StatusNotFound, CodeDispatchNotFound)
			expect(t, a.get(scriptPath("other-ns", "w")+"/settings"), http.StatusNotFound, CodeDispatchNotFound)
		}
		notFound := CodeWorkerNotFound
		if ns != "" {
			notFound = CodeDispatchNotFound
		}
		r = a.get(scriptPath(ns, "missing") + "/settings")
		expect(t, r, http.StatusNotFound, notFound)
		if ns == "" && r.Env.Errors[0].Message != "This Worker does not exist on your account." {
			t.Errorf("message %q", r.Env.Errors[0].Message)
		}
	})
}

func TestPatchSettings(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		seedScript(t, s, ns, "w", secretAPI, plainGr, kvBind)
		path := scriptPath(ns, "w") + "/settings"

		body, ct := settingsPatch(t, map[string]any{
			"bindings": []any{
				map[string]any{"type": "secret_text", "name": "API_KEY"},
				map[string]any{"type": "plain_text", "name": "GREETING", "text": "changed"},
				map[string]any{"type": "secret_text", "name": "NEW_SECRET", "text": "new-secret"},
			},
			"compatibility_date": "2025-06-01",
			"tags":               []string{"a", "b"},
			"migrations":         map[string]any{"new_tag": "v2"}, // accepted, ignored
		})
		r := a.do(http.MethodPatch, path, body, ct)
		expect(t, r, http.StatusOK, 0)
		var res map[string]json.RawMessage
		r.result(t, &res)
		if string(res["compatibility_date"]) != `"2025-06-01"` || string(res["tags"]) != `["a","b"]` {
			t.Errorf("settings %s", r.Env.Result)
		}
		if strings.Contains(string(r.Body), "secret-") || strings.Contains(string(r.Body), "s3cr3t") {
			t.Error("secret in PATCH answer")
		}
		stored := storedByName(t, s, ns, "w")
		if len(stored) != 3 {
			t.Errorf("stored %v", stored)
		}
		if v, _ := stored["API_KEY"].String("text"); v != "s3cr3t-value" {
			t.Errorf("kept secret = %q", v)
		}
		if v, _ := stored["NEW_SECRET"].String("text"); v != "new-secret" {
			t.Errorf("new secret = %q", v)
		}
		if _, ok := stored["MY_KV"]; ok {
			t.Error("unlisted binding kept")
		}

		// Members absent from the PATCH stay; bindings absent stay.
		body, ct = settingsPatch(t, map[string]any{"logpush": true})
		expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusOK, 0)
		r = a.get(path)
		r.result(t, &res)
		if string(res["compatibility_date"]) != `"2025-06-01"` || string(res["logpush"]) != "true" ||
			len(bindingsOf(t, res["bindings"])) != 3 {
			t.Errorf("after second patch: %s", r.Env.Result)
		}
		sc, _ := s.Script(acct, ns, "w")
		if len(sc.Versions) != 3 || sc.Deployment.Versions[0].VersionID != sc.Versions[2].ID {
			t.Errorf("a PATCH should add a deployed version: %d versions", len(sc.Versions))
		}

		// Errors.
		body, ct = form(t, part{name: "metadata", data: []byte(`{}`)})
		expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusBadRequest, CodeMissingSettings)
		expect(t, a.do(http.MethodPatch, path, []byte(`{"bindings":[]}`), "application/json"),
			http.StatusBadRequest, CodeUnparsableBody)
		body, ct = form(t, part{name: "settings", data: []byte(`{not json`)})
		expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusBadRequest, CodeValidation)
		body, ct = settingsPatch(t, map[string]any{"bindings": []any{
			map[string]any{"type": "secret_text", "name": "API_KEY", "text": nil}}})
		r = a.do(http.MethodPatch, path, body, ct)
		expect(t, r, http.StatusBadRequest, CodeValidation)
		if r.Env.Errors[0].Message != "invalid or missing text property for binding API_KEY" {
			t.Errorf("message %q", r.Env.Errors[0].Message)
		}
		body, ct = settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "kv_namespace", "name": "GONE"}}})
		expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusBadRequest, CodeValidation)
		body, ct = settingsPatch(t, map[string]any{"tags": []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}})
		expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusBadRequest, CodeValidation)
		// Failed PATCHes change nothing.
		if got := storedByName(t, s, ns, "w"); len(got) != 3 {
			t.Errorf("failed patch changed bindings: %v", got)
		}
		body, ct = settingsPatch(t, map[string]any{"bindings": []any{}})
		notFound := CodeWorkerNotFound
		if ns != "" {
			notFound = CodeDispatchNotFound
		}
		expect(t, a.do(http.MethodPatch, scriptPath(ns, "missing")+"/settings", body, ct), http.StatusNotFound, notFound)
	})
}

func TestGetContent(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		if ns != "" {
			s.CreateNamespace(acct, ns)
		}
		err := s.PutScript(acct, ns, "w", Script{MainModule: "main.js", Modules: []Module{
			{Name: "util.js", ContentType: "application/javascript+module", Data: []byte("export const x = 1")},
			{Name: "main.js", ContentType: "application/javascript+module", Data: []byte("import './util.js'")},
			{Name: "data.bin", ContentType: "application/octet-stream", Data: []byte{0, 1, 2}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		path := scriptPath(ns, "w") + "/content"
		if ns == "" {
			path += "/v2"
		}
		r := a.get(path)
		if r.Status != http.StatusOK || r.Header.Get("cf-entrypoint") != "main.js" {
			t.Fatalf("HTTP %d, cf-entrypoint %q", r.Status, r.Header.Get("cf-entrypoint"))
		}
		mt, ps, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" {
			t.Fatalf("content type %q", r.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(strings.NewReader(string(r.Body)), ps["boundary"])
		var names []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(p)
			if p.FormName() != p.FileName() {
				t.Errorf("part name %q filename %q", p.FormName(), p.FileName())
			}
			names = append(names, p.FormName()+"|"+p.Header.Get("Content-Type")+"|"+string(data))
		}
		want := []string{
			"main.js|application/javascript+module|import './util.js'",
			"util.js|application/javascript+module|export const x = 1",
			"data.bin|application/octet-stream|\x00\x01\x02",
		}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("parts (-want +got):\n%s", diff)
		}
		if ns == "" {
			// The ordinary flavour has no /content without /v2 and vice versa.
			expect(t, a.get(scriptPath(ns, "w")+"/content"), http.StatusNotFound, CodeNoRoute)
			expect(t, a.get(path[:len(path)-len("/w/content/v2")]+"/missing/content/v2"), http.StatusNotFound, CodeWorkerNotFound)
		} else {
			expect(t, a.get(scriptPath(ns, "missing")+"/content"), http.StatusNotFound, CodeDispatchNotFound)
		}
	})
}

func TestPutScript(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		path := scriptPath(ns, "w") + "?excludeScript=true&bindings_inherit=strict"
		if ns != "" {
			body, ct := moduleUpload(t, map[string]any{"bindings": []any{}})
			expect(t, a.do(http.MethodPut, path, body, ct), http.StatusNotFound, CodeDispatchNotFound)
			s.CreateNamespace(acct, ns)
		}

		// Create.
		body, ct := moduleUpload(t, map[string]any{
			"bindings":           []json.RawMessage{json.RawMessage(secretAPI), json.RawMessage(plainGr), json.RawMessage(kvBind)},
			"compatibility_date": "2025-01-01",
			"tags":               []string{"t1"},
			"migrations":         map[string]any{"new_tag": "v1", "steps": []any{}},
		})
		r := a.do(http.MethodPut, path, body, ct)
		expect(t, r, http.StatusOK, 0)
		var res map[string]any
		r.result(t, &res)
		for _, k := range []string{"id", "etag", "handlers", "modified_on", "created_on", "usage_model",
			"compatibility_date", "has_modules", "startup_time_ms", "deployment_id", "entry_point"} {
			if _, ok := res[k]; !ok {
				t.Errorf("PUT result lacks %s", k)
			}
		}
		if res["id"] != "w" || res["entry_point"] != "index.js" || res["has_modules"] != true || res["migration_tag"] != "v1" {
			t.Errorf("PUT result %v", res)
		}
		sc, _ := s.Script(acct, ns, "w")
		if res["deployment_id"] != sc.Versions[0].ID || len(sc.Versions) != 1 {
			t.Errorf("deployment_id %v, versions %+v", res["deployment_id"], sc.Versions)
		}

		// A PUT replaces the whole set; keep_bindings keeps listed types.
		body, ct = moduleUpload(t, map[string]any{
			"bindings":      []any{map[string]any{"type": "plain_text", "name": "OTHER", "text": "x"}},
			"keep_bindings": []string{"secret_text", "secret_key"},
		})
		expect(t, a.do(http.MethodPut, path, body, ct), http.StatusOK, 0)
		stored := storedByName(t, s, ns, "w")
		if len(stored) != 2 || stored["OTHER"].IsZero() || stored["API_KEY"].IsZero() {
			t.Errorf("after replace: %v", stored)
		}
		// Settings absent from the metadata stay.
		var settings map[string]json.RawMessage
		a.get(scriptPath(ns, "w")+"/settings").result(t, &settings)
		if string(settings["compatibility_date"]) != `"2025-01-01"` || string(settings["tags"]) != `["t1"]` {
			t.Errorf("settings after PUT %v", settings)
		}

		// inherit with strict: resolvable keeps the secret, unresolvable is 10057.
		body, ct = moduleUpload(t, map[string]any{"bindings": []any{
			map[string]any{"type": "inherit", "name": "API_KEY"},
			map[string]any{"type": "inherit", "name": "NOPE"},
		}})
		r = a.do(http.MethodPut, path, body, ct)
		expect(t, r, http.StatusBadRequest, CodeInvalidInherit)
		if r.Env.Errors[0].Message != "inherit binding 'NOPE' is invalid: no binding of that name on the previous version" {
			t.Errorf("message %q", r.Env.Errors[0].Message)
		}
		// Without strict the unresolvable one is dropped silently.
		r = a.do(http.MethodPut, scriptPath(ns, "w"), body, ct)
		expect(t, r, http.StatusOK, 0)
		stored = storedByName(t, s, ns, "w")
		if v, _ := stored["API_KEY"].String("text"); len(stored) != 1 || v != "s3cr3t-value" {
			t.Errorf("after inherit: %v", stored)
		}

		// Errors.
		for _, tc := range []struct {
			name     string
			parts    []part
			wantCode int
		}{
			{"bad metadata JSON", []part{{name: "metadata", data: []byte("{")}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"no metadata", []part{{name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"main module missing", []part{{name: "metadata", data: []byte(`{"main_module":"main.js","bindings":[]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"no entry", []part{{name: "metadata", data: []byte(`{"bindings":[]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"secret without text", []part{{name: "metadata", data: []byte(`{"main_module":"index.js","bindings":[{"type":"secret_text","name":"S"}]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"binding without name", []part{{name: "metadata", data: []byte(`{"main_module":"index.js","bindings":[{"type":"plain_text","text":"x"}]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeBindingNoName},
			{"duplicate names", []part{{name: "metadata", data: []byte(`{"main_module":"index.js","bindings":[` + plainGr + `,` + plainGr + `]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
			{"wasm part missing", []part{{name: "metadata", data: []byte(`{"main_module":"index.js","bindings":[{"type":"wasm_module","name":"W","part":"m.wasm"}]}`)}, {name: "index.js", filename: "index.js", data: []byte("x")}}, CodeValidation},
		} {
			body, ct := form(t, tc.parts...)
			r := a.do(http.MethodPut, path, body, ct)
			if r.Status != http.StatusBadRequest || r.code() != tc.wantCode {
				t.Errorf("%s: HTTP %d code %d (%s)", tc.name, r.Status, r.code(), r.Body)
			}
		}
		expect(t, a.do(http.MethodPut, path, []byte(`{}`), "application/json"), http.StatusBadRequest, CodeUnparsableBody)
		if got := storedByName(t, s, ns, "w"); len(got) != 1 {
			t.Errorf("failed uploads changed bindings: %v", got)
		}
	})
}

func TestPutScriptMetadataAndPartForms(t *testing.T) {
	meta := []byte(`{"main_module":"worker.mjs","bindings":[{"type":"wasm_module","name":"WASM","part":"mod.wasm"},` + plainGr + `]}`)
	mod := []byte("export default {}")
	wasm := []byte{0, 'a', 's', 'm'}
	cases := []struct {
		name  string
		parts []part
	}{
		{"wrangler: plain metadata field, name = filename", []part{
			{name: "metadata", data: meta},
			{name: "worker.mjs", filename: "worker.mjs", contentType: "application/javascript+module", data: mod},
			{name: "mod.wasm", filename: "mod.wasm", contentType: "application/wasm", data: wasm}}},
		{"terraform: application/json metadata part", []part{
			{name: "metadata", contentType: "application/json", data: meta},
			{name: "worker.mjs", filename: "worker.mjs", contentType: "application/javascript+module", data: mod},
			{name: "mod.wasm", filename: "mod.wasm", contentType: "application/wasm", data: wasm}}},
		{"cloudflare example: metadata.json file, part named script", []part{
			{name: "metadata", filename: "metadata.json", contentType: "application/json", data: meta},
			{name: "script", filename: "worker.mjs", contentType: "application/javascript+module", data: mod},
			{name: "mod.wasm", filename: "mod.wasm", contentType: "application/wasm", data: wasm}}},
		{"cloudflare-go v6: every file part named files", []part{
			{name: "metadata", contentType: "application/json", data: meta},
			{name: "files", filename: "worker.mjs", contentType: "application/javascript+module", data: mod},
			{name: "files", filename: "mod.wasm", contentType: "application/wasm", data: wasm}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, a := newAPI(t, Options{})
			body, ct := form(t, tc.parts...)
			expect(t, a.do(http.MethodPut, scriptPath("", "w"), body, ct), http.StatusOK, 0)
			sc, _ := s.Script(acct, "", "w")
			if sc.MainModule != "worker.mjs" || len(sc.Modules) != 2 || sc.Modules[0].Name != "worker.mjs" ||
				sc.Modules[1].Name != "mod.wasm" || sc.Modules[1].ContentType != "application/wasm" {
				t.Errorf("modules %+v", sc.Modules)
			}
			if len(sc.Bindings) != 2 {
				t.Errorf("bindings %v", sc.Bindings)
			}
		})
	}
}

func TestPutScriptServiceWorker(t *testing.T) {
	s, a := newAPI(t, Options{})
	body, ct := form(t,
		part{name: "metadata", contentType: "application/json", data: []byte(`{"body_part":"script","bindings":[{"type":"text_blob","name":"TXT","part":"notes"}]}`)},
		part{name: "script", data: []byte("addEventListener('fetch', e => {})")},
		part{name: "notes", contentType: "text/plain", data: []byte("hello")},
	)
	expect(t, a.do(http.MethodPut, scriptPath("", "sw"), body, ct), http.StatusOK, 0)
	sc, _ := s.Script(acct, "", "sw")
	if sc.BodyPart != "script" || sc.MainModule != "" || sc.Modules[0].ContentType != "application/javascript" {
		t.Errorf("script %+v", sc)
	}
	r := a.get(scriptPath("", "sw") + "/content/v2")
	if r.Header.Get("cf-entrypoint") != "script" {
		t.Errorf("cf-entrypoint %q", r.Header.Get("cf-entrypoint"))
	}
	// A part binding can be kept by a settings PATCH, and added when it
	// names a module of the script, not otherwise.
	body, ct = settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "text_blob", "name": "TXT"}}})
	expect(t, a.do(http.MethodPatch, scriptPath("", "sw")+"/settings", body, ct), http.StatusOK, 0)
	body, ct = settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "text_blob", "name": "TXT2", "part": "notes"}}})
	expect(t, a.do(http.MethodPatch, scriptPath("", "sw")+"/settings", body, ct), http.StatusOK, 0)
	if got := storedByName(t, s, "", "sw"); len(got) != 1 || got["TXT2"].IsZero() {
		t.Errorf("after adding a part binding: %v", got)
	}
	body, ct = settingsPatch(t, map[string]any{"bindings": []any{map[string]any{"type": "text_blob", "name": "TXT3", "part": "absent"}}})
	expect(t, a.do(http.MethodPatch, scriptPath("", "sw")+"/settings", body, ct), http.StatusBadRequest, CodeValidation)
	// Versions require main_module.
	expect(t, a.do(http.MethodPost, scriptPath("", "sw")+"/versions", body, ct), http.StatusBadRequest, CodeValidation)
}

func TestPutScriptTooLarge(t *testing.T) {
	_, a := newAPI(t, Options{MaxScriptSize: 10})
	body, ct := moduleUpload(t, map[string]any{"bindings": []any{}})
	expect(t, a.do(http.MethodPut, scriptPath("", "w"), body, ct), http.StatusBadRequest, CodeScriptTooLarge)
}

func TestVersionsAndDeployments(t *testing.T) {
	flavours(t, func(t *testing.T, ns string) {
		s, a := newAPI(t, Options{})
		notFound := CodeWorkerNotFound
		if ns != "" {
			notFound = CodeDispatchNotFound
		}
		body, ct := moduleUpload(t, map[string]any{"bindings": []any{}})
		expect(t, a.do(http.MethodPost, scriptPath(ns, "w")+"/versions", body, ct), http.StatusNotFound, notFound)
		seedScript(t, s, ns, "w", secretAPI, plainGr)
		v1 := mustScript(t, s, ns, "w").Versions[0].ID

		body, ct = moduleUpload(t, map[string]any{
			"bindings": []any{
				map[string]any{"type": "plain_text", "name": "GREETING", "text": "v2"},
				map[string]any{"type": "inherit", "name": "RENAMED", "old_name": "API_KEY"},
			},
			"compatibility_date": "2025-09-09",
			"annotations":        map[string]any{"workers/message": "m"},
		})
		r := a.do(http.MethodPost, scriptPath(ns, "w")+"/versions?bindings_inherit=strict", body, ct)
		expect(t, r, http.StatusOK, 0)
		var ver struct {
			ID        string `json:"id"`
			Number    int    `json:"number"`
			Metadata  map[string]any
			Resources struct {
				Bindings      json.RawMessage `json:"bindings"`
				Script        map[string]any  `json:"script"`
				ScriptRuntime map[string]any  `json:"script_runtime"`
			}
			StartupTimeMS *int `json:"startup_time_ms"`
		}
		r.result(t, &ver)
		if ver.Number != 2 || ver.Metadata["has_preview"] != false || ver.Resources.Script["etag"] == "" ||
			ver.StartupTimeMS == nil || ver.Resources.ScriptRuntime["compatibility_date"] != "2025-09-09" {
			t.Errorf("version result %s", r.Env.Result)
		}
		rb := bindingsOf(t, ver.Resources.Bindings)
		if _, ok := rb["RENAMED"]; !ok || rb["RENAMED"]["text"] != nil || rb["GREETING"]["text"] != "v2" {
			t.Errorf("version bindings %s", ver.Resources.Bindings)
		}
		// Not live until deployed.
		if v, _ := storedByName(t, s, ns, "w")["GREETING"].String("text"); v != "hello" {
			t.Errorf("version upload changed live bindings: %q", v)
		}

		dep := a.postJSON(scriptPath(ns, "w")+"/deployments", map[string]any{
			"strategy": "percentage", "versions": []any{map[string]any{"version_id": ver.ID, "percentage": 100}},
			"annotations": map[string]any{"workers/message": "deploy"},
		})
		expect(t, dep, http.StatusOK, 0)
		var d map[string]any
		dep.result(t, &d)
		if d["id"] == "" || d["strategy"] != "percentage" || d["created_on"] == "" {
			t.Errorf("deployment %v", d)
		}
		stored := storedByName(t, s, ns, "w")
		if v, _ := stored["RENAMED"].String("text"); v != "s3cr3t-value" || len(stored) != 2 {
			t.Errorf("deployed bindings %v", stored)
		}
		var settings map[string]json.RawMessage
		a.get(scriptPath(ns, "w")+"/settings").result(t, &settings)
		if string(settings["compatibility_date"]) != `"2025-09-09"` {
			t.Errorf("deployed compatibility_date %s", settings["compatibility_date"])
		}

		// Split: the larger share is live.
		expect(t, a.postJSON(scriptPath(ns, "w")+"/deployments", map[string]any{
			"strategy": "percentage", "versions": []any{
				map[string]any{"version_id": ver.ID, "percentage": 10},
				map[string]any{"version_id": v1, "percentage": 90}},
		}), http.StatusOK, 0)
		if v, _ := storedByName(t, s, ns, "w")["GREETING"].String("text"); v != "hello" {
			t.Errorf("split deployment: live GREETING %q, want v1's", v)
		}
		sc := mustScript(t, s, ns, "w")
		if len(sc.Deployment.Versions) != 2 {
			t.Errorf("deployment %+v", sc.Deployment)
		}

		// Version uploads resolve inherit against the latest version, not
		// the deployed one.
		body, ct = moduleUpload(t, map[string]any{"bindings": []any{map[string]any{"type": "inherit", "name": "RENAMED"}}})
		expect(t, a.do(http.MethodPost, scriptPath(ns, "w")+"/versions?bindings_inherit=strict", body, ct), http.StatusOK, 0)

		for _, tc := range []struct {
			name string
			body any
		}{
			{"sum not 100", map[string]any{"strategy": "percentage", "versions": []any{map[string]any{"version_id": ver.ID, "percentage": 50}}}},
			{"three versions", map[string]any{"strategy": "percentage", "versions": []any{
				map[string]any{"version_id": ver.ID, "percentage": 50}, map[string]any{"version_id": v1, "percentage": 25},
				map[string]any{"version_id": v1, "percentage": 25}}}},
			{"unknown version", map[string]any{"strategy": "percentage", "versions": []any{map[string]any{"version_id": "nope", "percentage": 100}}}},
			{"no versions", map[string]any{"strategy": "percentage", "versions": []any{}}},
			{"bad strategy", map[string]any{"strategy": "all", "versions": []any{map[string]any{"version_id": ver.ID, "percentage": 100}}}},
		} {
			r := a.postJSON(scriptPath(ns, "w")+"/deployments", tc.body)
			if r.Status != http.StatusBadRequest || r.code() != CodeValidation {
				t.Errorf("%s: HTTP %d code %d", tc.name, r.Status, r.code())
			}
		}
		expect(t, a.do(http.MethodPost, scriptPath(ns, "w")+"/deployments", []byte("{"), "application/json"),
			http.StatusBadRequest, CodeUnparsableBody)
		expect(t, a.postJSON(scriptPath(ns, "missing")+"/deployments", map[string]any{
			"strategy": "percentage", "versions": []any{map[string]any{"version_id": v1, "percentage": 100}}}),
			http.StatusNotFound, notFound)
	})
}

func mustScript(t *testing.T, s *Server, ns, name string) Script {
	t.Helper()
	sc, ok := s.Script(acct, ns, name)
	if !ok {
		t.Fatalf("no script %s/%s", ns, name)
	}
	return sc
}

func TestListScripts(t *testing.T) {
	s, a := newAPI(t, Options{})
	if err := s.Seed(acct, []string{"ns1"}, 25); err != nil {
		t.Fatal(err)
	}
	base := "/accounts/" + acct + "/workers/dispatch/namespaces/ns1/scripts"
	type item struct {
		ID         string   `json:"id"`
		CreatedOn  string   `json:"created_on"`
		ModifiedOn string   `json:"modified_on"`
		Tags       []string `json:"tags"`
	}
	var all []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		q := "?limit=10"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r := a.get(base + q)
		expect(t, r, http.StatusOK, 0)
		var items []item
		r.result(t, &items)
		var info struct {
			Cursor string `json:"cursor"`
			Count  int    `json:"count"`
		}
		json.Unmarshal(r.Env.ResultIn, &info)
		if info.Count != len(items) {
			t.Errorf("count %d, items %d", info.Count, len(items))
		}
		for _, it := range items {
			if it.CreatedOn == "" || it.ModifiedOn == "" || len(it.Tags) != 2 {
				t.Errorf("item %+v", it)
			}
			all = append(all, it.ID)
		}
		if cursor = info.Cursor; cursor == "" {
			break
		}
	}
	if len(all) != 25 || all[0] != "tenant-0001" || all[24] != "tenant-0025" {
		t.Errorf("listed %v", all)
	}

	var even []item
	r := a.get(base + "?tags=even:yes,nothing:no")
	r.result(t, &even)
	if len(even) != 12 || even[0].ID != "tenant-0002" {
		t.Errorf("even tenants: %d %+v", len(even), even)
	}
	var none []item
	a.get(base+"?tags=seeded:no").result(t, &none)
	if len(none) != 0 {
		t.Errorf("seeded:no gave %d", len(none))
	}
	// An exact page boundary ends with an empty cursor.
	r = a.get(base + "?limit=25")
	var info struct{ Cursor string }
	json.Unmarshal(r.Env.ResultIn, &info)
	if info.Cursor != "" {
		t.Errorf("cursor %q after the last page", info.Cursor)
	}
	expect(t, a.get(base+"?limit=1001"), http.StatusBadRequest, CodeValidation)
	expect(t, a.get(base+"?limit=0"), http.StatusBadRequest, CodeValidation)
	expect(t, a.get(base+"?cursor=!!!"), http.StatusBadRequest, CodeValidation)
	expect(t, a.get("/accounts/"+acct+"/workers/dispatch/namespaces/missing/scripts"), http.StatusNotFound, CodeDispatchNotFound)
}

func TestGetScript(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "my-ns", "w", plainGr)
	r := a.get(scriptPath("my-ns", "w"))
	expect(t, r, http.StatusOK, 0)
	var res struct {
		DispatchNamespace string         `json:"dispatch_namespace"`
		Script            map[string]any `json:"script"`
	}
	r.result(t, &res)
	if res.DispatchNamespace != "my-ns" || res.Script["id"] != "w" || res.Script["etag"] == "" {
		t.Errorf("details %s", r.Env.Result)
	}
	if _, ok := res.Script["migration_tag"]; !ok {
		t.Error("no migration_tag (wrangler reads it)")
	}
	expect(t, a.get(scriptPath("my-ns", "missing")), http.StatusNotFound, CodeDispatchNotFound)
	expect(t, a.get(scriptPath("no-ns", "w")), http.StatusNotFound, CodeDispatchNotFound)
}

func TestNamespaces(t *testing.T) {
	s, a := newAPI(t, Options{})
	base := "/accounts/" + acct + "/workers/dispatch/namespaces"
	r := a.postJSON(base, map[string]string{"name": "prod"})
	expect(t, r, http.StatusOK, 0)
	var ns map[string]any
	r.result(t, &ns)
	if ns["namespace_name"] != "prod" || ns["namespace_id"] == "" || ns["script_count"] != 0.0 {
		t.Errorf("created %v", ns)
	}
	expect(t, a.postJSON(base, map[string]string{"name": "prod"}), http.StatusConflict, CodeNamespaceExists)
	expect(t, a.postJSON(base, map[string]string{"name": ""}), http.StatusBadRequest, CodeValidation)
	expect(t, a.postJSON(base, map[string]string{"name": "Bad Name"}), http.StatusBadRequest, CodeValidation)
	expect(t, a.do(http.MethodPost, base, []byte("{"), "application/json"), http.StatusBadRequest, CodeUnparsableBody)

	seedScript(t, s, "alpha", "w1", plainGr)
	seedScript(t, s, "alpha", "w2", plainGr)
	var list []map[string]any
	a.get(base).result(t, &list)
	if len(list) != 2 || list[0]["namespace_name"] != "alpha" || list[0]["script_count"] != 2.0 ||
		list[1]["namespace_name"] != "prod" {
		t.Errorf("list %v", list)
	}
	r = a.get(base + "/alpha")
	expect(t, r, http.StatusOK, 0)
	r.result(t, &ns)
	if ns["script_count"] != 2.0 || ns["created_on"] == "" || ns["modified_on"] == "" {
		t.Errorf("get %v", ns)
	}
	expect(t, a.get(base+"/missing"), http.StatusNotFound, CodeDispatchNotFound)
	// Namespaces belong to one account.
	other := "/accounts/00000000000000000000000000000001/workers/dispatch/namespaces"
	var otherList []map[string]any
	a.get(other).result(t, &otherList)
	if len(otherList) != 0 {
		t.Errorf("other account sees %v", otherList)
	}
}

func TestAuth(t *testing.T) {
	s, a := newAPI(t, Options{Token: "tok", Email: "me@example.com", Key: "key"})
	seedScript(t, s, "", "w", plainGr)
	path := scriptPath("", "w") + "/settings"
	expect(t, a.get(path), http.StatusForbidden, CodeAuth)
	a.hdr.Set("Authorization", "Bearer wrong")
	expect(t, a.get(path), http.StatusForbidden, CodeAuth)
	a.hdr.Set("Authorization", "Bearer tok")
	expect(t, a.get(path), http.StatusOK, 0)
	a.hdr = http.Header{}
	a.hdr.Set("X-Auth-Email", "me@example.com")
	a.hdr.Set("X-Auth-Key", "key")
	expect(t, a.get(path), http.StatusOK, 0)
	a.hdr.Set("X-Auth-Key", "nope")
	expect(t, a.get(path), http.StatusForbidden, CodeAuth)
}

func TestSeed(t *testing.T) {
	s, a := newAPI(t, Options{})
	if err := s.Seed(acct, []string{"ns-a", "ns-b", ""}, 3); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"ns-a", "ns-b", ""} {
		if got := s.ScriptNames(acct, ns); !cmp.Equal(got, []string{"tenant-0001", "tenant-0002", "tenant-0003"}) {
			t.Errorf("%q: %v", ns, got)
		}
	}
	stored := storedByName(t, s, "ns-a", "tenant-0002")
	if v, _ := stored["API_TOKEN"].String("text"); v != "seed-secret-ns-a-tenant-0002" {
		t.Errorf("seeded secret %q", v)
	}
	if stored["KV"].Type() != "kv_namespace" || stored["TENANT"].Type() != "plain_text" {
		t.Errorf("seeded %v", stored)
	}
	r := a.get(scriptPath("ns-a", "tenant-0002") + "/bindings")
	expect(t, r, http.StatusOK, 0)
	if strings.Contains(string(r.Body), "seed-secret") {
		t.Error("GET shows a seeded secret")
	}
	// Deterministic: a second server seeds the same bindings.
	s2 := New(Options{})
	s2.Seed(acct, []string{"ns-a"}, 3)
	b1, _ := s.Bindings(acct, "ns-a", "tenant-0003")
	b2, _ := s2.Bindings(acct, "ns-a", "tenant-0003")
	if diff := cmp.Diff(raws(b1), raws(b2)); diff != "" {
		t.Errorf("seed not deterministic:\n%s", diff)
	}
	if err := s.Seed("bad", []string{"x"}, 1); err == nil {
		t.Error("Seed accepted a bad account")
	}
	if err := s.PutScript(acct, "missing-ns", "w", Script{}); err == nil {
		t.Error("PutScript accepted a missing namespace")
	}
	if !s.DeleteScript(acct, "ns-a", "tenant-0001") || s.DeleteScript(acct, "ns-a", "tenant-0001") {
		t.Error("DeleteScript")
	}
	expect(t, a.get(scriptPath("ns-a", "tenant-0001")+"/settings"), http.StatusNotFound, CodeDispatchNotFound)
}
