package cfapi

import (
	"encoding/json"
)

// writeOnlyValues returns the canonical JSON of the write-only members
// present in fields, in the order of the type's write-only list.
func writeOnlyValues(typ string, fields map[string]json.RawMessage) ([]normField, error) {
	sp, ok := specs[typ]
	if !ok || len(sp.writeOnly) == 0 {
		return nil, nil
	}
	var out []normField
	for _, k := range sp.writeOnly {
		v, ok := fields[k]
		if !ok {
			continue
		}
		cv, err := canonicalJSON(v)
		if err != nil {
			return nil, err
		}
		out = append(out, normField{key: k, val: cv})
	}
	return out, nil
}

// AppendCanonicalJSON appends CanonicalJSON's bytes to dst and returns the
// extended buffer. It parses nothing and, once dst has room, allocates
// nothing for names and keys made of printable ASCII; it is the fast path
// for fingerprinting many bindings. Like CanonicalJSON its output contains
// write-only values and must never be logged. The zero Binding appends
// nothing.
func (b Binding) AppendCanonicalJSON(dst []byte) []byte {
	if b.raw == nil {
		return dst
	}
	dst = append(dst, `{"name":`...)
	dst = appendJSONString(dst, b.name)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, b.typ)
	dst = append(dst, `,"value":{`...)
	for i, f := range b.norm {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, f.key)
		dst = append(dst, ':')
		dst = append(dst, f.val...)
	}
	dst = append(dst, '}')
	if IsWriteOnlyType(b.typ) {
		dst = append(dst, `,"write_only":{`...)
		var wo []normField
		if b.ext != nil {
			wo = b.ext.wo
		}
		for i, f := range wo {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, f.key)
			dst = append(dst, ':')
			dst = append(dst, f.val...)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendJSONString appends s encoded exactly as json.Marshal encodes it.
// Printable ASCII other than the characters encoding/json escapes is
// copied as is; anything else takes encoding/json's path.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSONByte[s[i]] {
			enc, _ := json.Marshal(s)
			return append(dst, enc...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// plainJSONByte marks the bytes that encoding/json copies into a string
// unchanged: printable ASCII other than '"', '\\', '<', '>' and '&'. It is
// read-only.
var plainJSONByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// RefBuilder builds Ref and Inherit bindings whose JSON shares one growing
// buffer, so that a caller building many of them (a planner keeping most of
// a script's bindings) allocates once instead of once per binding. The
// bindings it returns are ordinary immutable Bindings, equal byte for byte
// to those of Ref and Inherit. The zero value is ready to use; a RefBuilder
// is not safe for concurrent use.
type RefBuilder struct {
	buf []byte
}

// RefSize is the number of bytes Ref(typ, name) takes in a RefBuilder's
// buffer when neither string needs escaping.
func RefSize(typ, name string) int { return len(typ) + len(name) + len(`{"type":"","name":""}`) }

// Grow makes room for at least n more bytes of bindings.
func (r *RefBuilder) Grow(n int) {
	if cap(r.buf)-len(r.buf) < n {
		r.buf = make([]byte, 0, n)
	}
}

// Ref returns Ref(typ, name).
func (r *RefBuilder) Ref(typ, name string) Binding {
	need := RefSize(typ, name)
	if cap(r.buf)-len(r.buf) < need {
		r.Grow(max(need, 2*cap(r.buf), 256))
	}
	start := len(r.buf)
	r.buf = append(r.buf, `{"type":`...)
	r.buf = appendJSONString(r.buf, typ)
	r.buf = append(r.buf, `,"name":`...)
	r.buf = appendJSONString(r.buf, name)
	r.buf = append(r.buf, '}')
	// The full slice expression keeps later appends from reaching into
	// this binding's bytes.
	raw := r.buf[start:len(r.buf):len(r.buf)]
	return Binding{typ: typ, name: name, raw: raw}
}

// Inherit returns Inherit(name).
func (r *RefBuilder) Inherit(name string) Binding { return r.Ref(TypeInherit, name) }
