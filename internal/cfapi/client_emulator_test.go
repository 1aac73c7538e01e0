package cfapi_test

// Tests of the real client against the in-process emulator
// (internal/cfapi/cfapitest). They live in the external test package
// because cfapitest imports cfapi.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

const (
	account    = cfapitest.DefaultAccount
	dispatchNS = "customers"
	// testToken is the API token of every fixture; no error may contain it.
	testToken = "cfut_T0KEN-must-never-leak-9f3a"
)

// recordedRequest is one request as the client put it on the wire.
type recordedRequest struct {
	Method string
	URL    *url.URL
	Header http.Header
	// ContentLength is the request's, -1 when the body is chunked.
	ContentLength int64
	Body          []byte
}

// recordingTransport records every request and passes it on to next.
// modify, when set, may change each response before the client sees it.
type recordingTransport struct {
	next   http.RoundTripper
	modify func(*http.Response)

	mu   sync.Mutex
	reqs []recordedRequest
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := recordedRequest{Method: r.Method, URL: new(url.URL), Header: r.Header.Clone(), ContentLength: r.ContentLength}
	*rec.URL = *r.URL
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		rec.Body = body
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, rec)
	rt.mu.Unlock()
	resp, err := rt.next.RoundTrip(r)
	if err == nil && rt.modify != nil {
		rt.modify(resp)
	}
	return resp, err
}

// requests returns the recorded requests in the order they were sent.
func (rt *recordingTransport) requests() []recordedRequest {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.reqs)
}

// fixture is one emulator and a real client pointed at it.
type fixture struct {
	srv    *cfapitest.Server
	client *cfapi.Client
	wire   *recordingTransport
	// retries counts calls of the client's Retry hook.
	retries *atomic.Int32
}

// setup starts an emulator that requires testToken and returns a client for
// it with a generous limiter and fast retries (4 attempts).
func setup(t *testing.T) fixture {
	t.Helper()
	return setupWith(t, cfapitest.Options{}, cfapi.Config{})
}

// setupWith is setup with emulator options and client configuration. Zero
// fields get setup's defaults; the base URL, token and HTTP client are
// always the fixture's.
func setupWith(t *testing.T, opts cfapitest.Options, cfg cfapi.Config) fixture {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	srv, base := cfapitest.NewTestServer(t, opts)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64 // many goroutines reuse connections instead of dialing
	t.Cleanup(tr.CloseIdleConnections)
	wire := &recordingTransport{next: tr}
	cfg.BaseURL = base
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	cfg.HTTPClient = &http.Client{Transport: wire, Timeout: 30 * time.Second}
	if cfg.Limiter == nil {
		lim, err := ratelimit.NewLimiter(10000, time.Second, 8)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Limiter = lim
	}
	if cfg.Retry == (cfapi.RetryPolicy{}) {
		cfg.Retry = cfapi.RetryPolicy{MaxAttempts: 4}
	}
	if cfg.Retry.InitialInterval == 0 {
		cfg.Retry.InitialInterval = time.Millisecond
		cfg.Retry.MaxInterval = 10 * time.Millisecond
	}
	retries := new(atomic.Int32)
	prev := cfg.Hooks.Retry
	cfg.Hooks.Retry = func(ep string, attempt int, d time.Duration, err error) {
		retries.Add(1)
		if prev != nil {
			prev(ep, attempt, d, err)
		}
	}
	c, err := cfapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{srv: srv, client: c, wire: wire, retries: retries}
}

// seed creates tenants tenant-0001... in namespace ns ("" for ordinary
// Workers); see cfapitest.Server.Seed for what each one holds.
func (f fixture) seed(t *testing.T, ns string, n int) {
	t.Helper()
	if err := f.srv.Seed(account, []string{ns}, n); err != nil {
		t.Fatal(err)
	}
}

// stats returns the emulator's counters once every request it has seen has
// finished (the counters by status are written after the answer is sent).
func (f fixture) stats(t *testing.T) cfapitest.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := f.srv.Stats()
		if st.Total == len(f.srv.RequestLog()) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator requests still in flight: %d seen, %d finished", st.Total, len(f.srv.RequestLog()))
		}
		time.Sleep(time.Millisecond)
	}
}

// stored returns a script's stored bindings (secrets included) by name.
func (f fixture) stored(t *testing.T, ref cfapi.ScriptRef) map[string]wire.Binding {
	t.Helper()
	bs, ok := f.srv.Bindings(ref.AccountID, ref.Namespace, ref.Script)
	if !ok {
		t.Fatalf("script %s is not stored", ref)
	}
	out := map[string]wire.Binding{}
	for _, b := range bs {
		out[b.Name()] = b
	}
	return out
}

