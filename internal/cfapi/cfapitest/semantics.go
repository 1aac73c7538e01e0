package cfapitest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Error is an API error as the emulator answers it: the HTTP status and the
// first Cloudflare error entry, plus any further entries the answer carries
// (the real API reports one entry per unresolvable inherit binding).
// Messages never contain a write-only value.
type Error struct {
	Status  int
	Code    int
	Message string
	More    []ErrorEntry
}

// ErrorEntry is one further entry of an error answer's "errors" array.
type ErrorEntry struct {
	Code    int
	Message string
}

func (e *Error) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "cfapitest: HTTP %d: code %d: %s", e.Status, e.Code, e.Message)
	for _, m := range e.More {
		fmt.Fprintf(&sb, "; code %d: %s", m.Code, m.Message)
	}
	return sb.String()
}

// entries returns every error entry of e, the first one first.
func (e *Error) entries() []ErrorEntry {
	return append([]ErrorEntry{{Code: e.Code, Message: e.Message}}, e.More...)
}

// asError returns err as an *Error; other errors become 500 code 10013.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Message: messageUnknown}
}

func errorf(status, code int, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error codes the emulator answers with. See doc.go for which are real and
// which are guesses.
const (
	CodeNoRoute           = 7000
	CodeInvalidAccount    = 7003
	CodeRateLimited       = 971
	CodeAuth              = 10000
	CodeWorkerNotFound    = 10007
	CodeUnknown           = 10013
	CodeValidation        = 10021
	CodeUnparsableBody    = 10026
	CodeScriptTooLarge    = 10027
	CodeConcurrentModify  = 10035
	CodeBindingNoName     = 10052
	CodeValueTooLarge     = 10054
	CodeInvalidInherit    = 10057
	CodeDispatchNotFound  = 10092
	CodeNamespaceExists   = 10118
	CodeMissingSettings   = 10201
	CodeMethodNotAllowed  = 10000
	messageUnknown        = "workers.api.error.unknown"
	messageRateLimited    = "Please wait and consider throttling your request speed"
	messageConcurrentEdit = "Multiple attempts to modify a resource at the same time"
)

// validationError maps a binding that fails cfapi's upload rules to the
// API's answer: 10052 for a missing name, 10054 for an oversized value,
// 10021 otherwise ("invalid or missing text property for binding X"). The
// message names the binding and the member, never the value.
func validationError(b wire.Binding, err error) *Error {
	var ve *wire.ValidationError
	if !errors.As(err, &ve) {
		return errorf(http.StatusBadRequest, CodeValidation, "invalid binding '%s' of type %s", b.Name(), b.Type())
	}
	switch {
	case ve.Field == "name" && b.Name() == "":
		return errorf(http.StatusBadRequest, CodeBindingNoName, "binding of type %s has no name", b.Type())
	case ve.Field == "text" && valueTooLarge(b):
		return errorf(http.StatusBadRequest, CodeValueTooLarge,
			"binding '%s' is over the size limit of %d bytes", b.Name(), wire.MaxValueBytes)
	case ve.Field != "":
		return errorf(http.StatusBadRequest, CodeValidation,
			"invalid or missing %s property for binding %s", ve.Field, b.Name())
	default:
		return errorf(http.StatusBadRequest, CodeValidation, "invalid binding %s: %s", b.Name(), ve.Msg)
	}
}

func valueTooLarge(b wire.Binding) bool {
	s, ok := b.String("text")
	return ok && len(s) > wire.MaxValueBytes
}

func duplicateError(name string) *Error {
	return errorf(http.StatusBadRequest, CodeValidation, "binding name '%s' is used more than once", name)
}

// isRef reports whether b is exactly {"type":…,"name":…}, the settings
// PATCH form that keeps a binding's current value.
func isRef(b wire.Binding) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(b.Raw(), &fields) != nil {
		return false
	}
	_, t := fields["type"]
	_, n := fields["name"]
	return len(fields) == 2 && t && n
}

