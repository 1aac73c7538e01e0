package cfapi

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func resp(status int, body string, hdr ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestCheckResponseMapping(t *testing.T) {
	cases := []struct {
		name       string
		resp       *http.Response
		wantErr    bool
		status     int
		codes      []int
		retryable  bool
		notFound   bool
		rateLimit  bool
		badResp    bool
		retryAfter time.Duration
		ray        string
		inMsg      string
	}{
		{name: "success", resp: resp(200, `{"success":true,"errors":[],"messages":[],"result":{"a":1}}`)},
		{name: "empty 204", resp: resp(204, ``)},
		{name: "validation 10021", resp: resp(400, `{"success":false,"errors":[{"code":10021,"message":"binding DB of type d1 must have a valid id specified"}],"messages":[],"result":null}`, "Cf-Ray", "8a1b2c3d4e5f-SJC"),
			wantErr: true, status: 400, codes: []int{10021}, ray: "8a1b2c3d4e5f-SJC", inMsg: "10021 binding DB"},
		{name: "several errors", resp: resp(400, `{"success":false,"errors":[{"code":10057,"message":"inherit binding 'A' is invalid"},{"code":10057,"message":"inherit binding 'B' is invalid"}]}`),
			wantErr: true, status: 400, codes: []int{10057, 10057}, inMsg: "'B'"},
		{name: "rate limited", resp: resp(429, `{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}]}`, "Retry-After", "42"),
			wantErr: true, status: 429, codes: []int{971}, retryable: true, rateLimit: true, retryAfter: 42 * time.Second},
		{name: "not found 10007", resp: resp(404, `{"success":false,"errors":[{"code":10007,"message":"This Worker does not exist on your account."}]}`),
			wantErr: true, status: 404, codes: []int{10007}, notFound: true},
		{name: "not found 10092", resp: resp(404, `{"success":false,"errors":[{"code":10092,"message":"not found"}]}`),
			wantErr: true, status: 404, codes: []int{10092}, notFound: true},
		{name: "unknown error 10013", resp: resp(500, `{"success":false,"errors":[{"code":10013,"message":"workers.api.error.unknown"}]}`),
			wantErr: true, status: 500, codes: []int{10013}, retryable: true},
		{name: "concurrent modify 10035 on 409", resp: resp(409, `{"success":false,"errors":[{"code":10035,"message":"Multiple attempts to modify a resource at the same time"}]}`),
			wantErr: true, status: 409, codes: []int{10035}, retryable: true},
		{name: "501 not retryable", resp: resp(501, `{"success":false,"errors":[{"code":1,"message":"nope"}]}`),
			wantErr: true, status: 501, codes: []int{1}},
		{name: "html 502", resp: resp(502, `<html><body>Bad gateway</body></html>`),
			wantErr: true, status: 502, codes: []int{}, retryable: true, inMsg: "Bad gateway"},
		{name: "200 not json is a retryable bad response", resp: resp(200, `<html>captive portal</html>`), wantErr: true, status: 200, codes: []int{0},
			retryable: true, badResp: true, inMsg: "not a Cloudflare JSON envelope"},
		{name: "200 JSON that is not an envelope", resp: resp(200, `{"ok":1}`), wantErr: true, status: 200, codes: []int{0}, retryable: true, badResp: true},
		{name: "200 cut-off envelope", resp: resp(200, `{"success":true,"result":{"bindi`), wantErr: true, status: 200, codes: []int{0}, retryable: true, badResp: true},
		{name: "201 challenge page", resp: resp(201, `<!DOCTYPE html><title>Just a moment...</title>`), wantErr: true, status: 201, codes: []int{0}, retryable: true, badResp: true},
		{name: "200 success false", resp: resp(200, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`),
			wantErr: true, status: 200, codes: []int{10000}},
		{name: "408", resp: resp(408, `{"success":false,"errors":[]}`), wantErr: true, status: 408, codes: []int{}, retryable: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := checkResponse(c.resp, "PUT", "/accounts/x/workers/scripts/s", 1<<20)
			if !c.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if ae.StatusCode != c.status {
				t.Errorf("status = %d, want %d", ae.StatusCode, c.status)
			}
			if diff := cmp.Diff(c.codes, codesOf(ae)); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
			if ae.Retryable() != c.retryable || ae.NotFound() != c.notFound || ae.RateLimited() != c.rateLimit {
				t.Errorf("retryable/notfound/ratelimited = %v/%v/%v", ae.Retryable(), ae.NotFound(), ae.RateLimited())
			}
			if ae.BadResponse() != c.badResp || errors.Is(err, ErrBadResponse) != c.badResp {
				t.Errorf("BadResponse = %v, errors.Is(ErrBadResponse) = %v, want %v", ae.BadResponse(), errors.Is(err, ErrBadResponse), c.badResp)
			}
			if errors.Is(err, ErrNotFound) != c.notFound || errors.Is(err, ErrRateLimited) != c.rateLimit {
				t.Errorf("errors.Is sentinels wrong")
			}
			if ae.RetryAfter != c.retryAfter {
				t.Errorf("RetryAfter = %s, want %s", ae.RetryAfter, c.retryAfter)
			}
			if ae.RayID != c.ray {
				t.Errorf("ray = %q", ae.RayID)
			}
			if ae.Method != "PUT" || ae.Path != "/accounts/x/workers/scripts/s" {
				t.Errorf("method/path = %s %s", ae.Method, ae.Path)
			}
			if !strings.Contains(err.Error(), c.inMsg) {
				t.Errorf("Error() = %q, want it to contain %q", err, c.inMsg)
			}
			for _, code := range c.codes {
				if !ae.CodeIs(code) {
					t.Errorf("CodeIs(%d) = false", code)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"1.5":                           1500 * time.Millisecond,
		"-3":                            0,
		"soon":                          0,
		"Mon, 23 Nov 2026 10:00:30 GMT": 30 * time.Second,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestAuthFailed(t *testing.T) {
	cases := []struct {
		name string
		resp *http.Response
		auth bool
	}{
		{"401", resp(401, `{"success":false,"errors":[]}`), true},
		{"403 code 10000", resp(403, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`), true},
		{"200 success false 10000", resp(200, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`), true},
		{"400 code 9106", resp(400, `{"success":false,"errors":[{"code":9106,"message":"Missing X-Auth-Key, X-Auth-Email or Authorization headers"}]}`), true},
		{"400 code 9109", resp(400, `{"success":false,"errors":[{"code":9109,"message":"Unauthorized to access requested resource"}]}`), true},
		{"503 code 10000", resp(503, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`), true},
		{"404", resp(404, `{"success":false,"errors":[{"code":10007,"message":"not found"}]}`), false},
		{"400 10021", resp(400, `{"success":false,"errors":[{"code":10021,"message":"bad"}]}`), false},
		{"429", resp(429, `{"success":false,"errors":[{"code":971,"message":"slow"}]}`), false},
	}
	for _, c := range cases {
		_, err := checkResponse(c.resp, "GET", "/p", 1<<20)
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		if ae.AuthFailed() != c.auth || errors.Is(err, ErrAuth) != c.auth {
			t.Errorf("%s: AuthFailed %v, errors.Is(ErrAuth) %v, want %v", c.name, ae.AuthFailed(), errors.Is(err, ErrAuth), c.auth)
		}
		if c.auth && (ae.Retryable() || IsRetryable(err)) {
			t.Errorf("%s: an auth failure is retryable", c.name)
		}
	}
}

// codesOf returns every Cloudflare error code of the answer, in order.
func codesOf(e *APIError) []int {
	out := make([]int, len(e.Errors))
	for i, d := range e.Errors {
		out[i] = d.Code
	}
	return out
}
