package testutil

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/jobs/natsembed"
)

// JetStream starts an empty embedded JetStream server on a free port with
// a temporary store, connects to it and returns both; the test's cleanup
// closes the connection and shuts the server down.
func JetStream(t testing.TB) (*natsembed.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := natsembed.Start(t.TempDir(), "127.0.0.1:-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js
}

// CorpusBindings returns the bindings of internal/cfapi/testdata/
// bindings-corpus.json (one example of each binding type), raw, from
// whichever package's test asks.
func CorpusBindings(t testing.TB) []json.RawMessage {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "cfapi", "testdata", "bindings-corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Bindings []json.RawMessage `json:"bindings"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Bindings) < 30 {
		t.Fatalf("the corpus has %d bindings", len(c.Bindings))
	}
	return c.Bindings
}