// ApplySettingsPatch applies the "bindings" array of a settings PATCH to
// the stored set and returns the new stored set, in patch order, with the
// emulator's default behaviour (see SettingsPatchRules): as
// ApplySettingsPatchRules(current, patch, SettingsPatchRules{}).
func ApplySettingsPatch(current, patch []wire.Binding) ([]wire.Binding, error) {
	return ApplySettingsPatchRules(current, patch, SettingsPatchRules{})
}

// SettingsPatchRules are the parts of a settings PATCH's binding semantics
// that the API reference leaves open (see the package documentation,
// "Guesses").
type SettingsPatchRules struct {
	// Parts names the script's current modules: a part binding
	// (wasm_module, text_blob, data_blob) of a PATCH must name one of them,
	// as the PATCH builds its version on the latest one's modules.
	Parts []string
	// RefuseTypeName answers an entry of only {type, name} for a type that
	// has a value with 400 10021 naming the binding, instead of keeping
	// the current value.
	RefuseTypeName bool
}

// ApplySettingsPatchRules applies the "bindings" array of a settings PATCH
// to the stored set and returns the new stored set, in patch order.
//
// The patch is the new full set. An entry with exactly the members "type"
// and "name" keeps the current binding of that name and type with its value
// (secrets included); 10021 when there is none, or always for a type with a
// value under rules.RefuseTypeName. An inherit entry carries the current
// binding of its old_name (or name) over under its name; one that cannot
// be resolved, or that names a version_id other than "latest", is 10057. A
// part binding must name one of rules.Parts (10021). Any other entry must
// pass cfapi's upload validation, so a secret_text without "text" is
// rejected with 10021. Duplicate names are 10021. No argument is modified.
func ApplySettingsPatchRules(current, patch []wire.Binding, rules SettingsPatchRules) ([]wire.Binding, error) {
	out := make([]wire.Binding, 0, len(patch))
	seen := make(map[string]bool, len(patch))
	for _, b := range patch {
		if seen[b.Name()] {
			return nil, duplicateError(b.Name())
		}
		seen[b.Name()] = true
		if isRef(b) && b.Type() != wire.TypeInherit {
			valued := b.Validate(wire.ForUpload) != nil || b.InPart()
			if rules.RefuseTypeName && valued {
				return nil, errorf(http.StatusBadRequest, CodeValidation, typeNameRefusedFormat, b.Name(), b.Type())
			}
			cur, ok := findBinding(current, b.Name(), b.Type())
			if ok {
				out = append(out, cur)
				continue
			}
			// No binding to keep: a {type, name} entry is then a new
			// binding, valid only for types without fields (ai, browser,
			// version_metadata, ...; unknown types are given the benefit of
			// the doubt, as the API grows fieldless types often).
			if valued {
				return nil, errorf(http.StatusBadRequest, CodeValidation,
					"binding '%s' of type %s does not exist and cannot be kept without a value", b.Name(), b.Type())
			}
			out = append(out, b)
			continue
		}
		switch {
		case b.Type() == wire.TypeInherit:
			resolved, ok := resolveInherit(func(id string) ([]wire.Binding, bool) {
				return current, id == "" || id == "latest"
			}, b)
			if !ok {
				return nil, errorf(http.StatusBadRequest, CodeInvalidInherit,
					"inherit binding '%s' is invalid: no binding of that name on the latest version", b.Name())
			}
			out = append(out, resolved)
			continue
		case b.InPart():
			part, _ := b.String("part")
			if !slices.Contains(rules.Parts, part) {
				return nil, errorf(http.StatusBadRequest, CodeValidation,
					"binding '%s' of type %s refers to part '%s', which is not a module of the script", b.Name(), b.Type(), part)
			}
		}
		if err := b.Validate(wire.ForUpload); err != nil {
			return nil, validationError(b, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// typeNameRefusedFormat is the message of a refused {type, name} entry
// (SettingsPatchRules.RefuseTypeName); cfapi.IsTypeNameRefused recognizes
// it by code and the binding named in it.
const typeNameRefusedFormat = "binding '%s' of type %s: invalid or missing value; a settings edit needs the complete binding"

func findBinding(bs []wire.Binding, name, typ string) (wire.Binding, bool) {
	for _, b := range bs {
		if b.Name() == name && (typ == "" || b.Type() == typ) {
			return b, true
		}
	}
	return wire.Binding{}, false
}

// ApplyUpload computes the binding set after a script PUT or a version
// upload.
//
// previous is the stored set of the version the upload builds on (nil for a
// new script), explicit the metadata's "bindings", keepBindings its
// "keep_bindings" (binding types), strict whether the query carried
// bindings_inherit=strict, and parts the names (and filenames) of the
// upload's parts other than metadata.
//
// The result is the explicit bindings in order, each inherit entry
// {"type":"inherit","name":N[,"old_name":O]} replaced by the previous
// binding O (or N) renamed to N, followed by every previous binding whose
// type is listed in keepBindings and whose name is not among the explicit
// ones. Everything else is dropped: an upload replaces the whole set. An
// unresolvable inherit is dropped silently, or with strict answered 400 with
// one 10057 entry per such binding. Every other binding must pass cfapi's
// upload validation (10021, 10052, 10054), a part type must name an uploaded
// part (10021), and names must be unique (10021). An inherit entry's
// version_id other than "latest" cannot be resolved here; the server
// resolves it against the named version.
func ApplyUpload(previous, explicit []wire.Binding, keepBindings []string, strict bool, parts []string) ([]wire.Binding, error) {
	return applyUpload(func(versionID string) ([]wire.Binding, bool) {
		if versionID == "" || versionID == "latest" {
			return previous, true
		}
		return nil, false
	}, explicit, keepBindings, strict, parts)
}

// applyUpload is ApplyUpload with inherit sources looked up by version id
// ("" and "latest" mean the previous version).
func applyUpload(version func(id string) ([]wire.Binding, bool), explicit []wire.Binding,
	keepBindings []string, strict bool, parts []string) ([]wire.Binding, error) {
	out := make([]wire.Binding, 0, len(explicit))
	names := make(map[string]bool, len(explicit))
	var invalid []ErrorEntry
	for _, b := range explicit {
		if names[b.Name()] {
			return nil, duplicateError(b.Name())
		}
		names[b.Name()] = true
		if err := b.Validate(wire.ForUpload); err != nil {
			return nil, validationError(b, err)
		}
		if b.Type() == wire.TypeInherit {
			resolved, ok := resolveInherit(version, b)
			switch {
			case ok:
				out = append(out, resolved)
			case strict:
				invalid = append(invalid, ErrorEntry{Code: CodeInvalidInherit, Message: fmt.Sprintf(
					"inherit binding '%s' is invalid: no binding of that name on the previous version", b.Name())})
			}
			continue
		}
		if b.InPart() {
			part, _ := b.String("part")
			if !slices.Contains(parts, part) {
				return nil, errorf(http.StatusBadRequest, CodeValidation,
					"binding '%s' of type %s refers to part '%s', which is not in the upload", b.Name(), b.Type(), part)
			}
		}
		out = append(out, b)
	}
	if len(invalid) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: invalid[0].Code, Message: invalid[0].Message, More: invalid[1:]}
	}
	if len(keepBindings) > 0 {
		prev, _ := version("latest")
		for _, b := range prev {
			if slices.Contains(keepBindings, b.Type()) && !names[b.Name()] {
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// resolveInherit finds the binding an inherit entry carries over and
// returns it under the entry's name.
func resolveInherit(version func(id string) ([]wire.Binding, bool), b wire.Binding) (wire.Binding, bool) {
	vid, _ := b.String("version_id")
	prev, ok := version(vid)
	if !ok {
		return wire.Binding{}, false
	}
	from := b.Name()
	if old, ok := b.String("old_name"); ok && old != "" {
		from = old
	}
	src, ok := findBinding(prev, from, "")
	if !ok {
		return wire.Binding{}, false
	}
	if from == b.Name() {
		return src, true
	}
	return withFields(src, b.Name(), func(map[string]json.RawMessage) {})
}

// RenderForGet returns stored bindings as a GET shows them: write-only
// values removed (secret_text text, secret_key key material), the API's
// defaults filled in (service environment "production", ai_search namespace
// "default", a durable_object_namespace namespace_id derived from account,
// script and class), d1 "id" renamed to "database_id", inherit entries
// dropped, and the list put in the emulator's API order: by an FNV-1a hash
// of the name, which differs from upload order on purpose. Bindings of
// unknown types come back unchanged. account and script feed the derived
// durable object ids.
func RenderForGet(account, script string, stored []wire.Binding) []wire.Binding {
	out := make([]wire.Binding, 0, len(stored))
	for _, b := range stored {
		if b.Type() == wire.TypeInherit {
			continue
		}
		out = append(out, renderOne(account, script, b.WithoutWriteOnly()))
	}
	sort.SliceStable(out, func(i, j int) bool {
		hi, hj := nameHash(out[i].Name()), nameHash(out[j].Name())
		if hi != hj {
			return hi < hj
		}
		return out[i].Name() < out[j].Name()
	})
	return out
}

func nameHash(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

func renderOne(account, script string, b wire.Binding) wire.Binding {
	setDefault := func(key, value string) wire.Binding {
		if _, ok := b.Field(key); ok {
			return b
		}
		nb, ok := withFields(b, b.Name(), func(f map[string]json.RawMessage) { f[key] = jsonString(value) })
		if !ok {
			return b
		}
		return nb
	}
	switch b.Type() {
	case wire.TypeService:
		return setDefault("environment", "production")
	case wire.TypeAISearch:
		return setDefault("namespace", "default")
	case wire.TypeDurableObjectNamespace:
		owner := script
		if s, ok := b.String("script_name"); ok && s != "" {
			owner = s
		}
		class, _ := b.String("class_name")
		return setDefault("namespace_id", durableObjectID(account, owner, class))
	case wire.TypeD1:
		id, hasID := b.Field("id")
		if !hasID {
			return b
		}
		nb, ok := withFields(b, b.Name(), func(f map[string]json.RawMessage) {
			if _, both := f["database_id"]; !both {
				f["database_id"] = id
			}
			delete(f, "id")
		})
		if !ok {
			return b
		}
		return nb
	}
	return b
}

// durableObjectID is the namespace_id the emulator reports for a durable
// object class: 32 hex digits derived from account, script and class.
func durableObjectID(account, script, class string) string {
	sum := sha256.Sum256([]byte("do\x00" + account + "\x00" + script + "\x00" + class))
	return hex.EncodeToString(sum[:16])
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// withFields rebuilds b under name with its members changed by edit. The
// result lists type and name first and the other members sorted.
func withFields(b wire.Binding, name string, edit func(map[string]json.RawMessage)) (wire.Binding, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(b.Raw(), &fields) != nil {
		return b, false
	}
	edit(fields)
	delete(fields, "type")
	delete(fields, "name")
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteString(`{"type":`)
	buf.Write(jsonString(b.Type()))
	buf.WriteString(`,"name":`)
	buf.Write(jsonString(name))
	for _, k := range keys {
		buf.WriteByte(',')
		buf.Write(jsonString(k))
		buf.WriteByte(':')
		buf.Write(fields[k])
	}
	buf.WriteByte('}')
	nb, err := wire.ParseBinding(buf.Bytes())
	if err != nil {
		return b, false
	}
	return nb, true
}
