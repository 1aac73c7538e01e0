package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The history of a script is what the reconciler changed on it: one
// HistoryEntry per write, in the history stream under
// <history prefix>.<account>.<namespace>.<script>, at most
// SetupConfig.HistoryPerScript entries per script (the oldest go first).
// An entry names bindings and kinds of change, never a value.

// Kinds of change in a history entry.
const (
	ChangeAdd    = "add"
	ChangeUpdate = "update"
	ChangeRemove = "remove"
	ChangeRename = "rename"
)

// Change is what one write did to one binding name.
type Change struct {
	Name string `json:"name"`
	// Kind is ChangeAdd, ChangeUpdate, ChangeRemove or ChangeRename.
	Kind string `json:"kind"`
	// Type is the binding's type after the change (the removed type for a
	// remove).
	Type string `json:"type,omitempty"`
	// OldType is the type before an update that changed it.
	OldType string `json:"old_type,omitempty"`
	// From is the old name of a rename.
	From string `json:"from,omitempty"`
}

// String is "kind name", with "(from old)" for a rename: names only,
// never values, for logs and the status history.
func (c Change) String() string {
	s := c.Kind + " " + c.Name
	if c.From != "" {
		s += " (from " + c.From + ")"
	}
	return s
}

// HistoryEntry records one write to a script.
type HistoryEntry struct {
	Script   string    `json:"script"` // account.namespace.script
	At       time.Time `json:"at"`
	Strategy string    `json:"strategy"`
	Changes  []Change  `json:"changes"`
	// EventIDs are the events the write settled.
	EventIDs []string `json:"event_ids,omitempty"`
	// VersionID is the Worker version the write created, when it made one
	// and the API named it.
	VersionID       string `json:"version_id,omitempty"`
	DesiredRevision uint64 `json:"desired_revision"`
	// Lane is "live" or "backfill"; Runs are the backfill runs whose items
	// the write settled.
	Lane string   `json:"lane,omitempty"`
	Runs []string `json:"runs,omitempty"`
}

// ChangedNames returns the names of the entry's changes, sorted.
func (e HistoryEntry) ChangedNames() []string {
	out := make([]string, 0, len(e.Changes))
	for _, c := range e.Changes {
		out = append(out, c.Name)
	}
	sort.Strings(out)
	return out
}

// historySubject is the history subject of script key.
func (n Names) historySubject(key string) string { return n.HistoryPrefix + "." + key }

// RecordHistory appends e to the history of its script. It is a no-op
// when the history stream is not set up (res.History is nil).
func (res *Resources) RecordHistory(ctx context.Context, e HistoryEntry) error {
	if res.History == nil {
		return nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	m := nats.NewMsg(res.Names.WithDefaults().historySubject(e.Script))
	m.Data = data
	if _, err := res.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("recording history of %s: %w", e.Script, err)
	}
	return nil
}

// ErrNoHistory is returned by ReadHistory when the history stream is not
// set up (a pipeline started by an older `reconciler run`).
var ErrNoHistory = errors.New("the history stream is not set up: restart `reconciler run` with this version (it creates it)")

// ReadHistory returns the recorded history of script key, oldest first,
// at most limit entries (the newest; 0: all that are kept).
func (res *Resources) ReadHistory(ctx context.Context, key string, limit int) ([]HistoryEntry, error) {
	if res.History == nil {
		return nil, ErrNoHistory
	}
	subject := res.Names.WithDefaults().historySubject(key)
	info, err := res.History.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", key, err)
	}
	n := int(info.State.Subjects[subject])
	if n == 0 {
		return nil, nil
	}
	cons, err := res.History.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", key, err)
	}
	out := make([]HistoryEntry, 0, n)
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", key, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var e HistoryEntry
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				e = HistoryEntry{Script: key, Strategy: "unreadable entry"}
			}
			out = append(out, e)
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				n = len(out) // the newest entry is read
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("history of %s: %w", key, err)
		}
		if got == 0 {
			break
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
