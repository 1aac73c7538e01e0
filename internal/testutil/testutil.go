// Package testutil holds helpers shared by the project's tests. It is
// imported only from _test.go files.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"
)

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually polls cond every few milliseconds until it returns true, and
// fails the test with the message (formatted with args) when timeout
// passes first. Use it instead of sleeping: it returns as soon as the
// condition holds.
func Eventually(t TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not met within %s: %s", timeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// FreeAddr returns a loopback address ("127.0.0.1:port") whose port was
// free a moment ago, for a server the test starts itself or hands to a
// child process.
func FreeAddr(t TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// SyncBuffer collects output (a child process's, a logger's) and is safe
// for concurrent writes and reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
