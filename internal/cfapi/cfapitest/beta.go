package cfapitest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// betaRoutes serve the beta Workers API (/workers/workers/{worker}) for
// ordinary Workers: the Worker, and its versions as JSON (modules in
// base64), which a single POST can create and deploy (?deploy=true).
func betaRoutes(st *store) []route {
	s := betaAPI{st}
	const wk = pathWorkers + "/workers/{script}"
	r := newRoute
	return []route{
		r(http.MethodGet, wk, EndpointGetWorker, s.getWorker, reads),
		r(http.MethodPost, wk+"/versions", EndpointCreateWorkerVersion, s.createWorkerVersion, writesScript),
		r(http.MethodGet, wk+"/versions", EndpointListWorkerVersions, s.listWorkerVersions, reads),
		r(http.MethodGet, wk+"/versions/{id}", EndpointGetWorkerVersion, s.getWorkerVersion, reads),
	}
}

// betaAPI serves the beta Workers API over the shared state.
type betaAPI struct{ *store }

// lookupWorker resolves the {worker} of a beta path, a Worker name or id,
// to an ordinary script. p.script becomes the name. The caller holds s.mu.
func (s betaAPI) lookupWorker(p *params) (*script, *Error) {
	if sc, ok := s.scripts[p.key()]; ok {
		return sc, nil
	}
	for k, sc := range s.scripts {
		if k.account == p.account && k.namespace == "" && workerTag(k) == p.script {
			p.script = k.name
			return sc, nil
		}
	}
	return nil, notFound(*p)
}

// withWorker is withScript for the {worker} of a beta path: p.script is
// the Worker's name when f runs.
func (s betaAPI) withWorker(w http.ResponseWriter, p *params, f func(sc *script)) {
	s.withLookup(w, func() (*script, *Error) { return s.lookupWorker(p) }, f)
}

// getWorker answers the beta Worker object; wrangler requires its
// "subdomain" member.
func (s betaAPI) getWorker(w http.ResponseWriter, _ *http.Request, p params) {
	s.withWorker(w, &p, func(sc *script) {
		res := scriptSettingsResult(sc)
		res["id"] = workerTag(p.key())
		res["name"] = p.script
		res["created_on"] = timestamp(sc.created)
		res["updated_on"] = timestamp(sc.modified)
		res["subdomain"] = subdomainResult(sc)
		writeResult(w, res, nil)
	})
}

// betaVersionBody is the JSON body of a beta version. Members the emulator
// does not interpret (assets, cache_options, containers, exports, ...) are
// accepted and ignored.
type betaVersionBody struct {
	Annotations map[string]json.RawMessage `json:"annotations"`
	Bindings    []json.RawMessage          `json:"bindings"`
	MainModule  string                     `json:"main_module"`
	Modules     []struct {
		Name          string `json:"name"`
		ContentType   string `json:"content_type"`
		ContentBase64 string `json:"content_base64"`
	} `json:"modules"`
	Migrations *struct {
		NewTag string `json:"new_tag"`
	} `json:"migrations"`
}

// Limits of beta version annotations (API reference, Create Version).
const (
	maxMessageBytes = 1000
	maxTagBytes     = 100
)

// createWorkerVersion creates a version from a JSON body. Modules are
// decoded from base64 and main_module must name one; bindings resolve
// against the latest version, an inherit that cannot be resolved is 400
// 10057 (one entry per binding); the versioned settings are exactly those
// of the body. ?deploy=true deploys the version at 100% in the same call.
func (s betaAPI) createWorkerVersion(w http.ResponseWriter, r *http.Request, p params) {
	up, perr := s.parseBetaVersion(r)
	if perr != nil {
		writeErr(w, perr)
		return
	}
	s.withWorker(w, &p, func(sc *script) {
		bindings, err := applyUpload(sc.inheritSource, up.bindings, nil, true, up.names)
		if err != nil {
			writeErr(w, asError(err))
			return
		}
		v := s.addVersion(sc, Version{MainModule: up.mainModule, Modules: up.modules, Bindings: bindings,
			Settings: up.settings, Annotations: up.annotations, Source: sourceOf(r)})
		if up.deploy {
			if up.migrationTag != "" {
				sc.migrationTag = up.migrationTag
			}
			s.deployOnly(sc, v, nil)
		}
		writeResult(w, betaVersionResult(p, v, false), nil)
	})
}

// betaUpload is a parsed beta version request.
type betaUpload struct {
	deploy       bool // ?deploy=true
	mainModule   string
	modules      []Module // the main module first
	names        []string // of the modules
	settings     map[string]json.RawMessage
	annotations  json.RawMessage
	bindings     []wire.Binding
	migrationTag string
}

// parseBetaVersion reads and checks the query and JSON body of a beta
// version request.
func (s betaAPI) parseBetaVersion(r *http.Request) (*betaUpload, *Error) {
	up := &betaUpload{}
	if v := r.URL.Query().Get("deploy"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, CodeValidation, "deploy must be true or false")
		}
		up.deploy = b
	}
	raw, err := readBody(r, s.maxScript*2)
	if err != nil {
		return nil, err
	}
	var body betaVersionBody
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &body) != nil || json.Unmarshal(raw, &members) != nil {
		return nil, invalidJSON()
	}
	up.mainModule = body.MainModule
	if body.Migrations != nil {
		up.migrationTag = body.Migrations.NewTag
	}
	if up.modules, up.names, err = s.decodeModules(body); err != nil {
		return nil, err
	}
	if up.settings, err = settingsIn(members, versionedKeys); err != nil {
		return nil, err
	}
	// A null member is not set: the version has exactly the members given.
	maps.DeleteFunc(up.settings, func(_ string, v json.RawMessage) bool { return isNull(v) })
	if up.annotations, err = betaAnnotations(body.Annotations); err != nil {
		return nil, err
	}
	if up.bindings, err = parseBindings(body.Bindings); err != nil {
		return nil, err
	}
	return up, nil
}

