package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// StatusAPI is what `reconciler status` needs of the API: the live
// settings, and the deployments when the API has them (a gradual
// deployment holds writes).
type StatusAPI interface {
	GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
}

// DeploymentLister lists a script's deployments (cfapi.Client has it).
type DeploymentLister interface {
	ListDeployments(ctx context.Context, ref cfapi.ScriptRef) ([]cfapi.ScriptDeployment, error)
}

// StatusOptions tune ScriptStatusOf.
type StatusOptions struct {
	// NoLive skips the read of the live bindings (and so the plan).
	NoLive bool
	// History and DeadLetters bound the entries shown (0: 20 each).
	History     int
	DeadLetters int
	// MaxPending bounds the unsettled events listed (0: 50).
	MaxPending int
}

// ScriptStatus is everything the reconciler knows about one script. It
// never holds a secret value: desired and live bindings are redacted (see
// wire.Binding.Redacted) and the plan is rendered redacted.
type ScriptStatus struct {
	Script      string               `json:"script"` // account.namespace.script
	Desired     *DesiredView         `json:"desired"`
	Applied     *AppliedView         `json:"applied"`
	Live        *LiveView            `json:"live"`
	Plan        *planner.Plan        `json:"plan,omitempty"`
	PlanError   string               `json:"plan_error,omitempty"`
	Pending     PendingView          `json:"pending"`
	Held        []Hold               `json:"held"`
	DeadLetters []DLQEntry           `json:"dead_letters"`
	History     []state.HistoryEntry `json:"history"`
	// Notes are what could not be read (a missing stream, a failed read).
	Notes []string `json:"notes,omitempty"`
}

// DesiredView is a script's desired state, redacted.
type DesiredView struct {
	Revision  uint64         `json:"revision"`
	Strategy  string         `json:"strategy,omitempty"`
	Exclusive bool           `json:"exclusive"` // a replace was folded
	Bindings  []wire.Binding `json:"bindings"`
	Remove    []string       `json:"remove,omitempty"`
	// Quarantined are operations the API refused: kept, never applied.
	Quarantined []QuarantinedOp `json:"quarantined,omitempty"`
}

// QuarantinedOp is one quarantined operation.
type QuarantinedOp struct {
	Name    string       `json:"name"`
	EventID string       `json:"event_id"`
	Reason  event.Reason `json:"reason"`
	Error   string       `json:"error"`
}

// AppliedView is the last-applied record: names and types, never values
// nor their fingerprints.
type AppliedView struct {
	Revision        uint64            `json:"revision"` // of the record (0: none)
	DesiredRevision uint64            `json:"desired_revision"`
	Strategy        string            `json:"strategy,omitempty"`
	AppliedAt       *time.Time        `json:"applied_at,omitempty"`
	Bindings        map[string]string `json:"bindings"` // name → type
	Removed         []string          `json:"removed,omitempty"`
	Pending         []string          `json:"write_under_way,omitempty"`
	ModifiedOn      string            `json:"modified_on,omitempty"`
}

