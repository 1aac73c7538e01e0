package cfapitest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// settingsAPI serves a script's settings, bindings and content.
type settingsAPI struct{ *store }

// scriptsAPI serves the script writes: uploads, versions, deployments and
// deletion.
type scriptsAPI struct{ *store }

// namespacesAPI serves dispatch namespaces and the scripts listed in them.
type namespacesAPI struct{ *store }

// settingsDefaults are what GET settings shows for members never set.
var settingsDefaults = map[string]json.RawMessage{
	"compatibility_flags": json.RawMessage(`[]`),
	"limits":              json.RawMessage(`{}`),
	"logpush":             json.RawMessage(`false`),
	"observability":       json.RawMessage(`null`),
	"tags":                json.RawMessage(`[]`),
	"tail_consumers":      json.RawMessage(`null`),
	"usage_model":         json.RawMessage(`"standard"`),
}

// settingsResult renders a script's settings as GET returns them. The
// caller holds s.mu.
func settingsResult(p params, sc *script) map[string]any {
	res := settingsWithDefaults(sc, settingsKeys)
	res["bindings"] = RenderForGet(p.account, p.script, sc.bindings)
	return res
}

// settingsWithDefaults renders the members keys of sc's settings, the
// defaults (settingsDefaults) for those not set. The caller holds s.mu.
func settingsWithDefaults(sc *script, keys []string) map[string]any {
	res := map[string]any{}
	for _, k := range keys {
		if v, ok := sc.setting(k); ok {
			res[k] = v
		}
	}
	return res
}

// setting returns the member k of the script's settings or, when it is
// not set, its default; ok is false when there is neither.
func (sc *script) setting(k string) (v json.RawMessage, ok bool) {
	if v, ok := sc.settings[k]; ok {
		return v, true
	}
	v, ok = settingsDefaults[k]
	return v, ok
}

func (s settingsAPI) getSettings(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) { writeResult(w, settingsResult(p, sc), nil) })
}

func (s settingsAPI) getBindings(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) { writeResult(w, RenderForGet(p.account, p.script, sc.bindings), nil) })
}

// settingsEdit is a parsed settings PATCH: the settings members it sets
// and, when its "bindings" member is present and not null, the new
// binding set.
type settingsEdit struct {
	settings    map[string]json.RawMessage
	bindings    []wire.Binding
	hasBindings bool
}

// parseSettingsPatch reads the "settings" part of a multipart settings
// PATCH.
func (s settingsAPI) parseSettingsPatch(r *http.Request) (settingsEdit, *Error) {
	var sp settingsEdit
	parts, err := readForm(r, "settings", s.maxScript)
	if err != nil {
		return sp, err
	}
	i := slices.IndexFunc(parts, func(fp formPart) bool { return fp.name == "settings" })
	if i < 0 {
		return sp, errorf(http.StatusBadRequest, CodeMissingSettings, "Missing settings part in multipart upload")
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(parts[i].data, &members) != nil {
		return sp, errorf(http.StatusBadRequest, CodeValidation, "could not read content for part settings")
	}
	if sp.settings, err = settingsIn(members, settingsKeys); err != nil {
		return sp, err
	}
	rawBindings, hasBindings := members["bindings"]
	if sp.hasBindings = hasBindings && !isNull(rawBindings); !sp.hasBindings {
		return sp, nil
	}
	var raws []json.RawMessage
	if json.Unmarshal(rawBindings, &raws) != nil {
		return sp, errorf(http.StatusBadRequest, CodeValidation, "invalid setting bindings: must be an array")
	}
	sp.bindings, err = parseBindings(raws)
	return sp, err
}

// patchSettings applies a multipart settings PATCH: the "settings" part's
// bindings (if present) through ApplySettingsPatch and its other members
// over the stored ones. The result is a new version deployed at 100%.
func (s settingsAPI) patchSettings(w http.ResponseWriter, r *http.Request, p params) {
	sp, perr := s.parseSettingsPatch(r)
	if perr != nil {
		writeErr(w, perr)
		return
	}
	s.withScript(w, p, func(sc *script) {
		base, err := s.editBase(sc, CodeSettingsNotDeployed)
		if err != nil {
			writeErr(w, err)
			return
		}
		bindings := base.Bindings
		if sp.hasBindings {
			nb, err := ApplySettingsPatchRules(base.Bindings, sp.bindings, SettingsPatchRules{
				Parts: moduleParts(base.Modules), RefuseTypeName: s.opts.Guesses.RefuseTypeName})
			if err != nil {
				writeErr(w, asError(err))
				return
			}
			bindings = nb
		}
		if err := s.inj.refusedRemoval(p.key(), sc.bindings, bindings); err != nil {
			writeErr(w, err)
			return
		}
		applySettings(sc.settings, sp.settings)
		vs := maps.Clone(base.Settings)
		applySettings(vs, versioned(sp.settings))
		v := s.addVersion(sc, derive(base, bindings, vs, sourceOf(r), ""))
		s.deployOnly(sc, v, v.Annotations)
		writeResult(w, settingsResult(p, sc), nil)
	})
}

// getContent answers the script's modules as multipart/form-data, the main
// module first, with the cf-entrypoint header naming it.
func (s settingsAPI) getContent(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		entry := sc.mainModule
		if entry == "" {
			entry = sc.bodyPart
		}
		writeModules(w, entry, sc.modules)
	})
}

