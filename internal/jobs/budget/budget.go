package budget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"go.uber.org/zap"
)

// DefaultBucket is the KV bucket that holds the budgets.
const DefaultBucket = "reconciler_budget"

// Config configures a Source.
type Config struct {
	// Bucket is the KV bucket (default DefaultBucket).
	Bucket string
	// Replicas of the bucket when Ensure creates it (default 1; 3 on a
	// clustered NATS).
	Replicas int
	// Credential identifies the API token whose budget this is: the token
	// itself, or for key authentication the email and key joined by a NUL.
	// Only a hash of it is kept (KeyFor).
	Credential string
	// Identity, when set, is the identity the API counts the budget by
	// (the user id of a user token, or what --budget-key says): the key is
	// then KeyForIdentity(Identity), shared by every token of that user,
	// and Credential may be empty. Only a hash of it is kept.
	Identity string
	// Budget and Window are the token's budget: at most Budget requests in
	// any interval of length Window, from every process together. In Auto
	// mode they are the conservative start, used until the API's first
	// Ratelimit-Policy.
	Budget int
	Window time.Duration
	// Auto takes the budget from the API's Ratelimit-Policy: its quota
	// less the reserve, per its window.
	Auto bool
	// Reserve is how many requests of the API's quota the processes leave
	// for people and other tools when the API's Ratelimit headers say how
	// much is left; 0 means ReserveFraction of the quota.
	Reserve int
	// ReserveFraction is the reserve as a fraction of the quota when
	// Reserve is 0 (default 0.1; negative means none).
	ReserveFraction float64
	// MaxClockSkew is how far the clocks of two processes sharing the
	// budget may differ (default min(1s, Window/200)).
	MaxClockSkew time.Duration
	// MaxLateness bounds the spread of the delay from a token's scheduled
	// time to its request's arrival at the API: half of it for handing the
	// token out (later ones are thrown away), half for the variation of
	// the trip to the API (default min(1s, Window/50)).
	MaxLateness time.Duration
	// Horizon bounds how far ahead of its first token one reservation
	// reaches (default 50ms): more tokens per write at high rates, fewer
	// tokens lost when a process dies.
	Horizon time.Duration
	// OpTimeout bounds each NATS operation (default 2s).
	OpTimeout time.Duration
	// Logger receives warnings (NATS unreachable, foreign settings); nil
	// means none.
	Logger *zap.Logger

	// skewDefault and latenessDefault record that MaxClockSkew and MaxLateness were left
	// to their defaults, which then follow the window of an Auto budget.
	skewDefault, latenessDefault bool
}

// withDefaults validates c and fills in the defaults. Errors name the
// field.
func (c Config) withDefaults() (Config, error) {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	switch {
	case c.Credential == "" && c.Identity == "":
		return c, errors.New("budget: Config.Credential and Config.Identity are empty (the API token or user whose budget is shared)")
	case c.Reserve < 0:
		return c, fmt.Errorf("budget: Config.Reserve must not be negative, got %d", c.Reserve)
	case c.ReserveFraction >= 1:
		return c, fmt.Errorf("budget: Config.ReserveFraction must be below 1, got %g", c.ReserveFraction)
	case c.Budget < 2:
		return c, fmt.Errorf("budget: Config.Budget must be at least 2 requests, got %d", c.Budget)
	case c.Window <= 0:
		return c, fmt.Errorf("budget: Config.Window must be positive, got %s", c.Window)
	case c.MaxClockSkew < 0:
		return c, fmt.Errorf("budget: Config.MaxClockSkew must not be negative, got %s", c.MaxClockSkew)
	case c.MaxLateness < 0:
		return c, fmt.Errorf("budget: Config.MaxLateness must not be negative, got %s", c.MaxLateness)
	case c.Horizon < 0:
		return c, fmt.Errorf("budget: Config.Horizon must not be negative, got %s", c.Horizon)
	case c.OpTimeout < 0:
		return c, fmt.Errorf("budget: Config.OpTimeout must not be negative, got %s", c.OpTimeout)
	}
	switch {
	case c.ReserveFraction == 0:
		c.ReserveFraction = 0.1
	case c.ReserveFraction < 0:
		c.ReserveFraction = 0
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew, c.skewDefault = defaultSkew(c.Window), true
	}
	if c.MaxLateness == 0 {
		c.MaxLateness, c.latenessDefault = defaultLateness(c.Window), true
	}
	if c.Horizon == 0 {
		c.Horizon = 50 * time.Millisecond
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Budget <= ratelimit.BurstFor(c.Budget) {
		return c, fmt.Errorf("budget: Config.Budget %d leaves nothing beyond the burst", c.Budget)
	}
	return c, nil
}

func defaultSkew(window time.Duration) time.Duration     { return min(time.Second, window/200) }
func defaultLateness(window time.Duration) time.Duration { return min(time.Second, window/50) }

// KeyFor returns the KV key of a credential's budget: "token_" and 32 hex
// digits of a SHA-256 of it. The credential cannot be recovered from it.
func KeyFor(credential string) string {
	sum := sha256.Sum256([]byte("reconciler rate budget\x00" + credential))
	return "token_" + hex.EncodeToString(sum[:16])
}

// KeyForIdentity returns the KV key of the budget of the identity the API
// counts (a user id): "user_" and 32 hex digits of a SHA-256 of it.
func KeyForIdentity(identity string) string {
	sum := sha256.Sum256([]byte("reconciler rate budget user\x00" + identity))
	return "user_" + hex.EncodeToString(sum[:16])
}

// Ensure creates the bucket if needed (or updates its settings) and
// returns the Source of cfg's credential. `run` uses it.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (*Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "Shared API rate budget per token (GCRA state, keyed by a hash of the token).",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("rate budget bucket %s: %w", cfg.Bucket, err)
	}
	return newSource(kv, cfg), nil
}

// Open returns the Source of cfg's credential in an existing bucket; it
// creates and changes nothing (cfg.Replicas is unused). When the bucket is
// missing the error names it and matches jetstream.ErrBucketNotFound.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("rate budget bucket %s does not exist (`reconciler run` creates it): %w", cfg.Bucket, err)
	}
	if err != nil {
		return nil, fmt.Errorf("rate budget bucket %s: %w", cfg.Bucket, err)
	}
	return newSource(kv, cfg), nil
}
