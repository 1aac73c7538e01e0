package planner

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// Desired is a script's desired state as folded from events.
type Desired struct {
	// Bindings are the bindings the reconciler manages and wants present,
	// secrets with their values. A binding of type "inherit" means "keep
	// the live binding of this name" (or, with old_name, "rename it").
	Bindings []cfapi.Binding
	// Remove names bindings to delete whoever created them (a patch's
	// "remove"). Duplicates are ignored; a name that is not live needs
	// nothing and gets no action.
	Remove []string
	// Exclusive is set when a replace was folded: owned bindings that are
	// not in Bindings are removed. Bindings someone else created are left
	// alone all the same.
	Exclusive bool
	// Strategy is the requested write; "" or StrategyAuto lets the planner
	// choose.
	Strategy Strategy
}

// Applied is what the reconciler last wrote for one binding name: its type
// and the fingerprint of its value (see Planner.Fingerprint).
type Applied struct {
	Type        string `json:"type"`
	Fingerprint string `json:"fp"`
}

// LastApplied is the last-applied record of a script. A live binding is
// owned by the reconciler when this record lists its name with its type.
type LastApplied struct {
	Bindings map[string]Applied `json:"bindings"`
}

// Equal reports whether l and o record the same bindings. A caller whose
// plan is a no-op stores Plan.Applied only when it differs from the record
// it has.
func (l LastApplied) Equal(o LastApplied) bool {
	if len(l.Bindings) != len(o.Bindings) {
		return false
	}
	for name, a := range l.Bindings {
		if b, ok := o.Bindings[name]; !ok || a != b {
			return false
		}
	}
	return true
}

// Options configures a Planner.
type Options struct {
	// FingerprintKey is the HMAC-SHA256 key of value fingerprints. It must
	// not be empty, and it must stay the same across restarts and replicas:
	// a new key makes every secret look changed once, so it is rewritten.
	FingerprintKey []byte
}

// FingerprintLen is the length of a fingerprint: the first 16 bytes (128
// bits) of the HMAC-SHA256, as 32 lower-case hex digits.
const FingerprintLen = 32

// MaxDesiredBytes caps the JSON size of a script's whole desired set (the
// API bounds every request body; the event contract bounds an event to
// 1 MiB). Single bindings and values have their own caps, checked by
// cfapi.Binding.Validate.
const MaxDesiredBytes = 1 << 20

// Planner validates desired state and plans writes. It holds only the
// fingerprint key and a pool of hash states; it is safe for concurrent use.
type Planner struct {
	key  []byte
	pool sync.Pool // *fpState
}

// New returns a Planner. It fails when opts.FingerprintKey is empty.
func New(opts Options) (*Planner, error) {
	if len(opts.FingerprintKey) == 0 {
		return nil, errors.New("planner: Options.FingerprintKey is empty")
	}
	key := slices.Clone(opts.FingerprintKey)
	p := &Planner{key: key}
	p.pool.New = func() any {
		return &fpState{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 512)}
	}
	return p, nil
}

// fpState is one reusable HMAC with its scratch buffers.
type fpState struct {
	mac      hash.Hash
	buf, tmp []byte
	sum      [sha256.Size]byte
}

// maxPooledBuf keeps one huge binding from pinning a large buffer in the
// pool.
const maxPooledBuf = 64 << 10

func (p *Planner) getState() *fpState { return p.pool.Get().(*fpState) }

func (p *Planner) putState(st *fpState) {
	if cap(st.buf) > maxPooledBuf {
		st.buf = nil
	}
	if cap(st.tmp) > maxPooledBuf {
		st.tmp = nil
	}
	p.pool.Put(st)
}

// appendFP appends the fingerprint of b to dst. A non-empty as fingerprints
// b as if it were named as (a renamed binding); as must be a valid binding
// name, which needs no JSON escaping.
func (st *fpState) appendFP(dst []byte, b cfapi.Binding, as string) []byte {
	st.buf = b.AppendCanonicalJSON(st.buf[:0])
	if as != "" && as != b.Name() {
		// The canonical form starts {"name":<name>,"type":…; an encoded
		// name holds no unescaped quote, so the first `,"type":` ends it.
		if i := bytes.Index(st.buf, []byte(`,"type":`)); i >= 0 {
			st.tmp = append(st.tmp[:0], `{"name":"`...)
			st.tmp = append(st.tmp, as...)
			st.tmp = append(st.tmp, '"')
			st.tmp = append(st.tmp, st.buf[i:]...)
			st.buf, st.tmp = st.tmp, st.buf
		}
	}
	st.mac.Reset()
	st.mac.Write(st.buf)
	sum := st.mac.Sum(st.sum[:0])
	return hex.AppendEncode(dst, sum[:FingerprintLen/2])
}

