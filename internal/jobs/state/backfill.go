package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/jobs/event"
)

// Backfill work is a second lane beside live events: `reconciler backfill`
// stores a run record in the runs bucket and enqueues one work item per
// script of the run in the backfill stream; runners fold each item like an
// event and record the script's result in the results stream. This file
// holds that wire format: the subjects, headers and records.

// Headers of a backfill work item.
const (
	HeaderRun            = "Reconciler-Run"
	HeaderListedModified = "Reconciler-Listed-Modified-On"
	HeaderSkipUnmodified = "Reconciler-Skip-Unmodified"
)

// Backfill results of one script.
const (
	ResultChanged   = "changed"
	ResultUnchanged = "unchanged"
	ResultFailed    = "failed"
)

// runIDRe is what a run id may be: one subject token.
var runIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateRunID checks a backfill run id.
func ValidateRunID(id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("run id %q must be 1-64 letters, digits, '-' or '_'", id)
	}
	return nil
}

// ParseBackfillSubject splits <prefix>.<run>.<account>.<namespace>.<script>.
func ParseBackfillSubject(subject, prefix string) (run, key string, ok bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", "", false
	}
	run, key, ok = strings.Cut(rest, ".")
	return run, key, ok && strings.Count(key, ".") == 2
}

// BackfillResult is the outcome of one script of a backfill run, stored
// in the results stream under <results prefix>.<run>.<account>.<namespace>.<script>.
type BackfillResult struct {
	Run     string       `json:"run"`
	Script  string       `json:"script"` // account.namespace.script
	Outcome string       `json:"outcome"`
	Reason  event.Reason `json:"reason,omitempty"`
	Error   string       `json:"error,omitempty"`
	At      time.Time    `json:"at"`
}

// BackfillRun is what a backfill run covers, stored in the runs bucket
// under its id so that a resumed run knows itself.
type BackfillRun struct {
	ID             string    `json:"id"`
	Source         string    `json:"source"`
	Total          int       `json:"total"` // scripts, once every item is enqueued (0 before)
	SkipUnmodified bool      `json:"skip_unmodified,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// FinishedAt is set when every script of the run has a result.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// InputDigest identifies the run's input (a digest of the events
	// file, or of the namespace, tags and patch): a run id reused with
	// another input is refused.
	InputDigest string `json:"input_digest,omitempty"`
	// CancelledAt is set by `backfill cancel`: the run's queued items were
	// dropped and it takes no more.
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
}

// ActiveRuns counts the runs that are not finished and still have work
// items waiting in the backfill stream.
func ActiveRuns(ctx context.Context, res *Resources) (int, error) {
	lister, err := res.Runs.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for id := range lister.Keys() {
		e, err := res.Runs.Get(ctx, id)
		if err != nil {
			continue
		}
		var run BackfillRun
		if json.Unmarshal(e.Value(), &run) != nil || run.FinishedAt != nil || run.CancelledAt != nil {
			continue
		}
		info, err := res.Backfill.Info(ctx, jetstream.WithSubjectFilter(res.Names.BackfillPrefix+"."+id+".>"))
		if err == nil && info.State.Msgs > 0 {
			n++
		}
	}
	return n, nil
}
