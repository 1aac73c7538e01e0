package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/planner"
)

// AppliedRecord is what the reconciler last wrote to a script: per binding
// name its type and a keyed fingerprint of its value (never the value),
// the desired-state revision the write was planned from, and when.
type AppliedRecord struct {
	Version         int                        `json:"v"`
	Bindings        map[string]planner.Applied `json:"bindings"`
	DesiredRevision uint64                     `json:"desired_revision"`
	Strategy        string                     `json:"strategy,omitempty"`
	AppliedAt       time.Time                  `json:"applied_at"`
}

// LastApplied returns the planner's view of the record.
func (r *AppliedRecord) LastApplied() planner.LastApplied {
	if r == nil {
		return planner.LastApplied{}
	}
	return planner.LastApplied{Bindings: r.Bindings}
}

// stores wraps the KV buckets that hold the reconciler's state.
type stores struct {
	desired jetstream.KeyValue
	applied jetstream.KeyValue
	leases  jetstream.KeyValue
}

// maxCASAttempts bounds compare-and-set retries on one key.
const maxCASAttempts = 64

// errNotFound is returned by loads of keys that do not exist.
var errNotFound = errors.New("not found")

// fold folds events into the desired state of key with compare-and-set, so
// that replicas folding concurrently never lose an operation. It returns
// the fold result of each event and the revision that holds them.
func (s *stores) fold(ctx context.Context, key string, events []*Event) ([]FoldResult, uint64, error) {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		state, rev, err := s.loadDesired(ctx, key)
		if errors.Is(err, errNotFound) {
			state, rev, err = NewDesiredState(events[0].Ref()), 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		results := make([]FoldResult, len(events))
		changed := false
		for i, e := range events {
			results[i] = state.Fold(e)
			changed = changed || results[i].Changed()
		}
		if !changed {
			return results, rev, nil
		}
		data, err := json.Marshal(state)
		if err != nil {
			return nil, 0, err
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = s.desired.Create(ctx, key, data)
		} else {
			newRev, err = s.desired.Update(ctx, key, data, rev)
		}
		if err == nil {
			return results, newRev, nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err) {
			continue // another replica folded first: read again
		}
		return nil, 0, fmt.Errorf("storing desired state of %s: %w", key, err)
	}
	return nil, 0, fmt.Errorf("storing desired state of %s: %d compare-and-set conflicts in a row", key, maxCASAttempts)
}

func isWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164)
}

// loadDesired reads the desired state of key and its revision.
func (s *stores) loadDesired(ctx context.Context, key string) (*DesiredState, uint64, error) {
	e, err := s.desired.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading desired state of %s: %w", key, err)
	}
	var st DesiredState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("desired state of %s is corrupt: %w", key, err)
	}
	if st.Names == nil {
		st.Names = map[string]*NameOp{}
	}
	return &st, e.Revision(), nil
}

// loadApplied reads the last-applied record of key (an empty record when
// there is none).
func (s *stores) loadApplied(ctx context.Context, key string) (*AppliedRecord, error) {
	e, err := s.applied.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &AppliedRecord{Version: 1, Bindings: map[string]planner.Applied{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading last-applied state of %s: %w", key, err)
	}
	var r AppliedRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("last-applied state of %s is corrupt: %w", key, err)
	}
	if r.Bindings == nil {
		r.Bindings = map[string]planner.Applied{}
	}
	return &r, nil
}

// saveApplied stores the last-applied record of key. Only the holder of the
// script's lease writes it.
func (s *stores) saveApplied(ctx context.Context, key string, r *AppliedRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.applied.Put(ctx, key, data); err != nil {
		return fmt.Errorf("storing last-applied state of %s: %w", key, err)
	}
	return nil
}

// lease is a held per-script lease.
type lease struct {
	key string
	rev uint64
}

// acquireLease takes the per-script lease that keeps two replicas from
// writing one script at once. It returns ok=false when another owner holds
// it. Leases expire with the bucket's TTL unless renewed.
func (s *stores) acquireLease(ctx context.Context, key, owner string) (*lease, bool, error) {
	rev, err := s.leases.Create(ctx, key, []byte(owner))
	if err == nil {
		return &lease{key: key, rev: rev}, true, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSequence(err) {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("acquiring lease on %s: %w", key, err)
}

// renew extends the lease; it fails when the lease was lost.
func (s *stores) renewLease(ctx context.Context, l *lease, owner string) error {
	rev, err := s.leases.Update(ctx, l.key, []byte(owner), l.rev)
	if err != nil {
		return fmt.Errorf("renewing lease on %s: %w", l.key, err)
	}
	l.rev = rev
	return nil
}

// releaseLease gives the lease up (only if still ours).
func (s *stores) releaseLease(ctx context.Context, l *lease) {
	_ = s.leases.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
}
