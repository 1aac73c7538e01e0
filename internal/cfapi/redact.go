package cfapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Redacted is the placeholder that RedactJSON and Binding.Redacted put in
// place of a hidden value.
const Redacted = "<redacted>"

// RedactJSON returns a copy of the JSON document data in which no value of a
// binding that may be secret remains. It is the reconciler's one redaction
// rule, for dead letters, logs and plans, and it works on any JSON document
// (an event body, valid event or not, a binding, a list):
//
//   - Every JSON object with a "type" member (the key matched
//     case-insensitively) is a binding, wherever it sits: at the top, in
//     another object, in an array.
//   - A binding is known to be non-secret when every one of its type members
//     is a string naming, exactly, a type this package models that has no
//     write-only values (plain_text, kv_namespace, json, inherit, ...). Such
//     a binding is copied as it is, nested objects included.
//   - In every other binding (secret_text, secret_key, "SECRET_TEXT",
//     "my_secret", any unknown type, a type that is not a string) every
//     member is replaced by the string "<redacted>", except the type and name
//     members (keys matched case-insensitively) whose value is a string: a
//     secret_text keeps only its type and name.
//   - An object that is not a binding is walked member by member, except
//     that the value of a member named "bindings" or "upsert" (keys matched
//     case-insensitively, as encoding/json matches them) is an event's list
//     of bindings: every element of it is a binding whatever it looks like,
//     so an element without a type member (or that is not an object) is
//     hidden too, and a value that is not an array is replaced whole.
//
// Member order, duplicate members and number literals are kept; the output
// is compact, written without HTML escaping, and valid UTF-8 (invalid bytes
// inside strings become U+FFFD). ok is false, and the result nil, when data
// is not exactly one JSON value: the caller must then not store or log it.
func RedactJSON(data []byte) (redacted json.RawMessage, ok bool) {
	return RedactJSONWith(data, Redacted)
}

// RedactJSONWith is RedactJSON with another placeholder in place of hidden
// values (the planner shows "(sensitive)").
func RedactJSONWith(data []byte, placeholder string) (redacted json.RawMessage, ok bool) {
	if !json.Valid(data) {
		return nil, false
	}
	out, err := redactValue(nil, bytes.TrimSpace(data), placeholder)
	if err != nil {
		return nil, false
	}
	var buf bytes.Buffer
	if json.Compact(&buf, out) != nil {
		return nil, false
	}
	if !utf8.Valid(buf.Bytes()) {
		return bytes.ToValidUTF8(buf.Bytes(), []byte("\uFFFD")), true
	}
	return buf.Bytes(), true
}

// redactValue appends the redacted copy of the JSON value v to dst.
func redactValue(dst []byte, v json.RawMessage, placeholder string) ([]byte, error) {
	switch v[0] {
	case '[':
		return appendArray(dst, v, func(dst []byte, e json.RawMessage) ([]byte, error) {
			return redactValue(dst, e, placeholder)
		})
	case '{':
		ms, err := ObjectMembers(v)
		if err != nil {
			return nil, err
		}
		if isBinding(ms) {
			return appendBinding(dst, v, ms, placeholder), nil
		}
		w := newObject(dst, false) // walk it
		for _, m := range ms {
			w.key(m.Key)
			redact := redactValue
			if holdsBindings(m.Key) {
				redact = redactBindingList
			}
			if w.buf, err = redact(w.buf, m.Value, placeholder); err != nil {
				return nil, err
			}
		}
		return w.close(), nil
	}
	return append(dst, v...), nil
}

// holdsBindings reports whether an object member with key k holds an
// event's list of bindings.
func holdsBindings(k string) bool {
	return strings.EqualFold(k, "bindings") || strings.EqualFold(k, "upsert")
}

// redactBindingList appends the redacted copy of v, the value of a member
// that holds bindings: each element of an array is redacted as a binding
// even when it has no type member (it keeps only a string name) or is not
// an object; null stays; any other value is hidden whole.
func redactBindingList(dst []byte, v json.RawMessage, placeholder string) ([]byte, error) {
	switch v[0] {
	case 'n':
		return append(dst, v...), nil
	case '[':
	default:
		return appendJSONString(dst, placeholder, false), nil
	}
	return appendArray(dst, v, func(dst []byte, e json.RawMessage) ([]byte, error) {
		if e[0] != '{' {
			return appendJSONString(dst, placeholder, false), nil
		}
		ms, err := ObjectMembers(e)
		if err != nil {
			return nil, err
		}
		return appendBinding(dst, e, ms, placeholder), nil
	})
}

// appendBinding appends the redacted copy of the binding v (its members
// ms): whole when its type is known to hold no secret, otherwise with
// every value but the kept ones (keepsValue) replaced by placeholder.
func appendBinding(dst []byte, v json.RawMessage, ms []Member, placeholder string) []byte {
	if isBinding(ms) && !hidesValues(ms) {
		return append(dst, v...)
	}
	w := newObject(dst, false)
	for _, m := range ms {
		if keepsValue(m) {
			w.raw(m.Key, m.Value)
		} else {
			w.str(m.Key, placeholder)
		}
	}
	return w.close()
}

// appendArray appends the JSON array v to dst with each element written
// by elem.
func appendArray(dst []byte, v json.RawMessage, elem func([]byte, json.RawMessage) ([]byte, error)) ([]byte, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		return nil, err
	}
	dst = append(dst, '[')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = elem(dst, e); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// isBinding reports whether an object is a binding: it has a type member.
func isBinding(ms []Member) bool {
	for _, m := range ms {
		if strings.EqualFold(m.Key, "type") {
			return true
		}
	}
	return false
}

// hidesValues reports whether a binding's values are hidden: unless every
// type member is a string naming a known type without write-only values.
func hidesValues(ms []Member) bool {
	for _, m := range ms {
		if !strings.EqualFold(m.Key, "type") {
			continue
		}
		typ, ok := plainString(m.Value)
		if !ok && json.Unmarshal(m.Value, &typ) != nil || secretType(typ) {
			return true
		}
	}
	return false
}

// secretType reports whether a binding of type typ may hold a secret: it
// is not, exactly, a known type without write-only values.
func secretType(typ string) bool { return !IsKnownType(typ) || IsWriteOnlyType(typ) }

// keepsValue reports whether a member of a binding whose values are hidden
// is shown all the same: a type or name that is a string.
func keepsValue(m Member) bool {
	return (strings.EqualFold(m.Key, "type") || strings.EqualFold(m.Key, "name")) &&
		len(m.Value) > 0 && m.Value[0] == '"'
}

// Sensitive reports whether redaction hides b's values (see RedactJSON):
// true unless b is of a known type without write-only values. Plans and
// logs show a sensitive binding's type and name only. It is computed once,
// when b is built; the zero Binding is not sensitive.
func (b Binding) Sensitive() bool { return b.hidden }

// Redacted returns b as RedactJSON shows it: a binding that may hold a
// secret keeps only its type and name, every other member reads
// "<redacted>". A binding known to be non-secret is returned as it is.
func (b Binding) Redacted() Binding {
	if !b.hidden {
		return b
	}
	out, ok := RedactJSON(b.raw)
	if !ok {
		return Ref(b.typ, b.name)
	}
	nb, err := ParseBinding(out)
	if err != nil {
		return Ref(b.typ, b.name)
	}
	return nb
}
