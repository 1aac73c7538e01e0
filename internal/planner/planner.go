package planner

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Desired is a script's desired state as folded from events.
type Desired struct {
	// Bindings are the bindings the reconciler manages and wants present,
	// secrets with their values. A binding of type "inherit" means "keep
	// the live binding of this name" (or, with old_name, "rename it").
	Bindings []wire.Binding
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
// and the fingerprint of its value (see Planner.Fingerprint), and, when the
// write was a rename (an inherit with old_name), the name it renamed.
type Applied struct {
	Type        string `json:"type"`
	Fingerprint string `json:"fp"`
	// RenamedFrom is the old_name a rename carried over to this name. Once
	// it is recorded the rename is done: a binding created again under the
	// old name is someone else's and left alone.
	RenamedFrom string `json:"renamed_from,omitempty"`
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
// wire.Binding.Validate.
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
		return &fpState{mac: hmac.New(sha256.New, key)}
	}
	return p, nil
}

// fpState is one reusable HMAC with its scratch buffer.
type fpState struct {
	mac hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// maxPooledBuf keeps one huge binding from pinning a large buffer in the
// pool.
const maxPooledBuf = 64 << 10

// Fingerprint returns the fingerprint of b's value: the first FingerprintLen
// hex digits of HMAC-SHA256(key, b.CanonicalJSON()). It covers write-only
// values (a secret's text), so two secrets are equal exactly when their
// fingerprints are, and it reveals nothing about the value without the key.
func (p *Planner) Fingerprint(b wire.Binding) string {
	st := p.pool.Get().(*fpState)
	defer func() {
		if cap(st.buf) > maxPooledBuf {
			st.buf = nil
		}
		p.pool.Put(st)
	}()
	st.buf = b.AppendCanonicalJSON(st.buf[:0])
	st.mac.Reset()
	st.mac.Write(st.buf)
	return hex.EncodeToString(st.mac.Sum(st.sum[:0])[:FingerprintLen/2])
}

// Error is a desired state that cannot be planned against the live state
// (an inherit of a binding that does not exist, a part type requested
// through a settings PATCH) or a live state that cannot be planned against
// (two live bindings of one name). It names the binding and never holds a
// value. Like a *wire.ValidationError it is permanent: planning the same
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
