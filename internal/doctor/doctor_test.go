package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/doctor"
)

const (
	acct  = cfapitest.DefaultAccount
	ns    = "customers"
	token = "doctor-test-token-5f0c9a"
	kvID  = "0f2ac74b498b48028cb68387c421e279"
)

// fixture is an emulator with a seeded namespace and a client on it whose
// hooks feed a Recorder.
type fixture struct {
	srv *cfapitest.Server
	rec *doctor.Recorder
	api *cfapi.Client
}

func newFixture(t *testing.T, opts cfapitest.Options, next cfapi.Hooks) *fixture {
	t.Helper()
	opts.Token = token
	if opts.RateLimit == 0 && !opts.OmitRateHeaders {
		opts.RateLimit, opts.RateWindow = 10000, time.Minute
	}
	srv, base := cfapitest.NewTestServer(t, opts)
	if err := srv.Seed(acct, []string{ns}, 3); err != nil {
		t.Fatal(err)
	}
	rec := &doctor.Recorder{}
	lim, err := ratelimit.NewLimiter(1000, time.Minute, 4)
	if err != nil {
		t.Fatal(err)
	}
	api, err := cfapi.New(cfapi.Config{BaseURL: base, Token: token, Limiter: lim, Hooks: rec.Hooks(next),
		HTTPClient: &http.Client{Timeout: 10 * time.Second}, Retry: cfapi.RetryPolicy{MaxAttempts: 2}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, rec: rec, api: api}
}

func (f *fixture) run(ctx context.Context, write bool, namespace string) *doctor.Report {
	return doctor.Run(ctx, doctor.Options{Client: f.api, Recorder: f.rec, AccountID: acct, Namespace: namespace,
		TokenAuth: true, WriteProbe: write, KVNamespaceID: kvID})
}

// probeScripts returns the names of the doctor's scripts left in the
// emulator.
func (f *fixture) probeScripts(namespace string) []string {
	var out []string
	for _, n := range f.srv.ScriptNames(acct, namespace) {
		if strings.HasPrefix(n, doctor.ProbePrefix) {
			out = append(out, n)
		}
	}
	return out
}

func statuses(rep *doctor.Report) map[string]doctor.Status {
	out := map[string]doctor.Status{}
	for _, r := range rep.Results {
		out[r.Check] = r.Status
	}
	return out
}

func TestDoctorPassesAgainstTheEmulator(t *testing.T) {
	f := newFixture(t, cfapitest.Options{}, cfapi.Hooks{})
	rep := f.run(context.Background(), true, ns)
	for _, r := range rep.Results {
		if r.Status != doctor.StatusOK {
			t.Errorf("%s: %s: %s (do: %s)", r.Check, r.Status, r.Seen, r.Do)
		}
	}
	if !rep.OK || rep.Failed() != 0 {
		t.Errorf("report not ok: %+v", rep)
	}
	if want := len(doctor.Checks()) + 1; len(rep.Results) != want {
		t.Errorf("%d results, want %d (every check and the cleanup)", len(rep.Results), want)
	}
	if left := f.probeScripts(ns); len(left) > 0 {
		t.Errorf("probe scripts left behind: %v", left)
	}
	if !strings.HasPrefix(rep.ProbeScript, doctor.ProbePrefix) {
		t.Errorf("probe script %q", rep.ProbeScript)
	}
	// The report counts exactly the requests the emulator served.
	st := f.srv.Stats()
	served := int64(0)
	for _, byStatus := range st.Requests {
		for _, n := range byStatus {
			served += int64(n)
		}
	}
	if rep.Requests != served || rep.Requests == 0 {
		t.Errorf("report says %d requests, the emulator served %d", rep.Requests, served)
	}
	if n := st.Requests[cfapitest.EndpointDeleteScript][http.StatusOK]; n != 1 {
		t.Errorf("%d successful deletes, want 1", n)
	}
}

func TestDoctorReadOnlyWritesNothing(t *testing.T) {
	f := newFixture(t, cfapitest.Options{}, cfapi.Hooks{})
	rep := f.run(context.Background(), false, ns)
	st := statuses(rep)
	for _, c := range doctor.Checks() {
		want := doctor.StatusOK
		if c.Write {
			want = doctor.StatusSkip
		}
		if st[c.Name] != want {
			t.Errorf("%s: %s, want %s", c.Name, st[c.Name], want)
		}
	}
	if _, ok := rep.Result(doctor.CheckCleanup); ok {
		t.Error("a read-only run reports a cleanup")
	}
	if w := f.srv.Stats().Writes; w != 0 {
		t.Errorf("%d write attempts in a read-only run", w)
	}
}

// TestEachGuessFailsItsCheck runs the doctor against the emulator with
// each SpecGuesses switch: exactly the check of that guess fails, every
// other check holds (or skips because it depends on the failed one).
func TestEachGuessFailsItsCheck(t *testing.T) {
	cases := []struct {
		name    string
		guesses cfapitest.SpecGuesses
		fails   string
		skips   []string
	}{
		{"RefuseTypeName", cfapitest.SpecGuesses{RefuseTypeName: true}, doctor.CheckTypeName, nil},
		{"ScriptList404", cfapitest.SpecGuesses{ScriptList: cfapitest.ScriptListNotFound}, doctor.CheckScriptList, []string{doctor.CheckListCursor}},
		{"ScriptList405", cfapitest.SpecGuesses{ScriptList: cfapitest.ScriptListNotAllowed}, doctor.CheckScriptList, []string{doctor.CheckListCursor}},
		{"OmitListCursor", cfapitest.SpecGuesses{OmitListCursor: true}, doctor.CheckListCursor, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, cfapitest.Options{Guesses: c.guesses}, cfapi.Hooks{})
			rep := f.run(context.Background(), true, ns)
			for _, r := range rep.Results {
				want := doctor.StatusOK
				switch {
				case r.Check == c.fails:
					want = doctor.StatusFail
				case contains(c.skips, r.Check):
					want = doctor.StatusSkip
				}
				if r.Status != want {
					t.Errorf("%s: %s (%s), want %s", r.Check, r.Status, r.Seen, want)
				}
				if r.Status == doctor.StatusFail && r.Do == "" {
					t.Errorf("%s fails without saying what to do", r.Check)
				}
			}
			if rep.OK {
				t.Error("report ok with a failed check")
			}
			if left := f.probeScripts(ns); len(left) > 0 {
				t.Errorf("probe scripts left behind: %v", left)
			}
		})
	}
}

