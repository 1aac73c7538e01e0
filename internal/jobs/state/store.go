package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
)

// AppliedRecord is what the reconciler last wrote to a script: per binding
// name its type and a keyed fingerprint of its value (never the value),
// the desired-state revision the write was planned from, the explicit
// removes it carried out, and when.
type AppliedRecord struct {
	Version         int                        `json:"v"`
	Bindings        map[string]planner.Applied `json:"bindings"`
	DesiredRevision uint64                     `json:"desired_revision"`
	Strategy        string                     `json:"strategy,omitempty"`
	AppliedAt       time.Time                  `json:"applied_at"`
	// Removed holds the explicit removes (patch "remove") that a reconcile
	// has carried out, by name with the stamp of the operation: once
	// carried out, a tombstone only orders operations and never deletes
	// again.
	Removed map[string]event.Stamp `json:"removed,omitempty"`
	// ModifiedOn is the script's modified_on from a namespace listing
	// taken before a read that found the script converged; empty when
	// unknown (a write does not return it).
	ModifiedOn string `json:"modified_on,omitempty"`
	// WrittenBy holds, per binding name, the stamp of the operation that
	// the last write changing that name carried out: it tells whether an
	// event's own operations were written (a backfill result is "changed"
	// even when the write happened before a crash and a resume).
	WrittenBy map[string]event.Stamp `json:"written_by,omitempty"`
	// Pending holds, while a write is under way, the operations it carries
	// out by name: a reconcile that finds them live after a crash knows
	// that write landed (and counts them in WrittenBy).
	Pending map[string]event.Stamp `json:"pending,omitempty"`
}

// Wrote reports whether a write carried out an operation of event id.
func (r *AppliedRecord) Wrote(id string) bool {
	for _, s := range r.WrittenBy {
		if s.ID == id {
			return true
		}
	}
	return false
}

// LastApplied returns the planner's view of the record.
func (r *AppliedRecord) LastApplied() planner.LastApplied {
	if r == nil {
		return planner.LastApplied{}
	}
	return planner.LastApplied{Bindings: r.Bindings}
}

// SameAs reports whether r and o record the same thing (AppliedAt aside).
func (r *AppliedRecord) SameAs(o *AppliedRecord) bool {
	if r.DesiredRevision != o.DesiredRevision || r.ModifiedOn != o.ModifiedOn || !r.LastApplied().Equal(o.LastApplied()) ||
		len(r.Removed) != len(o.Removed) {
		return false
	}
	for n, s := range r.Removed {
		if o.Removed[n] != s {
			return false
		}
	}
	if len(r.WrittenBy) != len(o.WrittenBy) || len(r.Pending) != len(o.Pending) {
		return false
	}
	for n, s := range r.WrittenBy {
		if o.WrittenBy[n] != s {
			return false
		}
	}
	return true
}

// stores wraps the KV buckets that hold the reconciler's state.
type Store struct {
	js      jetstream.JetStream
	desired jetstream.KeyValue
	applied jetstream.KeyValue
	leases  jetstream.KeyValue
	// desiredSubject is the subject prefix of the desired bucket's keys,
	// for pipelined compare-and-set publishes.
	desiredSubject string
	cache          *stateCache
	// asyncAckWait bounds the wait for the acknowledgement of a pipelined
	// compare-and-set (see Commit), and opTimeout one KV request (see
	// kvOpTimeout).
	asyncAckWait time.Duration
	opTimeout    time.Duration
}

// StoreOptions tune a Store.
type StoreOptions struct {
	// CacheSize bounds the desired states kept in memory for folding
	// (0 or negative: no cache; every fold reads its base from KV).
	CacheSize int
	// AsyncAckWait bounds the wait for the acknowledgement of a pipelined
	// compare-and-set (default 10s, see Commit).
	AsyncAckWait time.Duration
	// OpTimeout bounds one KV request (default kvOpTimeout).
	OpTimeout time.Duration
}

// NewStore returns the store over the desired-state, last-applied and
// lease buckets (leases may be nil for a reader that never reconciles).
func NewStore(js jetstream.JetStream, desired, applied, leases jetstream.KeyValue, opts StoreOptions) *Store {
	s := &Store{js: js, desired: desired, applied: applied, leases: leases,
		desiredSubject: "$KV." + desired.Bucket() + ".", asyncAckWait: opts.AsyncAckWait, opTimeout: opts.OpTimeout}
	if opts.CacheSize > 0 {
		s.cache = newStateCache(opts.CacheSize)
	}
	if s.asyncAckWait <= 0 {
		s.asyncAckWait = 10 * time.Second
	}
	if s.opTimeout <= 0 {
		s.opTimeout = kvOpTimeout
	}
	return s
}

// Leases returns the lease bucket.
func (s *Store) Leases() jetstream.KeyValue { return s.leases }

