package jobs

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// runner, lease renewal, heartbeat, watcher or consumer iterator that does
// not stop, or a NATS connection left open (chaos suite, "Leaks").
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