func TestRateLimitHeadersMissingFails(t *testing.T) {
	f := newFixture(t, cfapitest.Options{OmitRateHeaders: true}, cfapi.Hooks{})
	rep := f.run(context.Background(), false, ns)
	r, _ := rep.Result(doctor.CheckRateLimit)
	if r.Status != doctor.StatusFail || !strings.Contains(r.Do, "--rate-limit") {
		t.Errorf("ratelimit-headers: %+v", r)
	}
	if st := statuses(rep); st[doctor.CheckToken] != doctor.StatusOK || st[doctor.CheckScriptList] != doctor.StatusOK {
		t.Errorf("other checks: %v", st)
	}
}

// TestProbeScriptDeletedWhenCancelled cancels the run while it writes:
// the remaining checks are skipped, not failed, and the probe script is
// deleted anyway.
func TestProbeScriptDeletedWhenCancelled(t *testing.T) {
	for _, at := range []string{cfapi.EPPutScript, cfapi.EPPatchSettings, cfapi.EPPostVersion} {
		t.Run(at, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := newFixture(t, cfapitest.Options{}, cfapi.Hooks{Request: func(info cfapi.RequestInfo) {
				if info.Endpoint == at {
					cancel()
				}
			}})
			rep := f.run(ctx, true, ns)
			if !rep.Interrupted || rep.OK {
				t.Errorf("interrupted %v ok %v", rep.Interrupted, rep.OK)
			}
			for _, r := range rep.Results {
				if r.Status == doctor.StatusFail {
					t.Errorf("%s failed after the cancellation: %s", r.Check, r.Seen)
				}
			}
			if r, _ := rep.Result(doctor.CheckCleanup); r.Status != doctor.StatusOK {
				t.Errorf("cleanup: %+v", r)
			}
			if left := f.probeScripts(ns); len(left) > 0 {
				t.Errorf("probe scripts left behind: %v", left)
			}
		})
	}
}

func TestOrdinaryWorkerProbe(t *testing.T) {
	f := newFixture(t, cfapitest.Options{}, cfapi.Hooks{})
	rep := f.run(context.Background(), true, "")
	st := statuses(rep)
	want := map[string]doctor.Status{
		doctor.CheckToken: doctor.StatusOK, doctor.CheckScriptList: doctor.StatusSkip, doctor.CheckListCursor: doctor.StatusSkip,
		doctor.CheckRateLimit: doctor.StatusOK, doctor.CheckUpload: doctor.StatusOK, doctor.CheckTypeName: doctor.StatusOK,
		doctor.CheckModifiedOn: doctor.StatusSkip, doctor.CheckVersions: doctor.StatusOK, doctor.CheckCleanup: doctor.StatusOK,
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s: %s, want %s", k, st[k], v)
		}
	}
	if left := f.probeScripts(""); len(left) > 0 {
		t.Errorf("probe scripts left behind: %v", left)
	}
}

func TestReportNeverHoldsTheTokenOrTheSecret(t *testing.T) {
	var f *fixture
	secrets := []string{token}
	// After the upload, read the probe's secret as the emulator stored it.
	f = newFixture(t, cfapitest.Options{Guesses: cfapitest.SpecGuesses{RefuseTypeName: true}}, cfapi.Hooks{Request: func(info cfapi.RequestInfo) {
		if info.Endpoint != cfapi.EPPutScript || info.Status != http.StatusOK {
			return
		}
		for _, name := range f.probeScripts(ns) {
			bs, _ := f.srv.Bindings(acct, ns, name)
			for _, b := range bs {
				if v, ok := b.String("text"); ok && b.Type() == wire.TypeSecretText {
					secrets = append(secrets, v)
				}
			}
		}
	}})
	rep := f.run(context.Background(), true, ns)
	if len(secrets) != 2 {
		t.Fatalf("found %d secrets, want the token and the probe's secret", len(secrets))
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back doctor.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON output does not decode: %v", err)
	}
	if len(back.Results) != len(rep.Results) || back.Requests != rep.Requests || back.OK {
		t.Errorf("decoded %+v", back)
	}
	t.Log(text.String())
	for _, out := range []string{text.String(), js.String()} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output holds %q:\n%s", s, out)
			}
		}
	}
	if !strings.Contains(text.String(), "API requests") || !strings.Contains(text.String(), "FAIL  settings-typename") {
		t.Errorf("text:\n%s", text.String())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
