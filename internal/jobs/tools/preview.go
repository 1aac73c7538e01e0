package tools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// SettingsReader is what a preview needs of the API: reads only.
type SettingsReader interface {
	GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
}

// Preview is the plan for one script.
type Preview struct {
	Ref      cfapi.ScriptRef
	EventIDs []string
	Plan     *planner.Plan
	Err      error
}

// BaseState returns the state a preview starts from for a script key.
type BaseState func(ctx context.Context, key string) (*event.DesiredState, *state.AppliedRecord, error)

// FreshState is the BaseState of a reconciler that has applied nothing.
func FreshState(_ context.Context, key string) (*event.DesiredState, *state.AppliedRecord, error) {
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return nil, nil, err
	}
	return event.NewDesiredState(ref), &state.AppliedRecord{Version: 1}, nil
}

// StoredState reads the desired and last-applied state from the KV buckets
// of a running pipeline; it never writes.
func StoredState(ctx context.Context, js jetstream.JetStream, names state.Names) (BaseState, error) {
	names = names.WithDefaults()
	desired, err := js.KeyValue(ctx, names.DesiredBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", names.DesiredBucket, err)
	}
	applied, err := js.KeyValue(ctx, names.AppliedBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", names.AppliedBucket, err)
	}
	st := state.NewStore(js, desired, applied, nil, state.StoreOptions{})
	return func(ctx context.Context, key string) (*event.DesiredState, *state.AppliedRecord, error) {
		d, _, err := st.LoadDesired(ctx, key)
		if d != nil {
			d = d.Clone() // the preview folds events into it
		}
		if errors.Is(err, state.ErrNotFound) {
			ref, perr := event.ParseScriptKey(key)
			if perr != nil {
				return nil, nil, perr
			}
			d, err = event.NewDesiredState(ref), nil
		}
		if err != nil {
			return nil, nil, err
		}
		rec, _, err := st.LoadApplied(ctx, key)
		return d, rec, err
	}, nil
}

// ReadEvents decodes JSON-lines events (blank lines and # comments
// skipped); an invalid line, or one longer than an event may be, is an
// error naming it.
func ReadEvents(r io.Reader, prefix string) ([]*event.Event, error) {
	lr := NewLineReader(r, event.MaxEventBytes, "an event")
	var out []*event.Event
	for {
		raw, line, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err // names the line
		}
		data := bytes.TrimSpace(raw)
		if len(data) == 0 || data[0] == '#' {
			continue
		}
		ev, err := event.DecodeEvent(bytes.Clone(data), "", prefix) // the reader reuses its buffer
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, ev)
	}
}

// PreviewEvents folds the events of each script, in order, onto its base
// state, reads the live bindings and plans. It writes nothing anywhere.
// Scripts come out in the order of their first event.
func PreviewEvents(ctx context.Context, api SettingsReader, p *planner.Planner, events []*event.Event, base BaseState) []Preview {
	var order []string
	byKey := map[string][]*event.Event{}
	for _, e := range events {
		k := e.Key()
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], e)
	}
	out := make([]Preview, 0, len(order))
	for _, key := range order {
		evs := byKey[key]
		pv := Preview{Ref: evs[0].Ref()}
		for _, e := range evs {
			pv.EventIDs = append(pv.EventIDs, e.ID)
		}
		state, rec, err := base(ctx, key)
		if err != nil {
			pv.Err = err
			out = append(out, pv)
			continue
		}
		for _, e := range evs {
			state.Fold(e)
		}
		settings, err := api.GetSettings(ctx, pv.Ref)
		if err != nil {
			pv.Err = err
			out = append(out, pv)
			continue
		}
		pv.Plan, pv.Err = p.Plan(state.Desired(), settings.Bindings, rec.LastApplied())
		out = append(out, pv)
	}
	return out
}
