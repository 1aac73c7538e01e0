package wire

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
//
// It reads data front to back twice and writes one output buffer. The first
// pass (scanObjects) decides, for every object in the order its '{' appears,
// whether it is a binding and whether its values are hidden; the second
// writes the redacted copy, skipping or copying each value exactly once.
// Besides the output it holds two bits per object and a small frame per
// level of nesting, so its memory is never proportional to depth × size
// however deep the document (see CheckJSONBounds for bounding the depth
// itself).
func RedactJSONWith(data []byte, placeholder string) (redacted json.RawMessage, ok bool) {
	if !json.Valid(data) {
		return nil, false
	}
	data = bytes.TrimSpace(data)
	r := redactor{
		in:   data,
		out:  make([]byte, 0, len(data)+len(data)/16+64), // room for placeholders
		ph:   appendJSONString(nil, placeholder, false),
		objs: scanObjects(data),
	}
	r.value(0)
	if !utf8.Valid(r.out) {
		return bytes.ToValidUTF8(r.out, []byte("\uFFFD")), true
	}
	return r.out, true
}

// objectVerdicts holds, per object of a document (numbered in the order
// its '{' appears), whether it is a binding and whether its values are
// hidden (hidesValues).
type objectVerdicts struct {
	binding, hidden bitset
}

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (s *bitset) add(i int) {
	for len(*s) <= i/64 {
		*s = append(*s, 0)
	}
	(*s)[i/64] |= 1 << (i % 64)
}

func (s bitset) has(i int) bool { return i/64 < len(s) && s[i/64]&(1<<(i%64)) != 0 }

// scanFrame is one open array or object of scanObjects.
type scanFrame struct {
	ord       int  // the object's number
	obj       bool // an object, not an array
	wantKey   bool // the next string is a key
	typeValue bool // the next value is a type member's
}

// scanObjects computes the verdicts of every object of the valid JSON
// document in, in one pass.
func scanObjects(in []byte) objectVerdicts {
	var v objectVerdicts
	var stack []scanFrame
	n := 0
	for i := 0; i < len(in); {
		var top *scanFrame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch c := in[i]; c {
		case ' ', '\t', '\n', '\r', ':':
			i++
		case ',':
			top.wantKey = top.obj
			i++
		case '{', '[':
			if top != nil && top.typeValue { // a type that is not a string
				v.hidden.add(top.ord)
				top.typeValue = false
			}
			if c == '{' {
				stack = append(stack, scanFrame{ord: n, obj: true, wantKey: true})
				n++
			} else {
				stack = append(stack, scanFrame{})
			}
			i++
		case '}', ']':
			stack = stack[:len(stack)-1]
			i++
		case '"':
			end := stringEnd(in, i)
			switch {
			case top != nil && top.wantKey:
				top.wantKey = false
				if keyIs(in[i:end], "type") {
					v.binding.add(top.ord)
					top.typeValue = true
				}
			case top != nil && top.typeValue:
				top.typeValue = false
				if secretTypeValue(in[i:end]) {
					v.hidden.add(top.ord)
				}
			}
			i = end
		default: // a number, true, false or null
			if top != nil && top.typeValue {
				v.hidden.add(top.ord)
				top.typeValue = false
			}
			i = valueEnd(in, i)
		}
	}
	return v
}

// secretTypeValue reports whether the JSON string q, a type member's
// value, names a type that may hold a secret (as hidesValues decides).
func secretTypeValue(q []byte) bool {
	typ, ok := plainString(q)
	if !ok && json.Unmarshal(q, &typ) != nil {
		return true
	}
	return secretType(typ)
}

// keyIs reports whether the JSON string q, an object's key, is name,
// matched case-insensitively as encoding/json matches keys.
func keyIs(q []byte, name string) bool {
	if bytes.IndexByte(q, '\\') < 0 {
		return bytes.EqualFold(q[1:len(q)-1], []byte(name))
	}
	k, err := unquoteKey(q)
	return err == nil && strings.EqualFold(k, name)
}

// holdsBindings reports whether an object member whose key is the JSON
// string q holds an event's list of bindings.
func holdsBindings(q []byte) bool { return keyIs(q, "bindings") || keyIs(q, "upsert") }

// redactor writes the redacted copy of a valid, trimmed JSON document.
// Every index it takes and returns points into in; next numbers the
// objects as scanObjects did, so each object finds its verdict.
type redactor struct {
	in, out []byte
	ph      []byte // the placeholder, encoded
	objs    objectVerdicts
	next    int // the number of the next object of in
}

