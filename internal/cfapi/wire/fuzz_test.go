package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseBinding parses and validates arbitrary binding JSON (chaos
// suite, "Fuzzing": binding validation). It must never panic. A parsed
// binding keeps compact, valid UTF-8 JSON that parses again to the same
// binding; validating for upload is at least as strict as for reading;
// validation errors, the redacted form and WithoutWriteOnly never show a
// write-only value.
func FuzzParseBinding(f *testing.F) {
	var corpus struct {
		Bindings []json.RawMessage `json:"bindings"`
	}
	data, err := os.ReadFile("../testdata/bindings-corpus.json")
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(data, &corpus); err != nil {
		f.Fatal(err)
	}
	for _, b := range corpus.Bindings {
		f.Add([]byte(b))
	}
	for _, s := range []string{
		`{"type":"secret_text","name":"S","text":"hunter2hunter2"}`,
		`{"type":"secret_text","name":"S"}`,
		`{"type":"plain_text","name":"A","text":"a","type":"secret_text"}`,
		`{"type":"kv_namespace","name":"1BAD","namespace_id":"x"}`,
		`{"type":"json","name":"J","json":{"b":[1,2.50,1e400],"a":"\u003c"}}`,
		`{"type":"unknown_future","name":"U","x":{"y":null}}`,
		"{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"\xff\"}",
		`{"type":"r2_bucket","name":"B","bucket_name":"b","jurisdiction":"eu"}`,
		`{"type":"inherit","name":"N","old_name":"O","version_id":"latest"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBinding(data)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error is not valid UTF-8: %q", err.Error())
			}
			return
		}
		raw := b.Raw()
		if !json.Valid(raw) || !utf8.Valid(raw) {
			t.Fatalf("raw is not valid UTF-8 JSON: %q", raw)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, raw)
		if !bytes.Equal(compact.Bytes(), raw) {
			t.Fatalf("raw is not compact: %s", raw)
		}
		if m, _ := b.MarshalJSON(); !bytes.Equal(m, raw) {
			t.Fatalf("MarshalJSON %s differs from raw %s", m, raw)
		}
		again, err := ParseBinding(raw)
		if err != nil {
			t.Fatalf("raw does not parse again: %v", err)
		}
		if again.Type() != b.Type() || again.Name() != b.Name() || !bytes.Equal(again.CanonicalJSON(), b.CanonicalJSON()) ||
			again.NormalizedValue() != b.NormalizedValue() || !again.Matches(b) || !b.Matches(again) {
			t.Fatalf("parsing raw again gives another binding:\n%s\n%s", b.CanonicalJSON(), again.CanonicalJSON())
		}
		if !json.Valid(b.CanonicalJSON()) {
			t.Fatalf("canonical JSON is not valid: %s", b.CanonicalJSON())
		}
		upErr, readErr := b.Validate(ForUpload), b.Validate(ForRead)
		if upErr == nil && readErr != nil {
			t.Fatalf("valid for upload but not for reading: %v", readErr)
		}
		if (upErr == nil) != (again.Validate(ForUpload) == nil) {
			t.Fatalf("validation differs after a round trip: %v vs %v", upErr, again.Validate(ForUpload))
		}
		if b.Sensitive() != (!IsKnownType(b.Type()) || b.WriteOnly() || hidesAnyType(raw)) {
			t.Fatalf("Sensitive() = %t for %s", b.Sensitive(), raw)
		}
		secrets := writeOnlyStrings(b)
		for _, e := range []error{upErr, readErr} {
			if e == nil {
				continue
			}
			for _, s := range secrets {
				if strings.Contains(e.Error(), s) {
					t.Fatalf("validation error shows the write-only value %q: %v", s, e)
				}
			}
		}
		red := b.Redacted()
		for _, s := range secrets {
			if bytes.Contains(red.Raw(), []byte(s)) {
				t.Fatalf("redacted binding shows the write-only value %q: %s", s, red.Raw())
			}
			if bytes.Contains(b.WithoutWriteOnly().Raw(), []byte(s)) {
				t.Fatalf("WithoutWriteOnly shows the write-only value %q", s)
			}
		}
	})
}

// hidesAnyType reports whether some type member of the object (keys
// matched case-insensitively) is not a string naming a known type
// without write-only values.
func hidesAnyType(raw []byte) bool {
	ms, err := ObjectMembers(raw)
	if err != nil {
		return true
	}
	return hidesValues(ms)
}

// writeOnlyStrings returns the string values (at least 6 bytes, not the
// type or name) of b's write-only members, as they read in its JSON.
func writeOnlyStrings(b Binding) []string {
	var out []string
	for _, k := range WriteOnlyFields(b.Type()) {
		v, ok := b.Field(k)
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil && len(s) >= 6 && s != b.Name() && s != b.Type() &&
			!strings.Contains(b.Name(), s) && !strings.Contains(b.Type(), s) && !strings.Contains(Redacted, s) {
			out = append(out, s)
		}
	}
	return out
}
