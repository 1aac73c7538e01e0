package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Binding is one Workers binding exactly as the Cloudflare API expresses it.
//
// A Binding keeps the complete JSON object it was built from (compacted, key
// order preserved), so fields and types this package does not model
// round-trip unchanged. Type and name are read once at construction, and so
// is a normalized form used to compare a desired binding with a live one (see
// Matches). A Binding is immutable; its zero value is not a valid binding.
type Binding struct {
	typ  string
	name string
	raw  json.RawMessage
	// norm holds the binding's fields other than type, name and write-only
	// values, normalized (API defaults filled in, values re-encoded as
	// canonical JSON) and sorted by key.
	norm []normField
	// ext is set by ParseBinding (nil for Ref and Inherit): write-only
	// values and validation results computed once, at parse time.
	ext *bindingExt
	// hidden is RedactJSON's verdict on the object (see Sensitive),
	// computed once, when the binding is built.
	hidden bool
}

// bindingExt holds what ParseBinding computes besides norm. Valid bindings
// without write-only values all share plainExt.
type bindingExt struct {
	// wo holds the canonical JSON of the write-only members present, in the
	// order of the type's write-only list (see AppendCanonicalJSON).
	wo []normField
	// uploadErr and readErr are the results of validating in each mode, so
	// Validate on a parsed binding parses nothing.
	uploadErr, readErr *ValidationError
}

// plainExt is the bindingExt of every valid binding without write-only
// values. It is never modified.
var plainExt = &bindingExt{}

type normField struct {
	key string
	val string // canonical JSON encoding of the value
}

// ParseBinding decodes one binding object. It requires a JSON object whose
// "type" and "name" members are strings, and valid UTF-8 throughout (a
// *ValidationError naming the member otherwise: encoding/json would read
// bad bytes as U+FFFD while the raw bytes, sent as they are, would not
// match); every other member is kept as is. It does not validate the fields
// of the type (see Validate).
func ParseBinding(data []byte) (Binding, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Binding{}, errors.New("binding must be a JSON object")
	}
	// One validity pass, then the members are split without a decoder
	// (a reconcile parses every desired and live binding).
	ms, err := ObjectMembers(data)
	if err != nil {
		var probe map[string]json.RawMessage
		if uerr := json.Unmarshal(data, &probe); uerr != nil {
			return Binding{}, fmt.Errorf("binding: %w", uerr)
		}
		return Binding{}, fmt.Errorf("binding: %w", err)
	}
	fields := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		fields[m.Key] = m.Value // a repeated key: the last wins, as in encoding/json
	}
	typ, err := stringMember(fields, "type")
	if err != nil {
		return Binding{}, err
	}
	name, err := stringMember(fields, "name")
	if err != nil {
		return Binding{}, err
	}
	if !utf8.Valid(data) {
		return Binding{}, invalidUTF8(typ, name, fields)
	}
	raw := data
	if bytes.ContainsAny(data, " \t\n\r") {
		var buf bytes.Buffer
		buf.Grow(len(data))
		if err := json.Compact(&buf, data); err != nil {
			return Binding{}, fmt.Errorf("binding %q: %w", name, err)
		}
		raw = buf.Bytes()
		if ms, err = ObjectMembers(raw); err != nil {
			return Binding{}, fmt.Errorf("binding %q: %w", name, err)
		}
	} else {
		raw = bytes.Clone(data) // the caller's buffer may be reused
	}
	b := Binding{typ: typ, name: name, raw: raw}
	b.hidden = hidesValues(ms)
	b.norm, err = normalize(typ, fields)
	if err != nil {
		return Binding{}, fmt.Errorf("binding %q: %w", name, err)
	}
	wo, err := writeOnlyValues(typ, fields)
	if err != nil {
		return Binding{}, fmt.Errorf("binding %q: %w", name, err)
	}
	uploadErr := b.validate(ForUpload, fields)
	var readErr *ValidationError
	if uploadErr != nil {
		readErr = b.validate(ForRead, fields)
	}
	if wo == nil && uploadErr == nil {
		b.ext = plainExt
	} else {
		b.ext = &bindingExt{wo: wo, uploadErr: uploadErr, readErr: readErr}
	}
	return b, nil
}

func stringMember(fields map[string]json.RawMessage, key string) (string, error) {
	v, ok := fields[key]
	if !ok {
		return "", fmt.Errorf("binding: missing %q", key)
	}
	if s, ok := plainString(v); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("binding: %q must be a string", key)
	}
	return s, nil
}

// plainString returns the value of a JSON string without escapes that is
// valid UTF-8 (anything else is left to encoding/json).
func plainString(v json.RawMessage) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || bytes.IndexByte(v, '\\') >= 0 || !utf8.Valid(v) {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

// MustParseBinding is ParseBinding for literals in tests and examples; it
// panics on error.
func MustParseBinding(s string) Binding {
	b, err := ParseBinding([]byte(s))
	if err != nil {
		panic(err)
	}
	return b
}

// NewBinding builds a binding of the given type and name with extra fields.
// Fields are encoded with encoding/json; "type" and "name" in fields are
// ignored.
func NewBinding(typ, name string, fields map[string]any) (Binding, error) {
	obj := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		obj[k] = v
	}
	obj["type"] = typ
	obj["name"] = name
	data, err := json.Marshal(obj)
	if err != nil {
		return Binding{}, fmt.Errorf("binding %q: %w", name, err)
	}
	return ParseBinding(data)
}