// Fingerprint returns the fingerprint of b's value: the first FingerprintLen
// hex digits of HMAC-SHA256(key, b.CanonicalJSON()). It covers write-only
// values (a secret's text), so two secrets are equal exactly when their
// fingerprints are, and it reveals nothing about the value without the key.
func (p *Planner) Fingerprint(b cfapi.Binding) string {
	st := p.getState()
	defer p.putState(st)
	var out [FingerprintLen]byte
	return string(st.appendFP(out[:0], b, ""))
}

// Error is a desired state that cannot be planned against the live state
// (an inherit of a binding that does not exist, a part type requested
// through a settings PATCH) or a live state that cannot be planned against
// (two live bindings of one name). It names the binding and never holds a
// value. Like a *cfapi.ValidationError it is permanent: planning the same
// input again fails the same way.
type Error struct {
	Name  string // binding name
	Type  string // binding type, when known
	Field string // offending member, "" for the binding as a whole
	Msg   string
}

func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString("planner: binding ")
	fmt.Fprintf(&sb, "%q", e.Name)
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

// rename is a desired inherit binding with an old_name.
type rename struct {
	to, from string
	index    int // position of the inherit binding in Desired.Bindings
}

// Validate checks desired state without looking at the live state: every
// binding passes cfapi's upload rules (type, name, required members, value
// sizes), names are unique, the whole set is at most MaxDesiredBytes, every
// name in Remove is a valid binding name and not also upserted, inherit
// bindings rename at most once and from a name that is neither desired nor
// removed, and the strategy is known. Errors are *cfapi.ValidationError
// (or ParseStrategy's error for an unknown strategy); they name the binding
// and the field and never hold a value.
func (p *Planner) Validate(d Desired) error {
	_, err := p.check(d, sortedByName(d.Bindings), sortedNames(d.Remove))
	return err
}

