package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/doctor"
)

const doctorToken = "cmd-doctor-token-4e1d77"

// doctorEmulator serves an emulator that requires doctorToken, with a
// rate limit (so answers carry the Ratelimit headers) and a seeded
// namespace "customers".
func doctorEmulator(t *testing.T, g cfapitest.SpecGuesses) (*cfapitest.Server, map[string]string) {
	t.Helper()
	srv, base := cfapitest.NewTestServer(t, cfapitest.Options{Token: doctorToken, RateLimit: 5000, RateWindow: time.Minute, Guesses: g})
	if err := srv.Seed(acct, []string{"customers"}, 3); err != nil {
		t.Fatal(err)
	}
	return srv, map[string]string{"CLOUDFLARE_API_TOKEN": doctorToken, "CLOUDFLARE_API_BASE_URL": base, "CLOUDFLARE_ACCOUNT_ID": acct}
}

func TestDoctorExitCodes(t *testing.T) {
	_, env := doctorEmulator(t, cfapitest.SpecGuesses{})
	_, refusing := doctorEmulator(t, cfapitest.SpecGuesses{RefuseTypeName: true})
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // in stdout, or in stderr for code 2
	}{
		{"all hold", env, []string{"--dispatch-namespace", "customers", "--write-probe"}, 0, "0 FAIL"},
		{"read-only", env, []string{"--dispatch-namespace", "customers"}, 0, "skip  probe-upload"},
		{"a guess fails", refusing, []string{"--dispatch-namespace", "customers", "--write-probe"}, 1, "FAIL  settings-typename"},
		{"missing namespace", env, []string{"--dispatch-namespace", "nope"}, 1, "FAIL  script-list"},
		{"no account", map[string]string{"CLOUDFLARE_API_TOKEN": doctorToken, "CLOUDFLARE_API_BASE_URL": env["CLOUDFLARE_API_BASE_URL"]}, nil, 2, "CLOUDFLARE_ACCOUNT_ID"},
		{"bad account", env, []string{"--account", "xyz"}, 2, "--account"},
		{"bad output", env, []string{"--output", "yaml"}, 2, "--output"},
		{"kv without probe", env, []string{"--kv-namespace", "0f2ac74b498b48028cb68387c421e279"}, 2, "--write-probe"},
		{"bad namespace", env, []string{"--dispatch-namespace", "a/b"}, 2, "--dispatch-namespace"},
		{"positional", env, []string{"extra"}, 2, "no arguments"},
		{"no token for the real API", map[string]string{"CLOUDFLARE_ACCOUNT_ID": acct}, nil, 2, "CLOUDFLARE_API_TOKEN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := call(t, c.env, "", append([]string{"doctor"}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out, errOut)
			}
			where := out
			if c.code == 2 {
				where = errOut
			}
			if !strings.Contains(where, c.want) {
				t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", c.want, out, errOut)
			}
			if strings.Contains(out+errOut, doctorToken) {
				t.Errorf("the token appears in the output:\n%s\n%s", out, errOut)
			}
		})
	}
}

func TestDoctorJSONOutput(t *testing.T) {
	srv, env := doctorEmulator(t, cfapitest.SpecGuesses{ScriptList: cfapitest.ScriptListNotFound})
	code, out, errOut := call(t, env, "", "doctor", "--dispatch-namespace", "customers", "--write-probe", "--output", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the script list fails)\n%s\n%s", code, out, errOut)
	}
	var rep doctor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out)
	}
	if r, ok := rep.Result(doctor.CheckScriptList); !ok || r.Status != doctor.StatusFail || r.Do == "" {
		t.Errorf("script-list: %+v", r)
	}
	if rep.OK || rep.Requests == 0 || rep.ProbeScript == "" {
		t.Errorf("report %+v", rep)
	}
	if int(rep.Requests) != srv.Stats().Total {
		t.Errorf("report counts %d requests, the emulator served %d", rep.Requests, srv.Stats().Total)
	}
	for _, name := range srv.ScriptNames(acct, "customers") {
		if strings.HasPrefix(name, doctor.ProbePrefix) {
			t.Errorf("probe script %s left behind", name)
		}
	}
	if strings.Contains(out+errOut, doctorToken) {
		t.Error("the token appears in the output")
	}
}
