package cfapi

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// client, limiter or retry loop that does not stop, or a response body
// left open (chaos suite, "Leaks"). No goroutine is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
