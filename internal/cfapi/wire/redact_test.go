package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedactJSON(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"secret_text keeps type and name",
			`{"type":"secret_text","name":"S","text":"hunter2"}`,
			`{"type":"secret_text","name":"S","text":"<redacted>"}`},
		{"secret type in capitals",
			`{"type":"SECRET_TEXT","name":"S","text":"hunter2"}`,
			`{"type":"SECRET_TEXT","name":"S","text":"<redacted>"}`},
		{"Text key and extra members of a secret",
			`{"type":"secret_text","name":"S","Text":"hunter2","extra":{"a":"hunter2"},"n":[1,"hunter2"]}`,
			`{"type":"secret_text","name":"S","Text":"<redacted>","extra":"<redacted>","n":"<redacted>"}`},
		{"secret_key keeps nothing but type and name",
			`{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"],"key_base64":"hunter2"}`,
			`{"type":"secret_key","name":"K","algorithm":"<redacted>","format":"<redacted>","usages":"<redacted>","key_base64":"<redacted>"}`},
		{"unknown secret-like type",
			`{"type":"my_secret","name":"X","value":"hunter2"}`,
			`{"type":"my_secret","name":"X","value":"<redacted>"}`},
		{"unknown type hides nested bindings too",
			`{"type":"stream","name":"V","opts":{"type":"plain_text","text":"hunter2"}}`,
			`{"type":"stream","name":"V","opts":"<redacted>"}`},
		{"type and name keys in other cases",
			`{"Type":"secret_text","NAME":"S","tExT":"hunter2"}`,
			`{"Type":"secret_text","NAME":"S","tExT":"<redacted>"}`},
		{"type that is not a string",
			`{"type":5,"name":"N","text":"hunter2"}`,
			`{"type":"<redacted>","name":"N","text":"<redacted>"}`},
		{"name that is not a string",
			`{"type":"secret_text","name":{"t":"hunter2"}}`,
			`{"type":"secret_text","name":"<redacted>"}`},
		{"a second type member that is secret",
			`{"type":"plain_text","Type":"secret_text","name":"A","text":"hunter2"}`,
			`{"type":"plain_text","Type":"secret_text","name":"A","text":"<redacted>"}`},
		{"duplicate type member, the last one secret",
			`{"type":"plain_text","name":"A","text":"hunter2","type":"secret_text"}`,
			`{"type":"plain_text","name":"A","text":"<redacted>","type":"secret_text"}`},
		{"known non-secret bindings are kept, nested objects included",
			`{"type":"json","name":"J","json":{"type":"secret_text","text":"inner"}}`,
			`{"type":"json","name":"J","json":{"type":"secret_text","text":"inner"}}`},
		{"plain_text and inherit are kept",
			`[{"type":"plain_text","name":"A","text":"a"},{"type":"inherit","name":"B","old_name":"C"}]`,
			`[{"type":"plain_text","name":"A","text":"a"},{"type":"inherit","name":"B","old_name":"C"}]`},
		{"bindings nested in an event",
			`{"op":"patch","upsert":[{"type":"kv_namespace","name":"KV","namespace_id":"k"},{"type":"secret_text","name":"S","text":"hunter2"}],"meta":{"deep":[[{"type":"x","v":"hunter2"}]]}}`,
			`{"op":"patch","upsert":[{"type":"kv_namespace","name":"KV","namespace_id":"k"},{"type":"secret_text","name":"S","text":"<redacted>"}],"meta":{"deep":[[{"type":"x","v":"<redacted>"}]]}}`},
		{"scalars and arrays at the top",
			`[1.50e3,"x",null,true,{"type":"secret_text","name":"S","text":"hunter2"}]`,
			`[1.50e3,"x",null,true,{"type":"secret_text","name":"S","text":"<redacted>"}]`},
		{"no HTML escaping", `{"k<>":"&","b":{"type":"plain_text","name":"A","text":"<b>&"}}`,
			`{"k<>":"&","b":{"type":"plain_text","name":"A","text":"<b>&"}}`},
		{"whitespace compacted", " { \"a\" : [ 1 , 2 ] ,\n\"b\":{ \"type\" : \"ai\" , \"name\" : \"AI\" } } ",
			`{"a":[1,2],"b":{"type":"ai","name":"AI"}}`},
		{"not a binding: no type member", `{"text":"shown","name":"N"}`, `{"text":"shown","name":"N"}`},
		{"invalid UTF-8 in a kept value", "{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"a\xffb\"}",
			"{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"a\uFFFDb\"}"},
		{"invalid UTF-8 in a secret", "{\"type\":\"secret_text\",\"name\":\"A\",\"text\":\"a\xffb\"}",
			`{"type":"secret_text","name":"A","text":"<redacted>"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := RedactJSON([]byte(c.in))
			if !ok {
				t.Fatalf("RedactJSON(%s) not ok", c.in)
			}
			if string(got) != c.want {
				t.Errorf("RedactJSON(%s)\n got %s\nwant %s", c.in, got, c.want)
			}
			if strings.Contains(string(got), "hunter2") || !utf8.Valid(got) {
				t.Errorf("output leaks or is not UTF-8: %s", got)
			}
		})
	}
}

func TestRedactJSONNotJSON(t *testing.T) {
	for _, in := range []string{``, ` `, `{`, `{"a":1} x`, `{"a":1}{"b":2}`, `nope`, `{"type":"secret_text","text":"hunter2"`} {
		if got, ok := RedactJSON([]byte(in)); ok || got != nil {
			t.Errorf("RedactJSON(%q) = %s, %v; want nil, false", in, got, ok)
		}
	}
}

func TestRedactJSONWithPlaceholder(t *testing.T) {
	got, ok := RedactJSONWith([]byte(`{"type":"secret_text","name":"S","text":"hunter2"}`), "(sensitive)")
	if want := `{"type":"secret_text","name":"S","text":"(sensitive)"}`; !ok || string(got) != want {
		t.Errorf("got %s, %v; want %s", got, ok, want)
	}
}

func TestBindingRedactedAndSensitive(t *testing.T) {
	cases := []struct {
		in        string
		want      string
		sensitive bool
	}{
		{`{"type":"secret_text","name":"S","text":"hunter2"}`, `{"type":"secret_text","name":"S","text":"<redacted>"}`, true},
		{`{"type":"secret_key","name":"K","algorithm":{"name":"HMAC"},"format":"raw","usages":["sign"],"key_base64":"hunter2"}`,
			`{"type":"secret_key","name":"K","algorithm":"<redacted>","format":"<redacted>","usages":"<redacted>","key_base64":"<redacted>"}`, true},
		{`{"type":"my_secret","name":"X","value":"hunter2"}`, `{"type":"my_secret","name":"X","value":"<redacted>"}`, true},
		{`{"type":"plain_text","name":"P","text":"shown","Type":"secret_text"}`, `{"type":"plain_text","name":"P","text":"<redacted>","Type":"secret_text"}`, true},
		{`{"type":"plain_text","name":"P","text":"shown"}`, `{"type":"plain_text","name":"P","text":"shown"}`, false},
		{`{"type":"json","name":"J","json":{"type":"secret_text","text":"in"}}`, `{"type":"json","name":"J","json":{"type":"secret_text","text":"in"}}`, false},
	}
	for _, c := range cases {
		b := MustParseBinding(c.in)
		r := b.Redacted()
		if string(r.Raw()) != c.want || r.Type() != b.Type() || r.Name() != b.Name() {
			t.Errorf("Redacted(%s) = %s, want %s", c.in, r.Raw(), c.want)
		}
		if b.Sensitive() != c.sensitive {
			t.Errorf("Sensitive(%s) = %v, want %v", c.in, b.Sensitive(), c.sensitive)
		}
	}
	if !Ref(TypeSecretText, "S").Sensitive() || Ref(TypeKVNamespace, "K").Sensitive() {
		t.Error("Sensitive of a Ref does not follow its type")
	}
}

// TestSensitiveAgreesWithRedactJSON: Sensitive, computed when a binding is
// built, is RedactJSON's verdict: a binding that is not sensitive comes out
// of RedactJSON unchanged, and a sensitive one keeps nothing but its type
// and name.
func TestSensitiveAgreesWithRedactJSON(t *testing.T) {
	var bs []Binding
	for _, raw := range loadCorpus(t) {
		bs = append(bs, MustParseBinding(string(raw)))
	}
	for _, s := range []string{
		`{"type":"stream","name":"V","x":1}`, `{"type":"plain_text","name":"P","text":"t","TYPE":"plain_text"}`,
		`{"type":"plain_text","name":"P","text":"t","type":"my_secret"}`, `{"type":"json","name":"J","json":{"type":"secret_text","text":"t"}}`,
	} {
		bs = append(bs, MustParseBinding(s))
	}
	bs = append(bs, Ref(TypeSecretKey, "K"), Ref("unknown", "U"), Inherit("I"))
	for _, b := range bs {
		out, ok := RedactJSON(b.Raw())
		if !ok {
			t.Fatalf("RedactJSON(%s) failed", b.Raw())
		}
		ms, err := ObjectMembers(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			kept := strings.EqualFold(m.Key, "type") || strings.EqualFold(m.Key, "name") || string(m.Value) == `"`+Redacted+`"`
			if b.Sensitive() && !kept {
				t.Errorf("%s is sensitive, but RedactJSON shows %s", b.Raw(), m.Key)
			}
		}
		if !b.Sensitive() && string(out) != string(b.Raw()) {
			t.Errorf("%s is not sensitive, but RedactJSON changes it to %s", b.Raw(), out)
		}
	}
}
