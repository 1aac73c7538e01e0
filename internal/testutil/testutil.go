// Package testutil holds helpers shared by the project's tests. It is
// imported only from _test.go files.
package testutil

import (
	"fmt"
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
