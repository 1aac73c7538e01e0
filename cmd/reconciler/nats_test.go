package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestToolsAuthenticateToSecuredNATS: every tool takes the NATS
// credentials as flags and variables; a refused credential exits 1 with a
// message naming the option and not the secret, and a bad credentials
// file exits 2 naming the flag and the file.
func TestToolsAuthenticateToSecuredNATS(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "rec", Password: "right-pw-5150"})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer s.Shutdown()

	for _, args := range [][]string{{"publish", "-"}, {"dlq", "list"}} {
		// Right credentials from the environment: connected, then told
		// that `run` has not set the stream up.
		code, _, stderr := call(t, map[string]string{"NATS_URL": s.ClientURL(), "NATS_USER": "rec", "NATS_PASSWORD": "right-pw-5150"}, toolEvents, args...)
		if !strings.Contains(stderr, "run` on this NATS first") || strings.Contains(stderr, "refused") || strings.Contains(stderr, "right-pw-5150") {
			t.Errorf("%v with the right password: exit %d, %s", args, code, stderr)
		}
		// A wrong password on the command line.
		code, _, stderr = call(t, map[string]string{"NATS_URL": s.ClientURL()}, toolEvents,
			append(args, "--nats-user", "rec", "--nats-password", "wrong-pw-4242")...)
		if code != 1 || !strings.Contains(stderr, "--nats-password (NATS_PASSWORD)") || strings.Contains(stderr, "wrong-pw-4242") {
			t.Errorf("%v with a wrong password: exit %d, %s", args, code, stderr)
		}
		// A credentials file that is not one.
		junk := filepath.Join(t.TempDir(), "junk.creds")
		if err := os.WriteFile(junk, []byte("token=abc\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr = call(t, map[string]string{"NATS_URL": s.ClientURL(), "NATS_CREDS": junk}, toolEvents, args...)
		if code != 2 || !strings.Contains(stderr, "--nats-creds (NATS_CREDS) "+junk) {
			t.Errorf("%v with a junk .creds file: exit %d, %s", args, code, stderr)
		}
	}
}
