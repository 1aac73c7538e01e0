package cfapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// TestRetriesWithFaultInjection drives the retry policy with the emulator's
// deterministic faults (FailNext) and checks what reached the emulator.
func TestRetriesWithFaultInjection(t *testing.T) {
	t.Parallel()
	ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
	getSettings := func(c *cfapi.Client) error { _, err := c.GetSettings(context.Background(), ref); return err }
	patchSettings := func(c *cfapi.Client) error {
		_, err := c.PatchSettings(context.Background(), ref, cfapi.SettingsPatch{
			Bindings: wire.Bindings{wire.Ref(wire.TypeSecretText, "API_TOKEN"), wire.Ref(wire.TypeKVNamespace, "KV")}})
		return err
	}
	type fault struct{ n, status, code int }
	cases := []struct {
		name     string
		faults   []fault
		call     func(*cfapi.Client) error
		endpoint string
		// requests is what the emulator saw, by status (0 = reset).
		requests map[int]int
		// retries is the number of client-level retries; -1 when the
		// transport may retry on its own (see below).
		retries int
		// wantStatus is the *APIError status of a failed call (0: success).
		wantStatus int
		inErr      string
	}{
		{name: "503 10013 twice then ok", faults: []fault{{2, 503, 10013}}, call: getSettings,
			endpoint: cfapitest.EndpointGetSettings, requests: map[int]int{503: 2, 200: 1}, retries: 2},
		{name: "502 then 500 then ok", faults: []fault{{1, 502, 10013}, {1, 500, 10002}}, call: patchSettings,
			endpoint: cfapitest.EndpointPatchSettings, requests: map[int]int{502: 1, 500: 1, 200: 1}, retries: 2},
		{name: "409 10035 then ok", faults: []fault{{1, 409, 10035}}, call: patchSettings,
			endpoint: cfapitest.EndpointPatchSettings, requests: map[int]int{409: 1, 200: 1}, retries: 1},
		// FailNext with status 0 resets the connection (cfapitest doc). A
		// PATCH is not replayed by http.Transport, so the client retries.
		{name: "connection reset then ok (PATCH)", faults: []fault{{1, 0, 0}}, call: patchSettings,
			endpoint: cfapitest.EndpointPatchSettings, requests: map[int]int{0: 1, 200: 1}, retries: 1},
		// http.Transport itself replays a GET reset on a reused
		// connection, so only the outcome is checked, not who retried.
		{name: "connection reset then ok (GET)", faults: []fault{{1, 0, 0}}, call: getSettings,
			endpoint: cfapitest.EndpointGetSettings, requests: map[int]int{0: 1, 200: 1}, retries: -1},
		{name: "500 every time gives up", faults: []fault{{100, 500, 10013}}, call: getSettings,
			endpoint: cfapitest.EndpointGetSettings, requests: map[int]int{500: 4}, retries: 3,
			wantStatus: 500, inErr: "giving up after 4 attempts"},
		{name: "reset every time gives up", faults: []fault{{100, 0, 0}}, call: patchSettings,
			endpoint: cfapitest.EndpointPatchSettings, requests: map[int]int{0: 4}, retries: 3, inErr: "giving up after 4 attempts"},
		// Code 10013 would make even a 501 retryable (the code is transient),
		// so the 501 carries a permanent code.
		{name: "501 not retried", faults: []fault{{1, 501, 10000}}, call: getSettings,
			endpoint: cfapitest.EndpointGetSettings, requests: map[int]int{501: 1}, retries: 0, wantStatus: 501},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Retry: cfapi.RetryPolicy{MaxAttempts: 4}})
			fx.seed(t, dispatchNS, 1)
			for _, f := range c.faults {
				fx.srv.FailNext(f.n, f.status, f.code, 0, c.endpoint)
			}
			err := c.call(fx.client)
			failed := c.wantStatus != 0 || c.inErr != ""
			if (err != nil) != failed {
				t.Fatalf("err = %v, want failure %v", err, failed)
			}
			if diff := cmp.Diff(map[string]map[int]int{c.endpoint: c.requests}, fx.stats(t).Requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if got := int(fx.retries.Load()); c.retries >= 0 && got != c.retries {
				t.Errorf("client retries = %d, want %d", got, c.retries)
			}
			if c.wantStatus != 0 {
				var ae *cfapi.APIError
				if !errors.As(err, &ae) || ae.StatusCode != c.wantStatus {
					t.Errorf("err = %v, want a wrapped *APIError with status %d", err, c.wantStatus)
				}
			}
			if c.inErr != "" && !strings.Contains(fmt.Sprint(err), c.inErr) {
				t.Errorf("err = %v, want it to say %q", err, c.inErr)
			}
		})
	}
}