// value writes the redacted copy of the value at in[i] and returns the
// index after it.
func (r *redactor) value(i int) int {
	switch r.in[i] {
	case '[':
		return r.array(i, false)
	case '{':
		if r.objs.binding.has(r.next) {
			return r.binding(i)
		}
		r.next++
		r.out = append(r.out, '{')
		for i = skipSpace(r.in, i+1); r.in[i] != '}'; {
			if r.out[len(r.out)-1] != '{' {
				r.out = append(r.out, ',')
			}
			var key []byte
			key, i = r.key(i)
			if holdsBindings(key) {
				i = r.bindingList(i)
			} else {
				i = r.value(i)
			}
			i = r.nextMember(i)
		}
		r.out = append(r.out, '}')
		return i + 1
	}
	return r.copyValue(i, true)
}

// key writes the key at in[i] and the colon after it, and returns the key
// (still quoted) and the index of the member's value.
func (r *redactor) key(i int) (key []byte, next int) {
	end := stringEnd(r.in, i)
	key = r.in[i:end]
	if plainKey(key) {
		r.out = append(r.out, key...)
	} else {
		k, _ := unquoteKey(key) // a valid document's key always decodes
		r.out = appendJSONString(r.out, k, false)
	}
	r.out = append(r.out, ':')
	return key, skipSpace(r.in, skipSpace(r.in, end)+1)
}

// plainKey reports whether the JSON string q is printable ASCII without
// escapes, so that appendJSONString writes it back as it is.
func plainKey(q []byte) bool {
	for _, c := range q[1 : len(q)-1] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// nextMember returns the index of the next member or element after the
// one that ends before in[i], or of the closing bracket.
func (r *redactor) nextMember(i int) int {
	if i = skipSpace(r.in, i); r.in[i] == ',' {
		i = skipSpace(r.in, i+1)
	}
	return i
}

// array writes the redacted copy of the array at in[i], each element as a
// value or, when list is set, as an element of a list of bindings.
func (r *redactor) array(i int, list bool) int {
	r.out = append(r.out, '[')
	for i = skipSpace(r.in, i+1); r.in[i] != ']'; i = r.nextMember(i) {
		if r.out[len(r.out)-1] != '[' {
			r.out = append(r.out, ',')
		}
		switch {
		case !list:
			i = r.value(i)
		case r.in[i] == '{':
			i = r.binding(i)
		default:
			r.out = append(r.out, r.ph...)
			i = r.copyValue(i, false)
		}
	}
	r.out = append(r.out, ']')
	return i + 1
}

// bindingList writes the redacted copy of the value at in[i], the value of
// a member that holds bindings: each element of an array is redacted as a
// binding even when it has no type member (it keeps only a string name) or
// is not an object; null stays; any other value is hidden whole.
func (r *redactor) bindingList(i int) int {
	switch r.in[i] {
	case 'n':
		return r.copyValue(i, true)
	case '[':
		return r.array(i, true)
	}
	r.out = append(r.out, r.ph...)
	return r.copyValue(i, false)
}

// binding writes the redacted copy of the object at in[i], which is the
// next object, as a binding: whole when its type is known to hold no
// secret, otherwise with every value but a string type or name replaced
// by the placeholder.
func (r *redactor) binding(i int) int {
	if r.objs.binding.has(r.next) && !r.objs.hidden.has(r.next) {
		return r.copyValue(i, true)
	}
	r.next++
	r.out = append(r.out, '{')
	for i = skipSpace(r.in, i+1); r.in[i] != '}'; i = r.nextMember(i) {
		if r.out[len(r.out)-1] != '{' {
			r.out = append(r.out, ',')
		}
		var key []byte
		key, i = r.key(i)
		if r.in[i] == '"' && (keyIs(key, "type") || keyIs(key, "name")) {
			i = r.copyValue(i, true)
		} else {
			r.out = append(r.out, r.ph...)
			i = r.copyValue(i, false)
		}
	}
	r.out = append(r.out, '}')
	return i + 1
}

// copyValue copies the value at in[i] without its insignificant spaces
// (or only skips it, when write is unset), counts the objects in it, and
// returns the index after it.
func (r *redactor) copyValue(i int, write bool) int {
	for depth := 0; ; {
		start := i
		switch c := r.in[i]; c {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		case '"':
			i = stringEnd(r.in, i)
		case '{', '[':
			if c == '{' {
				r.next++
			}
			depth++
			i++
		case '}', ']':
			depth--
			i++
		case ',', ':':
			i++
		default:
			i = valueEnd(r.in, i)
		}
		if write {
			r.out = append(r.out, r.in[start:i]...)
		}
		if depth == 0 {
			return i
		}
	}
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