// Ref returns the binding {"type":typ,"name":name} with no value. In a
// settings PATCH such an entry keeps the binding's current value.
func Ref(typ, name string) Binding {
	w := NewObject(make([]byte, 0, len(typ)+len(name)+len(`{"type":"","name":""}`)), true)
	w.Str("type", typ)
	w.Str("name", name)
	return Binding{typ: typ, name: name, raw: w.Close(), hidden: secretType(typ)}
}

// Inherit returns {"type":"inherit","name":name}: on a script upload or a
// version it carries the binding of that name over from the previous
// version.
func Inherit(name string) Binding { return Ref(TypeInherit, name) }

// Type returns the binding's "type".
func (b Binding) Type() string { return b.typ }

// Name returns the binding's "name".
func (b Binding) Name() string { return b.name }

// IsZero reports whether b is the zero Binding.
func (b Binding) IsZero() bool { return b.raw == nil }

// Raw returns the binding's complete JSON object. Callers must not modify it.
func (b Binding) Raw() json.RawMessage { return b.raw }

// MarshalJSON returns the binding's complete JSON object.
func (b Binding) MarshalJSON() ([]byte, error) {
	if b.raw == nil {
		return []byte("null"), nil
	}
	return b.raw, nil
}

// UnmarshalJSON decodes a binding with ParseBinding.
func (b *Binding) UnmarshalJSON(data []byte) error {
	nb, err := ParseBinding(data)
	if err != nil {
		return err
	}
	*b = nb
	return nil
}

// Field returns the raw JSON of one member of the binding object.
func (b Binding) Field(key string) (json.RawMessage, bool) {
	if b.raw == nil {
		return nil, false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(b.raw, &fields) != nil {
		return nil, false
	}
	v, ok := fields[key]
	return v, ok
}

// String returns a string member of the binding object; ok is false when the
// member is absent or not a string.
func (b Binding) String(key string) (s string, ok bool) {
	v, found := b.Field(key)
	if !found || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// Decode decodes the binding object into v, typically one of the typed
// structs of this package (KVNamespace, R2Bucket, ...).
func (b Binding) Decode(v any) error {
	if b.raw == nil {
		return errors.New("binding: zero value")
	}
	if err := json.Unmarshal(b.raw, v); err != nil {
		return fmt.Errorf("binding %q (%s): %w", b.name, b.typ, err)
	}
	return nil
}

// Known reports whether the binding's type is one this package models.
func (b Binding) Known() bool { _, ok := specs[b.typ]; return ok }

// WriteOnly reports whether the binding carries a value that the API never
// returns (secret_text, secret_key).
func (b Binding) WriteOnly() bool { return IsWriteOnlyType(b.typ) }

// InPart reports whether the binding refers to a multipart part of a script
// upload (wasm_module, text_blob, data_blob), which a settings PATCH cannot
// carry.
func (b Binding) InPart() bool { return IsPartType(b.typ) }

// HasWriteOnlyValue reports whether b carries a write-only value (for
// example a secret_text with its text), as an upload does and a GET never
// does.
func (b Binding) HasWriteOnlyValue() bool {
	sp, ok := specs[b.typ]
	if !ok || len(sp.writeOnly) == 0 {
		return false
	}
	for _, k := range sp.writeOnly {
		if _, ok := b.Field(k); ok {
			return true
		}
	}
	return false
}

// WithoutWriteOnly returns b without its write-only members, as a GET
// returns it.
func (b Binding) WithoutWriteOnly() Binding {
	sp, ok := specs[b.typ]
	if !ok || len(sp.writeOnly) == 0 {
		return b
	}
	return b.rebuild(func(k string, v json.RawMessage) (json.RawMessage, bool) {
		return v, !slices.Contains(sp.writeOnly, k)
	})
}

// WithName returns b under another name: its JSON with the "name" member
// set to name and every other member as it is, as the API holds a binding
// after a rename.
func (b Binding) WithName(name string) Binding {
	return b.rebuild(func(k string, v json.RawMessage) (json.RawMessage, bool) {
		if k == "name" {
			return appendJSONString(nil, name, true), true
		}
		return v, true
	})
}

// rebuild returns the binding made of b's members, in order, with f
// applied to each: f returns the member's new value, or false to drop it.
// It returns b unchanged when the result is not a binding.
func (b Binding) rebuild(f func(key string, v json.RawMessage) (json.RawMessage, bool)) Binding {
	ms, err := ObjectMembers(b.raw)
	if err != nil {
		return b
	}
	w := NewObject(make([]byte, 0, len(b.raw)), true)
	for _, m := range ms {
		if v, keep := f(m.Key, m.Value); keep {
			w.raw(m.Key, v)
		}
	}
	nb, err := ParseBinding(w.Close())
	if err != nil {
		return b
	}
	return nb
}

// Bindings is a list of bindings with helpers.
type Bindings []Binding

// ByName returns the binding with the given name.
func (bs Bindings) ByName(name string) (Binding, bool) {
	for _, b := range bs {
		if b.name == name {
			return b, true
		}
	}
	return Binding{}, false
}

// Names returns the names of the bindings in order.
func (bs Bindings) Names() []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.name
	}
	return out
}

// ParseBindingArray parses a JSON array of bindings, one ParseBinding per
// element, without a reflective decode (a settings answer's "bindings").
func ParseBindingArray(raw json.RawMessage) (Bindings, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New("must be an array")
	}
	if !json.Valid(raw) {
		return nil, errors.New("not valid JSON")
	}
	out := Bindings{}
	for i := skipSpace(raw, 1); raw[i] != ']'; {
		end := valueEnd(raw, i)
		b, err := ParseBinding(raw[i:end])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return out, nil
}