// eachFlavour runs f in parallel for an ordinary Worker and a dispatch
// namespace Worker, each in its own emulator seeded with three tenants; ref
// names tenant-0001.
func eachFlavour(t *testing.T, f func(t *testing.T, fx fixture, ref cfapi.ScriptRef)) {
	t.Helper()
	for _, ns := range []string{"", dispatchNS} {
		name := "ordinary"
		if ns != "" {
			name = "dispatch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			fx.seed(t, ns, 3)
			f(t, fx, cfapi.ScriptRef{AccountID: account, Namespace: ns, Script: cfapitest.TenantName(1)})
		})
	}
}

// seedSecret is the secret_text value Seed gives a tenant.
func seedSecret(ref cfapi.ScriptRef) string { return "seed-secret-" + ref.Namespace + "-" + ref.Script }

func text(t *testing.T, b wire.Binding) string {
	t.Helper()
	s, ok := b.String("text")
	if !ok {
		t.Fatalf("binding %s has no text: %s", b.Name(), b.Redacted().Raw())
	}
	return s
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return cmp.Equal(va, vb)
}

func TestGetSettingsEmulator(t *testing.T) {
	t.Parallel()
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		s, err := fx.client.GetSettings(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		names := s.Bindings.Names()
		slices.Sort(names)
		if diff := cmp.Diff([]string{"API_TOKEN", "KV", "TENANT"}, names); diff != "" {
			t.Errorf("binding names (-want +got):\n%s", diff)
		}
		secret, _ := s.Bindings.ByName("API_TOKEN")
		if secret.Type() != wire.TypeSecretText || secret.HasWriteOnlyValue() {
			t.Errorf("API_TOKEN = %s, want a secret_text without its text", secret.Redacted().Raw())
		}
		tenant, _ := s.Bindings.ByName("TENANT")
		if got := text(t, tenant); got != ref.Script {
			t.Errorf("TENANT text = %q, want %q", got, ref.Script)
		}
		if got := string(s.Other["compatibility_date"]); got != `"2025-01-01"` {
			t.Errorf("compatibility_date = %s", got)
		}
		if got := string(s.Other["tags"]); got != `["seeded","odd"]` {
			t.Errorf("tags = %s", got)
		}
	})
}

func TestPatchSettingsEmulator(t *testing.T) {
	t.Parallel()
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		before := fx.stored(t, ref)
		patch := cfapi.SettingsPatch{
			// TENANT is left out (removed); API_TOKEN and KV are kept by
			// reference; GREETING is new.
			Bindings: wire.Bindings{
				wire.Ref(wire.TypeSecretText, "API_TOKEN"),
				wire.Ref(wire.TypeKVNamespace, "KV"),
				wire.MustParseBinding(`{"type":"plain_text","name":"GREETING","text":"hello"}`),
			},
			Other: map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-06-01"`)},
		}
		s, err := fx.client.PatchSettings(context.Background(), ref, patch)
		if err != nil {
			t.Fatal(err)
		}
		names := s.Bindings.Names()
		slices.Sort(names)
		if diff := cmp.Diff([]string{"API_TOKEN", "GREETING", "KV"}, names); diff != "" {
			t.Errorf("returned binding names (-want +got):\n%s", diff)
		}
		after := fx.stored(t, ref)
		if _, ok := after["TENANT"]; ok {
			t.Error("TENANT was left out of the patch but is still stored")
		}
		if got := text(t, after["API_TOKEN"]); got != seedSecret(ref) {
			t.Errorf("secret kept by {type,name} lost its value: text = %q", got)
		}
		if !bytes.Equal(after["KV"].Raw(), before["KV"].Raw()) {
			t.Errorf("KV changed: %s -> %s", before["KV"].Raw(), after["KV"].Raw())
		}
		if got := text(t, after["GREETING"]); got != "hello" {
			t.Errorf("GREETING text = %q", got)
		}
		sc, _ := fx.srv.Script(ref.AccountID, ref.Namespace, ref.Script)
		if got := string(sc.Settings["compatibility_date"]); got != `"2025-06-01"` {
			t.Errorf("stored compatibility_date = %s", got)
		}
		if got := string(sc.Settings["tags"]); got != `["seeded","odd"]` {
			t.Errorf("tags absent from the patch changed: %s", got)
		}
	})
}