// writeModules answers modules as multipart/form-data with the
// cf-entrypoint header set to entry.
func writeModules(w http.ResponseWriter, entry string, modules []Module) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, m := range modules {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", multipartDisposition(m.Name))
		h.Set("Content-Type", m.ContentType)
		pw, _ := mw.CreatePart(h)
		_, _ = pw.Write(m.Data)
	}
	_ = mw.Close()
	w.Header().Set("Content-Type", mw.FormDataContentType())
	w.Header().Set("cf-entrypoint", entry)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body.Bytes())
}

func multipartDisposition(name string) string {
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name)
	return `form-data; name="` + q + `"; filename="` + q + `"`
}

// putScript uploads a script: the bindings through ApplyUpload against the
// latest version, the settings members over the stored ones, and the
// result deployed at once. A missing script is created.
func (s scriptsAPI) putScript(w http.ResponseWriter, r *http.Request, p params) {
	up, err := s.parseUpload(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNamespace(p); err != nil {
		writeErr(w, err)
		return
	}
	prev := s.scripts[p.key()] // nil for a new script
	bindings, berr := applyUpload(prev.inheritSource, up.bindings, up.keepBindings, up.strict, up.partNames)
	if berr != nil {
		writeErr(w, asError(berr))
		return
	}
	if prev != nil {
		if err := s.inj.refusedRemoval(p.key(), prev.bindings, bindings); err != nil {
			writeErr(w, err)
			return
		}
	}
	sc := s.ensureScript(p)
	applySettings(sc.settings, up.settings)
	if up.migrationTag != "" {
		sc.migrationTag = up.migrationTag
	}
	v := s.addVersion(sc, Version{MainModule: up.mainModule, BodyPart: up.bodyPart, Modules: up.modules,
		Bindings: bindings, Settings: versioned(sc.settings), Annotations: withTriggeredBy(up.annotations, "upload"),
		Source: sourceOf(r)})
	s.deployOnly(sc, v, v.Annotations)
	res := scriptResult(p, sc)
	res["startup_time_ms"] = 1
	res["deployment_id"] = v.ID
	res["entry_point"] = v.MainModule + v.BodyPart
	res["pipeline_hash"] = nil
	writeResult(w, res, nil)
}

// scriptResult renders the script object of PUT and script details. The
// caller holds s.mu.
func scriptResult(p params, sc *script) map[string]any {
	setting := func(k string) json.RawMessage {
		if v, ok := sc.setting(k); ok {
			return v
		}
		return json.RawMessage(`null`)
	}
	return map[string]any{
		"id":                  p.script,
		"etag":                sc.etag,
		"handlers":            []string{"fetch"},
		"named_handlers":      []string{},
		"created_on":          timestamp(sc.created),
		"modified_on":         timestamp(sc.modified),
		"usage_model":         setting("usage_model"),
		"compatibility_date":  setting("compatibility_date"),
		"compatibility_flags": setting("compatibility_flags"),
		"tags":                setting("tags"),
		"logpush":             setting("logpush"),
		"tail_consumers":      setting("tail_consumers"),
		"placement_mode":      nil,
		"has_assets":          false,
		"has_modules":         sc.mainModule != "",
		"migration_tag":       sc.migrationTag,
	}
}

// postVersion uploads a version without deploying it. main_module is
// required, the script must exist, and bindings resolve against the latest
// version.
func (s scriptsAPI) postVersion(w http.ResponseWriter, r *http.Request, p params) {
	up, err := s.parseUpload(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if up.mainModule == "" {
		writeError(w, http.StatusBadRequest, CodeValidation, "main_module is required for a version upload")
		return
	}
	s.withScript(w, p, func(sc *script) {
		bindings, err := applyUpload(sc.inheritSource, up.bindings, up.keepBindings, up.strict, up.partNames)
		if err != nil {
			writeErr(w, asError(err))
			return
		}
		if err := s.inj.refusedRemoval(p.key(), sc.bindings, bindings); err != nil {
			writeErr(w, err)
			return
		}
		settings := versioned(sc.latest().Settings)
		applySettings(settings, versioned(up.settings))
		v := s.addVersion(sc, Version{MainModule: up.mainModule, Modules: up.modules, Bindings: bindings,
			Settings: settings, Annotations: withTriggeredBy(up.annotations, "upload"), Source: sourceOf(r)})
		writeResult(w, versionResult(p, sc, v), nil)
	})
}

func annotationsOrEmpty(a json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(a)) == 0 || isNull(a) {
		return json.RawMessage(`{}`)
	}
	return a
}

type deploymentRequest struct {
	Strategy    string              `json:"strategy"`
	Versions    []DeploymentVersion `json:"versions"`
	Annotations json.RawMessage     `json:"annotations"`
}

// postDeployment routes traffic to one or two existing versions. The live
// state becomes that of the version with the larger share.
func (s scriptsAPI) postDeployment(w http.ResponseWriter, r *http.Request, p params) {
	var req deploymentRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := checkDeployment(req); err != nil {
		writeErr(w, err)
		return
	}
	s.withScript(w, p, func(sc *script) {
		for _, dv := range req.Versions {
			if sc.version(dv.VersionID) == nil {
				writeError(w, http.StatusBadRequest, CodeValidation, "version '"+dv.VersionID+"' does not exist on this Worker")
				return
			}
		}
		d := &Deployment{Strategy: req.Strategy, Versions: req.Versions,
			Annotations: req.Annotations, Source: sourceOf(r)}
		s.deploy(sc, d)
		writeResult(w, deploymentResult(d), nil)
	})
}

func checkDeployment(req deploymentRequest) *Error {
	bad := func(msg string) *Error { return errorf(http.StatusBadRequest, CodeValidation, "%s", msg) }
	if req.Strategy != "percentage" {
		return bad(`strategy must be "percentage"`)
	}
	if len(req.Versions) < 1 || len(req.Versions) > 2 {
		return bad("a deployment must have one or two versions")
	}
	sum := 0.0
	for i, dv := range req.Versions {
		if dv.VersionID == "" {
			return bad("every version needs a version_id")
		}
		if dv.Percentage < 0 || dv.Percentage > 100 {
			return bad("percentages must be between 0 and 100")
		}
		if i == 1 && dv.VersionID == req.Versions[0].VersionID {
			return bad("a version can appear in a deployment only once")
		}
		sum += dv.Percentage
	}
	if math.Abs(sum-100) > 1e-9 {
		return bad("the percentages of a deployment must add up to 100")
	}
	return nil
}

// listScripts lists the scripts of a dispatch namespace in name order,
// filtered by tags ("t1:yes,t2:no") and paginated by limit (at most 1000)
// and an opaque cursor, returned in result_info.cursor ("" on the last page).
func (s namespacesAPI) listScripts(w http.ResponseWriter, r *http.Request, p params) {
	if s.opts.Guesses.refuseScriptList(w, r) {
		return
	}
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, CodeValidation, "limit must be an integer between 1 and 1000")
			return
		}
		limit = n
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 {
			writeError(w, http.StatusBadRequest, CodeValidation, "invalid cursor")
			return
		}
		after = string(b)
	}
	include, exclude := parseTagFilter(q.Get("tags"))

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNamespace(p); err != nil {
		writeErr(w, err)
		return
	}
	items := []map[string]any{}
	cursor := ""
	for _, name := range s.scriptNames(p.account, p.namespace) {
		if name <= after && after != "" {
			continue
		}
		sc := s.scripts[scriptKey{p.account, p.namespace, name}]
		tags := scriptTags(sc)
		if !matchTags(tags, include, exclude) {
			continue
		}
		if len(items) == limit {
			cursor = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1]["id"].(string)))
			break
		}
		items = append(items, map[string]any{
			"id": name, "etag": sc.etag, "created_on": timestamp(sc.created), "modified_on": timestamp(sc.modified),
			"tags": tags,
		})
	}
	info := map[string]any{"cursor": cursor, "count": len(items)}
	if s.opts.Guesses.OmitListCursor {
		delete(info, "cursor")
	}
	writeResult(w, items, info)
}