// TestRetryRebuildsMultipartBody: each attempt of an upload sends the same
// parts under a new boundary, as wrangler does.
func TestRetryRebuildsMultipartBody(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	fx.seed(t, "", 1)
	fx.srv.FailNext(1, http.StatusServiceUnavailable, cfapi.CodeUnknown2, 0, cfapitest.EndpointPutScript)
	ref := cfapi.ScriptRef{AccountID: account, Script: cfapitest.TenantName(1)}
	_, err := fx.client.UploadScript(context.Background(), ref, cfapi.ScriptUpload{
		Metadata: cfapi.UploadMetadata{MainModule: "index.js", Bindings: wire.Bindings{wire.Inherit("KV")},
			KeepBindings: wire.WriteOnlyTypes()},
		Modules: []cfapi.Module{indexModule}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := fx.wire.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	var boundaries []string
	var bodies [][]wirePart
	for _, r := range reqs {
		_, ps, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		boundaries = append(boundaries, ps["boundary"])
		bodies = append(bodies, readParts(t, r.Body, ps["boundary"]))
	}
	if boundaries[0] == boundaries[1] {
		t.Errorf("both attempts used boundary %q", boundaries[0])
	}
	if diff := cmp.Diff(bodies[0], bodies[1]); diff != "" {
		t.Errorf("the retry sent other parts (-first +retry):\n%s", diff)
	}
	if len(bodies[0]) != 2 || bodies[0][0].Name != "metadata" || bodies[0][1].Name != "index.js" {
		t.Errorf("parts %v, want metadata and index.js", bodies[0])
	}
}

// wirePart is one multipart part as sent.
type wirePart struct {
	Name, FileName string
	Header         map[string][]string
	Data           string
}

func readParts(t *testing.T, body []byte, boundary string) []wirePart {
	t.Helper()
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var out []wirePart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("malformed multipart body: %v", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, wirePart{Name: p.FormName(), FileName: p.FileName(), Header: p.Header, Data: string(data)})
	}
}

// TestTokenNeverInErrors: whatever fails (API errors, retries given up,
// transport errors, a rejected token), the error never contains the API
// token, although every request carried it.
func TestTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
	ctx := context.Background()
	cases := []struct {
		name  string
		token string // client token when it differs from the emulator's
		retry cfapi.RetryPolicy
		setup func(fx fixture)
		call  func(c *cfapi.Client) error
	}{
		{name: "not found", call: func(c *cfapi.Client) error {
			_, err := c.GetSettings(ctx, cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: "missing"})
			return err
		}},
		{name: "validation 10021", call: func(c *cfapi.Client) error {
			_, err := c.PatchSettings(ctx, ref, cfapi.SettingsPatch{Bindings: wire.Bindings{
				wire.MustParseBinding(`{"type":"secret_text","name":"API_TOKEN","text":null}`)}})
			return err
		}},
		{name: "500 until giving up", setup: func(fx fixture) { fx.srv.FailNext(10, 500, 10013, 0) },
			call: func(c *cfapi.Client) error { _, err := c.GetSettings(ctx, ref); return err }},
		{name: "501", setup: func(fx fixture) { fx.srv.FailNext(1, 501, 10000, 0) },
			call: func(c *cfapi.Client) error { _, err := c.GetScriptContent(ctx, ref); return err }},
		{name: "connection reset", retry: cfapi.RetryPolicy{MaxAttempts: 1}, setup: func(fx fixture) { fx.srv.FailNext(1, 0, 0, 0) },
			call: func(c *cfapi.Client) error {
				_, err := c.UploadScript(ctx, ref, cfapi.ScriptUpload{Metadata: cfapi.UploadMetadata{MainModule: "index.js"},
					Modules: []cfapi.Module{indexModule}})
				return err
			}},
		{name: "429 on the last attempt", retry: cfapi.RetryPolicy{MaxAttempts: 1},
			setup: func(fx fixture) { fx.srv.FailNext(1, 429, 971, 0) },
			call: func(c *cfapi.Client) error {
				_, _, err := c.ListScripts(ctx, account, dispatchNS, cfapi.ListScriptsOptions{Limit: 10})
				return err
			}},
		{name: "token rejected", token: "cfut_WRONG-token-must-never-leak-1b2c", call: func(c *cfapi.Client) error {
			_, err := c.GetSettings(ctx, ref)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Token: c.token, Retry: c.retry})
			fx.seed(t, dispatchNS, 1)
			if c.setup != nil {
				c.setup(fx)
			}
			sent := c.token
			if sent == "" {
				sent = testToken
			}
			err := c.call(fx.client)
			if err == nil {
				t.Fatal("call succeeded")
			}
			reqs := fx.wire.requests()
			if len(reqs) == 0 || reqs[0].Header.Get("Authorization") != "Bearer "+sent {
				t.Fatalf("the token was not sent, so the test proves nothing")
			}
			var ae *cfapi.APIError
			views := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
			if errors.As(err, &ae) {
				views = append(views, fmt.Sprintf("%#v", *ae))
			}
			for _, v := range views {
				for _, secret := range []string{testToken, sent} {
					if strings.Contains(v, secret) {
						t.Errorf("error shows the token: %s", v)
					}
				}
			}
		})
	}

	t.Run("server unreachable", func(t *testing.T) {
		t.Parallel()
		dead := httptest.NewServer(http.NotFoundHandler())
		base := dead.URL + "/client/v4"
		dead.Close()
		lim, _ := ratelimit.NewLimiter(1000, time.Second, 1)
		c, err := cfapi.New(cfapi.Config{BaseURL: base, Token: testToken, Limiter: lim,
			Retry: cfapi.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetSettings(ctx, ref)
		if err == nil || !cfapi.IsRetryable(err) {
			t.Fatalf("err = %v, want a retryable transport error", err)
		}
		if strings.Contains(fmt.Sprintf("%+v %#v", err, err), testToken) {
			t.Errorf("error shows the token: %v", err)
		}
	})
}
