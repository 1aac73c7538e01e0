package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ValidateName checks a binding name: a JavaScript identifier (letters,
// digits, '_' and '$', not starting with a digit) of at most MaxNameLength
// bytes, which is what the API documents a name to be ("a JavaScript
// variable name").
func ValidateName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("name is %d bytes, over the limit of %d", len(name), MaxNameLength)
	}
	if !utf8.ValidString(name) {
		return errors.New("name is not valid UTF-8")
	}
	for i, r := range name {
		switch {
		case r == '_' || r == '$', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return fmt.Errorf("name %q is not a JavaScript identifier (character %q at byte %d)", name, r, i)
		}
	}
	return nil
}

// MaxNameLength is the longest binding name accepted.
const MaxNameLength = 256

// MaxValueBytes is the largest plain_text or secret_text value (5 KiB, the
// API's limit for environment variables and secrets; code 10054 beyond it).
const MaxValueBytes = 5 * 1024

// MaxBindingBytes bounds one binding's JSON encoding (json values included).
const MaxBindingBytes = 256 * 1024

// ValidationError reports a binding that breaks the rules of its type. It
// names the binding and the field and never includes a write-only value.
type ValidationError struct {
	Name  string // binding name ("" when missing)
	Type  string // binding type
	Index int    // position in the list being validated, -1 when unknown
	Field string // offending member ("" for the binding as a whole)
	Msg   string
}

func (e *ValidationError) Error() string {
	var sb strings.Builder
	sb.WriteString("binding")
	if e.Index >= 0 {
		fmt.Fprintf(&sb, " #%d", e.Index)
	}
	if e.Name != "" {
		fmt.Fprintf(&sb, " %q", e.Name)
	}
	if e.Type != "" {
		fmt.Fprintf(&sb, " (%s)", e.Type)
	}
	if e.Field != "" {
		fmt.Fprintf(&sb, ": field %q", e.Field)
	}
	sb.WriteString(": ")
	sb.WriteString(e.Msg)
	return sb.String()
}

// ValidateMode selects which rules Validate applies.
type ValidateMode int

const (
	// ForUpload applies every rule, including write-only values that an
	// upload must carry (a secret_text needs its text).
	ForUpload ValidateMode = iota
	// ForRead skips the rules for write-only values, which GET omits.
	ForRead
)

// Validate checks the binding's name and the members its type requires.
// Bindings of an unknown type are accepted as long as their name is valid:
// the API grows new types often, and they are carried through unchanged.
// A parsed binding is validated once, when it is parsed; Validate then
// returns a copy of the stored result without parsing anything.
func (b Binding) Validate(mode ValidateMode) error {
	var e *ValidationError
	switch {
	case b.ext != nil && mode == ForUpload:
		e = b.ext.uploadErr
	case b.ext != nil && mode == ForRead:
		e = b.ext.readErr
	default:
		e = b.validate(mode, nil)
	}
	if e == nil {
		return nil
	}
	c := *e // callers such as ValidateList set Index on their copy
	return &c
}

// validate applies the rules of Validate. fields is the decoded object, or
// nil to decode it from raw.
func (b Binding) validate(mode ValidateMode, fields map[string]json.RawMessage) *ValidationError {
	verr := func(field, format string, args ...any) *ValidationError {
		return &ValidationError{Name: b.name, Type: b.typ, Index: -1, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if b.raw == nil {
		return verr("", "empty binding")
	}
	if b.typ == "" {
		return verr("type", "is empty")
	}
	if err := ValidateName(b.name); err != nil {
		return verr("name", "%v", err)
	}
	if len(b.raw) > MaxBindingBytes {
		return verr("", "encoding is %d bytes, over the limit of %d", len(b.raw), MaxBindingBytes)
	}
	sp, ok := specs[b.typ]
	if !ok {
		return nil
	}
	if fields == nil {
		if err := json.Unmarshal(b.raw, &fields); err != nil {
			return verr("", "%v", err)
		}
	}
	for _, f := range sp.fields {
		v, present := fields[f.key]
		if !present || string(v) == "null" {
			if f.required && !(mode == ForRead && slices.Contains(sp.writeOnly, f.key)) {
				return verr(f.key, "is required for type %s", b.typ)
			}
			continue
		}
		if err := f.kind.check(v); err != nil {
			return verr(f.key, "%v", err)
		}
		if len(f.enum) > 0 {
			var s string
			_ = json.Unmarshal(v, &s)
			if !slices.Contains(f.enum, s) {
				return verr(f.key, "must be one of %s", strings.Join(f.enum, ", "))
			}
		}
		if f.maxBytes > 0 {
			var s string
			_ = json.Unmarshal(v, &s)
			if len(s) > f.maxBytes {
				return verr(f.key, "value is %d bytes, over the limit of %d", len(s), f.maxBytes)
			}
		}
	}
	if sp.check != nil {
		if field, msg := sp.check(fields, mode); msg != "" {
			return verr(field, "%s", msg)
		}
	}
	return nil
}

// ValidateList validates every binding and checks that names are unique.
func ValidateList(bs []Binding, mode ValidateMode) error {
	seen := make(map[string]int, len(bs))
	for i, b := range bs {
		if err := b.Validate(mode); err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				ve.Index = i
			}
			return err
		}
		if j, dup := seen[b.name]; dup {
			return &ValidationError{Name: b.name, Type: b.typ, Index: i, Field: "name",
				Msg: fmt.Sprintf("duplicate name (also binding #%d)", j)}
		}
		seen[b.name] = i
	}
	return nil
}

// invalidUTF8 is ParseBinding's error for a binding whose JSON is not valid
// UTF-8. It names the first member (in key order) whose value holds the bad
// bytes, or else says that a key does; it never shows a value.
func invalidUTF8(typ, name string, fields map[string]json.RawMessage) *ValidationError {
	e := &ValidationError{Name: name, Type: typ, Index: -1, Msg: "a member name is not valid UTF-8"}
	for _, k := range SortedKeys(fields) {
		if !utf8.Valid(fields[k]) {
			e.Field, e.Msg = k, "is not valid UTF-8"
			break
		}
	}
	return e
}