func scriptTags(sc *script) []string {
	tags := []string{}
	if v, ok := sc.settings["tags"]; ok {
		_ = json.Unmarshal(v, &tags)
	}
	return tags
}

// parseTagFilter splits "t1:yes,t2:no"; a tag without ":yes" or ":no"
// must be present.
func parseTagFilter(s string) (include, exclude []string) {
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		tag, mode, _ := strings.Cut(item, ":")
		if mode == "no" {
			exclude = append(exclude, tag)
		} else {
			include = append(include, tag)
		}
	}
	return include, exclude
}

func matchTags(tags, include, exclude []string) bool {
	for _, t := range include {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	for _, t := range exclude {
		if slices.Contains(tags, t) {
			return false
		}
	}
	return true
}

// getScript answers the details of a dispatch namespace script.
func (s namespacesAPI) getScript(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		writeResult(w, map[string]any{
			"created_on":         timestamp(sc.created),
			"modified_on":        timestamp(sc.modified),
			"dispatch_namespace": p.namespace,
			"script":             scriptResult(p, sc),
		}, nil)
	})
}

// namespaceResult renders a dispatch namespace. The caller holds s.mu.
func (s namespacesAPI) namespaceResult(account string, ns *namespace) map[string]any {
	return map[string]any{
		"namespace_id":    ns.id,
		"namespace_name":  ns.name,
		"script_count":    len(s.scriptNames(account, ns.name)),
		"created_on":      timestamp(ns.created),
		"modified_on":     timestamp(ns.modified),
		"created_by":      "",
		"modified_by":     "",
		"trusted_workers": false,
	}
}

