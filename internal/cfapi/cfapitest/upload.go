package cfapitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// formPart is one part of a multipart request body.
type formPart struct {
	name, filename, contentType string
	data                        []byte
}

// readForm reads every part of a multipart/form-data body. maxData bounds
// the bytes of parts other than the one named small (metadata or settings);
// beyond it the answer is 10027.
func readForm(r *http.Request, small string, maxData int64) ([]formPart, *Error) {
	mt, ps, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || ps["boundary"] == "" {
		return nil, errorf(http.StatusBadRequest, CodeUnparsableBody,
			"could not parse request body: expected multipart/form-data with a boundary")
	}
	mr := multipart.NewReader(r.Body, ps["boundary"])
	var parts []formPart
	var total int64
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return nil, errorf(http.StatusBadRequest, CodeUnparsableBody, "could not parse request body: malformed multipart")
		}
		fp := formPart{name: p.FormName(), filename: p.FileName(), contentType: p.Header.Get("Content-Type")}
		limit := maxData - total
		if fp.name == small {
			limit = 16 << 20
		}
		fp.data, err = io.ReadAll(io.LimitReader(p, limit+1))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, CodeUnparsableBody, "could not parse request body: malformed multipart")
		}
		if int64(len(fp.data)) > limit {
			return nil, errorf(http.StatusBadRequest, CodeScriptTooLarge, "Script body is too large: over %d bytes", maxData)
		}
		if fp.name != small {
			total += int64(len(fp.data))
		}
		parts = append(parts, fp)
	}
}

// upload is a parsed script PUT or version upload.
type upload struct {
	mainModule   string // as named by main_module
	bodyPart     string // as named by body_part
	bindings     []wire.Binding
	keepBindings []string
	// strict is ?bindings_inherit=strict: an unresolvable inherit is an
	// error rather than dropped.
	strict       bool
	annotations  json.RawMessage
	migrationTag string
	// settings holds the settings members present in the metadata.
	settings map[string]json.RawMessage
	// modules are the module parts, the main one first and named as
	// main_module (or body_part) names it.
	modules []Module
	// partNames lists the names and filenames of the module parts.
	partNames []string
}

type uploadMetadata struct {
	MainModule   string            `json:"main_module"`
	BodyPart     string            `json:"body_part"`
	Bindings     []json.RawMessage `json:"bindings"`
	KeepBindings []string          `json:"keep_bindings"`
	Annotations  json.RawMessage   `json:"annotations"`
	Migrations   *struct {
		NewTag string `json:"new_tag"`
	} `json:"migrations"`
}

// parseUpload reads the multipart body of a script PUT or version upload:
// part "metadata" (any content type, with or without a filename) and module
// parts, matched to main_module, body_part and part bindings by part name
// or filename.
// (parseUpload follows the multipart form part by part as the API does;
// its length is the list of parts it recognizes.)
func (s scriptsAPI) parseUpload(r *http.Request) (*upload, *Error) {
	parts, perr := readForm(r, "metadata", s.maxScript)
	if perr != nil {
		return nil, perr
	}
	var metaPart *formPart
	var modParts []formPart
	for i := range parts {
		if parts[i].name == "metadata" && metaPart == nil {
			metaPart = &parts[i]
			continue
		}
		modParts = append(modParts, parts[i])
	}
	var meta uploadMetadata
	if metaPart == nil || json.Unmarshal(metaPart.data, &meta) != nil {
		return nil, errorf(http.StatusBadRequest, CodeValidation, "could not read content for part metadata")
	}
	var members map[string]json.RawMessage
	_ = json.Unmarshal(metaPart.data, &members)
	up := &upload{mainModule: meta.MainModule, bodyPart: meta.BodyPart, keepBindings: meta.KeepBindings,
		strict: r.URL.Query().Get("bindings_inherit") == "strict", annotations: meta.Annotations}
	if meta.Migrations != nil {
		up.migrationTag = meta.Migrations.NewTag
	}
	var err *Error
	if up.settings, err = settingsIn(members, settingsKeys); err != nil {
		return nil, err
	}
	if up.bindings, err = parseBindings(meta.Bindings); err != nil {
		return nil, err
	}

	entry := meta.MainModule
	if entry == "" {
		entry = meta.BodyPart
	}
	if entry == "" {
		return nil, errorf(http.StatusBadRequest, CodeValidation, "metadata must name the entry part in main_module or body_part")
	}
	mainIdx := slices.IndexFunc(modParts, func(p formPart) bool { return p.name == entry || p.filename == entry })
	if mainIdx < 0 {
		return nil, errorf(http.StatusBadRequest, CodeValidation,
			"main_module or body_part '%s' does not name a part of the upload", entry)
	}
	seen := map[string]bool{}
	for i, p := range modParts {
		m := Module{Name: p.filename, ContentType: p.contentType, Data: p.data}
		if m.Name == "" {
			m.Name = p.name
		}
		if i == mainIdx {
			m.Name = entry
			if m.ContentType == "" {
				m.ContentType = "application/javascript+module"
				if meta.MainModule == "" {
					m.ContentType = "application/javascript"
				}
			}
		} else if m.ContentType == "" {
			m.ContentType = "application/octet-stream"
		}
		if seen[m.Name] {
			return nil, errorf(http.StatusBadRequest, CodeValidation, "the upload has two parts named '%s'", m.Name)
		}
		seen[m.Name] = true
		if i == mainIdx {
			up.modules = slices.Insert(up.modules, 0, m)
		} else {
			up.modules = append(up.modules, m)
		}
		up.partNames = append(up.partNames, p.name)
		if p.filename != "" && p.filename != p.name {
			up.partNames = append(up.partNames, p.filename)
		}
	}
	return up, nil
}