// kvOpTimeout bounds one request to a KV bucket. On a clustered NATS the
// answer to a request can be lost (the replica or leader that took it
// died); the request would then wait as long as its context, up to a whole
// reconcile's timeout. After kvOpTimeout it fails instead, and the fold or
// reconcile is retried (a write whose answer was lost may have been
// applied; folds and last-applied records are written with compare-and-set
// from what is read, so the retry finds it).
const kvOpTimeout = 10 * time.Second

// opContext returns the context of one KV request.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// maxCASAttempts bounds compare-and-set retries on one key.
const maxCASAttempts = 64

// ErrNotFound is returned by loads of keys that do not exist.
var ErrNotFound = errors.New("not found")

// IsWrongLastSequence reports a failed compare-and-set: the key changed
// since it was read.
func IsWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// EncodeState encodes a stored value without HTML escaping (a binding
// value's "<" stays one byte, so the stored size is the size checked).
func EncodeState(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// loadDesired reads the desired state of key and its revision from KV.
// The value is decoded only when the cache does not hold that very
// revision (the fold that wrote it usually does): the returned state must
// not be modified.
func (s *Store) LoadDesired(ctx context.Context, key string) (*event.DesiredState, uint64, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	e, err := s.desired.Get(octx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading desired state of %s: %w", key, err)
	}
	if st, rev, ok := s.cache.get(key); ok && rev == e.Revision() {
		return st, rev, nil
	}
	st, err := DecodeDesired(key, e.Value())
	if err != nil {
		return nil, 0, err
	}
	s.cache.put(key, st, e.Revision())
	return st, e.Revision(), nil
}

func DecodeDesired(key string, data []byte) (*event.DesiredState, error) {
	var st event.DesiredState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("desired state of %s is corrupt: %w", key, err)
	}
	if st.Names == nil {
		st.Names = map[string]*event.NameOp{}
	}
	return &st, nil
}

// updateDesired changes the desired state of key with compare-and-set:
// edit is applied to the current state (a copy) until the update wins. It
// returns the new revision (the old one when edit reports no change).
func (s *Store) UpdateDesired(ctx context.Context, key string, edit func(*event.DesiredState) bool) (uint64, error) {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		cur, rev, err := s.LoadDesired(ctx, key)
		if err != nil {
			return 0, err
		}
		st := cur.Clone()
		if !edit(st) {
			return rev, nil
		}
		data, err := EncodeState(st)
		if err != nil {
			return 0, err
		}
		octx, cancel := s.opContext(ctx)
		newRev, err := s.desired.Update(octx, key, data, rev)
		cancel()
		if err == nil {
			s.cache.put(key, st, newRev)
			return newRev, nil
		}
		if !IsWrongLastSequence(err) {
			return 0, fmt.Errorf("storing desired state of %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("storing desired state of %s: %d compare-and-set conflicts in a row", key, maxCASAttempts)
}

// loadApplied reads the last-applied record of key (an empty record and
// revision 0 when there is none).
func (s *Store) LoadApplied(ctx context.Context, key string) (*AppliedRecord, uint64, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	e, err := s.applied.Get(octx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return &AppliedRecord{Version: 1, Bindings: map[string]planner.Applied{}}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading last-applied state of %s: %w", key, err)
	}
	var r AppliedRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("last-applied state of %s is corrupt: %w", key, err)
	}
	if r.Bindings == nil {
		r.Bindings = map[string]planner.Applied{}
	}
	return &r, e.Revision(), nil
}

// ErrAppliedChanged is a lost compare-and-set on a last-applied record:
// another replica recorded a write since this reconcile read it.
var ErrAppliedChanged = errors.New("the last-applied record changed during the reconcile")

// saveApplied stores the last-applied record of key if it is still at
// revision rev (0: absent), so that a replica that lost its lease cannot
// overwrite what the new holder recorded. It returns the new revision.
func (s *Store) SaveApplied(ctx context.Context, key string, r *AppliedRecord, rev uint64) (uint64, error) {
	data, err := EncodeState(r)
	if err != nil {
		return 0, err
	}
	octx, cancel := s.opContext(ctx)
	defer cancel()
	var newRev uint64
	if rev == 0 {
		newRev, err = s.applied.Create(octx, key, data)
	} else {
		newRev, err = s.applied.Update(octx, key, data, rev)
	}
	if IsWrongLastSequence(err) {
		return 0, fmt.Errorf("storing last-applied state of %s: %w", key, ErrAppliedChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("storing last-applied state of %s: %w", key, err)
	}
	return newRev, nil
}

// publishDesiredAsync starts a compare-and-set of the desired state of key
// from revision rev (0: the key must not exist) without waiting for the
// answer, so that the folds of many scripts share one round trip.
func (s *Store) publishDesiredAsync(key string, data []byte, rev uint64) (jetstream.PubAckFuture, error) {
	m := nats.NewMsg(s.desiredSubject + key)
	m.Data = data
	return s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(rev))
}