func TestGetScriptContentEmulator(t *testing.T) {
	t.Parallel()
	modules := []cfapitest.Module{
		{Name: "lib.js", ContentType: "application/javascript+module", Data: []byte("export const x = 1;\n")},
		{Name: "worker.js", ContentType: "application/javascript+module", Data: []byte("import {x} from './lib.js';\nexport default { fetch() { return new Response(String(x)); } };\n")},
		{Name: "data.txt", ContentType: "text/plain", Data: []byte("some text\r\nwith CRLF\n")},
	}
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		if err := fx.srv.PutScript(ref.AccountID, ref.Namespace, ref.Script, cfapitest.Script{MainModule: "worker.js", Modules: modules}); err != nil {
			t.Fatal(err)
		}
		sc, err := fx.client.GetScriptContent(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if sc.MainModule != "worker.js" || sc.ServiceWorker {
			t.Errorf("main module %q (service worker %v), want worker.js", sc.MainModule, sc.ServiceWorker)
		}
		got := map[string]cfapi.Module{}
		for _, m := range sc.Modules {
			got[m.Name] = m
		}
		want := map[string]cfapi.Module{}
		for _, m := range modules {
			want[m.Name] = cfapi.Module{Name: m.Name, ContentType: m.ContentType, Data: m.Data}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("modules (-want +got):\n%s", diff)
		}
		wantPath := "/content/v2"
		if ref.Dispatch() {
			wantPath = "/content"
		}
		reqs := fx.wire.requests()
		if len(reqs) != 1 || !strings.HasSuffix(reqs[0].URL.Path, "/scripts/"+ref.Script+wantPath) {
			t.Errorf("requests %v, want one GET …%s", reqs, wantPath)
		}
	})

	// The emulator sends the main module first, so only a changed header
	// shows that MainModule comes from cf-entrypoint, not from part order.
	t.Run("entrypoint header wins over part order", func(t *testing.T) {
		t.Parallel()
		fx := setup(t)
		fx.wire.modify = func(r *http.Response) { r.Header.Set("Cf-Entrypoint", "lib.js") }
		if err := fx.srv.PutScript(account, "", "w", cfapitest.Script{MainModule: "worker.js", Modules: modules}); err != nil {
			t.Fatal(err)
		}
		sc, err := fx.client.GetScriptContent(context.Background(), cfapi.ScriptRef{AccountID: account, Script: "w"})
		if err != nil {
			t.Fatal(err)
		}
		if sc.MainModule != "lib.js" || len(sc.Modules) != 3 || sc.Modules[0].Name != "worker.js" {
			t.Errorf("main module %q, first part %q; want lib.js from the header", sc.MainModule, sc.Modules[0].Name)
		}
	})
}

// indexModule is a small ES module upload.
var indexModule = cfapi.Module{Name: "index.js", ContentType: "application/javascript+module",
	Data: []byte("export default { fetch() { return new Response('v2'); } };\n")}

func TestUploadScriptEmulator(t *testing.T) {
	t.Parallel()
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		ctx := context.Background()
		before := fx.stored(t, ref)
		live, err := fx.client.GetSettings(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		up := cfapi.ScriptUpload{
			Metadata: cfapi.UploadMetadata{
				MainModule: "index.js",
				Bindings: wire.Bindings{
					wire.Inherit("KV"),
					wire.MustParseBinding(`{"type":"plain_text","name":"TENANT","text":"renamed"}`),
					wire.MustParseBinding(`{"type":"r2_bucket","name":"BUCKET","bucket_name":"assets"}`),
				},
				KeepBindings: wire.WriteOnlyTypes(), // secret_text, secret_key
				Other:        cfapi.SettingsForUpload(live, false),
			},
			Modules: []cfapi.Module{indexModule},
		}
		res, err := fx.client.UploadScript(ctx, ref, up)
		if err != nil {
			t.Fatal(err)
		}
		if res.ID != ref.Script || res.DeploymentID == "" {
			t.Errorf("result %+v", res)
		}
		after := fx.stored(t, ref)
		names := slices.Sorted(maps.Keys(after))
		if diff := cmp.Diff([]string{"API_TOKEN", "BUCKET", "KV", "TENANT"}, names); diff != "" {
			t.Errorf("stored names (-want +got):\n%s", diff)
		}
		if !bytes.Equal(after["KV"].Raw(), before["KV"].Raw()) {
			t.Errorf("inherited KV = %s, want %s", after["KV"].Raw(), before["KV"].Raw())
		}
		if got := text(t, after["TENANT"]); got != "renamed" {
			t.Errorf("TENANT = %q", got)
		}
		if got := text(t, after["API_TOKEN"]); got != seedSecret(ref) {
			t.Errorf("secret kept by keep_bindings: text = %q", got)
		}
		sc, _ := fx.srv.Script(ref.AccountID, ref.Namespace, ref.Script)
		// The settings read back and sent with the code stay as they were.
		if got := string(sc.Settings["compatibility_date"]); got != `"2025-01-01"` {
			t.Errorf("compatibility_date = %s", got)
		}
		if got := string(sc.Settings["tags"]); got != `["seeded","odd"]` {
			t.Errorf("tags = %s", got)
		}
		if len(sc.Modules) != 1 || !bytes.Equal(sc.Modules[0].Data, indexModule.Data) {
			t.Errorf("stored modules %+v", sc.Modules)
		}
	})
}