// parseBindings decodes a metadata or settings "bindings" array.
func parseBindings(raws []json.RawMessage) ([]wire.Binding, *Error) {
	out := make([]wire.Binding, 0, len(raws))
	for i, raw := range raws {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			return nil, errorf(http.StatusBadRequest, CodeValidation, "binding #%d is not a JSON object", i)
		}
		if _, ok := fields["name"]; !ok {
			return nil, errorf(http.StatusBadRequest, CodeBindingNoName, "binding #%d has no name", i)
		}
		b, err := wire.ParseBinding(raw)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, CodeValidation, "binding #%d must have a string type and name", i)
		}
		out = append(out, b)
	}
	return out, nil
}

// settingsIn returns the members of a request body that are settings of
// the given keys, validated.
func settingsIn(members map[string]json.RawMessage, keys []string) (map[string]json.RawMessage, *Error) {
	settings := pick(members, keys)
	if err := validateSettings(settings); err != nil {
		return nil, err
	}
	return settings, nil
}

// validateSettings checks the settings members the emulator interprets.
func validateSettings(m map[string]json.RawMessage) *Error {
	bad := func(key, want string) *Error {
		return errorf(http.StatusBadRequest, CodeValidation, "invalid setting %s: must be %s", key, want)
	}
	for k, v := range m {
		if isNull(v) {
			continue
		}
		switch k {
		case "compatibility_date":
			var s string
			if json.Unmarshal(v, &s) != nil {
				return bad(k, "a date string")
			}
		case "compatibility_flags":
			var ss []string
			if json.Unmarshal(v, &ss) != nil {
				return bad(k, "an array of strings")
			}
		case "tags":
			var ss []string
			if json.Unmarshal(v, &ss) != nil {
				return bad(k, "an array of strings")
			}
			if len(ss) > maxTags {
				return errorf(http.StatusBadRequest, CodeValidation, "a script can have at most %d tags", maxTags)
			}
		case "logpush":
			var b bool
			if json.Unmarshal(v, &b) != nil {
				return bad(k, "a boolean")
			}
		case "usage_model":
			var s string
			if json.Unmarshal(v, &s) != nil || !slices.Contains([]string{"standard", "bundled", "unbound"}, s) {
				return bad(k, "one of standard, bundled, unbound")
			}
		}
	}
	return nil
}

// maxTags is the API's limit of tags per script.
const maxTags = 8

// isNull reports whether raw is the JSON null.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// applySettings stores the members of m: null removes a member.
func applySettings(dst, m map[string]json.RawMessage) {
	for k, v := range m {
		if isNull(v) {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}
