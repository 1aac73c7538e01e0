package cfapitest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// wranglerRoutes are the routes wrangler 4.x calls besides the script
// uploads (routeTable): the preflights of deploy and versions upload,
// secrets, deployments, versions, script-level settings and the
// workers.dev subdomain. doc.go lists the source of each answer's shape.
func wranglerRoutes(st *store) []route {
	s, sec := wranglerAPI{st}, secretsAPI{st}
	r := newRoute
	var out []route
	for _, sc := range scriptPaths {
		out = append(out,
			r(http.MethodGet, sc+"/secrets", EndpointListSecrets, sec.listSecrets, reads),
			r(http.MethodPut, sc+"/secrets", EndpointPutSecret, sec.putSecret, writesScript),
			r(http.MethodGet, sc+"/secrets/{id}", EndpointGetSecret, sec.getSecret, reads),
			r(http.MethodDelete, sc+"/secrets/{id}", EndpointDeleteSecret, sec.deleteSecret, writesScript),
			r(http.MethodPatch, sc+"/secrets-bulk", EndpointPatchSecrets, sec.patchSecrets, writesScript),
			r(http.MethodGet, sc+"/deployments", EndpointListDeployments, s.listDeployments, reads),
			r(http.MethodGet, sc+"/versions", EndpointListVersions, s.listVersions, reads),
			r(http.MethodGet, sc+"/versions/{id}", EndpointGetVersion, s.getVersion, reads),
		)
	}
	return append(out,
		r(http.MethodGet, pathWorkers+"/services/{script}", EndpointGetService, s.getService, reads),
		r(http.MethodGet, pathScript+"/script-settings", EndpointGetScriptSettings, s.getScriptSettings, reads),
		r(http.MethodPatch, pathScript+"/script-settings", EndpointPatchScriptSettings, s.patchScriptSettings, writesScript),
		r(http.MethodGet, pathWorkers+"/subdomain", EndpointGetSubdomain, s.getSubdomain, reads),
		r(http.MethodGet, pathScript+"/subdomain", EndpointGetScriptSubdomain, s.getScriptSubdomain, reads),
		r(http.MethodPost, pathScript+"/subdomain", EndpointPostScriptSubdomain, s.postScriptSubdomain, writesScript),
		r(http.MethodGet, pathAccount+"/r2/buckets/{id}", EndpointGetR2Bucket, s.getR2Bucket, reads),
	)
}

// wranglerAPI serves the routes wrangler reads and the script-level
// settings and subdomain routes it writes, over the shared state.
type wranglerAPI struct{ *store }

// secretsAPI serves a script's secrets (list, get, put, delete, bulk
// edit), over the shared state.
type secretsAPI struct{ *store }

// AccountSubdomain is the workers.dev subdomain of every emulated account.
const AccountSubdomain = "reconciler-emulator"

// CodeServiceNotFound is the answer of GET …/workers/services/{name} for a
// Worker that does not exist; wrangler reads it as "new Worker".
const CodeServiceNotFound = 10090

// CodeBindingNotFound answers a secret that does not exist.
const CodeBindingNotFound = 10056

// workerTag is the 32-hex-digit id the API gives a Worker ("tag" in
// services, "id" in the beta Workers API), derived from its key.
func workerTag(k scriptKey) string {
	sum := sha256.Sum256([]byte("tag\x00" + k.account + "\x00" + k.namespace + "\x00" + k.name))
	return hex.EncodeToString(sum[:16])
}

// getService answers GET …/workers/services/{name}: the Worker with its
// production environment's script, as wrangler reads migration_tag, tag,
// tags and last_deployed_from from it. A missing Worker is 404 10090.
func (s wranglerAPI) getService(w http.ResponseWriter, _ *http.Request, p params) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.scripts[p.key()]
	if !ok {
		writeError(w, http.StatusNotFound, CodeServiceNotFound, "workers.api.error.service_not_found")
		return
	}
	res := scriptResult(p, sc)
	res["tag"] = workerTag(p.key())
	res["last_deployed_from"] = sc.lastDeployedFrom
	res["deployment_id"] = sc.deployment.ID
	res["entry_point"] = sc.mainModule + sc.bodyPart
	res["startup_time_ms"] = 1
	res["pipeline_hash"] = nil
	writeResult(w, map[string]any{
		"id": p.script,
		"default_environment": map[string]any{
			"environment": "production", "created_on": timestamp(sc.created), "modified_on": timestamp(sc.modified),
			"script": res,
		},
		"created_on":  timestamp(sc.created),
		"modified_on": timestamp(sc.modified),
	}, nil)
}

