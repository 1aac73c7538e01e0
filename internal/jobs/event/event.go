package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/planner"
)

// SchemaV1 is the only event schema this version understands.
const SchemaV1 = "bindings.change/v1"

// MaxEventBytes is the largest event body accepted (docs/events.md: 1 MiB).
const MaxEventBytes = 1 << 20

// Event ops.
const (
	OpReplace = "replace"
	OpPatch   = "patch"
)

// NoNamespace is the subject token of an ordinary Worker (no dispatch
// namespace).
const NoNamespace = "_"

// Event is a decoded, validated binding-change event (docs/events.md).
type Event struct {
	Schema            string         `json:"schema"`
	ID                string         `json:"id"`
	AccountID         string         `json:"account_id"`
	DispatchNamespace string         `json:"dispatch_namespace,omitempty"`
	Script            string         `json:"script"`
	Generation        *uint64        `json:"generation,omitempty"`
	Op                string         `json:"op"`
	Bindings          []wire.Binding `json:"bindings,omitempty"`
	Upsert            []wire.Binding `json:"upsert,omitempty"`
	Remove            []string       `json:"remove,omitempty"`
	Strategy          string         `json:"strategy,omitempty"`
	OccurredAt        *time.Time     `json:"occurred_at,omitempty"`
	// StoredAt is when NATS stored the event's message (Unix ns, from its
	// metadata; the same on every delivery), 0 when it was not read from a
	// stream. It orders events without a generation (Stamp.At).
	StoredAt int64 `json:"-"`
}

// Ref returns the script the event is about.
func (e *Event) Ref() cfapi.ScriptRef {
	return cfapi.ScriptRef{AccountID: e.AccountID, Namespace: e.DispatchNamespace, Script: e.Script}
}

// Key returns the script's key in the KV buckets: account.namespace.script.
func (e *Event) Key() string { return ScriptKey(e.Ref()) }

// ScriptKey returns the KV key and subject suffix of a script:
// <account>.<namespace or _>.<script>.
func ScriptKey(ref cfapi.ScriptRef) string {
	ns := ref.Namespace
	if ns == "" {
		ns = NoNamespace
	}
	return ref.AccountID + "." + ns + "." + ref.Script
}

// ParseScriptKey is the inverse of ScriptKey.
func ParseScriptKey(key string) (cfapi.ScriptRef, error) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return cfapi.ScriptRef{}, fmt.Errorf("script key %q: want account.namespace.script", key)
	}
	ref := cfapi.ScriptRef{AccountID: parts[0], Namespace: parts[1], Script: parts[2]}
	if ref.Namespace == NoNamespace {
		ref.Namespace = ""
	}
	if err := ref.Validate(); err != nil {
		return cfapi.ScriptRef{}, fmt.Errorf("script key %q: %w", key, err)
	}
	return ref, nil
}

// Subject returns the event subject of a script under prefix.
func Subject(prefix string, ref cfapi.ScriptRef) string { return prefix + "." + ScriptKey(ref) }

// InvalidEventError says why an event cannot be applied. Reason is a short,
// bounded label (used in metrics and the dead-letter record); Msg names the
// field. It never contains a secret value.
type InvalidEventError struct {
	Reason Reason
	Msg    string
}

func (e *InvalidEventError) Error() string { return string(e.Reason) + ": " + e.Msg }

