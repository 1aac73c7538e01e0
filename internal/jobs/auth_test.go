package jobs

import (
	"errors"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

func TestAuthGate(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Unix(1e9, 0))
	var a authGate
	a.init(20*time.Millisecond, fc)
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
	fc.Step(19 * time.Millisecond)
	if a.wait() == 0 {
		t.Fatal("a probe before the pause has passed")
	}
	fc.Step(time.Millisecond)
	if a.wait() != 0 {
		t.Fatal("no probe once the pause has passed")
	}
	if a.wait() == 0 {
		t.Fatal("only one probe at a time")
	}
	a.inconclusive() // the probe met a busy lease: another may go
	if a.wait() != 0 {
		t.Fatal("an inconclusive probe must let the next one go")
	}
	a.fail(errors.New("403")) // the probe failed: the pause doubles
	if d := a.wait(); d != 40*time.Millisecond {
		t.Fatalf("pause after a failed probe = %s, want it doubled: 40ms", d)
	}
	a.ok()
	if a.wait() != 0 || a.err() != nil {
		t.Fatal("a success resumes reconciles")
	}
}
