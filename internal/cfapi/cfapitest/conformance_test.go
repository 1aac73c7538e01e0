package cfapitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// capturesDir holds real wrangler 4.164.0 requests (see its README.md).
const capturesDir = "../testdata/wrangler-captures"

// capturedRequest is one request from the captures: the request target and
// Content-Type from the .req.raw file, and the body from the .body.raw file.
type capturedRequest struct {
	method, target, contentType string
	body                        []byte
}

func loadCapture(t *testing.T, dir, glob string) capturedRequest {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(capturesDir, dir, glob))
	if err != nil || len(matches) != 1 {
		t.Fatalf("%s/%s: %v matches (%v)", dir, glob, matches, err)
	}
	bodyFile := matches[0]
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		t.Fatal(err)
	}
	reqRaw, err := os.ReadFile(strings.TrimSuffix(bodyFile, ".body.raw") + ".req.raw")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bytes.NewReader(reqRaw))
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(line)
	if len(fields) != 3 {
		t.Fatalf("request line %q", line)
	}
	cr := capturedRequest{method: fields[0], target: fields[1], body: body}
	for {
		h, err := br.ReadString('\n')
		h = strings.TrimRight(h, "\r\n")
		if err != nil || h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "content-type") {
			cr.contentType = strings.TrimSpace(v)
		}
	}
	if cr.contentType == "" {
		t.Fatalf("%s: no content type", bodyFile)
	}
	return cr
}

// capturedMetadata parses the metadata part of a captured upload,
// independently of the emulator's parser.
type capturedMetadata struct {
	MainModule   string            `json:"main_module"`
	Bindings     []json.RawMessage `json:"bindings"`
	KeepBindings []string          `json:"keep_bindings"`
}

func parseCapturedMetadata(t *testing.T, cr capturedRequest) (capturedMetadata, []string) {
	t.Helper()
	_, ps, err := mime.ParseMediaType(cr.contentType)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(cr.body), ps["boundary"])
	var meta capturedMetadata
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p)
		if p.FormName() == "metadata" {
			if err := json.Unmarshal(data, &meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		parts = append(parts, p.FormName())
	}
	return meta, parts
}

// wantBindings is what wrangler meant: the explicit bindings, each inherit
// replaced by the previous binding of that name, plus the previous bindings
// of the kept types not named explicitly. Values are compared as JSON.
func wantBindings(t *testing.T, meta capturedMetadata, previous map[string]string) map[string]any {
	t.Helper()
	want := map[string]any{}
	for _, raw := range meta.Bindings {
		var b map[string]any
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		name := b["name"].(string)
		if b["type"] == "inherit" {
			prev, ok := previous[name]
			if !ok {
				t.Fatalf("capture inherits %s, which the test did not seed", name)
			}
			want[name] = decodeJSON(t, prev)
			continue
		}
		want[name] = b
	}
	for name, raw := range previous {
		var b map[string]any
		_ = json.Unmarshal([]byte(raw), &b)
		for _, typ := range meta.KeepBindings {
			if _, explicit := want[name]; !explicit && b["type"] == typ {
				want[name] = b
			}
		}
	}
	return want
}

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func gotBindings(t *testing.T, bs []wire.Binding) map[string]any {
	t.Helper()
	got := map[string]any{}
	for _, b := range bs {
		got[b.Name()] = decodeJSON(t, string(b.Raw()))
	}
	return got
}

// send replays a captured request against the emulator.
func (a *api) replay(cr capturedRequest) *apiResponse {
	a.t.Helper()
	return a.do(cr.method, strings.TrimPrefix(cr.target, "/client/v4"), cr.body, cr.contentType)
}

// checkGetSettings asserts that GET settings lists the bindings without
// write-only values.
func checkGetSettings(t *testing.T, a *api, ns string, stored []wire.Binding) {
	t.Helper()
	r := a.get(scriptPath(ns, "my-worker") + "/settings")
	expect(t, r, http.StatusOK, 0)
	var settings struct {
		Bindings []json.RawMessage `json:"bindings"`
	}
	r.result(t, &settings)
	if len(settings.Bindings) != len(stored) {
		t.Errorf("GET settings has %d bindings, stored %d", len(settings.Bindings), len(stored))
	}
	for _, raw := range settings.Bindings {
		b, err := wire.ParseBinding(raw)
		if err != nil {
			t.Fatal(err)
		}
		if b.HasWriteOnlyValue() {
			t.Errorf("GET settings shows the value of %s", b.Name())
		}
		if err := b.Validate(wire.ForRead); err != nil {
			t.Errorf("GET settings binding %s: %v", raw, err)
		}
		if s, ok := wire.Bindings(stored).ByName(b.Name()); !ok || !s.Matches(b) {
			t.Errorf("GET settings binding %s does not match stored %s", raw, s.Raw())
		}
	}
	for _, b := range stored {
		if text, ok := b.String("text"); ok && b.Type() == wire.TypeSecretText && strings.Contains(string(r.Body), text) {
			t.Errorf("GET settings body contains the secret of %s", b.Name())
		}
	}
}