// createNamespace creates a dispatch namespace from {"name": ...}. An
// existing name is 409 code 10118 (a guess).
func (s namespacesAPI) createNamespace(w http.ResponseWriter, r *http.Request, p params) {
	var req struct {
		Name string `json:"name"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if !validNamespaceName(req.Name) {
		writeError(w, http.StatusBadRequest, CodeValidation,
			"namespace name must be 1 to 63 characters of lowercase letters, digits, '-' and '_'")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, created := s.addNamespace(p.account, req.Name)
	if !created {
		writeError(w, http.StatusConflict, CodeNamespaceExists, "A dispatch namespace named '"+req.Name+"' already exists.")
		return
	}
	writeResult(w, s.namespaceResult(p.account, ns), nil)
}

func validNamespaceName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s namespacesAPI) listNamespaces(w http.ResponseWriter, _ *http.Request, p params) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(s.namespaces), func(a, b nsKey) int { return strings.Compare(a.name, b.name) })
	out := []map[string]any{}
	for _, k := range keys {
		if k.account == p.account {
			out = append(out, s.namespaceResult(p.account, s.namespaces[k]))
		}
	}
	writeResult(w, out, nil)
}

func (s namespacesAPI) getNamespace(w http.ResponseWriter, _ *http.Request, p params) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, ok := s.namespaces[nsKey{p.account, p.namespace}]
	if !ok {
		writeErr(w, namespaceNotFound(p.namespace))
		return
	}
	writeResult(w, s.namespaceResult(p.account, ns), nil)
}

// moduleParts returns the names of a version's modules, which the part
// bindings of a settings PATCH may name.
func moduleParts(ms []Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}