// LiveView is the live bindings, redacted, or why they were not read.
type LiveView struct {
	Read     bool           `json:"read"`
	Bindings []wire.Binding `json:"bindings,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// PendingView is the script's events that are not settled yet.
type PendingView struct {
	// InStream counts the script's events kept in the event stream.
	InStream uint64 `json:"in_stream"`
	// AckFloor is the live consumer's acknowledgement floor: every event
	// at or below it is settled.
	AckFloor uint64 `json:"ack_floor"`
	// Applied reports that the newest desired state is applied.
	Applied bool `json:"applied"`
	// Events are the script's events above the floor that are not folded
	// yet, or folded into a desired state not applied yet, oldest first (at
	// most MaxPending); events above the floor whose fold is applied are
	// settled or about to be, and not listed.
	Events []PendingEvent `json:"events,omitempty"`
	// More counts unsettled events not listed.
	More int `json:"more,omitempty"`
}

// PendingEvent is one event that is not settled yet.
type PendingEvent struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Op       string    `json:"op,omitempty"`
	StoredAt time.Time `json:"stored_at"`
	// State is PendingNotFolded, PendingFolded or PendingInvalid.
	State string `json:"state"`
}

// States of a pending event.
const (
	PendingNotFolded = "not_folded" // not taken by a runner yet (or its fold is lost to a crash)
	PendingFolded    = "folded"     // in the desired state, waiting for a reconcile
	PendingInvalid   = "invalid"    // bad input, about to be dead-lettered
)

// Hold is one reason the script is not written now.
type Hold struct {
	Kind   string `json:"kind"` // see the Hold* constants
	Detail string `json:"detail"`
}

// Kinds of Hold.
const (
	HoldLease       = "lease"       // another process holds the script's write lease
	HoldGradual     = "gradual"     // a gradual deployment splits traffic: writes wait
	HoldBackfill    = "backfill"    // a backfill item for the script is queued
	HoldQuarantined = "quarantined" // operations the API refused are not applied
	HoldNotApplied  = "not_applied" // the desired state is newer than the last write
)

// ScriptStatusOf gathers the status of script ref: desired state,
// last-applied record, live bindings (one API read unless NoLive), the
// three-way plan, the events not yet settled, why it is held, its dead
// letters and its history. It writes nothing. A part that cannot be read
// is noted and the rest is still shown; the error is for a script that
// cannot be named.
func ScriptStatusOf(ctx context.Context, res *state.Resources, api StatusAPI, p *planner.Planner, ref cfapi.ScriptRef, opts StatusOptions) (*ScriptStatus, error) {
	if err := ref.Validate(); err != nil {
		return nil, err
	}
	if opts.History <= 0 {
		opts.History = 20
	}
	if opts.DeadLetters <= 0 {
		opts.DeadLetters = 20
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 50
	}
	names := res.Names.WithDefaults()
	key := event.ScriptKey(ref)
	st := &ScriptStatus{Script: key, Held: []Hold{}, DeadLetters: []DLQEntry{}, History: []state.HistoryEntry{}}
	note := func(format string, args ...any) { st.Notes = append(st.Notes, fmt.Sprintf(format, args...)) }

	store := res.NewStore(state.StoreOptions{})
	ds, drev, err := store.LoadDesired(ctx, key)
	switch {
	case errors.Is(err, state.ErrNotFound):
		ds = nil
	case err != nil:
		note("desired state: %v", err)
		ds = nil
	}
	rec, recRev, err := store.LoadApplied(ctx, key)
	if err != nil {
		note("last-applied record: %v", err)
		rec, recRev = &state.AppliedRecord{Bindings: map[string]planner.Applied{}}, 0
	}
	st.Applied = appliedView(rec, recRev)
	var desired planner.Desired
	var hidden []string
	if ds != nil {
		desired, hidden = ds.PlannerInput(rec.Removed)
		st.Desired = desiredView(ds, drev, desired)
	}
	notApplied := ds != nil && rec.DesiredRevision < drev

	st.Live = &LiveView{}
	if opts.NoLive {
		st.Live.Error = "not read (--no-live)"
	} else if settings, err := api.GetSettings(ctx, ref); err != nil {
		st.Live.Error = err.Error()
	} else {
		st.Live.Read = true
		st.Live.Bindings = redactedAll(settings.Bindings)
		if ds != nil {
			last := rec.LastApplied()
			for _, n := range hidden {
				delete(last.Bindings, n)
			}
			if st.Plan, err = p.Plan(desired, settings.Bindings, last); err != nil {
				st.PlanError = err.Error()
			}
		}
	}

	st.Pending = pendingOf(ctx, res, names, ref, ds, !notApplied, opts.MaxPending, note)
	st.Held = holdsOf(ctx, res, names, api, ref, key, st, notApplied, opts.NoLive, rec, drev, note)

	if dl, err := ListDeadLetters(ctx, res.JS, names.DLQStream, names.DLQPrefix+"."+key, 0); err != nil {
		note("dead letters: %v", err)
	} else {
		if len(dl) > opts.DeadLetters {
			dl = dl[len(dl)-opts.DeadLetters:]
		}
		st.DeadLetters = append(st.DeadLetters, dl...)
	}
	if h, err := res.ReadHistory(ctx, key, opts.History); err != nil {
		note("history: %v", err)
	} else {
		st.History = append(st.History, h...)
	}
	return st, nil
}

func redactedAll(bs []wire.Binding) []wire.Binding {
	out := make([]wire.Binding, len(bs))
	for i, b := range bs {
		out[i] = b.Redacted()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func desiredView(ds *event.DesiredState, rev uint64, d planner.Desired) *DesiredView {
	v := &DesiredView{Revision: rev, Strategy: string(d.Strategy), Exclusive: d.Exclusive,
		Bindings: redactedAll(d.Bindings), Remove: slices.Clone(d.Remove)}
	sort.Strings(v.Remove)
	for name, op := range ds.Names {
		if op.Q != nil {
			v.Quarantined = append(v.Quarantined, QuarantinedOp{Name: name, EventID: op.Stamp.ID, Reason: op.Q.Reason,
				Error: cfapi.Truncate(op.Q.Error, 512)})
		}
	}
	sort.Slice(v.Quarantined, func(i, j int) bool { return v.Quarantined[i].Name < v.Quarantined[j].Name })
	return v
}

func appliedView(rec *state.AppliedRecord, rev uint64) *AppliedView {
	v := &AppliedView{Revision: rev, DesiredRevision: rec.DesiredRevision, Strategy: rec.Strategy,
		Bindings: map[string]string{}, ModifiedOn: rec.ModifiedOn}
	if !rec.AppliedAt.IsZero() {
		at := rec.AppliedAt
		v.AppliedAt = &at
	}
	for n, a := range rec.Bindings {
		v.Bindings[n] = a.Type
	}
	for n := range rec.Removed {
		v.Removed = append(v.Removed, n)
	}
	for n := range rec.Pending {
		v.Pending = append(v.Pending, n)
	}
	sort.Strings(v.Removed)
	sort.Strings(v.Pending)
	return v
}

// pendingOf reads the script's events above the live consumer's
// acknowledgement floor and tells each one's state by folding it into a
// copy of the desired state ds (nil: none): one that changes it is not
// folded yet; one that does not is folded, and settled once the desired
// state is applied.
func pendingOf(ctx context.Context, res *state.Resources, names state.Names, ref cfapi.ScriptRef, ds *event.DesiredState, applied bool, max int, note func(string, ...any)) PendingView {
	pv := PendingView{Applied: applied}
	subject := event.Subject(names.SubjectPrefix, ref)
	info, err := res.Stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		note("event stream: %v", err)
		return pv
	}
	pv.InStream = info.State.Subjects[subject]
	ci, err := res.Consumer.Info(ctx)
	if err != nil {
		note("live consumer: %v", err)
		return pv
	}
	pv.AckFloor = ci.AckFloor.Stream
	if pv.InStream == 0 || info.State.LastSeq <= pv.AckFloor {
		return pv
	}
	cons, err := res.Stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: pv.AckFloor + 1})
	if err != nil {
		note("reading pending events: %v", err)
		return pv
	}
	if ds == nil {
		ds = event.NewDesiredState(ref)
	}
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			note("reading pending events: %v", err)
			return pv
		}
		got, last := 0, false
		for m := range batch.Messages() {
			got++
			meta, _ := m.Metadata()
			if meta != nil && meta.NumPending == 0 {
				last = true
			}
			pe := PendingEvent{State: PendingFolded}
			if meta != nil {
				pe.Seq, pe.StoredAt = meta.Sequence.Stream, meta.Timestamp.UTC()
			}
			ev, err := event.DecodeEvent(m.Data(), m.Subject(), names.SubjectPrefix)
			if err != nil {
				pe.State = PendingInvalid
				var probe struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(m.Data(), &probe)
				pe.ID = cfapi.Truncate(probe.ID, 256)
			} else {
				pe.ID, pe.Op = ev.ID, string(ev.Op)
				if meta != nil {
					ev.StoredAt = meta.Timestamp.UnixNano()
				}
				if ds.Clone().Fold(ev).Changed() {
					pe.State = PendingNotFolded
				} else if applied {
					continue // folded and applied: settled or about to be
				}
			}
			if len(pv.Events) >= max {
				pv.More++
				continue
			}
			pv.Events = append(pv.Events, pe)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			note("reading pending events: %v", err)
			return pv
		}
		if got == 0 || last {
			return pv
		}
	}
}

// holdsOf says why the script is not written now.
func holdsOf(ctx context.Context, res *state.Resources, names state.Names, api StatusAPI, ref cfapi.ScriptRef, key string,
	st *ScriptStatus, notApplied, noLive bool, rec *state.AppliedRecord, drev uint64, note func(string, ...any)) []Hold {
	holds := []Hold{}
	if e, err := res.Leases.Get(ctx, key); err == nil {
		holds = append(holds, Hold{Kind: HoldLease, Detail: fmt.Sprintf("write lease held by %s (a reconcile is under way)", cfapi.Truncate(string(e.Value()), 128))})
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		note("lease: %v", err)
	}
	if info, err := res.Backfill.Info(ctx, jetstream.WithSubjectFilter(names.BackfillPrefix+".*."+key)); err == nil {
		var runs []string
		for subj := range info.State.Subjects {
			if run, _, ok := state.ParseBackfillSubject(subj, names.BackfillPrefix); ok {
				runs = append(runs, run)
			}
		}
		sort.Strings(runs)
		for _, run := range runs {
			holds = append(holds, Hold{Kind: HoldBackfill, Detail: "queued in backfill run " + run})
		}
	} else {
		note("backfill stream: %v", err)
	}
	if st.Desired != nil {
		for _, q := range st.Desired.Quarantined {
			holds = append(holds, Hold{Kind: HoldQuarantined, Detail: fmt.Sprintf("%s (event %s): %s: %s", q.Name, q.EventID, q.Reason, q.Error)})
		}
	}
	if !notApplied {
		return holds
	}
	holds = append(holds, Hold{Kind: HoldNotApplied, Detail: fmt.Sprintf("desired revision %d, last write planned from %d", drev, rec.DesiredRevision)})
	if dl, ok := api.(DeploymentLister); ok && !noLive && ref.Namespace == "" {
		ds, err := dl.ListDeployments(ctx, ref)
		if err != nil {
			note("deployments: %v", err)
		} else if len(ds) > 0 && len(ds[0].Versions) > 1 {
			shares := make([]string, 0, len(ds[0].Versions))
			for _, v := range ds[0].Versions {
				shares = append(shares, fmt.Sprintf("%s %g%%", v.VersionID, v.Percentage))
			}
			holds = append(holds, Hold{Kind: HoldGradual, Detail: fmt.Sprintf("deployment %s splits traffic (%s): writes wait until it is finished", ds[0].ID, strings.Join(shares, ", "))})
		}
	}
	return holds
}

// WriteStatus renders st for people.
func WriteStatus(w io.Writer, st *ScriptStatus) error {
	var b strings.Builder
	fmt.Fprintf(&b, "script %s\n", st.Script)
	if st.Desired == nil {
		b.WriteString("\ndesired: nothing (no event about this script was folded)\n")
	} else {
		d := st.Desired
		mode := "patch (bindings not named are left alone)"
		if d.Exclusive {
			mode = "replace (owned bindings not named are removed)"
		}
		fmt.Fprintf(&b, "\ndesired (revision %d, %s):\n", d.Revision, mode)
		for _, bd := range d.Bindings {
			fmt.Fprintf(&b, "  %s %s\n", bd.Type(), bindingText(bd))
		}
		for _, n := range d.Remove {
			fmt.Fprintf(&b, "  remove %s\n", n)
		}
		for _, q := range d.Quarantined {
			fmt.Fprintf(&b, "  quarantined %s (event %s): %s\n", q.Name, q.EventID, q.Reason)
		}
	}
	a := st.Applied
	if a.Revision == 0 {
		b.WriteString("\nlast applied: never\n")
	} else {
		at := "-"
		if a.AppliedAt != nil {
			at = a.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "\nlast applied: %s via %s, from desired revision %d\n", at, orDash(a.Strategy), a.DesiredRevision)
		for _, n := range sortedKeys(a.Bindings) {
			fmt.Fprintf(&b, "  %s %s\n", a.Bindings[n], n)
		}
		if len(a.Removed) > 0 {
			fmt.Fprintf(&b, "  removed (carried out): %s\n", strings.Join(a.Removed, ", "))
		}
		if len(a.Pending) > 0 {
			fmt.Fprintf(&b, "  write under way: %s\n", strings.Join(a.Pending, ", "))
		}
	}
	if !st.Live.Read {
		fmt.Fprintf(&b, "\nlive: %s\n", st.Live.Error)
	} else {
		fmt.Fprintf(&b, "\nlive (%d bindings):\n", len(st.Live.Bindings))
		for _, bd := range st.Live.Bindings {
			fmt.Fprintf(&b, "  %s %s\n", bd.Type(), bindingText(bd))
		}
	}
	switch {
	case st.Plan != nil:
		b.WriteString("\nplan (desired vs live vs last applied):\n")
		for _, line := range strings.Split(strings.TrimRight(st.Plan.String(), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	case st.PlanError != "":
		fmt.Fprintf(&b, "\nplan: %s\n", st.PlanError)
	}
	pv := st.Pending
	switch {
	case len(pv.Events) > 0:
		fmt.Fprintf(&b, "\nnot settled (%d events above the consumer's ack floor %d):\n", len(pv.Events)+pv.More, pv.AckFloor)
		for _, e := range pv.Events {
			fmt.Fprintf(&b, "  #%d %s %s %s, stored %s\n", e.Seq, e.ID, e.Op, e.State, e.StoredAt.Format(time.RFC3339))
		}
		if pv.More > 0 {
			fmt.Fprintf(&b, "  … and %d more\n", pv.More)
		}
	case pv.Applied:
		fmt.Fprintf(&b, "\nnot settled: none (desired state applied; %d events kept in the stream)\n", pv.InStream)
	default:
		fmt.Fprintf(&b, "\nnot settled: no event (%d kept in the stream); the desired state waits for a reconcile\n", pv.InStream)
	}
	if len(st.Held) == 0 {
		b.WriteString("\nheld: no\n")
	} else {
		b.WriteString("\nheld:\n")
		for _, h := range st.Held {
			fmt.Fprintf(&b, "  %s: %s\n", h.Kind, h.Detail)
		}
	}
	if len(st.DeadLetters) == 0 {
		b.WriteString("\ndead letters: none\n")
	} else {
		fmt.Fprintf(&b, "\ndead letters (%d, `reconciler dlq replay --seq N`):\n", len(st.DeadLetters))
		for _, e := range st.DeadLetters {
			fmt.Fprintf(&b, "  #%d %s %s %s: %s\n", e.Seq, e.Record.FailedAt.Format(time.RFC3339), orDash(e.Record.EventID), e.Record.Reason,
				cfapi.Truncate(e.Record.Error, 200))
		}
	}
	if len(st.History) == 0 {
		b.WriteString("\nhistory: no writes recorded\n")
	} else {
		fmt.Fprintf(&b, "\nhistory (newest last):\n")
		for _, h := range st.History {
			fmt.Fprintf(&b, "  %s %s %s", h.At.Format(time.RFC3339), h.Strategy, changesText(h.Changes))
			if len(h.EventIDs) > 0 {
				fmt.Fprintf(&b, " events %s", strings.Join(h.EventIDs, ","))
			}
			if len(h.Runs) > 0 {
				fmt.Fprintf(&b, " backfill %s", strings.Join(h.Runs, ","))
			}
			if h.VersionID != "" {
				fmt.Fprintf(&b, " version %s", h.VersionID)
			}
			b.WriteString("\n")
		}
	}
	for _, n := range st.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// changesText is "add A, update B, rename C (from D)".
func changesText(cs []state.Change) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, ", ")
}

// bindingText is a redacted binding's name and JSON.
func bindingText(b wire.Binding) string {
	data, err := state.EncodeState(b)
	if err != nil {
		return b.Name()
	}
	return b.Name() + " " + string(data)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
