package jobs

import (
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// authGate pauses reconciles while the API rejects the credentials (a
// rotated or revoked token): that is a fault of the system, not of the
// events, so nothing is dead-lettered for it. After each pause one
// reconcile probes the API; the pause doubles while probes fail.
type authGate struct {
	mu      sync.Mutex
	base    time.Duration
	pause   time.Duration
	until   time.Time
	failing error
	probing bool
	logged  time.Time
	clock   clock.PassiveClock
	pauses  int // times the gate closed
}

func (a *authGate) init(base time.Duration, c clock.PassiveClock) { a.base, a.clock = base, c }

// wait returns how long a reconcile must wait; zero lets it run (while
// failing, only one probe at a time).
func (a *authGate) wait() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failing == nil {
		return 0
	}
	if d := a.until.Sub(a.clock.Now()); d > 0 {
		return d
	}
	if a.probing {
		return time.Second
	}
	a.probing = true
	return 0
}

// fail records an auth failure and reports whether it should be logged
// (at most once a minute).
func (a *authGate) fail(err error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.failing == nil:
		a.pause = a.base
		a.pauses++
	case a.probing || a.until.Sub(a.clock.Now()) <= 0:
		a.pause = min(2*a.pause, 5*time.Minute)
	}
	a.failing, a.probing = err, false
	a.until = a.clock.Now().Add(a.pause)
	if a.clock.Since(a.logged) < time.Minute {
		return false
	}
	a.logged = a.clock.Now()
	return true
}

// ok records a successful reconcile.
func (a *authGate) ok() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failing, a.probing = nil, false
}

// inconclusive records a reconcile that ended without telling whether the
// credentials work (lease busy, a transient error): another probe may go.
func (a *authGate) inconclusive() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.probing = false
}

// closings returns how many times the gate has closed.
func (a *authGate) closings() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pauses
}

// err returns why reconciles are paused, or nil.
func (a *authGate) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failing == nil {
		return nil
	}
	return fmt.Errorf("the Cloudflare API rejects the credentials (reconciles paused until %s): %v",
		a.until.UTC().Format(time.RFC3339), a.failing)
}
