package wire

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// normalize builds the comparison form of a binding: every member but type,
// name and write-only values, with deprecated aliases renamed (d1 id →
// database_id), empty values that mean "absent" dropped (R2 jurisdiction),
// null members dropped, the API's defaults filled in (service environment
// "production", ai_search namespace "default"), each value re-encoded as
// canonical JSON (sorted object keys, no whitespace) and the list sorted by
// key. Unknown types get the same treatment without type-specific rules, so
// they compare as canonical JSON.
func normalize(typ string, fields map[string]json.RawMessage) ([]normField, error) {
	sp := specs[typ] // zero spec for unknown types
	out := make([]normField, 0, len(fields))
	seen := func(key string) bool {
		for _, f := range out {
			if f.key == key {
				return true
			}
		}
		return false
	}
	for k, v := range fields {
		if k == "type" || k == "name" || slices.Contains(sp.writeOnly, k) {
			continue
		}
		if string(v) == "null" {
			continue
		}
		key := k
		if target, ok := sp.aliases[k]; ok {
			if _, both := fields[target]; both {
				continue // the current name wins over the deprecated alias
			}
			key = target
		}
		cv, err := canonicalJSON(v)
		if err != nil {
			return nil, err
		}
		if cv == `""` && slices.Contains(sp.emptyAbsent, key) {
			continue
		}
		out = append(out, normField{key: key, val: cv})
	}
	for k, v := range sp.defaults {
		if !seen(k) {
			out = append(out, normField{key: k, val: v})
		}
	}
	slices.SortFunc(out, func(a, b normField) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

// canonicalJSON re-encodes a JSON value with sorted object keys and no
// insignificant whitespace. Numbers keep their literal text.
func canonicalJSON(v json.RawMessage) (string, error) {
	// Fast path for plain strings without escapes, the common case.
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 &&
		bytes.IndexByte(v[1:len(v)-1], '"') < 0 && isPlainASCII(v[1:len(v)-1]) {
		return string(v), nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func isPlainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// Matches reports whether the desired binding d is already satisfied by the
// live binding l as GET returns it: same name and type, and the same
// normalized members. Members the API fills in by itself (durable object
// namespace_id and class_name) are compared only when d sets them.
// Write-only values are not compared: GET never returns them, so a secret's
// equality is decided by fingerprints instead (see the planner).
func (d Binding) Matches(l Binding) bool {
	if d.typ != l.typ || d.name != l.name {
		return false
	}
	serverFilled := specs[d.typ].serverFilled
	i, j := 0, 0
	for i < len(d.norm) || j < len(l.norm) {
		switch {
		case j == len(l.norm) || (i < len(d.norm) && d.norm[i].key < l.norm[j].key):
			return false // desired sets a member live lacks
		case i == len(d.norm) || l.norm[j].key < d.norm[i].key:
			if !slices.Contains(serverFilled, l.norm[j].key) {
				return false
			}
			j++
		default:
			if d.norm[i].val != l.norm[j].val {
				return false
			}
			i++
			j++
		}
	}
	return true
}