func TestCreateVersionThenDeployEmulator(t *testing.T) {
	t.Parallel()
	eachFlavour(t, func(t *testing.T, fx fixture, ref cfapi.ScriptRef) {
		ctx := context.Background()
		live, err := fx.client.GetSettings(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		up := cfapi.ScriptUpload{
			Metadata: cfapi.UploadMetadata{
				MainModule: "index.js",
				Bindings: wire.Bindings{
					wire.Inherit("KV"),
					wire.MustParseBinding(`{"type":"plain_text","name":"TENANT","text":"v2"}`),
				},
				KeepBindings: wire.WriteOnlyTypes(),
				Annotations:  map[string]string{"workers/message": "bindings v2"},
				Other:        cfapi.SettingsForUpload(live, true),
			},
			Modules: []cfapi.Module{indexModule},
		}
		v, err := fx.client.CreateVersion(ctx, ref, up)
		if err != nil {
			t.Fatal(err)
		}
		if v.ID == "" || v.Number != 2 {
			t.Errorf("version %+v, want number 2 after the seeded one", v)
		}
		if got := text(t, fx.stored(t, ref)["TENANT"]); got != ref.Script {
			t.Errorf("live TENANT changed to %q before the deployment", got)
		}
		d, err := fx.client.DeployVersion(ctx, ref, v.ID, "deploy bindings v2")
		if err != nil {
			t.Fatal(err)
		}
		if d.ID == "" || d.Strategy != "percentage" {
			t.Errorf("deployment %+v", d)
		}
		after := fx.stored(t, ref)
		if got := text(t, after["TENANT"]); got != "v2" {
			t.Errorf("live TENANT after deployment = %q, want v2", got)
		}
		if got := text(t, after["API_TOKEN"]); got != seedSecret(ref) {
			t.Errorf("secret after deployment: text = %q", got)
		}
		sc, _ := fx.srv.Script(ref.AccountID, ref.Namespace, ref.Script)
		if sc.Deployment == nil || len(sc.Deployment.Versions) != 1 || sc.Deployment.Versions[0].VersionID != v.ID ||
			sc.Deployment.Versions[0].Percentage != 100 {
			t.Errorf("deployment %+v", sc.Deployment)
		}
		// The reference has annotations for an ordinary Worker's deployments
		// only; a dispatch namespace script's get none.
		if got := strings.Contains(string(sc.Deployment.Annotations), "deploy bindings v2"); got == ref.Dispatch() {
			t.Errorf("deployment annotations %s (dispatch %v)", sc.Deployment.Annotations, ref.Dispatch())
		}
	})

	t.Run("version without main module is refused before sending", func(t *testing.T) {
		t.Parallel()
		fx := setup(t)
		ref := cfapi.ScriptRef{AccountID: account, Script: "w"}
		_, err := fx.client.CreateVersion(context.Background(), ref, cfapi.ScriptUpload{
			Metadata: cfapi.UploadMetadata{BodyPart: "index.js"}, Modules: []cfapi.Module{indexModule}})
		if err == nil {
			t.Fatal("accepted a version without main_module")
		}
		if n := len(fx.wire.requests()); n != 0 {
			t.Errorf("%d requests sent", n)
		}
	})
}

func TestListScriptsEmulator(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	fx.seed(t, dispatchNS, 25)
	ctx := context.Background()
	all := make([]string, 25)
	for i := range all {
		all[i] = cfapitest.TenantName(i + 1)
	}

	t.Run("EachScript follows the cursor", func(t *testing.T) {
		before := fx.stats(t).Requests[cfapitest.EndpointListScripts][200]
		var got []string
		err := fx.client.EachScript(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 4}, func(s cfapi.ScriptInfo) error {
			got = append(got, s.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("scripts (-want +got):\n%s", diff)
		}
		// 25 scripts in pages of 4: six full pages and one of 1.
		if n := fx.stats(t).Requests[cfapitest.EndpointListScripts][200] - before; n != 7 {
			t.Errorf("list requests = %d, want 7", n)
		}
	})

	t.Run("EachScript stops at fn's error", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := fx.client.EachScript(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 4}, func(cfapi.ScriptInfo) error {
			if n++; n == 6 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 6 {
			t.Errorf("err %v after %d scripts", err, n)
		}
	})

	t.Run("ListScripts pages", func(t *testing.T) {
		page1, cursor, err := fx.client.ListScripts(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page1) != 10 || cursor == "" || page1[0].ID != all[0] {
			t.Fatalf("page 1: %d scripts, cursor %q", len(page1), cursor)
		}
		page2, _, err := fx.client.ListScripts(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(page2) != 10 || page2[0].ID != all[10] {
			t.Errorf("page 2 starts at %v", page2)
		}
		last, cursor, err := fx.client.ListScripts(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 1000})
		if err != nil || len(last) != 25 || cursor != "" {
			t.Errorf("one page of 1000: %d scripts, cursor %q, err %v", len(last), cursor, err)
		}
	})

	t.Run("tag filter", func(t *testing.T) {
		var even []string
		for i := 2; i <= 25; i += 2 {
			even = append(even, cfapitest.TenantName(i))
		}
		for _, tags := range [][]string{{"even:yes"}, {"seeded:yes", "odd:no"}} {
			var got []string
			err := fx.client.EachScript(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Tags: tags, Limit: 5}, func(s cfapi.ScriptInfo) error {
				if !slices.Contains(s.Tags, "even") {
					t.Errorf("%s has tags %v", s.ID, s.Tags)
				}
				got = append(got, s.ID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(even, got); diff != "" {
				t.Errorf("tags %v (-want +got):\n%s", tags, diff)
			}
		}
		reqs := fx.wire.requests()
		if q := reqs[len(reqs)-1].URL.Query(); q.Get("tags") != "seeded:yes,odd:no" || q.Get("limit") != "5" {
			t.Errorf("query %v", q)
		}
	})

	t.Run("limit over the maximum is refused before sending", func(t *testing.T) {
		n := len(fx.wire.requests())
		if _, _, err := fx.client.ListScripts(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 1001}); err == nil {
			t.Error("limit 1001 accepted")
		}
		if len(fx.wire.requests()) != n {
			t.Error("a request was sent")
		}
	})
}

func TestNotFoundEmulator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	missing := func(ns string) cfapi.ScriptRef {
		return cfapi.ScriptRef{AccountID: account, Namespace: ns, Script: "no-such-script"}
	}
	upload := cfapi.ScriptUpload{Metadata: cfapi.UploadMetadata{MainModule: "index.js"}, Modules: []cfapi.Module{indexModule}}
	cases := []struct {
		name string
		ns   string // "" ordinary, dispatchNS (exists) or another (missing namespace)
		call func(c *cfapi.Client, ref cfapi.ScriptRef) error
	}{
		{"GetSettings", "", func(c *cfapi.Client, r cfapi.ScriptRef) error { _, err := c.GetSettings(ctx, r); return err }},
		{"GetScriptContent", "", func(c *cfapi.Client, r cfapi.ScriptRef) error { _, err := c.GetScriptContent(ctx, r); return err }},
		{"PatchSettings", "", func(c *cfapi.Client, r cfapi.ScriptRef) error {
			_, err := c.PatchSettings(ctx, r, cfapi.SettingsPatch{Bindings: wire.Bindings{}})
			return err
		}},
		{"CreateVersion", "", func(c *cfapi.Client, r cfapi.ScriptRef) error { _, err := c.CreateVersion(ctx, r, upload); return err }},
		{"DeployVersion", "", func(c *cfapi.Client, r cfapi.ScriptRef) error {
			_, err := c.DeployVersion(ctx, r, "00000000-0000-4000-8000-000000000000", "")
			return err
		}},
		{"UploadScript to a missing namespace", "no-such-ns", func(c *cfapi.Client, r cfapi.ScriptRef) error {
			_, err := c.UploadScript(ctx, r, upload)
			return err
		}},
		{"ListScripts of a missing namespace", "no-such-ns", func(c *cfapi.Client, r cfapi.ScriptRef) error {
			_, _, err := c.ListScripts(ctx, r.AccountID, r.Namespace, cfapi.ListScriptsOptions{})
			return err
		}},
	}
	for _, c := range cases {
		namespaces := []string{c.ns}
		if c.ns == "" {
			namespaces = []string{"", dispatchNS}
		}
		for _, ns := range namespaces {
			// Not-found codes: 10007 for an ordinary Worker, 10092 for a
			// dispatch script or namespace.
			code := cfapi.CodeDispatchNotFound
			name := c.name + "/dispatch"
			if ns == "" {
				code, name = cfapi.CodeWorkerNotFound, c.name+"/ordinary"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fx := setup(t)
				if ns == dispatchNS {
					if err := fx.srv.CreateNamespace(account, ns); err != nil {
						t.Fatal(err)
					}
				}
				err := c.call(fx.client, missing(ns))
				var ae *cfapi.APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err = %v (%T), want *cfapi.APIError", err, err)
				}
				if !ae.NotFound() || !errors.Is(err, cfapi.ErrNotFound) || ae.StatusCode != http.StatusNotFound || !ae.CodeIs(code) {
					t.Errorf("err = %v: NotFound %v, Is(ErrNotFound) %v, status %d, codes %v; want 404 code %d",
						err, ae.NotFound(), errors.Is(err, cfapi.ErrNotFound), ae.StatusCode, ae.Errors, code)
				}
				if ae.Retryable() || fx.retries.Load() != 0 || fx.stats(t).Total != 1 {
					t.Errorf("not-found was retried: %d requests", fx.stats(t).Total)
				}
				if ae.RayID == "" || ae.Method == "" || !strings.Contains(ae.Path, "/accounts/"+account+"/") {
					t.Errorf("error lacks ray, method or path: %+v", ae)
				}
			})
		}
	}
}

