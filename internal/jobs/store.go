package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
	Removed map[string]Stamp `json:"removed,omitempty"`
	// ModifiedOn is the script's modified_on from a namespace listing
	// taken before a read that found the script converged; empty when
	// unknown (a write does not return it).
	ModifiedOn string `json:"modified_on,omitempty"`
	// WrittenBy holds, per binding name, the stamp of the operation that
	// the last write changing that name carried out: it tells whether an
	// event's own operations were written (a backfill result is "changed"
	// even when the write happened before a crash and a resume).
	WrittenBy map[string]Stamp `json:"written_by,omitempty"`
	// Pending holds, while a write is under way, the operations it carries
	// out by name: a reconcile that finds them live after a crash knows
	// that write landed (and counts them in WrittenBy).
	Pending map[string]Stamp `json:"pending,omitempty"`
}

// wrote reports whether a write carried out an operation of event id.
func (r *AppliedRecord) wrote(id string) bool {
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

// sameAs reports whether r and o record the same thing (AppliedAt aside).
func (r *AppliedRecord) sameAs(o *AppliedRecord) bool {
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
type stores struct {
	js      jetstream.JetStream
	desired jetstream.KeyValue
	applied jetstream.KeyValue
	leases  jetstream.KeyValue
	// desiredSubject is the subject prefix of the desired bucket's keys,
	// for pipelined compare-and-set publishes.
	desiredSubject string
	cache          *stateCache
	// asyncAckWait bounds the wait for the acknowledgement of a pipelined
	// compare-and-set (see foldAll), and opTimeout one KV request (see
	// kvOpTimeout).
	asyncAckWait time.Duration
	opTimeout    time.Duration
}

func newStores(js jetstream.JetStream, desired, applied, leases jetstream.KeyValue, cacheSize int) *stores {
	return &stores{js: js, desired: desired, applied: applied, leases: leases,
		desiredSubject: "$KV." + desired.Bucket() + ".", cache: newStateCache(cacheSize), asyncAckWait: 10 * time.Second, opTimeout: kvOpTimeout}
}

// kvOpTimeout bounds one request to a KV bucket. On a clustered NATS the
// answer to a request can be lost (the replica or leader that took it
// died); the request would then wait as long as its context, up to a whole
// reconcile's timeout. After kvOpTimeout it fails instead, and the fold or
// reconcile is retried (a write whose answer was lost may have been
// applied; folds and last-applied records are written with compare-and-set
// from what is read, so the retry finds it).
const kvOpTimeout = 10 * time.Second

// opContext returns the context of one KV request.
func (s *stores) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opTimeout <= 0 {
		return context.WithTimeout(ctx, kvOpTimeout)
	}
	return context.WithTimeout(ctx, s.opTimeout)
}

// maxCASAttempts bounds compare-and-set retries on one key.
const maxCASAttempts = 64

// errNotFound is returned by loads of keys that do not exist.
var errNotFound = errors.New("not found")

// isWrongLastSequence reports a failed compare-and-set: the key changed
// since it was read.
func isWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// encodeState encodes a stored value without HTML escaping (a binding
// value's "<" stays one byte, so the stored size is the size checked).
func encodeState(v any) ([]byte, error) {
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
func (s *stores) loadDesired(ctx context.Context, key string) (*DesiredState, uint64, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	e, err := s.desired.Get(octx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading desired state of %s: %w", key, err)
	}
	if st, rev, ok := s.cache.get(key); ok && rev == e.Revision() {
		return st, rev, nil
	}
	st, err := decodeDesired(key, e.Value())
	if err != nil {
		return nil, 0, err
	}
	s.cache.put(key, st, e.Revision())
	return st, e.Revision(), nil
}

func decodeDesired(key string, data []byte) (*DesiredState, error) {
	var st DesiredState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("desired state of %s is corrupt: %w", key, err)
	}
	if st.Names == nil {
		st.Names = map[string]*NameOp{}
	}
	return &st, nil
}

// updateDesired changes the desired state of key with compare-and-set:
// edit is applied to the current state (a copy) until the update wins. It
// returns the new revision (the old one when edit reports no change).
func (s *stores) updateDesired(ctx context.Context, key string, edit func(*DesiredState) bool) (uint64, error) {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		cur, rev, err := s.loadDesired(ctx, key)
		if err != nil {
			return 0, err
		}
		st := cur.Clone()
		if !edit(st) {
			return rev, nil
		}
		data, err := encodeState(st)
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
		if !isWrongLastSequence(err) {
			return 0, fmt.Errorf("storing desired state of %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("storing desired state of %s: %d compare-and-set conflicts in a row", key, maxCASAttempts)
}

// loadApplied reads the last-applied record of key (an empty record and
// revision 0 when there is none).
func (s *stores) loadApplied(ctx context.Context, key string) (*AppliedRecord, uint64, error) {
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

// errAppliedChanged is a lost compare-and-set on a last-applied record:
// another replica recorded a write since this reconcile read it.
var errAppliedChanged = errors.New("the last-applied record changed during the reconcile")

// saveApplied stores the last-applied record of key if it is still at
// revision rev (0: absent), so that a replica that lost its lease cannot
// overwrite what the new holder recorded. It returns the new revision.
func (s *stores) saveApplied(ctx context.Context, key string, r *AppliedRecord, rev uint64) (uint64, error) {
	data, err := encodeState(r)
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
	if isWrongLastSequence(err) {
		return 0, fmt.Errorf("storing last-applied state of %s: %w", key, errAppliedChanged)
	}
	if err != nil {
		return 0, fmt.Errorf("storing last-applied state of %s: %w", key, err)
	}
	return newRev, nil
}

// publishDesiredAsync starts a compare-and-set of the desired state of key
// from revision rev (0: the key must not exist) without waiting for the
// answer, so that the folds of many scripts share one round trip.
func (s *stores) publishDesiredAsync(key string, data []byte, rev uint64) (jetstream.PubAckFuture, error) {
	m := nats.NewMsg(s.desiredSubject + key)
	m.Data = data
	return s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(rev))
}