func Invalidf(reason Reason, format string, args ...any) error {
	return &InvalidEventError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// DecodeEvent decodes and validates one event body received on subject
// (which may be empty when not known). Every failure is an
// *InvalidEventError naming the field.
func DecodeEvent(data []byte, subject, prefix string) (*Event, error) {
	raw, err := decodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	e := &Event{}
	if err := raw.identity(e); err != nil {
		return nil, err
	}
	if err := raw.operations(e); err != nil {
		return nil, err
	}
	strategy, err := raw.options(e)
	if err != nil {
		return nil, err
	}
	// Bindings are validated as the planner validates desired state: each
	// binding's fields, names, duplicates, a name both upserted and removed.
	d := planner.Desired{Bindings: e.Bindings, Strategy: strategy}
	if e.Op == OpPatch {
		d = planner.Desired{Bindings: e.Upsert, Remove: e.Remove, Strategy: strategy}
	}
	if err := planner.Validate(d); err != nil {
		return nil, Invalidf(ReasonInvalidBinding, "%v", err)
	}
	if subject != "" {
		if want := Subject(prefix, e.Ref()); subject != want {
			return nil, Invalidf(ReasonSubjectMismatch, "event for %s arrived on subject %q (want %q)", e.Ref(), subject, want)
		}
	}
	return e, nil
}

// rawEvent is an event's envelope with its bindings still raw, so that a
// bad binding is reported by position and name rather than as a JSON
// error.
type rawEvent struct {
	Schema            *string           `json:"schema"`
	ID                *string           `json:"id"`
	AccountID         *string           `json:"account_id"`
	DispatchNamespace *string           `json:"dispatch_namespace"`
	Script            *string           `json:"script"`
	Generation        json.RawMessage   `json:"generation"`
	Op                *string           `json:"op"`
	Bindings          []json.RawMessage `json:"bindings"`
	Upsert            []json.RawMessage `json:"upsert"`
	Remove            []string          `json:"remove"`
	Strategy          *string           `json:"strategy"`
	OccurredAt        *string           `json:"occurred_at"`
}

// CheckBounds bounds an event body before anything decodes, redacts or
// copies it: at most MaxEventBytes bytes and wire.MaxJSONDepth levels of
// nested arrays and objects. It costs one pass over the body and
// allocates nothing for a body within the bounds; a body over one is an
// *InvalidEventError with ReasonTooLarge or ReasonTooDeep, and nothing of
// it but its size and digest may be kept.
func CheckBounds(data []byte) error {
	err := wire.CheckJSONBounds(data, MaxEventBytes, wire.MaxJSONDepth)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wire.ErrTooDeep):
		return Invalidf(ReasonTooDeep, "event %v", err)
	default:
		return Invalidf(ReasonTooLarge, "event is %d bytes, over the limit of %d", len(data), MaxEventBytes)
	}
}

// decodeEnvelope checks the size, depth and encoding of a body and
// decodes its envelope.
func decodeEnvelope(data []byte) (*rawEvent, error) {
	if err := CheckBounds(data); err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		// encoding/json would replace the bad bytes silently, and the raw
		// binding JSON would carry them to the API.
		return nil, Invalidf(ReasonInvalidJSON, "event is not valid UTF-8 (at byte %d)", invalidUTF8At(data))
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, Invalidf(ReasonInvalidJSON, "event must be a JSON object")
	}
	var raw rawEvent
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, Invalidf(ReasonInvalidField, "field %q must be %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return nil, Invalidf(ReasonInvalidJSON, "%v", err)
	}
	return &raw, nil
}

// required returns a required string member.
func required(name string, v *string) (string, error) {
	if v == nil || *v == "" {
		return "", Invalidf(ReasonMissingField, "field %q is required", name)
	}
	return *v, nil
}