// previousSecret is the binding the test seeds before replaying an upload
// to an existing Worker; wrangler keeps it by keep_bindings or inherit.
const (
	previousSecret = `{"type":"secret_text","name":"API_KEY","text":"previous-secret"}`
	previousStale  = `{"type":"kv_namespace","name":"STALE_KV","namespace_id":"00000000000000000000000000000001"}`
	previousVar    = `{"type":"plain_text","name":"OLD_VAR","text":"kept by --keep-vars"}`
)

func TestWranglerScriptUploads(t *testing.T) {
	cases := []struct {
		dir, glob string
		ns        string
		previous  []string // seeded before the upload; nil = new Worker
	}{
		{"a1-deploy-new", "*-PUT-workers_scripts_my-worker.body.raw", "", nil},
		{"a3-deploy-new-secrets-file", "*-PUT-workers_scripts_my-worker.body.raw", "", nil},
		{"a5-deploy-new-message-tag", "*-PUT-workers_scripts_my-worker.body.raw", "", nil},
		{"a6-deploy-new-with-package-json", "*-PUT-workers_scripts_my-worker.body.raw", "", nil},
		{"d2-secret-put-new", "*-PUT-workers_scripts_my-worker.body.raw", "", nil},
		{"b1-deploy-dispatch-new", "*-PUT-workers_dispatch_namespaces_my-ns_scripts_my-worker.body.raw", "my-ns", nil},
		{"b2-deploy-dispatch-existing", "*-PUT-workers_dispatch_namespaces_my-ns_scripts_my-worker.body.raw", "my-ns",
			[]string{previousSecret, previousStale}},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			s, a := newAPI(t, Options{Token: "dummy"})
			a.hdr.Set("Authorization", "Bearer dummy")
			if tc.ns != "" {
				if err := s.CreateNamespace(acct, tc.ns); err != nil {
					t.Fatal(err)
				}
			}
			previous := map[string]string{}
			if tc.previous != nil {
				seedScript(t, s, tc.ns, "my-worker", tc.previous...)
				for _, raw := range tc.previous {
					previous[wire.MustParseBinding(raw).Name()] = raw
				}
			}
			cr := loadCapture(t, tc.dir, tc.glob)
			meta, parts := parseCapturedMetadata(t, cr)

			r := a.replay(cr)
			expect(t, r, http.StatusOK, 0)
			var res map[string]any
			r.result(t, &res)
			if res["id"] != "my-worker" || res["entry_point"] != meta.MainModule || res["startup_time_ms"] == nil ||
				res["deployment_id"] == "" {
				t.Errorf("PUT result %v", res)
			}

			stored, _ := s.Bindings(acct, tc.ns, "my-worker")
			if diff := cmp.Diff(wantBindings(t, meta, previous), gotBindings(t, stored)); diff != "" {
				t.Errorf("stored bindings (-want +got):\n%s", diff)
			}
			if _, ok := gotBindings(t, stored)["STALE_KV"]; ok {
				t.Error("a binding absent from the upload survived the PUT")
			}
			sc := mustScript(t, s, tc.ns, "my-worker")
			if sc.MainModule != meta.MainModule || len(sc.Modules) != len(parts) || sc.Modules[0].Name != meta.MainModule {
				t.Errorf("modules %v, parts %v", sc.Modules, parts)
			}
			checkGetSettings(t, a, tc.ns, stored)

			contentPath := scriptPath(tc.ns, "my-worker") + "/content"
			if tc.ns == "" {
				contentPath += "/v2"
			}
			if got := a.get(contentPath).Header.Get("cf-entrypoint"); got != meta.MainModule {
				t.Errorf("cf-entrypoint %q", got)
			}
		})
	}
}

