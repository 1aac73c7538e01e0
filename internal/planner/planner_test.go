package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Every secret value in these tests contains secretMarker, so a leak into
// any rendered output is easy to find.
const secretMarker = "s3cr3t"

func mb(s string) wire.Binding { return wire.MustParseBinding(s) }

func mbs(ss ...string) []wire.Binding {
	out := make([]wire.Binding, len(ss))
	for i, s := range ss {
		out[i] = mb(s)
	}
	return out
}

func secretText(name, value string) string {
	return fmt.Sprintf(`{"type":"secret_text","name":%q,"text":%q}`, name, secretMarker+"-"+value)
}

func secretKey(name, value string) string {
	return fmt.Sprintf(`{"type":"secret_key","name":%q,"algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"raw","usages":["sign"],"key_base64":%q}`,
		name, secretMarker+value)
}

func liveSecret(name string) string { return fmt.Sprintf(`{"type":"secret_text","name":%q}`, name) }

func liveSecretKey(name string) string {
	return fmt.Sprintf(`{"type":"secret_key","name":%q,"algorithm":{"name":"HMAC","hash":"SHA-256"},"format":"raw","usages":["sign"]}`, name)
}

func testPlanner(t testing.TB) *Planner {
	t.Helper()
	p, err := New(Options{FingerprintKey: []byte("test fingerprint key")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// record returns the last-applied record of bindings the reconciler wrote.
func record(p *Planner, applied ...string) LastApplied {
	l := LastApplied{Bindings: map[string]Applied{}}
	for _, s := range applied {
		b := mb(s)
		l.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
	}
	return l
}

func raws(bs []wire.Binding) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b.Raw())
	}
	return out
}

// checkNoSecret fails when any output meant for people or logs holds a
// secret value.
func checkNoSecret(t *testing.T, pl *Plan) {
	t.Helper()
	js, err := json.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	reqJS, err := json.Marshal(pl.Request)
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"Render": pl.String(), "MarshalJSON": string(js), "Request.MarshalJSON": string(reqJS),
		"Request.String": pl.Request.String(), "%v": fmt.Sprintf("%v", *pl), "%+v": fmt.Sprintf("%+v", pl.Actions),
	}
	for _, a := range pl.Detailed() {
		outs["Action "+a.Name] = a.String() + string(a.Before) + string(a.After)
	}
	for what, out := range outs {
		if strings.Contains(out, secretMarker) {
			t.Errorf("%s leaks a secret value:\n%s", what, out)
		}
	}
}

var ignoreUnexported = cmpopts.IgnoreUnexported(Action{})