// identity checks and copies the schema, id and script of the event.
func (raw *rawEvent) identity(e *Event) error {
	var err error
	if raw.Schema == nil {
		return Invalidf(ReasonMissingField, "field \"schema\" is required")
	}
	if *raw.Schema != SchemaV1 {
		return Invalidf(ReasonSchema, "schema %q is not supported (want %q)", *raw.Schema, SchemaV1)
	}
	e.Schema = *raw.Schema
	if e.ID, err = required("id", raw.ID); err != nil {
		return err
	}
	if len(e.ID) > 256 {
		return Invalidf(ReasonInvalidField, "field \"id\" is %d bytes, over the limit of 256", len(e.ID))
	}
	if e.AccountID, err = required("account_id", raw.AccountID); err != nil {
		return err
	}
	if e.Script, err = required("script", raw.Script); err != nil {
		return err
	}
	if raw.DispatchNamespace != nil {
		e.DispatchNamespace = *raw.DispatchNamespace
	}
	if err := cfapi.ValidateAccountID(e.AccountID); err != nil {
		return Invalidf(ReasonInvalidField, "field \"account_id\": %v", err)
	}
	if raw.DispatchNamespace != nil && e.DispatchNamespace != "" {
		// "_" is the subject and key token of ordinary Workers: a
		// namespace of that name would address the ordinary Worker.
		if err := cfapi.ValidateNamespaceName(e.DispatchNamespace); err != nil {
			return Invalidf(ReasonInvalidField, "field \"dispatch_namespace\": %v", err)
		}
	}
	if err := cfapi.ValidateScriptName(e.Script); err != nil {
		return Invalidf(ReasonInvalidField, "field \"script\": %v", err)
	}
	if len(raw.Generation) > 0 && string(raw.Generation) != "null" {
		var g uint64
		if err := json.Unmarshal(raw.Generation, &g); err != nil {
			return Invalidf(ReasonInvalidField, "field \"generation\" must be a non-negative integer, got %s", truncateForError(string(raw.Generation)))
		}
		e.Generation = &g
	}
	return nil
}

// operations checks and parses the op and its bindings.
func (raw *rawEvent) operations(e *Event) error {
	var err error
	if e.Op, err = required("op", raw.Op); err != nil {
		return err
	}
	switch e.Op {
	case OpReplace:
		if raw.Bindings == nil {
			return Invalidf(ReasonMissingField, "field \"bindings\" is required with op \"replace\" (use [] to manage no bindings)")
		}
		if raw.Upsert != nil || raw.Remove != nil {
			return Invalidf(ReasonInvalidField, "fields \"upsert\" and \"remove\" belong to op \"patch\", not \"replace\"")
		}
		e.Bindings, err = parseBindingList("bindings", raw.Bindings)
	case OpPatch:
		if raw.Upsert == nil && raw.Remove == nil {
			return Invalidf(ReasonMissingField, "op \"patch\" needs \"upsert\" or \"remove\"")
		}
		if raw.Bindings != nil {
			return Invalidf(ReasonInvalidField, "field \"bindings\" belongs to op \"replace\"; a patch uses \"upsert\"")
		}
		e.Upsert, err = parseBindingList("upsert", raw.Upsert)
		e.Remove = raw.Remove
	default:
		return Invalidf(ReasonInvalidField, "field \"op\" must be \"replace\" or \"patch\", got %q", truncateForError(e.Op))
	}
	return err
}

// parseBindingList parses the bindings of a list field.
func parseBindingList(field string, list []json.RawMessage) ([]wire.Binding, error) {
	out := make([]wire.Binding, 0, len(list))
	for i, r := range list {
		b, err := wire.ParseBinding(r)
		if err != nil {
			return nil, Invalidf(ReasonInvalidBinding, "%s[%d]: %v", field, i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// options checks and copies the strategy and occurred_at.
func (raw *rawEvent) options(e *Event) (planner.Strategy, error) {
	if raw.Strategy != nil {
		e.Strategy = *raw.Strategy
	}
	strategy, err := planner.ParseStrategy(e.Strategy)
	if err != nil {
		return "", Invalidf(ReasonInvalidField, "field \"strategy\": %v", err)
	}
	if raw.OccurredAt != nil && *raw.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, *raw.OccurredAt)
		if err != nil {
			return "", Invalidf(ReasonInvalidField, "field \"occurred_at\" must be an RFC 3339 time, got %q", truncateForError(*raw.OccurredAt))
		}
		e.OccurredAt = &t
	}
	return strategy, nil
}

// invalidUTF8At returns the offset of the first byte that is not part of
// valid UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "a string"
	case "slice":
		return "an array"
	case "uint64", "int", "float64":
		return "a number"
	}
	return "of another type"
}

func truncateForError(s string) string { return cfapi.Truncate(s, 64) }
