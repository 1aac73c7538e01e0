package jobs

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"k8s.io/utils/clock"
)

// Config configures a Runner.
type Config struct {
	state.SetupConfig
	// Concurrency is the number of scripts reconciled in parallel.
	Concurrency int
	// FetchBatch bounds how many events are pulled and folded at once
	// (default 1000).
	FetchBatch int
	// CoalesceDelay is how long a script waits after its last event before
	// it is reconciled, so that a burst of events costs one reconcile
	// (default 100ms; negative: no wait). CoalesceMaxWait bounds the wait
	// from the first event, so a script under a steady trickle is still
	// reconciled that often (default 5s).
	CoalesceDelay   time.Duration
	CoalesceMaxWait time.Duration
	// ResyncInterval, when positive, reconciles every script in the
	// desired-state bucket that often, repairing drift made elsewhere.
	ResyncInterval time.Duration
	// ReconcileTimeout, DefaultStrategy, SplitCheckDispatch and HoldRetry
	// configure the Reconciler (reconcile.Config, which has their
	// defaults).
	//
	// ReconcileTimeout bounds one reconcile, budget waits included
	// (default 10 minutes).
	ReconcileTimeout time.Duration
	// NakDelay is the first redelivery delay after a transient failure;
	// it doubles per delivery up to MaxNakDelay (defaults 2s and 2m).
	NakDelay    time.Duration
	MaxNakDelay time.Duration
	// ShutdownTimeout bounds a graceful shutdown: in-flight reconciles
	// are cancelled when it has passed (default 30s).
	ShutdownTimeout time.Duration
	// Owner names this replica in leases (default: random).
	Owner string
	// StateCacheSize bounds the desired states cached for folding
	// (default 10000 scripts; 0 uses the default, negative disables).
	StateCacheSize int
	// BackfillInflight bounds the backfill work items waiting at once
	// (default: Concurrency).
	BackfillInflight int
	// AuthPause is how long reconciles stop after the API rejected the
	// credentials; it doubles while they keep failing, up to 5 minutes
	// (default 30s).
	AuthPause time.Duration
	// RecoverOnStart reconciles, when Run starts, every script whose
	// desired state is newer than its last-applied record, without waiting
	// for the redelivery of the events a crashed process held.
	RecoverOnStart bool
	// DefaultStrategy is how a change is written when its event asks for
	// "auto" or names no strategy: StrategyAuto or "" for the built-in
	// rule, or settings, script or version (docs/versions.md).
	DefaultStrategy planner.Strategy
	// SplitCheckDispatch also reads the deployments of a dispatch
	// namespace script before a settings or script write (one more read
	// per change), so a gradual deployment of a tenant Worker is held too.
	// Ordinary Workers are always checked (reconcile/version.go).
	SplitCheckDispatch bool
	// HoldRetry is how often a held script (a gradual deployment in
	// progress) is checked again (default 2 minutes).
	HoldRetry time.Duration
	// Clock is the time source of the queue and the Runner's timers
	// (default: the real clock; tests step a fake one).
	Clock clock.WithTickerAndDelayedExecution
}

func (c Config) withDefaults() Config {
	c.SetupConfig = c.SetupConfig.WithDefaults()
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = 1000
	}
	switch {
	case c.CoalesceDelay < 0:
		c.CoalesceDelay = 0
	case c.CoalesceDelay == 0:
		c.CoalesceDelay = 100 * time.Millisecond
	}
	state.DefaultDuration(&c.CoalesceMaxWait, 5*time.Second)
	state.DefaultDuration(&c.NakDelay, 2*time.Second)
	state.DefaultDuration(&c.MaxNakDelay, 2*time.Minute)
	state.DefaultDuration(&c.ShutdownTimeout, 30*time.Second)
	state.DefaultDuration(&c.AuthPause, 30*time.Second)
	if c.Owner == "" {
		c.Owner = fmt.Sprintf("replica-%08x", rand.Uint32())
	}
	if c.StateCacheSize == 0 {
		c.StateCacheSize = 10000
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.BackfillInflight <= 0 {
		c.BackfillInflight = c.Concurrency
	}
	return c
}

// nakDelay is the redelivery delay after the n-th delivery failed: the
// configured delay doubled per delivery, capped, with ±20% jitter so that
// a burst of failures does not come back at once.
func (c Config) nakDelay(n uint64) time.Duration {
	d := c.NakDelay
	for i := uint64(1); i < n && d < c.MaxNakDelay; i++ {
		d *= 2
	}
	d = min(d, c.MaxNakDelay)
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5*2)+1))
}
