package planner

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// parseList decodes a JSON array of bindings, skipping what does not parse.
func parseList(data []byte) []wire.Binding {
	var raws []json.RawMessage
	if json.Unmarshal(data, &raws) != nil {
		return nil
	}
	var out []wire.Binding
	for _, raw := range raws {
		if b, err := wire.ParseBinding(raw); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// storable keeps the bindings the API could hold: a type, a valid and
// unique name, and no inherit (an upload-time instruction).
func storable(bs []wire.Binding) []wire.Binding {
	var out []wire.Binding
	seen := map[string]bool{}
	for _, b := range bs {
		if b.Type() == "" || b.Type() == wire.TypeInherit || wire.ValidateName(b.Name()) != nil || seen[b.Name()] {
			continue
		}
		seen[b.Name()] = true
		out = append(out, b)
	}
	return out
}

// FuzzPlan plans arbitrary desired and stored bindings. Validate and Plan
// must not panic; a plan must be accepted by the emulator, and planning
// again against the result must be a no-op; rendered values of write-only
// members must be redacted.
//
// flags: bit 0 Exclusive; bits 1-3 the strategy; bit 4 records every
// stored binding as applied; bit 5 records every desired binding as
// applied.
func FuzzPlan(f *testing.F) {
	f.Add([]byte(`[{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2a"},{"type":"plain_text","name":"VERSION","text":"2"},{"type":"secret_text","name":"API_KEY","text":"s3cr3t"}]`),
		[]byte(`[{"type":"plain_text","name":"VERSION","text":"1"},{"type":"secret_text","name":"API_KEY","text":"old"},{"type":"d1","name":"THEIR_DB","database_id":"x"}]`),
		"OLD", uint8(0))
	f.Add([]byte(`[{"type":"d1","name":"DB","id":"4e1c"},{"type":"service","name":"AUTH","service":"auth"},{"type":"ai_search","name":"S","instance_name":"i"},{"type":"r2_bucket","name":"B","bucket_name":"b","jurisdiction":""},{"type":"durable_object_namespace","name":"DO","class_name":"C"},{"type":"json","name":"J","json":{"b":1,"a":[1,2]}}]`),
		[]byte(`[{"type":"d1","name":"DB","database_id":"4e1c"},{"type":"service","name":"AUTH","service":"auth"},{"type":"ai_search","name":"S","instance_name":"i"},{"type":"r2_bucket","name":"B","bucket_name":"b"},{"type":"durable_object_namespace","name":"DO","class_name":"C"},{"type":"json","name":"J","json":{"a":[1,2],"b":1}}]`),
		"", uint8(1|16))
	f.Add([]byte(`[{"type":"wasm_module","name":"W","part":"w.wasm"},{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"],"key_base64":"a2V5"}]`),
		[]byte(`[{"type":"secret_text","name":"S1","text":"one"},{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"],"key_base64":"b2xk"},{"type":"text_blob","name":"T","part":"t.txt"}]`),
		"S1", uint8(2<<1))
	f.Add([]byte(`[{"type":"inherit","name":"NEW","old_name":"OLD"},{"type":"inherit","name":"KEEP"}]`),
		[]byte(`[{"type":"queue","name":"OLD","queue_name":"q"},{"type":"kv_namespace","name":"KEEP","namespace_id":"k"}]`),
		"", uint8(3<<1|1))
	f.Add([]byte(`[{"type":"stream","name":"V","opts":{"z":1,"a":[true,null]},"n":1.50},{"type":"ai","name":"AI"}]`),
		[]byte(`[{"type":"stream","name":"V","opts":{"a":[true,null],"z":1},"n":1.50},{"type":"browser","name":"AI"}]`),
		"GONE,V2", uint8(4<<1|32))
	p, err := New(Options{FingerprintKey: []byte("fuzz key")})
	if err != nil {
		f.Fatal(err)
	}
	strategies := []Strategy{"", StrategyAuto, StrategySettings, StrategyScript, StrategyVersion, "bogus", "", ""}
	f.Fuzz(func(t *testing.T, desiredJSON, storedJSON []byte, remove string, flags uint8) {
		d := Desired{Bindings: parseList(desiredJSON), Exclusive: flags&1 != 0, Strategy: strategies[flags>>1&7]}
		if remove != "" {
			d.Remove = strings.Split(remove, ",")
		}
		stored := storable(parseList(storedJSON))
		last := LastApplied{Bindings: map[string]Applied{}}
		if flags&16 != 0 {
			for _, b := range stored {
				last.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
			}
		}
		if flags&32 != 0 {
			for _, b := range d.Bindings {
				last.Bindings[b.Name()] = Applied{Type: b.Type(), Fingerprint: p.Fingerprint(b)}
			}
		}
		live := cfapitest.RenderForGet(propAccount, propScript, stored)

		verr := Validate(d)
		pl, err := p.Plan(d, live, last)
		if err != nil {
			var ve *wire.ValidationError
			var pe *Error
			if !errors.As(err, &ve) && !errors.As(err, &pe) && verr == nil {
				t.Fatalf("Plan: error %T %v with a valid desired state", err, err)
			}
			return
		}
		if verr != nil {
			t.Fatalf("Plan succeeded, Validate: %v", verr)
		}
		_ = pl.String()
		if _, err := json.Marshal(pl); err != nil {
			t.Fatal(err)
		}
		for _, a := range pl.Detailed() {
			checkRedacted(t, a.Before)
			checkRedacted(t, a.After)
		}

		after, err := apply(stored, pl)
		if err != nil {
			t.Fatalf("the API rejects the request: %v\nplan:\n%s\nrequest: %s", err, pl, settingsBody(pl.Request))
		}
		again, err := p.Plan(d, cfapitest.RenderForGet(propAccount, propScript, after), pl.Applied)
		if err != nil {
			t.Fatalf("replan: %v\nfirst plan:\n%s", err, pl)
		}
		if !again.NoOp() {
			t.Fatalf("replan is not a no-op:\n%s\nfirst plan:\n%s", again, pl)
		}
	})
}

// checkRedacted fails when a rendered binding shows a write-only member's
// value.
func checkRedacted(t *testing.T, obj json.RawMessage) {
	t.Helper()
	if obj == nil {
		return
	}
	var typ string
	ms := members(obj)
	for _, m := range ms {
		if m.key == "type" {
			_ = json.Unmarshal(m.val, &typ)
		}
	}
	for _, m := range ms {
		if slices.Contains(wire.WriteOnlyFields(typ), m.key) && string(m.val) != `"`+Sensitive+`"` {
			t.Fatalf("write-only member %s shown: %s", m.key, obj)
		}
	}
}
