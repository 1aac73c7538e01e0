package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/scripts/chaos/badinput"
)

// FuzzDecodeEvent decodes arbitrary bodies on arbitrary subjects
// (chaos suite, "Fuzzing"). It must never panic. A rejected event is an
// *event.InvalidEventError with one of the fixed reasons, and its dead-letter
// record encodes, is valid UTF-8 and holds no value of a binding that may
// be secret (wire.RedactJSON's rule, and every element of the bindings
// and upsert lists). An accepted event matches its subject, survives an
// encode/decode round trip unchanged, and folds into a desired state that
// the planner accepts.
func FuzzDecodeEvent(f *testing.F) {
	for _, c := range badinput.Cases(acct) {
		if len(c.Body) <= 64<<10 {
			f.Add(c.Body, c.Subject)
		}
	}
	f.Add([]byte(`{"schema":"bindings.change/v1","id":"e1","account_id":"`+acct+`","dispatch_namespace":"customers","script":"tenant-1","generation":3,"op":"patch","upsert":[{"type":"secret_text","name":"S","text":"hunter2hunter2"},{"type":"kv_namespace","name":"KV","namespace_id":"k"}],"remove":["OLD"],"strategy":"settings","occurred_at":"2026-11-22T10:00:00Z"}`),
		"bindings."+acct+".customers.tenant-1")
	f.Add([]byte(`{"schema":"bindings.change/v1","id":"e2","account_id":"`+acct+`","script":"w","op":"replace","bindings":[{"type":"inherit","name":"I"},{"type":"wasm_module","name":"W","part":"w.wasm"}]}`),
		"")
	f.Fuzz(func(t *testing.T, body []byte, subject string) {
		ev, err := event.DecodeEvent(body, subject, "bindings")
		if err != nil {
			var ie *event.InvalidEventError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T %v is not an *event.InvalidEventError", err, err)
			}
			if !slices.Contains(event.Reasons, ie.Reason) || ie.Msg == "" {
				t.Fatalf("reason %q, message %q", ie.Reason, ie.Msg)
			}
			checkDeadLetter(t, body, subject, ie)
			return
		}
		if subject != "" && subject != event.Subject("bindings", ev.Ref()) {
			t.Fatalf("accepted on subject %q, event is for %s", subject, ev.Ref())
		}
		if !utf8.Valid(body) {
			t.Fatal("accepted a body that is not valid UTF-8")
		}
		if ev.Op == event.OpPatch && len(ev.Upsert)+len(ev.Remove) == 0 {
			// "upsert": [] alone is a valid patch that changes nothing;
			// event.Event's encoding omits the empty lists, so it does not
			// round-trip. Nothing encodes an event.Event to decode it again.
			return
		}
		enc, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("encoding an accepted event: %v", err)
		}
		again, err := event.DecodeEvent(enc, subject, "bindings")
		if err != nil {
			t.Fatalf("an accepted event, encoded, is rejected: %v\n%s", err, enc)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the event:\n%s\n%s", enc, enc2)
		}
		st := event.NewDesiredState(ev.Ref())
		st.Fold(ev)
		if err := planner.Validate(st.Desired()); err != nil {
			t.Fatalf("the folded state of an accepted event is invalid: %v", err)
		}
		if r := st.Fold(ev); r.Changed() {
			t.Fatalf("folding the same event twice changed the state: %+v", r)
		}
	})
}