func TestPlan(t *testing.T) {
	const (
		kvA     = `{"type":"kv_namespace","name":"KV","namespace_id":"aaaa"}`
		kvB     = `{"type":"kv_namespace","name":"KV","namespace_id":"bbbb"}`
		varOld  = `{"type":"plain_text","name":"VERSION","text":"1"}`
		varNew  = `{"type":"plain_text","name":"VERSION","text":"2"}`
		theirDB = `{"type":"d1","name":"THEIR_DB","database_id":"c0ffee"}`
		ourQ    = `{"type":"queue","name":"JOBS","queue_name":"jobs"}`
		bucket  = `{"type":"r2_bucket","name":"OLD","bucket_name":"old"}`
		wasm    = `{"type":"wasm_module","name":"WASM","part":"module.wasm"}`
	)
	tests := []struct {
		name      string
		desired   []string
		remove    []string
		exclusive bool
		strategy  Strategy
		live      []string
		owned     []string           // bindings the reconciler applied before
		records   map[string]Applied // further records, written by hand
		want      []Action
		strat     Strategy
		req       []string // Request.Bindings
		keep      []string // Request.KeepBindings
		parts     []string
		applied   []string // names in Plan.Applied
	}{
		// Normalization: each of these is already live, so nothing is written.
		{
			name:    "d1 id is database_id",
			desired: []string{`{"type":"d1","name":"DB","id":"4e1c"}`},
			live:    []string{`{"type":"d1","name":"DB","database_id":"4e1c"}`},
			want:    []Action{{Kind: ActionKeep, Name: "DB", Type: "d1"}},
			applied: []string{"DB"},
		},
		{
			name:    "json compared as a value",
			desired: []string{`{"type":"json","name":"CONF","json":{"b":[1, 2],"a":{"y":true,"x":null}}}`},
			live:    []string{`{"json":{"a":{"x":null,"y":true},"b":[1,2]},"name":"CONF","type":"json"}`},
			owned:   []string{`{"type":"json","name":"CONF","json":{"a":{"x":null,"y":true},"b":[1,2]}}`},
			want:    []Action{{Kind: ActionKeep, Name: "CONF", Type: "json"}},
			applied: []string{"CONF"},
		},
		{
			name:    "service environment defaults to production",
			desired: []string{`{"type":"service","name":"AUTH","service":"auth"}`},
			live:    []string{`{"type":"service","name":"AUTH","service":"auth","environment":"production"}`},
			want:    []Action{{Kind: ActionKeep, Name: "AUTH", Type: "service"}},
			applied: []string{"AUTH"},
		},
		{
			name:    "service environment production desired, absent live",
			desired: []string{`{"type":"service","name":"AUTH","service":"auth","environment":"production"}`},
			live:    []string{`{"type":"service","name":"AUTH","service":"auth"}`},
			want:    []Action{{Kind: ActionKeep, Name: "AUTH", Type: "service"}},
			applied: []string{"AUTH"},
		},
		{
			name:    "ai_search namespace defaults to default",
			desired: []string{`{"type":"ai_search","name":"SEARCH","instance_name":"docs"}`},
			live:    []string{`{"type":"ai_search","name":"SEARCH","instance_name":"docs","namespace":"default"}`},
			want:    []Action{{Kind: ActionKeep, Name: "SEARCH", Type: "ai_search"}},
			applied: []string{"SEARCH"},
		},
		{
			name: "r2 jurisdiction empty is absent",
			desired: []string{`{"type":"r2_bucket","name":"B1","bucket_name":"b1","jurisdiction":""}`,
				`{"type":"r2_bucket","name":"B2","bucket_name":"b2"}`},
			live: []string{`{"type":"r2_bucket","name":"B1","bucket_name":"b1"}`,
				`{"type":"r2_bucket","name":"B2","bucket_name":"b2","jurisdiction":""}`},
			want: []Action{{Kind: ActionKeep, Name: "B1", Type: "r2_bucket"},
				{Kind: ActionKeep, Name: "B2", Type: "r2_bucket"}},
			applied: []string{"B1", "B2"},
		},
		{
			name: "durable object namespace_id and class_name are server-filled",
			desired: []string{`{"type":"durable_object_namespace","name":"COUNTER","class_name":"Counter"}`,
				`{"type":"durable_object_namespace","name":"ROOMS","namespace_id":"5eb6"}`},
			live: []string{`{"type":"durable_object_namespace","name":"COUNTER","class_name":"Counter","namespace_id":"9a7b"}`,
				`{"type":"durable_object_namespace","name":"ROOMS","class_name":"Room","namespace_id":"5eb6"}`},
			want: []Action{{Kind: ActionKeep, Name: "COUNTER", Type: "durable_object_namespace"},
				{Kind: ActionKeep, Name: "ROOMS", Type: "durable_object_namespace"}},
			applied: []string{"COUNTER", "ROOMS"},
		},
		{
			name:    "order of bindings is irrelevant",
			desired: []string{kvA, varNew, ourQ},
			live:    []string{ourQ, varNew, kvA},
			owned:   []string{varNew, kvA, ourQ},
			want: []Action{{Kind: ActionKeep, Name: "JOBS", Type: "queue"},
				{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"},
				{Kind: ActionKeep, Name: "VERSION", Type: "plain_text"}},
			applied: []string{"JOBS", "KV", "VERSION"},
		},
		{
			name:    "unknown type compared as canonical JSON",
			desired: []string{`{"type":"stream","name":"VIDEO","opts":{"z":1,"a":[true,null]},"n":1.50}`},
			live:    []string{`{"n":1.50,"opts":{"a":[true,null],"z":1},"type":"stream","name":"VIDEO"}`},
			want:    []Action{{Kind: ActionKeep, Name: "VIDEO", Type: "stream"}},
			applied: []string{"VIDEO"},
		},
		{
			name:    "unknown type with a changed field is updated",
			desired: []string{`{"type":"stream","name":"VIDEO","opts":{"z":2}}`},
			live:    []string{`{"type":"stream","name":"VIDEO","opts":{"z":1}}`},
			want:    []Action{{Kind: ActionUpdate, Name: "VIDEO", Type: "stream", Reason: ReasonValueChanged}},
			strat:   StrategySettings,
			req:     []string{`{"type":"stream","name":"VIDEO","opts":{"z":2}}`},
			applied: []string{"VIDEO"},
		},

		// Ownership.
		{
			name:      "unowned binding survives a replace",
			desired:   []string{kvA},
			exclusive: true,
			live:      []string{theirDB},
			want: []Action{{Kind: ActionAdd, Name: "KV", Type: "kv_namespace"},
				{Kind: ActionUnowned, Name: "THEIR_DB", Type: "d1", Reason: ReasonUnowned}},
			strat:   StrategySettings,
			req:     []string{kvA, `{"type":"d1","name":"THEIR_DB"}`},
			applied: []string{"KV"},
		},
		{
			name:      "owned binding no longer desired is removed by a replace",
			desired:   []string{kvA},
			exclusive: true,
			live:      []string{kvA, ourQ},
			owned:     []string{kvA, ourQ},
			want: []Action{{Kind: ActionRemove, Name: "JOBS", Type: "queue", Reason: ReasonNotDesired},
				{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"}},
			strat:   StrategySettings,
			req:     []string{`{"type":"kv_namespace","name":"KV"}`},
			applied: []string{"KV"},
		},
		{
			name:    "remove removes a binding someone else created",
			remove:  []string{"THEIR_DB"},
			live:    []string{theirDB, kvA},
			owned:   []string{kvA},
			want:    []Action{{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"}, {Kind: ActionRemove, Name: "THEIR_DB", Type: "d1", Reason: ReasonNamedRemove}},
			strat:   StrategySettings,
			req:     []string{`{"type":"kv_namespace","name":"KV"}`},
			applied: []string{"KV"},
		},
		{
			name:    "a patch leaves owned and unowned bindings it does not mention",
			desired: []string{varNew},
			live:    []string{varOld, kvA, theirDB},
			owned:   []string{varOld, kvA},
			want: []Action{{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"},
				{Kind: ActionUnowned, Name: "THEIR_DB", Type: "d1", Reason: ReasonUnowned},
				{Kind: ActionUpdate, Name: "VERSION", Type: "plain_text", Reason: ReasonValueChanged}},
			strat:   StrategySettings,
			req:     []string{`{"type":"kv_namespace","name":"KV"}`, `{"type":"d1","name":"THEIR_DB"}`, varNew},
			applied: []string{"KV", "VERSION"},
		},
		{
			name:      "a record of another type does not make a live binding owned",
			exclusive: true,
			live:      []string{`{"type":"queue","name":"KV","queue_name":"q"}`},
			owned:     []string{kvA},
			want:      []Action{{Kind: ActionUnowned, Name: "KV", Type: "queue", Reason: ReasonUnowned}},
		},
		{
			name:   "remove of a binding that is not live writes nothing",
			remove: []string{"GONE"},
			live:   []string{kvA},
			owned:  []string{kvA, `{"type":"queue","name":"GONE","queue_name":"q"}`},
			want:   []Action{{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"}},
			// GONE is dropped from the record.
			applied: []string{"KV"},
		},
		{
			name:    "owned binding deleted out of band is added again",
			desired: []string{kvA},
			owned:   []string{kvA},
			want:    []Action{{Kind: ActionAdd, Name: "KV", Type: "kv_namespace", Reason: ReasonMissing}},
			strat:   StrategySettings,
			req:     []string{kvA},
			applied: []string{"KV"},
		},
		{
			name:    "type change",
			desired: []string{kvA},
			live:    []string{`{"type":"r2_bucket","name":"KV","bucket_name":"b"}`},
			want:    []Action{{Kind: ActionUpdate, Name: "KV", Type: "kv_namespace", OldType: "r2_bucket", Reason: ReasonTypeChanged}},
			strat:   StrategySettings,
			req:     []string{kvA},
			applied: []string{"KV"},
		},

		// Secrets.
		{
			name:    "new secret is written with its text",
			desired: []string{secretText("API_KEY", "v1")},
			want:    []Action{{Kind: ActionAdd, Name: "API_KEY", Type: "secret_text", Sensitive: true}},
			strat:   StrategySettings,
			req:     []string{secretText("API_KEY", "v1")},
			applied: []string{"API_KEY"},
		},
		{
			name:    "unchanged secret is kept by {type,name}",
			desired: []string{secretText("API_KEY", "v1"), varNew},
			live:    []string{liveSecret("API_KEY"), varOld},
			owned:   []string{secretText("API_KEY", "v1"), varOld},
			want: []Action{{Kind: ActionKeep, Name: "API_KEY", Type: "secret_text", Sensitive: true},
				{Kind: ActionUpdate, Name: "VERSION", Type: "plain_text", Reason: ReasonValueChanged}},
			strat:   StrategySettings,
			req:     []string{`{"type":"secret_text","name":"API_KEY"}`, varNew},
			applied: []string{"API_KEY", "VERSION"},
		},
		{
			name:    "unchanged secret alone is a no-op",
			desired: []string{secretText("API_KEY", "v1"), secretKey("SIGNING", "k1")},
			live:    []string{liveSecret("API_KEY"), liveSecretKey("SIGNING")},
			owned:   []string{secretText("API_KEY", "v1"), secretKey("SIGNING", "k1")},
			want: []Action{{Kind: ActionKeep, Name: "API_KEY", Type: "secret_text", Sensitive: true},
				{Kind: ActionKeep, Name: "SIGNING", Type: "secret_key", Sensitive: true}},
			applied: []string{"API_KEY", "SIGNING"},
		},
		{
			name:    "changed secret is rewritten",
			desired: []string{secretText("API_KEY", "v2"), secretKey("SIGNING", "k2")},
			live:    []string{liveSecret("API_KEY"), liveSecretKey("SIGNING")},
			owned:   []string{secretText("API_KEY", "v1"), secretKey("SIGNING", "k1")},
			want: []Action{{Kind: ActionUpdate, Name: "API_KEY", Type: "secret_text", Sensitive: true, Reason: ReasonNewSecret},
				{Kind: ActionUpdate, Name: "SIGNING", Type: "secret_key", Sensitive: true, Reason: ReasonNewSecret}},
			strat:   StrategySettings,
			req:     []string{secretText("API_KEY", "v2"), secretKey("SIGNING", "k2")},
			applied: []string{"API_KEY", "SIGNING"},
		},
		{
			name:    "live secret never applied by the reconciler is written",
			desired: []string{secretText("API_KEY", "v1")},
			live:    []string{liveSecret("API_KEY")},
			want:    []Action{{Kind: ActionUpdate, Name: "API_KEY", Type: "secret_text", Sensitive: true, Reason: ReasonNotApplied}},
			strat:   StrategySettings,
			req:     []string{secretText("API_KEY", "v1")},
			applied: []string{"API_KEY"},
		},
		{
			name:    "secret recorded with another type is written",
			desired: []string{secretText("API_KEY", "v1")},
			live:    []string{liveSecret("API_KEY")},
			records: map[string]Applied{"API_KEY": {Type: "plain_text", Fingerprint: "x"}},
			want:    []Action{{Kind: ActionUpdate, Name: "API_KEY", Type: "secret_text", Sensitive: true, Reason: ReasonNewSecret}},
			strat:   StrategySettings,
			req:     []string{secretText("API_KEY", "v1")},
			applied: []string{"API_KEY"},
		},
		{
			name:    "plain text becomes a secret",
			desired: []string{secretText("TOKEN", "v1")},
			live:    []string{`{"type":"plain_text","name":"TOKEN","text":"visible"}`},
			want:    []Action{{Kind: ActionUpdate, Name: "TOKEN", Type: "secret_text", OldType: "plain_text", Sensitive: true, Reason: ReasonTypeChanged}},
			strat:   StrategySettings,
			req:     []string{secretText("TOKEN", "v1")},
			applied: []string{"TOKEN"},
		},

		// Strategy.
		{
			name:    "part type forces a script upload",
			desired: []string{wasm, varNew},
			live:    []string{varOld, liveSecret("API_KEY"), theirDB},
			want: []Action{{Kind: ActionUnowned, Name: "API_KEY", Type: "secret_text", Sensitive: true, Reason: ReasonUnowned},
				{Kind: ActionUnowned, Name: "THEIR_DB", Type: "d1", Reason: ReasonUnowned},
				{Kind: ActionUpdate, Name: "VERSION", Type: "plain_text", Reason: ReasonValueChanged},
				{Kind: ActionAdd, Name: "WASM", Type: "wasm_module"}},
			strat:   StrategyScript,
			req:     []string{`{"type":"inherit","name":"THEIR_DB"}`, varNew, wasm},
			keep:    []string{"secret_text", "secret_key"},
			parts:   []string{"module.wasm"},
			applied: []string{"VERSION", "WASM"},
		},
		{
			name:     "requested script",
			desired:  []string{varNew, secretText("API_KEY", "v1")},
			strategy: StrategyScript,
			live:     []string{varOld, liveSecret("API_KEY"), liveSecretKey("SIGNING"), kvA},
			owned:    []string{secretText("API_KEY", "v1"), kvA},
			want: []Action{{Kind: ActionKeep, Name: "API_KEY", Type: "secret_text", Sensitive: true},
				{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"},
				{Kind: ActionUnowned, Name: "SIGNING", Type: "secret_key", Sensitive: true, Reason: ReasonUnowned},
				{Kind: ActionUpdate, Name: "VERSION", Type: "plain_text", Reason: ReasonValueChanged}},
			strat:   StrategyScript,
			req:     []string{`{"type":"inherit","name":"KV"}`, varNew},
			keep:    []string{"secret_text", "secret_key"},
			applied: []string{"API_KEY", "KV", "VERSION"},
		},
		{
			name:      "requested version inherits every secret that stays by name, without keep_bindings",
			desired:   []string{secretText("KEEP_ME", "v1")},
			exclusive: true,
			strategy:  StrategyVersion,
			live:      []string{liveSecret("KEEP_ME"), liveSecret("DROP_ME"), liveSecret("THEIRS"), liveSecretKey("SIGNING")},
			owned:     []string{secretText("KEEP_ME", "v1"), secretText("DROP_ME", "v1")},
			want: []Action{{Kind: ActionRemove, Name: "DROP_ME", Type: "secret_text", Sensitive: true, Reason: ReasonNotDesired},
				{Kind: ActionKeep, Name: "KEEP_ME", Type: "secret_text", Sensitive: true},
				{Kind: ActionUnowned, Name: "SIGNING", Type: "secret_key", Sensitive: true, Reason: ReasonUnowned},
				{Kind: ActionUnowned, Name: "THEIRS", Type: "secret_text", Sensitive: true, Reason: ReasonUnowned}},
			strat:   StrategyVersion,
			req:     []string{`{"type":"inherit","name":"KEEP_ME"}`, `{"type":"inherit","name":"SIGNING"}`, `{"type":"inherit","name":"THEIRS"}`},
			applied: []string{"KEEP_ME"},
		},
		{
			name:     "a secret_key changing type drops secret_key from keep_bindings",
			desired:  []string{`{"type":"plain_text","name":"SIGNING","text":"now public"}`},
			strategy: StrategyScript,
			live:     []string{liveSecretKey("SIGNING"), liveSecretKey("OTHER"), liveSecret("API_KEY")},
			want: []Action{{Kind: ActionUnowned, Name: "API_KEY", Type: "secret_text", Sensitive: true, Reason: ReasonUnowned},
				{Kind: ActionUnowned, Name: "OTHER", Type: "secret_key", Sensitive: true, Reason: ReasonUnowned},
				{Kind: ActionUpdate, Name: "SIGNING", Type: "plain_text", OldType: "secret_key", Sensitive: true, Reason: ReasonTypeChanged}},
			strat:   StrategyScript,
			req:     []string{`{"type":"inherit","name":"OTHER"}`, `{"type":"plain_text","name":"SIGNING","text":"now public"}`},
			keep:    []string{"secret_text"},
			applied: []string{"SIGNING"},
		},
		{
			name:     "requested script with nothing to do is a no-op",
			desired:  []string{kvA},
			strategy: StrategyScript,
			live:     []string{kvA},
			want:     []Action{{Kind: ActionKeep, Name: "KV", Type: "kv_namespace"}},
			applied:  []string{"KV"},
		},
		{
			name:    "a kept part type does not need a script upload",
			desired: []string{wasm, kvB},
			live:    []string{wasm, kvA},
			owned:   []string{wasm, kvA},
			want: []Action{{Kind: ActionUpdate, Name: "KV", Type: "kv_namespace", Reason: ReasonValueChanged},
				{Kind: ActionKeep, Name: "WASM", Type: "wasm_module"}},
			strat:   StrategySettings,
			req:     []string{kvB, `{"type":"wasm_module","name":"WASM"}`},
			applied: []string{"KV", "WASM"},
		},

		// Inherit.
		{
			name:    "inherit keeps the live binding",
			desired: []string{`{"type":"inherit","name":"THEIR_DB"}`, kvB},
			live:    []string{theirDB, kvA},
			want: []Action{{Kind: ActionUpdate, Name: "KV", Type: "kv_namespace", Reason: ReasonValueChanged},
				{Kind: ActionKeep, Name: "THEIR_DB", Type: "d1", Reason: ReasonInherited}},
			strat:   StrategySettings,
			req:     []string{kvB, `{"type":"d1","name":"THEIR_DB"}`},
			applied: []string{"KV", "THEIR_DB"},
		},
		{
			name:    "inherit with version_id latest is a plain inherit",
			desired: []string{`{"type":"inherit","name":"THEIR_DB","version_id":"latest"}`},
			live:    []string{theirDB},
			want:    []Action{{Kind: ActionKeep, Name: "THEIR_DB", Type: "d1", Reason: ReasonInherited}},
			applied: []string{"THEIR_DB"},
		},
		{
			name:    "rename by inherit with old_name",
			desired: []string{`{"type":"inherit","name":"NEW_DB","old_name":"THEIR_DB"}`},
			live:    []string{theirDB, kvA},
			want: []Action{{Kind: ActionUnowned, Name: "KV", Type: "kv_namespace", Reason: ReasonUnowned},
				{Kind: ActionAdd, Name: "NEW_DB", Type: "d1", Reason: "renamed from THEIR_DB"},
				{Kind: ActionRemove, Name: "THEIR_DB", Type: "d1", Reason: "renamed to NEW_DB"}},
			strat:   StrategyScript,
			req:     []string{`{"type":"inherit","name":"KV"}`, `{"type":"inherit","name":"NEW_DB","old_name":"THEIR_DB"}`},
			keep:    []string{"secret_text", "secret_key"},
			applied: []string{"NEW_DB"},
		},
		{
			name:    "rename already carried out",
			desired: []string{`{"type":"inherit","name":"NEW_DB","old_name":"THEIR_DB"}`},
			live:    []string{`{"type":"d1","name":"NEW_DB","database_id":"c0ffee"}`},
			want:    []Action{{Kind: ActionKeep, Name: "NEW_DB", Type: "d1", Reason: ReasonInherited}},
			applied: []string{"NEW_DB"},
		},
	}
	p := testPlanner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Desired{Bindings: mbs(tt.desired...), Remove: tt.remove, Exclusive: tt.exclusive, Strategy: tt.strategy}
			last := record(p, tt.owned...)
			for n, a := range tt.records {
				last.Bindings[n] = a
			}
			if err := Validate(d); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			pl, err := p.Plan(d, mbs(tt.live...), last)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if diff := cmp.Diff(tt.want, pl.Actions, ignoreUnexported, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Actions (-want +got):\n%s", diff)
			}
			if pl.Strategy != tt.strat {
				t.Errorf("Strategy = %q, want %q", pl.Strategy, tt.strat)
			}
			if pl.NoOp() != (tt.strat == StrategyNone) {
				t.Errorf("NoOp() = %v", pl.NoOp())
			}
			if tt.strat == StrategyNone && !pl.Request.IsZero() {
				t.Errorf("no-op plan has a request: %v", pl.Request)
			}
			wantReq := make([]string, len(tt.req))
			for i, s := range tt.req {
				wantReq[i] = string(mb(s).Raw())
			}
			if diff := cmp.Diff(wantReq, raws(pl.Request.Bindings), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Request.Bindings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.keep, pl.Request.KeepBindings, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("KeepBindings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.parts, pl.NeedsParts, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("NeedsParts (-want +got):\n%s", diff)
			}
			var applied []string
			for n, a := range pl.Applied.Bindings {
				applied = append(applied, n)
				if len(a.Fingerprint) != FingerprintLen || a.Type == "" {
					t.Errorf("Applied[%s] = %+v", n, a)
				}
			}
			slices.Sort(applied)
			if diff := cmp.Diff(tt.applied, applied, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Applied names (-want +got):\n%s", diff)
			}
			// Requests sorted by name; a settings request never re-sends a
			// live binding's JSON.
			if !slices.IsSortedFunc(pl.Request.Bindings, func(a, b wire.Binding) int { return strings.Compare(a.Name(), b.Name()) }) {
				t.Errorf("Request.Bindings not sorted: %v", pl.Request)
			}
			checkNoSecret(t, pl)
		})
	}
}

func TestPlanErrors(t *testing.T) {
	big := strings.Repeat("x", wire.MaxValueBytes+1)
	var many []string
	for i := range 6 {
		many = append(many, fmt.Sprintf(`{"type":"json","name":"BIG_%d","json":%q}`, i, strings.Repeat("y", 200<<10)))
	}
	tests := []struct {
		name    string
		d       Desired
		live    []string
		field   string // the error names this field ("" to skip)
		binding string // and this binding ("" to skip)
		planner bool   // a *Error from Plan rather than a *wire.ValidationError
	}{
		{name: "missing required field", d: Desired{Bindings: mbs(`{"type":"kv_namespace","name":"KV"}`)}, field: "namespace_id", binding: "KV"},
		{name: "empty type", d: Desired{Bindings: mbs(`{"type":"","name":"X"}`)}, field: "type", binding: "X"},
		{name: "invalid name", d: Desired{Bindings: mbs(`{"type":"plain_text","name":"1-bad","text":"a"}`)}, field: "name", binding: "1-bad"},
		{name: "duplicate name", d: Desired{Bindings: mbs(`{"type":"plain_text","name":"A","text":"a"}`, `{"type":"plain_text","name":"A","text":"b"}`)}, field: "name", binding: "A"},
		{name: "upserted and removed", d: Desired{Bindings: mbs(`{"type":"plain_text","name":"A","text":"a"}`), Remove: []string{"A"}}, field: "name", binding: "A"},
		{name: "invalid name in remove", d: Desired{Remove: []string{"no spaces"}}, field: "remove", binding: "no spaces"},
		{name: "plain text too large", d: Desired{Bindings: mbs(fmt.Sprintf(`{"type":"plain_text","name":"P","text":%q}`, big))}, field: "text", binding: "P"},
		{name: "secret too large", d: Desired{Bindings: mbs(secretText("S", big))}, field: "text", binding: "S"},
		{name: "secret without text", d: Desired{Bindings: mbs(liveSecret("S"))}, field: "text", binding: "S"},
		{name: "secret_key without key material", d: Desired{Bindings: mbs(liveSecretKey("K"))}, field: "key_base64", binding: "K"},
		{name: "bad enum", d: Desired{Bindings: mbs(`{"type":"r2_bucket","name":"B","bucket_name":"b","jurisdiction":"mars"}`)}, field: "jurisdiction", binding: "B"},
		{name: "desired set too large", d: Desired{Bindings: mbs(many...)}, binding: "BIG_0"},
		{name: "unknown strategy", d: Desired{Strategy: "yolo"}},
		{name: "inherit from another version", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","version_id":"v1"}`)}, field: "version_id", binding: "A"},
		{name: "rename of a desired binding", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"B"}`, `{"type":"plain_text","name":"B","text":"b"}`)}, field: "old_name", binding: "A"},
		{name: "rename of a removed binding", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"B"}`), Remove: []string{"B"}}, field: "old_name", binding: "A"},
		{name: "two renames of one binding", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"C"}`, `{"type":"inherit","name":"B","old_name":"C"}`)}, field: "old_name", binding: "B"},
		{name: "rename from an invalid name", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"no way"}`)}, field: "old_name", binding: "A"},
		// Errors that need the live state.
		{name: "inherit of a binding that is not live", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A"}`)}, field: "name", binding: "A", planner: true},
		{name: "rename of a binding that is not live", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"B"}`)}, field: "old_name", binding: "A", planner: true},
		{name: "settings requested for a part type", d: Desired{Bindings: mbs(`{"type":"text_blob","name":"T","part":"t.txt"}`), Strategy: StrategySettings}, binding: "T", planner: true},
		{name: "settings requested for a rename", d: Desired{Bindings: mbs(`{"type":"inherit","name":"A","old_name":"B"}`), Strategy: StrategySettings},
			live: []string{`{"type":"plain_text","name":"B","text":"b"}`}, binding: "A", planner: true},
		{name: "two live bindings of one name", live: []string{`{"type":"plain_text","name":"A","text":"a"}`, `{"type":"kv_namespace","name":"A","namespace_id":"x"}`},
			field: "name", binding: "A", planner: true},
	}
	p := testPlanner(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verr := Validate(tt.d)
			pl, err := p.Plan(tt.d, mbs(tt.live...), LastApplied{})
			if err == nil {
				t.Fatalf("Plan succeeded:\n%s", pl)
			}
			if tt.planner {
				if verr != nil {
					t.Errorf("Validate: %v, want nil (the error needs the live state)", verr)
				}
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("Plan error %T %v, want *planner.Error", err, err)
				}
				if tt.field != "" && pe.Field != tt.field {
					t.Errorf("Field = %q, want %q (%v)", pe.Field, tt.field, err)
				}
				if pe.Name != tt.binding {
					t.Errorf("Name = %q, want %q (%v)", pe.Name, tt.binding, err)
				}
			} else {
				if verr == nil || verr.Error() != err.Error() {
					t.Errorf("Validate = %v, Plan = %v; want the same error", verr, err)
				}
				var ve *wire.ValidationError
				if errors.As(err, &ve) {
					if ve.Field != tt.field {
						t.Errorf("Field = %q, want %q (%v)", ve.Field, tt.field, err)
					}
					if tt.binding != "" && ve.Name != tt.binding && !strings.Contains(ve.Msg, tt.binding) {
						t.Errorf("error does not name %q: %v", tt.binding, err)
					}
				} else if tt.d.Strategy == "" {
					t.Fatalf("error %T %v, want *wire.ValidationError", err, err)
				}
			}
			msg := err.Error()
			if tt.binding != "" && !strings.Contains(msg, tt.binding) {
				t.Errorf("error %q does not name binding %q", msg, tt.binding)
			}
			if tt.field != "" && !strings.Contains(msg, tt.field) {
				t.Errorf("error %q does not name field %q", msg, tt.field)
			}
			if tt.d.Strategy != "" && !strings.Contains(msg, string(tt.d.Strategy)) && !tt.planner {
				t.Errorf("error %q does not name the strategy", msg)
			}
			if strings.Contains(msg, secretMarker) {
				t.Errorf("error leaks a secret: %q", msg)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	p := testPlanner(t)
	d, live, last := scenario60(t, p)
	want, err := p.Plan(d, live, last)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		d2 := d
		d2.Bindings = slices.Clone(d.Bindings)
		d2.Remove = slices.Clone(d.Remove)
		live2 := slices.Clone(live)
		r.Shuffle(len(d2.Bindings), func(i, j int) { d2.Bindings[i], d2.Bindings[j] = d2.Bindings[j], d2.Bindings[i] })
		r.Shuffle(len(live2), func(i, j int) { live2[i], live2[j] = live2[j], live2[i] })
		slices.Reverse(d2.Remove)
		got, err := p.Plan(d2, live2, last)
		if err != nil {
			t.Fatal(err)
		}
		if settingsBody(got.Request) != settingsBody(want.Request) {
			t.Fatalf("settings body differs:\n%s\n%s", settingsBody(got.Request), settingsBody(want.Request))
		}
		if got.String() != want.String() {
			t.Fatalf("Render differs:\n%s\n%s", got, want)
		}
		gotJSON, _ := json.Marshal(got)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Fatalf("MarshalJSON differs:\n%s\n%s", gotJSON, wantJSON)
		}
		if !got.Applied.Equal(want.Applied) {
			t.Fatalf("Applied differs")
		}
	}
	checkNoSecret(t, want)
}

// member is one member of a JSON object, for the tests' generators and
// checks.
type member struct {
	key string
	val json.RawMessage
}

// members decodes a JSON object into its members, in order (nil when obj
// is not an object).
func members(obj []byte) []member {
	ms, _ := wire.ObjectMembers(obj)
	out := make([]member, len(ms))
	for i, m := range ms {
		out[i] = member{m.Key, m.Value}
	}
	return out
}

// settingsBody returns the settings PATCH body that carries the request:
// its bindings encoded by cfapi.SettingsPatch.JSON, the one encoder of
// that body.
func settingsBody(r Request) string {
	js, err := cfapi.SettingsPatch{Bindings: r.Bindings}.JSON()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(js)
}

// TestSettingsBody checks the bytes that a settings plan sends: a removal
// of the last binding sends an empty set (not a body without bindings,
// which would change nothing), and written bindings go out whole, secrets
// included, sorted by name.
func TestSettingsBody(t *testing.T) {
	p := testPlanner(t)
	pl, err := p.Plan(Desired{Remove: []string{"A"}}, mbs(`{"type":"plain_text","name":"A","text":"a"}`), LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	if got := settingsBody(pl.Request); got != `{"bindings":[]}` {
		t.Errorf("removing the last binding: %s", got)
	}
	pl, err = p.Plan(Desired{Bindings: mbs(secretText("S", "v"), `{"type":"json","name":"J","json":{"b":1,"a":2}}`)}, nil, LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bindings":[{"type":"json","name":"J","json":{"b":1,"a":2}},{"type":"secret_text","name":"S","text":"s3cr3t-v"}]}`
	if got := settingsBody(pl.Request); got != want {
		t.Errorf("settings body\n got %s\nwant %s", got, want)
	}
}

// TestPlanAs: a plan rewritten for another strategy keeps its actions and
// record and rebuilds its request; a settings PATCH cannot carry a rename.
func TestPlanAs(t *testing.T) {
	p := testPlanner(t)
	live := mbs(`{"type":"plain_text","name":"A","text":"a"}`, liveSecret("S"), `{"type":"kv_namespace","name":"OLD","namespace_id":"x"}`)
	pl, err := p.Plan(Desired{Bindings: mbs(`{"type":"plain_text","name":"A","text":"b"}`)}, live, LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Strategy != StrategySettings {
		t.Fatalf("strategy %s, want settings", pl.Strategy)
	}
	v, err := pl.As(StrategyVersion)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pl.Actions, v.Actions, ignoreUnexported); diff != "" || v.Strategy != StrategyVersion || !v.Applied.Equal(pl.Applied) {
		t.Fatalf("As changed the plan beyond its request: strategy %s, actions (-settings +version):\n%s", v.Strategy, diff)
	}
	var got []string
	for _, b := range v.Request.Bindings {
		got = append(got, string(b.Raw()))
	}
	want := []string{`{"type":"plain_text","name":"A","text":"b"}`, `{"type":"inherit","name":"OLD"}`, `{"type":"inherit","name":"S"}`}
	if diff := cmp.Diff(want, got); diff != "" || len(v.Request.KeepBindings) != 0 {
		t.Errorf("version request (-want +got):\n%s\nkeep_bindings %v", diff, v.Request.KeepBindings)
	}
	if pl.Request.Bindings[2].Type() != "secret_text" {
		t.Errorf("As changed the original request: %s", pl.Request)
	}

	rename, err := p.Plan(Desired{Bindings: mbs(`{"type":"inherit","name":"NEW","old_name":"OLD"}`), Strategy: StrategyVersion}, live, LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rename.As(StrategySettings); err == nil {
		t.Error("a rename rewritten as a settings PATCH: no error")
	}
	if _, err := rename.As(StrategyNone); err == nil {
		t.Error("As(none): no error")
	}
}

func TestRender(t *testing.T) {
	p := testPlanner(t)
	d := Desired{
		Bindings: mbs(
			`{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`,
			`{"type":"plain_text","name":"VERSION","text":"2"}`,
			secretText("API_KEY", "v2"),
			`{"type":"r2_bucket","name":"FILES","bucket_name":"files","jurisdiction":"eu"}`,
			`{"type":"queue","name":"JOBS","queue_name":"jobs"}`,
			`{"type":"json","name":"CONF","json":{"long":"`+strings.Repeat("é", 60)+`"}}`,
		),
		Remove: []string{"OLD"},
	}
	live := mbs(
		`{"type":"plain_text","name":"VERSION","text":"1"}`,
		liveSecret("API_KEY"),
		`{"type":"r2_bucket","name":"FILES","bucket_name":"files"}`,
		`{"type":"r2_bucket","name":"OLD","bucket_name":"old"}`,
		`{"type":"d1","name":"THEIR_DB","database_id":"c0ffee"}`,
		`{"type":"queue","name":"JOBS","queue_name":"jobs"}`,
	)
	last := record(p, secretText("API_KEY", "v1"), `{"type":"queue","name":"JOBS","queue_name":"jobs"}`)
	pl, err := p.Plan(d, live, last)
	if err != nil {
		t.Fatal(err)
	}
	want := `~ secret_text API_KEY: (sensitive) (new secret value)
+ json CONF  json={"long":"` + strings.Repeat("é", 26) + `...
~ r2_bucket FILES: jurisdiction: (unset) → "eu"
- r2_bucket OLD (named in remove)
! d1 THEIR_DB (left alone: created outside the reconciler)
+ kv_namespace USER_KV  namespace_id="0f2ac74b498b48028cb68387c421e279"
~ plain_text VERSION: "1" → "2"
Plan: 2 to add, 3 to change, 1 to remove, 1 unchanged, 1 left alone. Write: settings.
`
	if got := pl.String(); got != want {
		t.Errorf("Render:\n%s\nwant:\n%s", got, want)
	}
	var buf bytes.Buffer
	if err := pl.Render(&buf); err != nil || buf.String() != want {
		t.Errorf("Render to a writer: %v\n%s", err, buf.String())
	}

	noop, err := p.Plan(Desired{Bindings: mbs(`{"type":"queue","name":"JOBS","queue_name":"jobs"}`)}, live, last)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := noop.String(), "No changes. 2 unchanged, 4 left alone.\n"; got != want {
		t.Errorf("no-op renders %q, want %q", got, want)
	}
	js, _ := json.Marshal(noop)
	if !bytes.HasPrefix(js, []byte(`{"strategy":"none","actions":[`)) {
		t.Errorf("no-op JSON: %s", js)
	}
}

func TestMarshalJSON(t *testing.T) {
	p := testPlanner(t)
	pl, err := p.Plan(Desired{Bindings: mbs(secretText("API_KEY", "v1"), `{"type":"plain_text","name":"V","text":"2"}`), Exclusive: true},
		mbs(liveSecret("API_KEY"), `{"type":"plain_text","name":"V","text":"1"}`, `{"type":"kv_namespace","name":"KV","namespace_id":"k"}`),
		record(p, `{"type":"kv_namespace","name":"KV","namespace_id":"k"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"strategy":"settings","actions":[` +
		`{"action":"update","name":"API_KEY","type":"secret_text","before":{"type":"secret_text","name":"API_KEY"},"after":{"type":"secret_text","name":"API_KEY","text":"(sensitive)"},"sensitive":true,"reason":"not applied by the reconciler before"},` +
		`{"action":"remove","name":"KV","type":"kv_namespace","before":{"type":"kv_namespace","name":"KV","namespace_id":"k"},"reason":"no longer desired"},` +
		`{"action":"update","name":"V","type":"plain_text","before":{"type":"plain_text","name":"V","text":"1"},"after":{"type":"plain_text","name":"V","text":"2"},"reason":"value changed"}],` +
		`"summary":{"add":0,"update":2,"remove":1,"keep":0,"unowned":0}}`
	if string(got) != want {
		t.Errorf("MarshalJSON\n got %s\nwant %s", got, want)
	}
	// A Plan value marshals the same way as a pointer.
	byValue, _ := json.Marshal(*pl)
	if !bytes.Equal(byValue, got) {
		t.Errorf("by value: %s", byValue)
	}
	reqJS, _ := json.Marshal(pl.Request)
	if want := `{"bindings":[{"type":"secret_text","name":"API_KEY","text":"(sensitive)"},{"type":"plain_text","name":"V","text":"2"}]}`; string(reqJS) != want {
		t.Errorf("Request JSON %s", reqJS)
	}
}

func TestFingerprint(t *testing.T) {
	p := testPlanner(t)
	other, _ := New(Options{FingerprintKey: []byte("another key")})
	a := mb(secretText("S", "one"))
	fp := p.Fingerprint(a)
	if len(fp) != FingerprintLen || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("fingerprint %q", fp)
	}
	if fp != p.Fingerprint(mb(secretText("S", "one"))) {
		t.Error("equal secrets have different fingerprints")
	}
	for _, b := range []wire.Binding{mb(secretText("S", "two")), mb(secretText("T", "one")), mb(liveSecret("S"))} {
		if p.Fingerprint(b) == fp {
			t.Errorf("%s has the fingerprint of %s", b.Name(), a.Name())
		}
	}
	if other.Fingerprint(a) == fp {
		t.Error("fingerprint does not depend on the key")
	}
	if p.Fingerprint(mb(`{"type":"d1","name":"DB","id":"x"}`)) != p.Fingerprint(mb(`{"type":"d1","name":"DB","database_id":"x"}`)) {
		t.Error("d1 id and database_id fingerprint differently")
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New with an empty key succeeded")
	}
}

func TestParseStrategy(t *testing.T) {
	for in, want := range map[string]Strategy{"": StrategyAuto, "auto": StrategyAuto, "settings": StrategySettings, "script": StrategyScript, "version": StrategyVersion} {
		if got, err := ParseStrategy(in); err != nil || got != want {
			t.Errorf("ParseStrategy(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"Auto", "put", "none"} {
		if _, err := ParseStrategy(in); err == nil || !strings.Contains(err.Error(), strconvQuote(in)) {
			t.Errorf("ParseStrategy(%q) = %v, want an error naming it", in, err)
		}
	}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

func TestLastAppliedEqual(t *testing.T) {
	a := LastApplied{Bindings: map[string]Applied{"A": {Type: "kv_namespace", Fingerprint: "1"}}}
	b := LastApplied{Bindings: map[string]Applied{"A": {Type: "kv_namespace", Fingerprint: "1"}}}
	if !a.Equal(b) || a.Equal(LastApplied{}) || !(LastApplied{}).Equal(LastApplied{Bindings: map[string]Applied{}}) {
		t.Error("Equal")
	}
	b.Bindings["A"] = Applied{Type: "kv_namespace", Fingerprint: "2"}
	if a.Equal(b) {
		t.Error("Equal ignores the fingerprint")
	}
}

// TestConcurrent plans from many goroutines with one Planner (run with
// -race).
func TestConcurrent(t *testing.T) {
	p := testPlanner(t)
	d, live, last := scenario60(t, p)
	want, err := p.Plan(d, live, last)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := p.Plan(d, live, last)
				if err != nil {
					t.Error(err)
					return
				}
				if !got.Applied.Equal(want.Applied) || settingsBody(got.Request) != settingsBody(want.Request) {
					t.Error("concurrent plans differ")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestPlanAllocs guards the allocation budget of the benchmark scenario
// (allocation counts are deterministic, unlike timings): about one per
// binding sent as {type, name} and per fingerprint computed, and a few for
// the maps and slices of the plan (79 when the budget was set).
func TestPlanAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops items at random, so allocation counts vary")
	}
	p := testPlanner(t)
	d, live, last := scenario60(t, p)
	n := testing.AllocsPerRun(50, func() {
		if _, err := p.Plan(d, live, last); err != nil {
			t.Fatal(err)
		}
	})
	if n > 100 {
		t.Errorf("Plan allocates %v times per call, budget 100", n)
	}
}

// TestPlanShowsNoValueOfUnknownTypes: plans apply wire's redaction rule,
// so an unknown type (possibly a secret) and every member of a secret_key
// read "(sensitive)" in every rendered form.
func TestPlanShowsNoValueOfUnknownTypes(t *testing.T) {
	p := testPlanner(t)
	d := Desired{Bindings: mbs(
		`{"type":"my_secret","name":"NEW_SECRET","value":"hunter2-new"}`,
		`{"type":"SECRET_TEXT","name":"SHOUTED","text":"hunter2-loud"}`,
		`{"type":"stream","name":"CHANGED","token":"hunter2-b"}`,
		`{"type":"secret_key","name":"SIGNING","algorithm":{"name":"hunter2-alg"},"format":"raw","usages":["sign"],"key_base64":"aHVudGVyMg=="}`,
	)}
	live := mbs(`{"type":"stream","name":"CHANGED","token":"hunter2-a"}`, `{"type":"future","name":"THEIRS","key":"hunter2-theirs"}`)
	pl, err := p.Plan(d, live, LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(pl)
	req, _ := json.Marshal(pl.Request)
	var lines []string
	for _, a := range pl.Actions {
		lines = append(lines, a.String())
	}
	for what, out := range map[string]string{"render": pl.String(), "json": string(js), "request": string(req), "lines": strings.Join(lines, "\n")} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "aHVudGVyMg") {
			t.Errorf("%s shows a value:\n%s", what, out)
		}
	}
	for _, want := range []string{"+ my_secret NEW_SECRET  value=(sensitive)", "~ stream CHANGED: (sensitive) (value changed)",
		"+ secret_key SIGNING  algorithm=(sensitive) format=(sensitive) usages=(sensitive) key_base64=(sensitive)"} {
		if !strings.Contains(pl.String(), want) {
			t.Errorf("render lacks %q:\n%s", want, pl)
		}
	}
	// The request itself carries the values: it is what gets written.
	if body := settingsBody(pl.Request); !strings.Contains(body, "hunter2-new") || !strings.Contains(body, "hunter2-b") {
		t.Errorf("the request lost a value: %s", body)
	}
}

func TestValidateNeedsNoPlanner(t *testing.T) {
	d := Desired{Bindings: mbs(`{"type":"plain_text","name":"A","text":"a"}`, `{"type":"plain_text","name":"A","text":"b"}`)}
	err := Validate(d)
	var ve *wire.ValidationError
	if !errors.As(err, &ve) || ve.Field != "name" || ve.Index != 1 {
		t.Fatalf("Validate = %v, want the duplicate name", err)
	}
	if err := Validate(Desired{Bindings: mbs(`{"type":"plain_text","name":"A","text":"a"}`)}); err != nil {
		t.Errorf("valid desired state: %v", err)
	}
}
