package jobs

import (
	"errors"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"
)

func TestAuthGate(t *testing.T) {
	var a authGate
	a.init(20 * time.Millisecond)
	if a.wait() != 0 || a.err() != nil {
		t.Fatal("a fresh gate must let reconciles run")
	}
	if !a.fail(errors.New("403")) {
		t.Error("the first failure is logged")
	}
	if a.fail(errors.New("403")) {
		t.Error("a second failure within the minute is not logged again")
	}
	if a.wait() <= 0 || a.err() == nil {
		t.Fatal("a failure pauses reconciles and fails readiness")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return a.wait() == 0 }, "one probe after the pause")
	if a.wait() == 0 {
		t.Fatal("only one probe at a time")
	}
	a.inconclusive() // the probe met a busy lease: another may go
	if a.wait() != 0 {
		t.Fatal("an inconclusive probe must let the next one go")
	}
	a.fail(errors.New("403")) // the probe failed: the pause doubles
	if d := a.wait(); d <= 20*time.Millisecond || d > 40*time.Millisecond {
		t.Fatalf("pause after a failed probe = %s, want doubled (≤ 40ms)", d)
	}
	a.ok()
	if a.wait() != 0 || a.err() != nil {
		t.Fatal("a success resumes reconciles")
	}
}
