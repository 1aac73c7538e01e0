package wire

import "encoding/json"

// The canonical forms of a binding: NormalizedValue for comparing values,
// and CanonicalJSON (with AppendCanonicalJSON, its allocation-free form) for
// fingerprints. Both are built from the normalized members that
// ParseBinding computes once (see normalize.go).

// NormalizedValue returns the binding's comparison form as one canonical
// JSON object (without type, name and write-only values). Two bindings of
// the same type with equal NormalizedValue are equal for the API.
func (b Binding) NormalizedValue() string {
	return string(appendFields(nil, b.norm, true))
}

// CanonicalJSON returns the complete binding, write-only values included, as
// canonical JSON:
//
//	{"name":…,"type":…,"value":{…NormalizedValue…},"write_only":{…}}
//
// with sorted keys and aliases and defaults normalized as for Matches;
// "write_only" is present for write-only types only and holds the
// write-only members present, in the order of WriteOnlyFields. It is the
// input of value fingerprints, so its bytes must never change; it contains
// secrets, so it must never be logged. The zero Binding gives nil.
func (b Binding) CanonicalJSON() []byte { return b.AppendCanonicalJSON(nil) }

// AppendCanonicalJSON appends CanonicalJSON's bytes to dst and returns the
// extended buffer. It parses nothing and, once dst has room, allocates
// nothing for names and keys made of printable ASCII: it is the form to use
// when fingerprinting many bindings with one buffer. The zero Binding
// appends nothing.
func (b Binding) AppendCanonicalJSON(dst []byte) []byte {
	if b.raw == nil {
		return dst
	}
	w := NewObject(dst, true)
	w.Str("name", b.name)
	w.Str("type", b.typ)
	w.fields("value", b.norm)
	if IsWriteOnlyType(b.typ) {
		var wo []normField
		if b.ext != nil {
			wo = b.ext.wo
		}
		w.fields("write_only", wo)
	}
	return w.Close()
}

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