// secretResult renders a secret as {name, type}.
func secretResult(b wire.Binding) map[string]string {
	return map[string]string{"name": b.Name(), "type": b.Type()}
}

// secretList renders the live write-only bindings as secretResult does,
// sorted by name.
func secretList(bs []wire.Binding) []map[string]string {
	out := []map[string]string{}
	for _, b := range bs {
		if b.WriteOnly() {
			out = append(out, secretResult(b))
		}
	}
	slices.SortFunc(out, func(a, b map[string]string) int {
		if a["name"] < b["name"] {
			return -1
		}
		if a["name"] > b["name"] {
			return 1
		}
		return 0
	})
	return out
}

func (s secretsAPI) listSecrets(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) { writeResult(w, secretList(sc.bindings), nil) })
}

func secretNotFound(name string) *Error {
	return errorf(http.StatusNotFound, CodeBindingNotFound, "Secret '%s' not found on this Worker.", name)
}

func (s secretsAPI) getSecret(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		b, ok := findBinding(sc.bindings, p.id, "")
		if !ok || !b.WriteOnly() {
			writeErr(w, secretNotFound(p.id))
			return
		}
		writeResult(w, secretResult(b), nil)
	})
}

// parseSecret decodes one secret object of PUT …/secrets or secrets-bulk.
// A missing type means secret_text; name defaults to key (bulk) and must
// equal it when both are given.
func parseSecret(raw json.RawMessage, key string) (wire.Binding, *Error) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return wire.Binding{}, errorf(http.StatusBadRequest, CodeUnparsableBody, "could not parse request body: a secret must be a JSON object")
	}
	if _, ok := fields["type"]; !ok {
		fields["type"] = jsonString(wire.TypeSecretText)
	}
	if key != "" {
		if n, ok := fields["name"]; ok {
			var name string
			if json.Unmarshal(n, &name) != nil || name != key {
				return wire.Binding{}, errorf(http.StatusBadRequest, CodeValidation, "secret '%s': name must equal its key", key)
			}
		} else {
			fields["name"] = jsonString(key)
		}
	}
	data, _ := json.Marshal(fields)
	bs, err := parseBindings([]json.RawMessage{data})
	if err != nil {
		return wire.Binding{}, err
	}
	b := bs[0]
	if !b.WriteOnly() {
		return wire.Binding{}, errorf(http.StatusBadRequest, CodeValidation,
			"secret '%s': type must be secret_text or secret_key, got %s", b.Name(), b.Type())
	}
	if verr := b.Validate(wire.ForUpload); verr != nil {
		return wire.Binding{}, validationError(b, verr)
	}
	return b, nil
}

// editSecrets stores a new version of the latest version with the secrets
// in set upserted and those in del removed, and deploys it at 100%. The
// caller holds s.mu.
func (s secretsAPI) editSecrets(r *http.Request, sc *script, set []wire.Binding, del []string) *Error {
	base, err := s.editBase(sc, CodeSecretNotDeployed)
	if err != nil {
		return err
	}
	out := make([]wire.Binding, 0, len(base.Bindings)+len(set))
	for _, b := range base.Bindings {
		if slices.Contains(del, b.Name()) || slices.ContainsFunc(set, func(n wire.Binding) bool { return n.Name() == b.Name() }) {
			continue
		}
		out = append(out, b)
	}
	out = append(out, set...)
	v := s.addVersion(sc, derive(base, out, maps.Clone(base.Settings), sourceOf(r), "secret"))
	s.deployOnly(sc, v, v.Annotations)
	return nil
}

