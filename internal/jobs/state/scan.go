package state

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go/jetstream"
)

// AppliedMark is what a resync needs of a last-applied record.
type AppliedMark struct {
	ModifiedOn string
	DesiredRev uint64
}

// AppliedMarks reads every last-applied record's listing mark and the
// desired-state revision it was planned from.
func (s *Store) AppliedMarks(ctx context.Context) (map[string]AppliedMark, error) {
	kv := s.applied
	out := map[string]AppliedMark{}
	_, err := watchRevisions(ctx, kv, false, func(key string, v []byte) uint64 {
		var rec struct {
			Rev        uint64 `json:"desired_revision"`
			ModifiedOn string `json:"modified_on"`
		}
		_ = json.Unmarshal(v, &rec)
		out[key] = AppliedMark{ModifiedOn: rec.ModifiedOn, DesiredRev: rec.Rev}
		return rec.Rev
	})
	return out, err
}

// watchRevisions reads every key of kv once: its revision, or with
// value, what value returns of it.
func watchRevisions(ctx context.Context, kv jetstream.KeyValue, metaOnly bool, value func(key string, v []byte) uint64) (map[string]uint64, error) {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	out := map[string]uint64{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil // initial values done
			}
			if value != nil {
				out[e.Key()] = value(e.Key(), e.Value())
			} else {
				out[e.Key()] = e.Revision()
			}
		}
	}
}

// DesiredRevisions reads the revision of every desired state (keys and
// revisions only).
func (s *Store) DesiredRevisions(ctx context.Context) (map[string]uint64, error) {
	return watchRevisions(ctx, s.desired, true, nil)
}
