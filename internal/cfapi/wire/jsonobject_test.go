package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "<b>&", "tab\tnl\n", "\x00\x1f", "é", "\u2028\u2029", "bad\xffutf8", "\x7f"} {
		withHTML, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s, true); string(got) != "x"+string(withHTML) {
			t.Errorf("%q escaped: got %s, want %s", s, got[1:], withHTML)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if got := appendJSONString(nil, s, false); string(got) != strings.TrimSuffix(buf.String(), "\n") {
			t.Errorf("%q unescaped: got %s, want %s", s, got, buf.String())
		}
	}
}

func TestObjectWriter(t *testing.T) {
	w := NewObject([]byte("prefix:"), true)
	w.Str("s", "a<b")
	w.raw("n", []byte(`1.50`))
	w.fields("f", []normField{{"k<", `"v"`}, {"z", `[1]`}})
	if err := w.Bindings("bs", Bindings{Ref("ai", "A"), Inherit("B")}); err != nil {
		t.Fatal(err)
	}
	if err := w.CheckedRaw("bad", json.RawMessage(`{`)); err == nil {
		t.Error("checkedRaw accepted invalid JSON")
	}
	want := `prefix:{"s":"a\u003cb","n":1.50,"f":{"k\u003c":"v","z":[1]},"bs":[{"type":"ai","name":"A"},{"type":"inherit","name":"B"}]}`
	if got := string(w.Close()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	w = NewObject(nil, false)
	w.Str("k<", "&")
	if got := string(w.Close()); got != `{"k<":"&"}` {
		t.Errorf("without HTML escaping: %s", got)
	}
	w = NewObject(nil, true)
	if err := w.Bindings("bs", Bindings{{}}); err == nil {
		t.Error("a zero Binding was written")
	}
}

func TestObjectMembers(t *testing.T) {
	got, err := ObjectMembers([]byte(` {"b":1, "a":{"x":[1, 2]},"b":"2"} `))
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{"b", json.RawMessage(`1`)}, {"a", json.RawMessage(`{"x":[1, 2]}`)}, {"b", json.RawMessage(`"2"`)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	for _, in := range []string{``, `[]`, `"s"`, `{"a":1`, `{"a":1} {}`, `{"a":1} x`, `{"a"}`} {
		if _, err := ObjectMembers([]byte(in)); err == nil {
			t.Errorf("ObjectMembers(%q) succeeded", in)
		}
	}
}

func TestParseBindingRejectsInvalidUTF8(t *testing.T) {
	cases := []struct{ in, field string }{
		{"{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"a\xffb\"}", "text"},
		{"{\"type\":\"plain_text\",\"name\":\"A\xff\",\"text\":\"a\"}", "name"},
		{"{\"type\":\"kv\xc3\",\"name\":\"A\"}", "type"},
		{"{\"type\":\"json\",\"name\":\"J\",\"json\":{\"k\":[\"\xed\xa0\x80\"]}}", "json"},
		{"{\"type\":\"plain_text\",\"name\":\"A\",\"te\xffxt\":\"a\"}", ""},
	}
	for _, c := range cases {
		_, err := ParseBinding([]byte(c.in))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("ParseBinding(%q) = %v, want a *ValidationError", c.in, err)
			continue
		}
		if ve.Field != c.field || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("ParseBinding(%q): field %q (%v), want field %q", c.in, ve.Field, err, c.field)
		}
		if ve.Name == "" && c.field != "name" {
			t.Errorf("ParseBinding(%q): the error does not name the binding: %v", c.in, err)
		}
	}
	if _, err := ParseBinding([]byte(`{"type":"plain_text","name":"A","text":"é \u00e9"}`)); err != nil {
		t.Errorf("valid UTF-8 rejected: %v", err)
	}
}