// putSecret sets one secret: {"name", "text", "type"}. It creates a new
// version from the latest one and deploys it (10215 when the latest
// version is not deployed).
func (s secretsAPI) putSecret(w http.ResponseWriter, r *http.Request, p params) {
	var raw json.RawMessage
	if !readJSON(w, r, &raw) {
		return
	}
	b, perr := parseSecret(raw, "")
	if perr != nil {
		writeErr(w, perr)
		return
	}
	s.withScript(w, p, func(sc *script) {
		if err := s.editSecrets(r, sc, []wire.Binding{b}, nil); err != nil {
			writeErr(w, err)
			return
		}
		writeResult(w, secretResult(b), nil)
	})
}

// deleteSecret removes one secret (404 10056 when there is none).
func (s secretsAPI) deleteSecret(w http.ResponseWriter, r *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		if b, ok := findBinding(sc.bindings, p.id, ""); !ok || !b.WriteOnly() {
			writeErr(w, secretNotFound(p.id))
			return
		}
		if err := s.editSecrets(r, sc, nil, []string{p.id}); err != nil {
			writeErr(w, err)
			return
		}
		writeResult(w, nil, nil)
	})
}

// patchSecrets applies a merge patch {"secrets": {NAME: secret | null}}:
// an object upserts, null deletes, an omitted name stays. The answer lists
// the secrets afterwards.
func (s secretsAPI) patchSecrets(w http.ResponseWriter, r *http.Request, p params) {
	var body struct {
		Secrets map[string]json.RawMessage `json:"secrets"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	var set []wire.Binding
	var del []string
	for _, name := range slices.Sorted(maps.Keys(body.Secrets)) {
		raw := body.Secrets[name]
		if isNull(raw) {
			del = append(del, name)
			continue
		}
		b, err := parseSecret(raw, name)
		if err != nil {
			writeErr(w, err)
			return
		}
		set = append(set, b)
	}
	s.withScript(w, p, func(sc *script) {
		if err := s.editSecrets(r, sc, set, del); err != nil {
			writeErr(w, err)
			return
		}
		writeResult(w, secretMap(sc.bindings), nil)
	})
}

// secretMap is the secrets-bulk answer: every secret after the patch,
// keyed by name, as the API reference's result object.
func secretMap(bs []wire.Binding) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, s := range secretList(bs) {
		out[s["name"]] = s
	}
	return out
}

// listDeployments answers the ten most recent deployments, newest first
// (the first is the active one): {"deployments": [...]}.
func (s wranglerAPI) listDeployments(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		out := []map[string]any{}
		for i := len(sc.deployments) - 1; i >= 0 && len(out) < 10; i-- {
			out = append(out, deploymentResult(sc.deployments[i]))
		}
		writeResult(w, map[string]any{"deployments": out}, nil)
	})
}

func versionNotFound(id string) *Error {
	return errorf(http.StatusNotFound, CodeWorkerNotFound, "Version '%s' does not exist on this Worker.", id)
}

func (s wranglerAPI) getVersion(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) {
		v := sc.version(p.id)
		if v == nil {
			writeErr(w, versionNotFound(p.id))
			return
		}
		writeResult(w, versionResult(p, sc, v), nil)
	})
}

// pageParams reads page (from 1) and per_page (1..max, default def).
func pageParams(r *http.Request, def, maxPer int) (page, perPage int, err *Error) {
	page, perPage = 1, def
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		n, e := strconv.Atoi(v)
		if e != nil || n < 1 {
			return 0, 0, errorf(http.StatusBadRequest, CodeValidation, "page must be a positive integer")
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, e := strconv.Atoi(v)
		if e != nil || n < 1 || n > maxPer {
			return 0, 0, errorf(http.StatusBadRequest, CodeValidation, "per_page must be an integer between 1 and %d", maxPer)
		}
		perPage = n
	}
	return page, perPage, nil
}

// versionPage renders the versions of one page, newest first, and the
// result_info that describes the page.
func versionPage(versions []*Version, page, perPage int, render func(*Version) map[string]any) (items []map[string]any, info map[string]any) {
	newest := slices.Clone(versions)
	slices.Reverse(newest)
	items = []map[string]any{}
	for i := (page - 1) * perPage; i < len(newest) && len(items) < perPage; i++ {
		items = append(items, render(newest[i]))
	}
	return items, map[string]any{"page": page, "per_page": perPage, "count": len(items), "total_count": len(versions)}
}

// listVersions answers {"items": [...]}, newest first, paginated by page
// and per_page; deployable=true ignores pagination and lists the last 100
// (the versions a deployment may use).
func (s wranglerAPI) listVersions(w http.ResponseWriter, r *http.Request, p params) {
	page, perPage, perr := pageParams(r, 10, 100)
	if perr != nil {
		writeErr(w, perr)
		return
	}
	if r.URL.Query().Get("deployable") == "true" {
		page, perPage = 1, 100
	}
	s.withScript(w, p, func(sc *script) {
		items, info := versionPage(sc.versions, page, perPage, func(v *Version) map[string]any { return versionResult(p, sc, v) })
		writeResult(w, map[string]any{"items": items}, info)
	})
}

// scriptSettingsKeys are the script-level (non-versioned) settings.
var scriptSettingsKeys = []string{"logpush", "observability", "tags", "tail_consumers"}

// scriptSettingsResult renders the script-level settings, defaults
// included. The caller holds s.mu.
func scriptSettingsResult(sc *script) map[string]any {
	return settingsWithDefaults(sc, scriptSettingsKeys)
}

func (s wranglerAPI) getScriptSettings(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) { writeResult(w, scriptSettingsResult(sc), nil) })
}

// patchScriptSettings changes the script-level settings (JSON body; other
// members are ignored) without creating a version.
func (s wranglerAPI) patchScriptSettings(w http.ResponseWriter, r *http.Request, p params) {
	var members map[string]json.RawMessage
	if !readJSON(w, r, &members) {
		return
	}
	settings, err := settingsIn(members, scriptSettingsKeys)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.withScript(w, p, func(sc *script) {
		applySettings(sc.settings, settings)
		sc.modified = s.now()
		writeResult(w, scriptSettingsResult(sc), nil)
	})
}

// getSubdomain answers the account's workers.dev subdomain.
func (s wranglerAPI) getSubdomain(w http.ResponseWriter, _ *http.Request, _ params) {
	writeResult(w, map[string]string{"subdomain": AccountSubdomain}, nil)
}

func (s wranglerAPI) getScriptSubdomain(w http.ResponseWriter, _ *http.Request, p params) {
	s.withScript(w, p, func(sc *script) { writeResult(w, subdomainResult(sc), nil) })
}

// subdomainResult renders whether a Worker is on workers.dev, and its
// previews.
func subdomainResult(sc *script) map[string]bool {
	return map[string]bool{"enabled": sc.subdomain, "previews_enabled": sc.previews}
}

// postScriptSubdomain turns the Worker's workers.dev route on or off:
// {"enabled": bool, "previews_enabled"?: bool}; previews follow enabled
// unless given.
func (s wranglerAPI) postScriptSubdomain(w http.ResponseWriter, r *http.Request, p params) {
	var body struct {
		Enabled  *bool `json:"enabled"`
		Previews *bool `json:"previews_enabled"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Enabled == nil {
		writeError(w, http.StatusBadRequest, CodeValidation, "enabled is required")
		return
	}
	s.withScript(w, p, func(sc *script) {
		sc.subdomain, sc.previews = *body.Enabled, *body.Enabled
		if body.Previews != nil {
			sc.previews = *body.Previews
		}
		sc.modified = s.now()
		writeResult(w, subdomainResult(sc), nil)
	})
}

// getR2Bucket answers that every bucket exists (the emulator does not model
// R2), so that wrangler does not try to create the buckets it binds.
func (s wranglerAPI) getR2Bucket(w http.ResponseWriter, _ *http.Request, p params) {
	writeResult(w, map[string]string{
		"name": p.id, "creation_date": "2025-01-01T00:00:00.000Z", "location": "ENAM", "storage_class": "Standard",
	}, nil)
}
