package natsconn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"
)

// TestDialEmbedded: a pipeline without a URL starts the embedded server
// and holds its data directory (a second pipeline on it is a
// *ConfigError naming --data-dir); a tool without a URL finds that
// server on its address, and without one is told to start `reconciler
// run`.
func TestDialEmbedded(t *testing.T) {
	dir, listen := t.TempDir(), testutil.FreeAddr(t)
	tool := Target{EmbeddedListen: testutil.FreeAddr(t)}
	if _, err := Dial(tool, nil); err == nil || !strings.Contains(err.Error(), "start `reconciler run` first") {
		t.Fatalf("tool with no server: %v", err)
	}
	pipe, err := Dial(Target{DataDir: dir, EmbeddedListen: listen, Pipeline: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	pipe.OnClose(func() { closed = true })
	defer pipe.Close(nil, time.Second)
	var ce *ConfigError
	if _, err := Dial(Target{DataDir: dir, EmbeddedListen: testutil.FreeAddr(t), Pipeline: true}, nil); !errors.As(err, &ce) || !strings.Contains(err.Error(), "--data-dir "+dir) {
		t.Errorf("second pipeline on %s: %v, want a ConfigError naming --data-dir", dir, err)
	}
	c, err := Dial(Target{EmbeddedListen: listen}, nil)
	if err != nil {
		t.Fatalf("tool on the running server: %v", err)
	}
	if _, err := c.JS.AccountInfo(t.Context()); err != nil {
		t.Errorf("JetStream of the embedded server: %v", err)
	}
	c.Close(nil, time.Second)
	pipe.Close(nil, time.Second)
	if !closed {
		t.Error("OnClose did not run on Close")
	}
}