// TestValidationNotRetried: a 10021 answer is permanent: one request, the
// code carried in the *APIError, and nothing stored changes.
func TestValidationNotRetried(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		patch wire.Bindings
		code  int
	}{
		{"secret_text with null text", wire.Bindings{wire.MustParseBinding(`{"type":"secret_text","name":"API_TOKEN","text":null}`)}, cfapi.CodeValidation},
		{"new secret_text without text", wire.Bindings{wire.Ref(wire.TypeSecretText, "API_TOKEN"), wire.Ref(wire.TypeSecretText, "NEW_SECRET")}, cfapi.CodeValidation},
		{"unresolvable inherit in a settings patch", wire.Bindings{wire.Inherit("NO_SUCH_BINDING")}, cfapi.CodeInvalidInherit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			fx.seed(t, dispatchNS, 1)
			ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
			_, err := fx.client.PatchSettings(context.Background(), ref, cfapi.SettingsPatch{Bindings: c.patch})
			var ae *cfapi.APIError
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !ae.CodeIs(c.code) || ae.Retryable() {
				t.Fatalf("err = %v, want a permanent 400 code %d", err, c.code)
			}
			if diff := cmp.Diff(map[string]map[int]int{cfapitest.EndpointPatchSettings: {400: 1}}, fx.stats(t).Requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if n := fx.retries.Load(); n != 0 {
				t.Errorf("retry hook called %d times", n)
			}
			if got := text(t, fx.stored(t, ref)["API_TOKEN"]); got != seedSecret(ref) {
				t.Errorf("secret changed by a refused patch: %q", got)
			}
		})
	}

	t.Run("strict inherit of a missing binding is 10057", func(t *testing.T) {
		t.Parallel()
		fx := setup(t)
		fx.seed(t, "", 1)
		ref := cfapi.ScriptRef{AccountID: account, Script: cfapitest.TenantName(1)}
		_, err := fx.client.UploadScript(context.Background(), ref, cfapi.ScriptUpload{
			Metadata: cfapi.UploadMetadata{MainModule: "index.js", Bindings: wire.Bindings{wire.Inherit("NOPE"), wire.Inherit("NOPE2")}},
			Modules:  []cfapi.Module{indexModule}})
		var ae *cfapi.APIError
		if !errors.As(err, &ae) || !ae.CodeIs(cfapi.CodeInvalidInherit) || len(ae.Errors) != 2 || ae.Retryable() {
			t.Fatalf("err = %v, want 10057 for each binding", err)
		}
		if fx.stats(t).Total != 1 {
			t.Errorf("%d requests, want 1", fx.stats(t).Total)
		}
	})
}