func TestWranglerVersionUploads(t *testing.T) {
	cases := []struct {
		dir      string
		previous []string
		// deployments is the captured POST /deployments to replay with the
		// new version's id, if the case has one.
		deployments string
	}{
		{"a2-deploy-existing", []string{previousSecret, previousStale}, "*-POST-workers_scripts_my-worker_deployments.body.raw"},
		{"a4-deploy-existing-inherit-keepvars", []string{previousSecret, previousStale, previousVar},
			"*-POST-workers_scripts_my-worker_deployments.body.raw"},
		{"c1-versions-upload", []string{previousSecret, previousStale}, ""},
		{"c3-versions-upload-message-tag", []string{previousSecret}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			s, a := newAPI(t, Options{})
			cr := loadCapture(t, tc.dir, "*-POST-workers_scripts_my-worker_versions.body.raw")
			meta, _ := parseCapturedMetadata(t, cr)

			// The Worker must exist first.
			expect(t, a.replay(cr), http.StatusNotFound, CodeWorkerNotFound)
			seedScript(t, s, "", "my-worker", tc.previous...)
			previous := map[string]string{}
			for _, raw := range tc.previous {
				previous[wire.MustParseBinding(raw).Name()] = raw
			}
			before, _ := s.Bindings(acct, "", "my-worker")

			r := a.replay(cr)
			expect(t, r, http.StatusOK, 0)
			var ver struct {
				ID        string         `json:"id"`
				Metadata  map[string]any `json:"metadata"`
				Resources struct {
					Bindings []json.RawMessage `json:"bindings"`
					Script   struct {
						ETag string `json:"etag"`
					} `json:"script"`
				} `json:"resources"`
				StartupTimeMS *int `json:"startup_time_ms"`
			}
			r.result(t, &ver)
			if ver.ID == "" || ver.Resources.Script.ETag == "" || ver.StartupTimeMS == nil || ver.Metadata["has_preview"] != false {
				t.Errorf("version result %s", r.Env.Result)
			}
			if strings.Contains(string(r.Body), "previous-secret") {
				t.Error("version result shows a secret")
			}

			want := wantBindings(t, meta, previous)
			sc := mustScript(t, s, "", "my-worker")
			latest := sc.Versions[len(sc.Versions)-1]
			if diff := cmp.Diff(want, gotBindings(t, latest.Bindings)); diff != "" {
				t.Errorf("version bindings (-want +got):\n%s", diff)
			}
			if len(ver.Resources.Bindings) != len(want) {
				t.Errorf("result lists %d bindings, want %d", len(ver.Resources.Bindings), len(want))
			}
			// Not live until deployed.
			live, _ := s.Bindings(acct, "", "my-worker")
			if diff := cmp.Diff(raws(before), raws(live)); diff != "" {
				t.Errorf("version upload changed the live bindings:\n%s", diff)
			}

			deploy := capturedRequest{method: http.MethodPost, target: "/client/v4" + scriptPath("", "my-worker") + "/deployments",
				contentType: "application/json",
				body:        []byte(`{"strategy":"percentage","versions":[{"version_id":"` + ver.ID + `","percentage":100}]}`)}
			if tc.deployments != "" {
				deploy = loadCapture(t, tc.dir, tc.deployments)
				deploy.body = bytes.ReplaceAll(deploy.body, []byte("7b9f9e2c-1a2b-4c3d-8e4f-0123456789ab"), []byte(ver.ID))
			}
			expect(t, a.replay(deploy), http.StatusOK, 0)
			live, _ = s.Bindings(acct, "", "my-worker")
			if diff := cmp.Diff(want, gotBindings(t, live)); diff != "" {
				t.Errorf("deployed bindings (-want +got):\n%s", diff)
			}
			if v, _ := wire.Bindings(live).ByName("API_KEY"); v.IsZero() {
				t.Error("API_KEY lost")
			} else if text, _ := v.String("text"); text != "previous-secret" {
				t.Errorf("API_KEY text %q", text)
			}
			checkGetSettings(t, a, "", live)
		})
	}
}

// TestWranglerInheritStrict replays a4 against a Worker without API_KEY:
// with bindings_inherit=strict the inherit entry is 10057.
func TestWranglerInheritStrict(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "my-worker", previousVar)
	cr := loadCapture(t, "a4-deploy-existing-inherit-keepvars", "*-POST-workers_scripts_my-worker_versions.body.raw")
	r := a.replay(cr)
	expect(t, r, http.StatusBadRequest, CodeInvalidInherit)
	if !strings.Contains(r.Env.Errors[0].Message, "inherit binding 'API_KEY' is invalid") {
		t.Errorf("message %q", r.Env.Errors[0].Message)
	}
	if len(mustScript(t, s, "", "my-worker").Versions) != 1 {
		t.Error("a refused upload added a version")
	}
}
