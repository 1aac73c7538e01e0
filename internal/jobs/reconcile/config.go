package reconcile

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"k8s.io/utils/clock"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// Config configures a Reconciler.
type Config struct {
	// ReconcileTimeout bounds one reconcile, budget waits included
	// (default 10 minutes).
	ReconcileTimeout time.Duration
	// DefaultStrategy is how a change is written when its event asks for
	// "auto" or names no strategy: StrategyAuto or "" for the built-in
	// rule, or settings, script or version (docs/versions.md).
	DefaultStrategy planner.Strategy
	// SplitCheckDispatch also reads the deployments of a dispatch
	// namespace script before a settings or script write (one more read
	// per change), so a gradual deployment of a tenant Worker is held too.
	// Ordinary Workers are always checked (version.go).
	SplitCheckDispatch bool
	// HoldRetry is how often a held script (a gradual deployment in
	// progress) is checked again (default 2 minutes).
	HoldRetry time.Duration
	// ListedModifiedOn returns the modified_on a namespace listing showed
	// for a script key ("" when none), to record once a read finds the
	// script converged (default: none).
	ListedModifiedOn func(key string) string
	// Clock is the time source of the reconcile's waits and of the time
	// a write is recorded at (default: the real clock).
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	state.DefaultDuration(&c.ReconcileTimeout, 10*time.Minute)
	state.DefaultDuration(&c.HoldRetry, 2*time.Minute)
	if c.ListedModifiedOn == nil {
		c.ListedModifiedOn = func(string) string { return "" }
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c
}

// strategyFor returns the strategy a change is written with: the
// requested one, or Config.DefaultStrategy when the event asked for auto
// (or nothing). An invalid DefaultStrategy (cmd validates it) means auto.
func (c Config) strategyFor(requested planner.Strategy) planner.Strategy {
	if requested != planner.StrategyAuto && requested != planner.StrategyNone {
		return requested
	}
	def, err := planner.ParseStrategy(string(c.DefaultStrategy))
	if err != nil {
		return planner.StrategyAuto
	}
	return def
}

// API is what a reconcile needs of the Cloudflare client: the settings,
// the script content and its upload, and the versions and deployments
// (version.go).
type API interface {
	GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
	PatchSettings(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error)
	GetScriptContent(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.ScriptContent, error)
	UploadScript(ctx context.Context, ref cfapi.ScriptRef, u cfapi.ScriptUpload) (*cfapi.UploadResult, error)
	CreateVersion(ctx context.Context, ref cfapi.ScriptRef, u cfapi.ScriptUpload) (*cfapi.Version, error)
	DeployVersion(ctx context.Context, ref cfapi.ScriptRef, versionID, message string) (*cfapi.Deployment, error)
	ListDeployments(ctx context.Context, ref cfapi.ScriptRef) ([]cfapi.ScriptDeployment, error)
	GetWorkerVersion(ctx context.Context, ref cfapi.ScriptRef, versionID string, includeModules bool) (*cfapi.WorkerVersion, error)
	CreateWorkerVersion(ctx context.Context, ref cfapi.ScriptRef, v cfapi.NewWorkerVersion, deploy bool) (*cfapi.WorkerVersion, error)
}

// Store is what a reconcile needs of the desired and last-applied
// stores (state.Store has it): reads with their revisions, the
// compare-and-set save of the last-applied record, and the edit that
// quarantines refused operations.
type Store interface {
	LoadDesired(ctx context.Context, key string) (*event.DesiredState, uint64, error)
	UpdateDesired(ctx context.Context, key string, edit func(*event.DesiredState) bool) (uint64, error)
	LoadApplied(ctx context.Context, key string) (*state.AppliedRecord, uint64, error)
	SaveApplied(ctx context.Context, key string, rec *state.AppliedRecord, rev uint64) (uint64, error)
}

// Leases takes the per-script write lease. Acquire returns ok=false when
// another owner holds it.
type Leases interface {
	Acquire(ctx context.Context, key string) (l Lease, ok bool, err error)
}

// Lease is a held write lease (state.Lease): Context is cancelled once
// it can no longer be proven held, Check fails then, Release gives it up.
type Lease interface {
	Context() context.Context
	Check() error
	Release()
}

// KVLeases returns the leases of a JetStream KV bucket (state.AcquireLease),
// taken as owner and living ttl without renewal.
func KVLeases(kv jetstream.KeyValue, owner string, ttl time.Duration) Leases {
	return kvLeases{kv: kv, owner: owner, ttl: ttl}
}

type kvLeases struct {
	kv    jetstream.KeyValue
	owner string
	ttl   time.Duration
}

func (k kvLeases) Acquire(ctx context.Context, key string) (Lease, bool, error) {
	l, ok, err := state.AcquireLease(ctx, k.kv, key, k.owner, k.ttl)
	if err != nil || !ok {
		return nil, ok, err
	}
	return l, true, nil
}

type loggerKey struct{}

// WithLogger carries a reconcile's logger in its context.
func WithLogger(ctx context.Context, log *zap.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// LoggerFrom returns the logger carried by ctx, or def.
func LoggerFrom(ctx context.Context, def *zap.Logger) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok {
		return l
	}
	return def
}
