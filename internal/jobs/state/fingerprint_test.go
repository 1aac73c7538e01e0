package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"
)

// TestFingerprintKeyIsSharedAndCreatedOnlyByRun: a tool finds no key
// before run made one; run makes one key that every later call (run or
// tool) reads back.
func TestFingerprintKeyIsSharedAndCreatedOnlyByRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := testutil.JetStream(t)
	if _, err := FingerprintKey(ctx, js, 1, 1<<20, false); err == nil || !strings.Contains(err.Error(), "start `reconciler run`") {
		t.Fatalf("a tool before run: %v", err)
	}
	first, err := FingerprintKey(ctx, js, 1, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 64 {
		t.Errorf("key of %d bytes, want 64 hex digits", len(first))
	}
	for _, create := range []bool{true, false} {
		again, err := FingerprintKey(ctx, js, 1, 1<<20, create)
		if err != nil || string(again) != string(first) {
			t.Errorf("create=%v: %q, %v; want the first key", create, again, err)
		}
	}
}
