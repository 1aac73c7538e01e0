package planner

import (
	"errors"
	"fmt"
	"slices"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Validate checks desired state without looking at the live state: every
// binding passes cfapi's upload rules (type, name, required members, value
// sizes), names are unique, the whole set is at most MaxDesiredBytes, every
// name in Remove is a valid binding name and not also upserted, inherit
// bindings rename at most once and from a name that is neither desired nor
// removed, and the strategy is known. Errors are *wire.ValidationError
// (or ParseStrategy's error for an unknown strategy); they name the binding
// and the field and never hold a value. Plan validates the same way.
func Validate(d Desired) error {
	_, err := validate(d)
	return err
}

// rename is a desired inherit binding with an old_name.
type rename struct {
	to, from string
	index    int // position of the inherit binding in Desired.Bindings
}

// validate is Validate; it returns the renames of the desired set.
func validate(d Desired) ([]rename, error) {
	if _, err := ParseStrategy(string(d.Strategy)); err != nil {
		return nil, err
	}
	index, renames, err := checkBindings(d.Bindings)
	if err != nil {
		return nil, err
	}
	for _, name := range sortedNames(d.Remove) {
		if err := wire.ValidateName(name); err != nil {
			return nil, &wire.ValidationError{Name: name, Index: -1, Field: "remove", Msg: err.Error()}
		}
		if i, ok := index[name]; ok {
			return nil, &wire.ValidationError{Name: name, Type: d.Bindings[i].Type(), Index: i, Field: "name",
				Msg: "is both upserted and removed"}
		}
	}
	for x, r := range renames {
		verr := func(msg string, args ...any) error {
			return &wire.ValidationError{Name: r.to, Type: wire.TypeInherit, Index: r.index, Field: "old_name",
				Msg: fmt.Sprintf(msg, args...)}
		}
		switch {
		case hasKey(index, r.from):
			return nil, verr("renames %q, which is also desired; a renamed binding cannot stay", r.from)
		case slices.Contains(d.Remove, r.from):
			return nil, verr("renames %q, which is also removed", r.from)
		}
		for _, o := range renames[:x] {
			if o.from == r.from {
				return nil, verr("renames %q, which binding %q renames too", r.from, o.to)
			}
		}
	}
	return renames, nil
}

// checkBindings validates each desired binding, their total size and the
// uniqueness of their names. It returns the position of each name and the
// renames among the bindings.
func checkBindings(bs []wire.Binding) (map[string]int, []rename, error) {
	total := 0
	var renames []rename
	for i, b := range bs {
		if err := b.Validate(wire.ForUpload); err != nil {
			var ve *wire.ValidationError
			if errors.As(err, &ve) {
				ve.Index = i
			}
			return nil, nil, err
		}
		total += len(b.Raw())
		if b.Type() == wire.TypeInherit {
			r, err := checkInherit(b, i)
			if err != nil {
				return nil, nil, err
			}
			if r.from != "" {
				renames = append(renames, r)
			}
		}
	}
	if total > MaxDesiredBytes {
		largest := slices.MaxFunc(bs, func(a, b wire.Binding) int { return len(a.Raw()) - len(b.Raw()) })
		return nil, nil, &wire.ValidationError{Index: -1, Msg: fmt.Sprintf(
			"the desired set is %d bytes of JSON, over the limit of %d (the largest binding is %q, %d bytes)",
			total, MaxDesiredBytes, largest.Name(), len(largest.Raw()))}
	}
	index := make(map[string]int, len(bs))
	for i, b := range bs {
		if hasKey(index, b.Name()) {
			return nil, nil, duplicateError(bs)
		}
		index[b.Name()] = i
	}
	return index, renames, nil
}

// duplicateError is the error for desired bindings whose names are not
// unique. It names the first shared name in name order, so that it does
// not depend on the order of the list.
func duplicateError(bs []wire.Binding) error {
	name, first, second := firstDuplicate(bs)
	return &wire.ValidationError{Name: name, Type: bs[second].Type(), Index: second,
		Field: "name", Msg: fmt.Sprintf("duplicate name (also binding #%d)", first)}
}

// firstDuplicate returns the first name in name order that two of bs
// share, and the positions of the first and the last binding of that name.
// bs must hold such a name (error paths only).
func firstDuplicate(bs []wire.Binding) (name string, first, last int) {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
	}
	slices.Sort(names)
	for k := 1; k < len(names); k++ {
		if names[k-1] == names[k] {
			name = names[k]
			break
		}
	}
	first, last = -1, -1
	for i, b := range bs {
		if b.Name() == name {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return name, first, last
}

// checkInherit checks the members of a desired inherit binding that
// cfapi's rules leave open and returns its rename, if any.
func checkInherit(b wire.Binding, index int) (rename, error) {
	verr := func(field, msg string, args ...any) error {
		return &wire.ValidationError{Name: b.Name(), Type: b.Type(), Index: index, Field: field,
			Msg: fmt.Sprintf(msg, args...)}
	}
	if v, ok := b.String("version_id"); ok && v != "" && v != "latest" {
		return rename{}, verr("version_id", `only "latest" is supported: a binding inherited from another version cannot be checked against the live state`)
	}
	old, _ := b.String("old_name")
	if old == "" || old == b.Name() {
		return rename{}, nil
	}
	if err := wire.ValidateName(old); err != nil {
		return rename{}, verr("old_name", "%v", err)
	}
	return rename{to: b.Name(), from: old, index: index}, nil
}

// sortedNames returns names sorted, without duplicates (nil for none).
func sortedNames(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// hasKey reports whether m has the key k.
func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