// checkDeadLetter checks the dead-letter record of a rejected body.
func checkDeadLetter(t *testing.T, body []byte, subject string, ie *event.InvalidEventError) {
	t.Helper()
	rec := state.NewDeadLetter(body, subject, "BINDINGS", 7, 1, ie.Reason, ie)
	data, err := state.EncodeState(rec)
	if err != nil {
		t.Fatalf("encoding the dead letter: %v", err)
	}
	if !json.Valid(data) || !utf8.Valid(data) {
		t.Fatalf("dead letter is not valid UTF-8 JSON: %q", cfapi.Truncate(string(data), 300))
	}
	if string(rec.Event) == "null" {
		if string(bytes.TrimSpace(body)) != "null" && (rec.BodySHA256 == "" || rec.BodyBytes != len(body)) {
			t.Fatalf("a record without the event must keep its digest and size: %+v", rec)
		}
		return
	}
	inEvent, inBindings, public := secretStrings(body)
	var kept []string
	collectStrings(rec.Event, &kept)
	for _, s := range inEvent {
		if len(s) < 6 || containedIn(s, public) {
			continue
		}
		for _, k := range kept {
			if strings.Contains(k, s) {
				t.Fatalf("dead letter keeps a value that may be secret, %q:\n%s", s, cfapi.Truncate(string(rec.Event), 400))
			}
		}
	}
	for _, s := range inBindings {
		if len(s) >= 6 && !containedIn(s, public) && strings.Contains(rec.Error, s) {
			t.Fatalf("dead letter error shows a binding value %q: %s", s, rec.Error)
		}
	}
}

// secretStrings returns the string values of body that redaction must
// hide: every value (and key) inside a binding that is not known to be
// non-secret, and inside any element of a bindings or upsert list that is
// not such a binding (inEvent); the subset that sits in binding lists
// (inBindings); and every other string and key (public), which redaction
// keeps.
func secretStrings(body []byte) (inEvent, inBindings, public []string) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, nil, nil
	}
	var walk func(v any, hidden, list bool)
	walk = func(v any, hidden, list bool) {
		switch x := v.(type) {
		case string:
			switch {
			case hidden && list:
				inEvent, inBindings = append(inEvent, x), append(inBindings, x)
			case hidden:
				inEvent = append(inEvent, x)
			default:
				public = append(public, x)
			}
		case []any:
			for _, e := range x {
				walk(e, hidden, list)
			}
		case map[string]any:
			isBinding, secret := false, false
			for k, m := range x {
				if strings.EqualFold(k, "type") {
					isBinding = true
					typ, ok := m.(string)
					if !ok || !wire.IsKnownType(typ) || wire.IsWriteOnlyType(typ) {
						secret = true
					}
				}
			}
			for k, m := range x {
				public = append(public, k)
				keep := isBinding && (strings.EqualFold(k, "type") || strings.EqualFold(k, "name"))
				if s, ok := m.(string); ok && keep {
					public = append(public, s)
					continue
				}
				switch {
				case !isBinding && (strings.EqualFold(k, "bindings") || strings.EqualFold(k, "upsert")):
					walkList(m, walk)
				default:
					walk(m, hidden || secret, list)
				}
			}
		}
	}
	walk(v, false, false)
	return inEvent, inBindings, public
}

// walkList walks the value of a bindings or upsert member: an element that
// is not a binding known to be non-secret is hidden whole (its string name
// aside), and so is a value that is not an array.
func walkList(v any, walk func(any, bool, bool)) {
	arr, ok := v.([]any)
	if !ok {
		walk(v, true, true)
		return
	}
	for _, e := range arr {
		obj, ok := e.(map[string]any)
		if !ok {
			walk(e, true, true)
			continue
		}
		typed := false
		for k := range obj {
			if strings.EqualFold(k, "type") {
				typed = true
			}
		}
		if typed {
			walk(obj, false, true) // the binding rule decides
			continue
		}
		for k, m := range obj {
			if s, ok := m.(string); ok && strings.EqualFold(k, "name") {
				walk(s, false, true)
				continue
			}
			walk(m, true, true)
		}
	}
}

// collectStrings appends every string value and key of a JSON document.
func collectStrings(doc []byte, out *[]string) {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		*out = append(*out, string(doc))
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			*out = append(*out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, m := range x {
				*out = append(*out, k)
				walk(m)
			}
		}
	}
	walk(v)
}

func containedIn(s string, in []string) bool {
	for _, p := range in {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}
