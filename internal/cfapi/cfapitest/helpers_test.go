package cfapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil"
)

const acct = DefaultAccount

// apiResponse is a decoded answer.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
	Env    struct {
		Success  bool              `json:"success"`
		Errors   []errorEntry      `json:"errors"`
		Messages []json.RawMessage `json:"messages"`
		Result   json.RawMessage   `json:"result"`
		ResultIn json.RawMessage   `json:"result_info"`
	}
}

// code returns the first error code, or 0.
func (r *apiResponse) code() int {
	if len(r.Env.Errors) == 0 {
		return 0
	}
	return r.Env.Errors[0].Code
}

// result decodes the result into v.
func (r *apiResponse) result(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Env.Result, v); err != nil {
		t.Fatalf("decode result %s: %v", r.Env.Result, err)
	}
}

// api sends requests to a test server.
type api struct {
	t    *testing.T
	base string
	hdr  http.Header
	// fresh sends each request on a new connection.
	fresh bool
}

func newAPI(t *testing.T, opts Options) (*Server, *api) {
	t.Helper()
	s, base := NewTestServer(t, opts)
	return s, &api{t: t, base: base, hdr: http.Header{}}
}

func (a *api) do(method, path string, body []byte, contentType string) *apiResponse {
	a.t.Helper()
	resp, err := a.send(method, path, body, contentType)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (a *api) send(method, path string, body []byte, contentType string) (*apiResponse, error) {
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range a.hdr {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := http.DefaultClient
	if a.fresh {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := &apiResponse{Status: resp.StatusCode, Header: resp.Header}
	if out.Body, err = io.ReadAll(resp.Body); err != nil {
		return nil, err
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(out.Body, &out.Env); err != nil {
			return nil, fmt.Errorf("decode %s: %w", out.Body, err)
		}
	}
	return out, nil
}

func (a *api) get(path string) *apiResponse { return a.do(http.MethodGet, path, nil, "") }

func (a *api) postJSON(path string, v any) *apiResponse {
	a.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.do(http.MethodPost, path, body, "application/json")
}

// expect asserts status and first error code (0 for success).
func expect(t *testing.T, r *apiResponse, status, code int) {
	t.Helper()
	if r.Status != status || r.code() != code {
		t.Fatalf("got HTTP %d code %d (%s), want HTTP %d code %d", r.Status, r.code(), r.Body, status, code)
	}
	if (status < 300) != r.Env.Success {
		t.Fatalf("success = %v for HTTP %d", r.Env.Success, status)
	}
}

// scriptPath returns the script path of either flavour ("" = ordinary).
func scriptPath(ns, script string) string {
	if ns == "" {
		return "/accounts/" + acct + "/workers/scripts/" + script
	}
	return "/accounts/" + acct + "/workers/dispatch/namespaces/" + ns + "/scripts/" + script
}

// part is one part of a multipart body built by form.
type part struct {
	name, filename, contentType string
	data                        []byte
}

// form builds a multipart/form-data body.
func form(t *testing.T, parts ...part) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), mw.FormDataContentType()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// moduleUpload builds a wrangler-style upload: metadata as a plain field
// and index.js as the main module.
func moduleUpload(t *testing.T, meta map[string]any) ([]byte, string) {
	t.Helper()
	if _, ok := meta["main_module"]; !ok {
		meta["main_module"] = "index.js"
	}
	return form(t,
		part{name: "metadata", data: mustJSON(t, meta)},
		part{name: "index.js", filename: "index.js", contentType: "application/javascript+module",
			data: []byte("export default { fetch() { return new Response('hi') } }")},
	)
}

// settingsPatch builds a settings PATCH body.
func settingsPatch(t *testing.T, settings map[string]any) ([]byte, string) {
	t.Helper()
	return form(t, part{name: "settings", contentType: "application/json", data: mustJSON(t, settings)})
}

// bindingsOf decodes a list of bindings into a map by name.
func bindingsOf(t *testing.T, raw json.RawMessage) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("decode bindings %s: %v", raw, err)
	}
	out := map[string]map[string]any{}
	for _, b := range list {
		out[b["name"].(string)] = b
	}
	return out
}

// storedByName returns the stored bindings of a script by name.
func storedByName(t *testing.T, s *Server, ns, script string) map[string]wire.Binding {
	t.Helper()
	bs, ok := s.Bindings(acct, ns, script)
	if !ok {
		t.Fatalf("script %s/%s not stored", ns, script)
	}
	out := map[string]wire.Binding{}
	for _, b := range bs {
		out[b.Name()] = b
	}
	return out
}

// fakeClock is a manual clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds (testutil.Eventually).
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, timeout, cond, "condition")
}

// seedScript stores a script with the given bindings.
func seedScript(t *testing.T, s *Server, ns, name string, bindings ...string) {
	t.Helper()
	if ns != "" {
		if err := s.CreateNamespace(acct, ns); err != nil {
			t.Fatal(err)
		}
	}
	var bs []wire.Binding
	for _, b := range bindings {
		bs = append(bs, wire.MustParseBinding(b))
	}
	if err := s.PutScript(acct, ns, name, Script{Bindings: bs,
		Settings: map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-01-01"`)}}); err != nil {
		t.Fatal(err)
	}
}

// flavours runs f for an ordinary script and a dispatch namespace script.
func flavours(t *testing.T, f func(t *testing.T, ns string)) {
	for _, ns := range []string{"", "my-ns"} {
		name := "ordinary"
		if ns != "" {
			name = "dispatch"
		}
		t.Run(name, func(t *testing.T) { f(t, ns) })
	}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func httpRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest(method, target, nil)
}
