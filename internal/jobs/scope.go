package jobs

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/reconcile"
)

// authScope is how far an auth failure (403, code 10000, ...) reaches.
type authScope int

const (
	// scopeToken: the token itself fails verification; nothing can
	// succeed until someone fixes it (the auth gate closes).
	scopeToken authScope = iota
	// scopeAccount: the token verifies, so the refusal is about the
	// account the request named (outside the token's scope): that
	// account's events are dead-lettered, every other tenant goes on.
	scopeAccount
	// scopeUnknown: the verification itself failed for another reason (a
	// timeout, a 5xx): the reconcile is retried like a transient failure.
	scopeUnknown
)

// tokenVerifyTimeout bounds one verification of the token.
const tokenVerifyTimeout = 30 * time.Second

// accountScopes decides the scope of an auth failure with one confirming
// probe: GET /user/tokens/verify. A verification that succeeded is
// remembered per account for ttl, so that the other events of an account
// outside the token's scope cost no probe each; the verdicts are forgotten
// as soon as the token itself fails. Probes run one at a time.
type accountScopes struct {
	mu        sync.Mutex
	ttl       time.Duration
	clock     clock.PassiveClock
	verify    func(context.Context) (*cfapi.TokenStatus, error)
	forbidden map[string]time.Time // account → when the token last verified after its refusal
	probes    int                  // verifications sent
}

// init sets how long a verdict is remembered, the clock, and how the token
// is verified (API.VerifyToken).
func (s *accountScopes) init(ttl time.Duration, c clock.PassiveClock, verify func(context.Context) (*cfapi.TokenStatus, error)) {
	s.ttl, s.clock, s.verify, s.forbidden = ttl, c, verify, map[string]time.Time{}
}

// scope returns the scope of an auth failure of a reconcile of script
// key, verifying the token unless a verification within ttl already showed
// it valid while the script's account was refused.
func (s *accountScopes) scope(ctx context.Context, key string) authScope {
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return scopeToken
	}
	account := ref.AccountID
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.forbidden[account]; ok && s.clock.Since(at) < s.ttl {
		return scopeAccount
	}
	s.probes++
	vctx, cancel := context.WithTimeout(ctx, tokenVerifyTimeout)
	defer cancel()
	switch _, err := s.verify(vctx); {
	case err == nil:
		s.forbidden[account] = s.clock.Now()
		return scopeAccount
	case reconcile.IsAuthFailure(err):
		clear(s.forbidden)
		return scopeToken
	default:
		return scopeUnknown
	}
}

// tokenFailed forgets every account verdict: the token itself is refused.
func (s *accountScopes) tokenFailed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.forbidden)
}