// check is Validate on the sorted views that Plan builds anyway. It returns
// the renames of the desired set.
func (p *Planner) check(d Desired, ds byName, rm []string) ([]rename, error) {
	if _, err := ParseStrategy(string(d.Strategy)); err != nil {
		return nil, err
	}
	total := 0
	var renames []rename
	for i := range d.Bindings {
		b := &d.Bindings[i]
		if err := b.Validate(cfapi.ForUpload); err != nil {
			var ve *cfapi.ValidationError
			if errors.As(err, &ve) {
				ve.Index = i
			}
			return nil, err
		}
		total += len(b.Raw())
		if b.Type() == cfapi.TypeInherit {
			r, err := checkInherit(*b, i)
			if err != nil {
				return nil, err
			}
			if r.from != "" {
				renames = append(renames, r)
			}
		}
	}
	if total > MaxDesiredBytes {
		largest := d.Bindings[0]
		for _, b := range d.Bindings[1:] {
			if len(b.Raw()) > len(largest.Raw()) {
				largest = b
			}
		}
		return nil, &cfapi.ValidationError{Index: -1, Msg: fmt.Sprintf(
			"the desired set is %d bytes of JSON, over the limit of %d (the largest binding is %q, %d bytes)",
			total, MaxDesiredBytes, largest.Name(), len(largest.Raw()))}
	}
	for k := 1; k < ds.len(); k++ {
		if ds.name(k-1) == ds.name(k) {
			first, second := indexPair(d.Bindings, ds.name(k))
			return nil, &cfapi.ValidationError{Name: ds.name(k), Type: d.Bindings[second].Type(), Index: second,
				Field: "name", Msg: fmt.Sprintf("duplicate name (also binding #%d)", first)}
		}
	}
	for _, name := range rm {
		if err := cfapi.ValidateName(name); err != nil {
			return nil, &cfapi.ValidationError{Name: name, Index: -1, Field: "remove", Msg: err.Error()}
		}
		if b := ds.find(name); b != nil {
			i, _ := indexPair(d.Bindings, name)
			return nil, &cfapi.ValidationError{Name: name, Type: b.Type(), Index: i, Field: "name",
				Msg: "is both upserted and removed"}
		}
	}
	for x, r := range renames {
		verr := func(msg string, args ...any) error {
			return &cfapi.ValidationError{Name: r.to, Type: cfapi.TypeInherit, Index: r.index, Field: "old_name",
				Msg: fmt.Sprintf(msg, args...)}
		}
		switch {
		case ds.find(r.from) != nil:
			return nil, verr("renames %q, which is also desired; a renamed binding cannot stay", r.from)
		case slices.Contains(rm, r.from):
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

// checkInherit checks the members of a desired inherit binding that
// cfapi's rules leave open and returns its rename, if any.
func checkInherit(b cfapi.Binding, index int) (rename, error) {
	verr := func(field, msg string, args ...any) error {
		return &cfapi.ValidationError{Name: b.Name(), Type: b.Type(), Index: index, Field: field,
			Msg: fmt.Sprintf(msg, args...)}
	}
	if v, ok := b.String("version_id"); ok && v != "" && v != "latest" {
		return rename{}, verr("version_id", `only "latest" is supported: a binding inherited from another version cannot be checked against the live state`)
	}
	old, _ := b.String("old_name")
	if old == "" || old == b.Name() {
		return rename{}, nil
	}
	if err := cfapi.ValidateName(old); err != nil {
		return rename{}, verr("old_name", "%v", err)
	}
	return rename{to: b.Name(), from: old, index: index}, nil
}

// indexPair returns the positions of the first and the last binding named
// name (error paths only).
func indexPair(bs []cfapi.Binding, name string) (first, last int) {
	first, last = -1, -1
	for i, b := range bs {
		if b.Name() == name {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// byName is a view of bindings sorted by name.
type byName struct {
	bs    []cfapi.Binding
	keys  []uint64 // sorted; the index into bs is keys[x] & mask
	mask  uint64
	names []string // names in sorted order
}

// nameKey returns the first 8 bytes of s as a big-endian number, padded
// with zero bytes.
func nameKey(s string) uint64 {
	if len(s) >= 8 {
		_ = s[7]
		return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
			uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
	}
	var k uint64
	for i := range 8 {
		k <<= 8
		if i < len(s) {
			k |= uint64(s[i])
		}
	}
	return k
}

// sortedByName returns the bindings sorted by name (bytewise).
//
// Up to 256 bindings, each is sorted as one number: the first 7 bytes of
// its name above its index. Sorting numbers needs no comparison function
// and moves no pointers, which makes it several times faster than sorting
// by name; names that agree on their first 7 bytes (zero-padded, so they
// may still differ in length) are then sorted by name among themselves.
func sortedByName(bs []cfapi.Binding) byName {
	n := len(bs)
	keys := make([]uint64, n)
	s := byName{bs: bs, keys: keys, mask: 0xff}
	if n <= 256 {
		for i := range bs {
			keys[i] = nameKey(bs[i].Name())&^0xff | uint64(i)
		}
		slices.Sort(keys)
		for lo := 0; lo < n; {
			hi := lo + 1
			for hi < n && keys[hi]>>8 == keys[lo]>>8 {
				hi++
			}
			if hi-lo > 1 {
				slices.SortFunc(keys[lo:hi], func(a, b uint64) int {
					return strings.Compare(bs[a&0xff].Name(), bs[b&0xff].Name())
				})
			}
			lo = hi
		}
	} else {
		s.mask = ^uint64(0)
		for i := range keys {
			keys[i] = uint64(i)
		}
		slices.SortFunc(keys, func(a, b uint64) int { return strings.Compare(bs[a].Name(), bs[b].Name()) })
	}
	s.names = make([]string, n)
	for x, k := range keys {
		s.names[x] = bs[k&s.mask].Name()
	}
	return s
}

func (s byName) len() int                { return len(s.keys) }
func (s byName) name(x int) string       { return s.names[x] }
func (s byName) at(x int) *cfapi.Binding { return &s.bs[s.keys[x]&s.mask] }

// find returns the binding named name, or nil.
func (s byName) find(name string) *cfapi.Binding {
	x, ok := slices.BinarySearch(s.names, name)
	if !ok {
		return nil
	}
	return s.at(x)
}

func sortedNames(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