// readBody reads a request body of at most limit bytes (10027 beyond).
func readBody(r *http.Request, limit int64) ([]byte, *Error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		if n >= limit {
			return nil, errorf(http.StatusBadRequest, CodeScriptTooLarge, "Script body is too large: over %d bytes", limit)
		}
		return nil, errorf(http.StatusBadRequest, CodeUnparsableBody, "could not parse request body: %v", err)
	}
	return buf.Bytes(), nil
}

// decodeModules checks and decodes the modules of a beta version, the main
// module first, and returns their names.
func (s betaAPI) decodeModules(body betaVersionBody) ([]Module, []string, *Error) {
	if len(body.Modules) == 0 {
		return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "a version needs at least one module")
	}
	if body.MainModule == "" {
		return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "main_module is required")
	}
	var out []Module
	var names []string
	var total int64
	for i, m := range body.Modules {
		if m.Name == "" {
			return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "modules[%d]: name is required", i)
		}
		if slices.Contains(names, m.Name) {
			return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "modules[%d]: a module named '%s' is listed twice", i, m.Name)
		}
		if m.ContentType == "" {
			return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "modules[%d] '%s': content_type is required", i, m.Name)
		}
		data, err := base64.StdEncoding.DecodeString(m.ContentBase64)
		if err != nil {
			return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "modules[%d] '%s': content_base64 is not valid base64", i, m.Name)
		}
		if total += int64(len(data)); total > s.maxScript {
			return nil, nil, errorf(http.StatusBadRequest, CodeScriptTooLarge, "Script body is too large: over %d bytes", s.maxScript)
		}
		names = append(names, m.Name)
		mod := Module{Name: m.Name, ContentType: m.ContentType, Data: data}
		if m.Name == body.MainModule {
			out = slices.Insert(out, 0, mod)
		} else {
			out = append(out, mod)
		}
	}
	if !slices.Contains(names, body.MainModule) {
		return nil, nil, errorf(http.StatusBadRequest, CodeValidation, "main_module '%s' is not among the modules", body.MainModule)
	}
	return out, names, nil
}

// betaAnnotations checks the annotations of a beta version: strings;
// workers/message is cut to 1000 bytes, workers/tag may have 100.
func betaAnnotations(a map[string]json.RawMessage) (json.RawMessage, *Error) {
	if len(a) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for k, raw := range a {
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return nil, errorf(http.StatusBadRequest, CodeValidation, "annotation %s must be a string", k)
		}
		switch k {
		case "workers/message":
			if len(v) > maxMessageBytes {
				v = v[:maxMessageBytes]
			}
		case "workers/tag":
			if len(v) > maxTagBytes {
				return nil, errorf(http.StatusBadRequest, CodeValidation, "annotation workers/tag must be at most %d bytes", maxTagBytes)
			}
		}
		out[k] = v
	}
	data, _ := json.Marshal(out)
	return data, nil
}

// betaVersionResult renders a version as the beta API returns it; the
// modules (base64) only when asked (include=modules).
func betaVersionResult(p params, v *Version, withModules bool) map[string]any {
	res := map[string]any{
		"id":                  v.ID,
		"number":              v.Number,
		"created_on":          timestamp(v.CreatedOn),
		"urls":                []string{},
		"annotations":         annotationsOrEmpty(v.Annotations),
		"bindings":            RenderForGet(p.account, p.script, v.Bindings),
		"compatibility_flags": json.RawMessage(`[]`),
		"main_module":         v.MainModule + v.BodyPart,
		"source":              v.Source,
		"startup_time_ms":     1,
		"usage_model":         json.RawMessage(`"standard"`),
	}
	for k, val := range v.Settings {
		res[k] = val
	}
	if withModules {
		mods := make([]map[string]string, 0, len(v.Modules))
		for _, m := range v.Modules {
			mods = append(mods, map[string]string{"name": m.Name, "content_type": m.ContentType,
				"content_base64": base64.StdEncoding.EncodeToString(m.Data)})
		}
		res["modules"] = mods
	}
	return res
}

// getWorkerVersion answers one version; "latest" names the latest one.
func (s betaAPI) getWorkerVersion(w http.ResponseWriter, r *http.Request, p params) {
	include := r.URL.Query().Get("include")
	if include != "" && include != "modules" {
		writeError(w, http.StatusBadRequest, CodeValidation, "include must be modules")
		return
	}
	s.withWorker(w, &p, func(sc *script) {
		v := sc.latest()
		if p.id != "latest" {
			v = sc.version(p.id)
		}
		if v == nil {
			writeErr(w, versionNotFound(p.id))
			return
		}
		writeResult(w, betaVersionResult(p, v, include == "modules"), nil)
	})
}

// listWorkerVersions lists versions newest first, paginated by page and
// per_page (at most 100, default 20).
func (s betaAPI) listWorkerVersions(w http.ResponseWriter, r *http.Request, p params) {
	page, perPage, perr := pageParams(r, 20, 100)
	if perr != nil {
		writeErr(w, perr)
		return
	}
	s.withWorker(w, &p, func(sc *script) {
		items, info := versionPage(sc.versions, page, perPage, func(v *Version) map[string]any { return betaVersionResult(p, v, false) })
		writeResult(w, items, info)
	})
}
