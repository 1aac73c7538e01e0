package ratelimit

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// limiter waiter or pump that does not stop (chaos suite, "Leaks"). No
// goroutine is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
