package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/testutil"
)

func loadCorpus(t *testing.T) []json.RawMessage {
	t.Helper()
	return testutil.CorpusBindings(t)
}

func TestCorpusRoundTripAndValidate(t *testing.T) {
	raws := loadCorpus(t)
	seen := map[string]bool{}
	for _, raw := range raws {
		b, err := ParseBinding(raw)
		if err != nil {
			t.Fatalf("parse %s: %v", raw, err)
		}
		if !b.Known() {
			t.Errorf("type %s not known", b.Type())
		}
		seen[b.Type()] = true
		if err := b.Validate(ForUpload); err != nil {
			t.Errorf("validate %s: %v", b.Type(), err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var want, got any
		_ = json.Unmarshal(raw, &want)
		_ = json.Unmarshal(out, &got)
		if !jsonEqual(want, got) {
			t.Errorf("%s: round trip changed the binding:\n got %s\nwant %s", b.Type(), out, raw)
		}
		// Decoding the marshalled form again gives an equal binding.
		var b2 Binding
		if err := json.Unmarshal(out, &b2); err != nil {
			t.Fatal(err)
		}
		if !b.Matches(b2) || !b2.Matches(b) {
			t.Errorf("%s: binding does not match its own round trip", b.Type())
		}
	}
	for _, typ := range KnownTypes() {
		if !seen[typ] {
			t.Errorf("corpus lacks type %s", typ)
		}
	}
	if len(KnownTypes()) != 35 {
		t.Errorf("KnownTypes() = %d types, want 35", len(KnownTypes()))
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestUnknownTypeRoundTrip(t *testing.T) {
	raw := `{"type":"stream","name":"VIDEO","future_field":{"z":1,"a":[true,null]},"n":1.50}`
	b, err := ParseBinding([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if b.Known() {
		t.Fatal("stream should be unknown")
	}
	if err := b.Validate(ForUpload); err != nil {
		t.Fatalf("unknown types must validate: %v", err)
	}
	out, _ := json.Marshal(b)
	if string(out) != raw {
		t.Fatalf("unknown type not carried unchanged:\n got %s\nwant %s", out, raw)
	}
	// Key order and whitespace do not matter for comparison.
	b2 := MustParseBinding(`{"n":1.50, "future_field":{"a":[true,null],"z":1}, "name":"VIDEO","type":"stream"}`)
	if !b.Matches(b2) {
		t.Fatal("reordered unknown binding should match")
	}
	b3 := MustParseBinding(`{"type":"stream","name":"VIDEO","future_field":{"z":2,"a":[true,null]},"n":1.50}`)
	if b.Matches(b3) {
		t.Fatal("changed unknown binding should not match")
	}
}

func TestTypedDecode(t *testing.T) {
	var kv KVNamespace
	if err := MustParseBinding(`{"type":"kv_namespace","name":"KV","namespace_id":"abc"}`).Decode(&kv); err != nil || kv.NamespaceID != "abc" || kv.Name != "KV" {
		t.Fatalf("kv = %+v, %v", kv, err)
	}
	var d1 D1
	_ = MustParseBinding(`{"type":"d1","name":"DB","id":"x"}`).Decode(&d1)
	if d1.DatabaseIDOrID() != "x" {
		t.Fatalf("d1 id = %q", d1.DatabaseIDOrID())
	}
}

func TestMatchesNormalization(t *testing.T) {
	cases := []struct {
		name          string
		desired, live string
		want          bool
	}{
		{"d1 id is database_id", `{"type":"d1","name":"DB","id":"x"}`, `{"type":"d1","name":"DB","database_id":"x"}`, true},
		{"d1 different id", `{"type":"d1","name":"DB","id":"x"}`, `{"type":"d1","name":"DB","database_id":"y"}`, false},
		{"d1 both keys", `{"type":"d1","name":"DB","database_id":"x"}`, `{"type":"d1","name":"DB","database_id":"x","id":"x"}`, true},
		{"json as value", `{"type":"json","name":"C","json":{"b":1,"a":[1,2]}}`, `{"type":"json","name":"C","json":{"a":[1,2],"b":1}}`, true},
		{"json differs", `{"type":"json","name":"C","json":{"a":1}}`, `{"type":"json","name":"C","json":{"a":2}}`, false},
		{"service env default", `{"type":"service","name":"S","service":"w"}`, `{"type":"service","name":"S","service":"w","environment":"production"}`, true},
		{"service env differs", `{"type":"service","name":"S","service":"w"}`, `{"type":"service","name":"S","service":"w","environment":"staging"}`, false},
		{"ai_search namespace default", `{"type":"ai_search","name":"A","instance_name":"i"}`, `{"type":"ai_search","name":"A","instance_name":"i","namespace":"default"}`, true},
		{"r2 jurisdiction empty", `{"type":"r2_bucket","name":"R","bucket_name":"b"}`, `{"type":"r2_bucket","name":"R","bucket_name":"b","jurisdiction":""}`, true},
		{"r2 jurisdiction eu", `{"type":"r2_bucket","name":"R","bucket_name":"b"}`, `{"type":"r2_bucket","name":"R","bucket_name":"b","jurisdiction":"eu"}`, false},
		{"do server filled", `{"type":"durable_object_namespace","name":"D","class_name":"C"}`, `{"type":"durable_object_namespace","name":"D","class_name":"C","namespace_id":"ns1"}`, true},
		{"do namespace desired", `{"type":"durable_object_namespace","name":"D","class_name":"C","namespace_id":"ns2"}`, `{"type":"durable_object_namespace","name":"D","class_name":"C","namespace_id":"ns1"}`, false},
		{"do class differs", `{"type":"durable_object_namespace","name":"D","class_name":"C"}`, `{"type":"durable_object_namespace","name":"D","class_name":"E","namespace_id":"ns1"}`, false},
		{"secret text ignored", `{"type":"secret_text","name":"S","text":"v"}`, `{"type":"secret_text","name":"S"}`, true},
		{"type differs", `{"type":"plain_text","name":"S","text":"v"}`, `{"type":"secret_text","name":"S"}`, false},
		{"extra live member", `{"type":"kv_namespace","name":"K","namespace_id":"a"}`, `{"type":"kv_namespace","name":"K","namespace_id":"a","x":1}`, false},
		{"null member is absent", `{"type":"queue","name":"Q","queue_name":"q","delivery_delay":null}`, `{"type":"queue","name":"Q","queue_name":"q"}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MustParseBinding(c.desired).Matches(MustParseBinding(c.live)); got != c.want {
				t.Fatalf("Matches = %v, want %v", got, c.want)
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	cases := []struct {
		raw, field string
	}{
		{`{"type":"kv_namespace","name":"K"}`, "namespace_id"},
		{`{"type":"kv_namespace","name":"K","namespace_id":5}`, "namespace_id"},
		{`{"type":"secret_text","name":"S"}`, "text"},
		{`{"type":"plain_text","name":"1BAD","text":"x"}`, "name"},
		{`{"type":"plain_text","name":"","text":"x"}`, "name"},
		{`{"type":"r2_bucket","name":"R","bucket_name":"b","jurisdiction":"mars"}`, "jurisdiction"},
		{`{"type":"d1","name":"DB"}`, "database_id"},
		{`{"type":"ratelimit","name":"L","namespace_id":"1","simple":{"limit":1}}`, "simple.period"},
		{`{"type":"secret_key","name":"K","algorithm":{},"format":"raw","usages":["sign"]}`, "key_base64"},
		{`{"type":"secret_key","name":"K","algorithm":{},"format":"jwk","usages":["sign"]}`, "key_jwk"},
		{`{"type":"vpc_network","name":"N","network_id":"a","tunnel_id":"b"}`, "tunnel_id"},
		{`{"type":"plain_text","name":"P","text":"` + strings.Repeat("x", MaxValueBytes+1) + `"}`, "text"},
	}
	for _, c := range cases {
		err := MustParseBinding(c.raw).Validate(ForUpload)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: err = %v, want ValidationError", c.raw[:min(60, len(c.raw))], err)
			continue
		}
		if ve.Field != c.field {
			t.Errorf("%s: field = %q, want %q (%v)", c.raw[:min(60, len(c.raw))], ve.Field, c.field, err)
		}
	}
	// GET output of a secret lacks the text and is valid for reading.
	if err := MustParseBinding(`{"type":"secret_text","name":"S"}`).Validate(ForRead); err != nil {
		t.Fatal(err)
	}
	if err := ValidateList([]Binding{MustParseBinding(`{"type":"ai","name":"A"}`), MustParseBinding(`{"type":"ai","name":"A"}`)}, ForUpload); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate names: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{``, `[]`, `{"name":"A"}`, `{"type":1,"name":"A"}`, `{"type":"ai"}`, `{"type":"ai","name":"A"`} {
		if _, err := ParseBinding([]byte(raw)); err == nil {
			t.Errorf("ParseBinding(%q) succeeded", raw)
		}
	}
}

func TestRedactedAndWithoutWriteOnly(t *testing.T) {
	b := MustParseBinding(`{"type":"secret_text","name":"S","text":"hunter2"}`)
	if strings.Contains(string(b.Redacted().Raw()), "hunter2") {
		t.Fatal("redacted binding leaks the secret")
	}
	if got := string(b.WithoutWriteOnly().Raw()); got != `{"type":"secret_text","name":"S"}` {
		t.Fatalf("WithoutWriteOnly = %s", got)
	}
	k := MustParseBinding(`{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"],"key_base64":"c2VjcmV0"}`)
	if strings.Contains(string(k.Redacted().Raw()), "c2VjcmV0") || strings.Contains(string(k.WithoutWriteOnly().Raw()), "key_base64") {
		t.Fatal("secret_key material leaks")
	}
	if !strings.Contains(string(b.CanonicalJSON()), "hunter2") {
		t.Fatal("canonical JSON must include write-only values for fingerprints")
	}
	if got := string(Ref("kv_namespace", "KV").Raw()); got != `{"type":"kv_namespace","name":"KV"}` {
		t.Fatalf("Ref = %s", got)
	}
}

func TestWithName(t *testing.T) {
	b := MustParseBinding(`{"type":"queue","name":"OLD","queue_name":"q","delivery_delay":5}`)
	got := b.WithName("NEW")
	if got.Name() != "NEW" || got.Type() != "queue" || string(got.Raw()) != `{"type":"queue","name":"NEW","queue_name":"q","delivery_delay":5}` {
		t.Fatalf("WithName = %s", got.Raw())
	}
	if !got.Matches(MustParseBinding(`{"type":"queue","name":"NEW","queue_name":"q","delivery_delay":5}`)) {
		t.Error("the renamed binding does not match the same binding under the new name")
	}
	want := MustParseBinding(`{"type":"queue","name":"NEW","queue_name":"q","delivery_delay":5}`).CanonicalJSON()
	if string(got.CanonicalJSON()) != string(want) {
		t.Errorf("canonical JSON %s, want %s", got.CanonicalJSON(), want)
	}
	if b.Name() != "OLD" {
		t.Error("WithName changed its receiver")
	}
}

func TestParseBindingArray(t *testing.T) {
	bs, err := ParseBindingArray([]byte(` [ {"type":"plain_text","name":"A","text":"a"} , {"type":"inherit","name":"B"} ] `))
	if err != nil {
		t.Fatal(err)
	}
	if got := bs.Names(); len(got) != 2 || got[0] != "A" || got[1] != "B" {
		t.Errorf("names %v, want [A B]", got)
	}
	if bs, err := ParseBindingArray([]byte(`[]`)); err != nil || bs == nil || len(bs) != 0 {
		t.Errorf("empty array: %v, %v; want an empty, non-nil list", bs, err)
	}
	for _, in := range []string{``, `{}`, `null`, `[`, `[{"type":"ai","name":"A"}`, `[1,]`, `[{"type":"ai","name":"A"}] x`} {
		if _, err := ParseBindingArray([]byte(in)); err == nil {
			t.Errorf("ParseBindingArray(%q) succeeded", in)
		}
	}
	for _, in := range []string{`[{"type":"ai","name":"A"},1]`, "[{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"\xff\"}]"} {
		if _, err := ParseBindingArray([]byte(in)); err == nil {
			t.Errorf("ParseBindingArray(%q): an element that is not a binding was accepted", in)
		}
	}
}
