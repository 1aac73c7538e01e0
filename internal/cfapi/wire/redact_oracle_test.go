package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// oldRedactJSONWith is the reference redaction: it decodes every array and
// object into its members and copies each value at every level. It is the
// oracle that the streaming RedactJSONWith must match byte for byte.
func oldRedactJSONWith(data []byte, placeholder string) (redacted json.RawMessage, ok bool) {
	if !json.Valid(data) {
		return nil, false
	}
	out, err := oldRedactValue(nil, bytes.TrimSpace(data), placeholder)
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

// oldRedactValue appends the redacted copy of the JSON value v to dst.
func oldRedactValue(dst []byte, v json.RawMessage, placeholder string) ([]byte, error) {
	switch v[0] {
	case '[':
		return oldAppendArray(dst, v, func(dst []byte, e json.RawMessage) ([]byte, error) {
			return oldRedactValue(dst, e, placeholder)
		})
	case '{':
		ms, err := ObjectMembers(v)
		if err != nil {
			return nil, err
		}
		if isBinding(ms) {
			return oldAppendBinding(dst, v, ms, placeholder), nil
		}
		w := NewObject(dst, false) // walk it
		for _, m := range ms {
			w.key(m.Key)
			redact := oldRedactValue
			if oldHoldsBindings(m.Key) {
				redact = oldRedactBindingList
			}
			if w.buf, err = redact(w.buf, m.Value, placeholder); err != nil {
				return nil, err
			}
		}
		return w.Close(), nil
	}
	return append(dst, v...), nil
}

// oldRedactBindingList appends the redacted copy of v, the value of a member
// that holds bindings: each element of an array is redacted as a binding
// even when it has no type member (it keeps only a string name) or is not
// an object; null stays; any other value is hidden whole.
func oldRedactBindingList(dst []byte, v json.RawMessage, placeholder string) ([]byte, error) {
	switch v[0] {
	case 'n':
		return append(dst, v...), nil
	case '[':
	default:
		return appendJSONString(dst, placeholder, false), nil
	}
	return oldAppendArray(dst, v, func(dst []byte, e json.RawMessage) ([]byte, error) {
		if e[0] != '{' {
			return appendJSONString(dst, placeholder, false), nil
		}
		ms, err := ObjectMembers(e)
		if err != nil {
			return nil, err
		}
		return oldAppendBinding(dst, e, ms, placeholder), nil
	})
}

// oldAppendBinding appends the redacted copy of the binding v (its members
// ms): whole when its type is known to hold no secret, otherwise with
// every value but the kept ones (keepsValue) replaced by placeholder.
func oldAppendBinding(dst []byte, v json.RawMessage, ms []Member, placeholder string) []byte {
	if isBinding(ms) && !hidesValues(ms) {
		return append(dst, v...)
	}
	w := NewObject(dst, false)
	for _, m := range ms {
		if keepsValue(m) {
			w.raw(m.Key, m.Value)
		} else {
			w.Str(m.Key, placeholder)
		}
	}
	return w.Close()
}

// oldAppendArray appends the JSON array v to dst with each element written
// by elem.
func oldAppendArray(dst []byte, v json.RawMessage, elem func([]byte, json.RawMessage) ([]byte, error)) ([]byte, error) {
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

// keepsValue reports whether a member of a binding whose values are hidden
// is shown all the same: a type or name that is a string.
func keepsValue(m Member) bool {
	return (strings.EqualFold(m.Key, "type") || strings.EqualFold(m.Key, "name")) &&
		len(m.Value) > 0 && m.Value[0] == '"'
}

// holdsBindings reports whether an object member with key k holds an
// event's list of bindings.
func oldHoldsBindings(k string) bool {
	return strings.EqualFold(k, "bindings") || strings.EqualFold(k, "upsert")
}
