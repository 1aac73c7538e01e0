package reconcile

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// BenchmarkReconcileCPU measures the CPU of one reconcile without its
// network round trips: decoding the stored desired state and last-applied
// record and the API's settings answer, planning, building the new record
// and the PATCH body, and encoding the record. The script has ten bindings
// (a secret among them) and one changes.
func BenchmarkReconcileCPU(b *testing.B) {
	ref := cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-0001"}
	st := event.NewDesiredState(ref)
	var live []string
	for i := 0; i < 9; i++ {
		bnd := fmt.Sprintf(`{"type":"kv_namespace","name":"KV%d","namespace_id":"%032d"}`, i, i)
		st.Fold(&event.Event{ID: fmt.Sprintf("e%d", i), Generation: u64(uint64(i + 1)), Op: event.OpPatch, Upsert: []wire.Binding{wire.MustParseBinding(bnd)}})
		live = append(live, bnd)
	}
	st.Fold(&event.Event{ID: "s", Generation: u64(20), Op: event.OpPatch, Upsert: []wire.Binding{wire.MustParseBinding(`{"type":"secret_text","name":"TOKEN","text":"s3cr3t"}`)}})
	live = append(live, `{"type":"secret_text","name":"TOKEN"}`, `{"type":"plain_text","name":"THEIRS","text":"x"}`)
	p, _ := planner.New(planner.Options{FingerprintKey: []byte("bench-key")})
	first, err := p.Plan(st.Desired(), nil, planner.LastApplied{})
	if err != nil {
		b.Fatal(err)
	}
	rec := &state.AppliedRecord{Version: 1, Bindings: first.Applied.Bindings, DesiredRevision: 7}
	st.Fold(&event.Event{ID: "new", Generation: u64(30), Op: event.OpPatch, Upsert: []wire.Binding{kvBinding("KV0", "changed")}})
	stored, _ := state.EncodeState(st)
	recData, _ := state.EncodeState(rec)
	settingsJSON := []byte(`{"bindings":[` + strings.Join(live, ",") + `],"compatibility_date":"2025-01-01","usage_model":"standard","tags":["a"]}`)
	cached, _ := state.DecodeDesired("k", stored)
	for _, variant := range []string{"decoded", "cached"} {
		b.Run(variant, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				reconcileCPU(b, p, cached, stored, recData, settingsJSON, variant == "cached")
			}
		})
	}
}

// reconcileCPU is one reconcile's CPU for BenchmarkReconcileCPU: with
// cached, the desired state decoded by the fold is reused (the usual case
// when the fold happened in this process).
func reconcileCPU(b *testing.B, p *planner.Planner, cached *event.DesiredState, stored, recData, settingsJSON []byte, useCache bool) {
	{
		ds := cached
		if !useCache {
			var err error
			if ds, err = state.DecodeDesired("k", stored); err != nil {
				b.Fatal(err)
			}
		}
		var r state.AppliedRecord
		if err := json.Unmarshal(recData, &r); err != nil {
			b.Fatal(err)
		}
		var settings cfapi.Settings
		if err := json.Unmarshal(settingsJSON, &settings); err != nil {
			b.Fatal(err)
		}
		desired, hidden := ds.PlannerInput(r.Removed)
		plan, err := p.Plan(desired, settings.Bindings, withoutNames(r.LastApplied(), hidden))
		if err != nil || plan.NoOp() {
			b.Fatalf("plan: %v (no-op %v)", err, plan.NoOp())
		}
		next := &state.AppliedRecord{Version: 1, Bindings: plan.Applied.Bindings, DesiredRevision: 8,
			Removed: ds.Tombstones(), WrittenBy: writtenBy(&r, ds, plan)}
		if _, err := (cfapi.SettingsPatch{Bindings: plan.Request.Bindings}).JSON(); err != nil {
			b.Fatal(err)
		}
		if _, err := state.EncodeState(next); err != nil {
			b.Fatal(err)
		}
	}
}

func u64(v uint64) *uint64 { return &v }

func kvBinding(name, id string) wire.Binding {
	return wire.MustParseBinding(fmt.Sprintf(`{"type":"kv_namespace","name":%q,"namespace_id":%q}`, name, id))
}
