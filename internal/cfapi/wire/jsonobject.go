package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ObjectWriter appends one JSON object to a byte slice, member by member, in
// the order the members are written. It is the one place where this package
// and internal/cfapi write JSON whose member order matters (canonical forms,
// wrangler's metadata order, settings bodies, redacted copies). Keys and string values
// are encoded as encoding/json encodes them; with escapeHTML unset, '<', '>'
// and '&' are written as they are. Raw values are copied as they are: the
// caller vouches that they are valid JSON.
//
// Use it as w := NewObject(dst, true); w.Str(...); ...; dst = w.Close().
// Writing allocates nothing once dst has room, except for strings that need
// escaping.
type ObjectWriter struct {
	buf        []byte
	n          int // members written
	escapeHTML bool
}

// NewObject starts an object at the end of dst.
func NewObject(dst []byte, escapeHTML bool) ObjectWriter {
	return ObjectWriter{buf: append(dst, '{'), escapeHTML: escapeHTML}
}

// key writes the separator and the key of the next member; the caller
// appends its value to w.buf.
func (w *ObjectWriter) key(k string) {
	if w.n > 0 {
		w.buf = append(w.buf, ',')
	}
	w.n++
	w.buf = appendJSONString(w.buf, k, w.escapeHTML)
	w.buf = append(w.buf, ':')
}

// raw writes a member whose value is already encoded.
func (w *ObjectWriter) raw(k string, v []byte) {
	w.key(k)
	w.buf = append(w.buf, v...)
}

// Str writes a member whose value is the string s.
func (w *ObjectWriter) Str(k, s string) {
	w.key(k)
	w.buf = appendJSONString(w.buf, s, w.escapeHTML)
}

// fields writes a member whose value is the object of the pre-encoded
// fields fs, in their order.
func (w *ObjectWriter) fields(k string, fs []normField) {
	w.key(k)
	w.buf = appendFields(w.buf, fs, w.escapeHTML)
}

// CheckedRaw writes a member whose value is already encoded, after checking
// that it is valid JSON (values from callers, such as settings read back).
func (w *ObjectWriter) CheckedRaw(k string, v json.RawMessage) error {
	if !json.Valid(v) {
		return fmt.Errorf("member %q is not valid JSON", k)
	}
	w.raw(k, v)
	return nil
}

// Bindings writes a member whose value is the array of the bindings' JSON,
// each copied byte for byte (a nil list is written as []). A zero Binding
// is an error.
func (w *ObjectWriter) Bindings(k string, bs Bindings) error {
	w.key(k)
	w.buf = append(w.buf, '[')
	for i, b := range bs {
		if b.IsZero() {
			return fmt.Errorf("member %q: binding #%d is the zero Binding", k, i)
		}
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = append(w.buf, b.raw...)
	}
	w.buf = append(w.buf, ']')
	return nil
}

// Marshal writes a member whose value is v encoded by encoding/json.
func (w *ObjectWriter) Marshal(k string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("member %q: %w", k, err)
	}
	w.raw(k, data)
	return nil
}

// SortedKeys returns the keys of m in byte order, without those in skip.
func SortedKeys(m map[string]json.RawMessage, skip ...string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Close ends the object and returns the extended buffer.
func (w *ObjectWriter) Close() []byte { return append(w.buf, '}') }

// appendFields appends the object of the pre-encoded fields fs.
func appendFields(dst []byte, fs []normField, escapeHTML bool) []byte {
	w := NewObject(dst, escapeHTML)
	for _, f := range fs {
		w.key(f.key)
		w.buf = append(w.buf, f.val...)
	}
	return w.Close()
}

// appendJSONString appends s encoded as encoding/json encodes it (with or
// without HTML escaping). Printable ASCII that needs no escape is copied as
// is; anything else takes encoding/json's path.
func appendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || (escapeHTML && (c == '<' || c == '>' || c == '&')) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(escapeHTML)
			_ = enc.Encode(s) // a string always encodes
			return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Member is one member of a JSON object: its key and its raw value.
type Member struct {
	Key   string
	Value json.RawMessage
}

// ObjectMembers decodes a JSON object into its members, in the order they
// appear and duplicates included; values are kept as raw JSON. It fails
// when obj is not one JSON object.
func ObjectMembers(obj []byte) ([]Member, error) {
	obj = bytes.TrimSpace(obj)
	if len(obj) == 0 || obj[0] != '{' || !json.Valid(obj) {
		return nil, errors.New("not a JSON object (or data after it)")
	}
	// obj is one valid JSON object: split it without a decoder.
	var out []Member
	for i := skipSpace(obj, 1); obj[i] != '}'; {
		end := stringEnd(obj, i)
		key, err := unquoteKey(obj[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(obj, skipSpace(obj, end)+1) // past ':'
		vend := valueEnd(obj, i)
		out = append(out, Member{key, json.RawMessage(obj[i:vend])})
		if i = skipSpace(obj, vend); obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the JSON string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns the index after the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && !strings.ContainsRune(",}] \t\n\r", rune(b[i])) {
		i++
	}
	return i
}

// unquoteKey decodes a JSON string (a member's key).
func unquoteKey(q []byte) (string, error) {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	err := json.Unmarshal(q, &s)
	return s, err
}
