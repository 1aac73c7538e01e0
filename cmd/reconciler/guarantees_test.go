package main

import (
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/testutil"
)

// TestSecondRunOnOneDataDirExits2: a second `run` on
// the data directory of a running one exits 2 with a message naming the
// flag, and never starts a second server on the same store.
func TestSecondRunOnOneDataDirExits2(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	_, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	dataDir := t.TempDir()
	env := map[string]string{
		"CLOUDFLARE_API_BASE_URL":    base,
		"CLOUDFLARE_API_TOKEN":       "t",
		"RECONCILER_DATA_DIR":        dataDir,
		"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t),
		"RECONCILER_METRICS_ADDR":    testutil.FreeAddr(t),
	}
	first := startRun(t, env)
	second := map[string]string{}
	for k, v := range env {
		second[k] = v
	}
	second["RECONCILER_EMBEDDED_LISTEN"] = testutil.FreeAddr(t)
	code, _, stderr := call(t, second, "", "run")
	if code != 2 || !strings.Contains(stderr, "--data-dir") || !strings.Contains(stderr, "in use") {
		t.Fatalf("second run: exit %d, stderr %q", code, stderr)
	}
	if first.cmd.ProcessState != nil {
		t.Fatalf("the first run stopped:\n%s", first.log.String())
	}
}

// TestRedactURLHidesEveryCredential: every URL of a
// comma-separated server list loses its credentials before it is logged.
func TestRedactURLHidesEveryCredential(t *testing.T) {
	in := "nats://alice:pw-one@a.example:4222, nats://tok-two@b.example:4222,nats://c.example:4222,tls://bob:pw-three@d.example:4443,nats://x:pw%zz@e:1"
	got := redactURL(in)
	for _, secret := range []string{"pw-one", "tok-two", "pw-three", "pw%zz"} {
		if strings.Contains(got, secret) {
			t.Errorf("redactURL(%q) = %q shows %q", in, got, secret)
		}
	}
	for _, host := range []string{"a.example:4222", "b.example:4222", "c.example:4222", "d.example:4443"} {
		if !strings.Contains(got, host) {
			t.Errorf("redactURL lost the host %s: %q", host, got)
		}
	}
}

// TestEmbeddedListenLoopback: which --embedded-listen
// addresses are loopback (no warning) and which are not (a loud warning:
// the server has no authentication).
func TestEmbeddedListenLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:4222": true, "localhost:4222": true, "[::1]:4222": true, "127.8.9.1:1": true,
		"0.0.0.0:4222": false, ":4222": false, "10.0.0.5:4222": false, "[::]:4222": false, "example.com:4222": false, "nonsense": false,
	} {
		if got := natsembed.IsLoopback(listen); got != want {
			t.Errorf("IsLoopback(%q) = %t, want %t", listen, got, want)
		}
	}
}
