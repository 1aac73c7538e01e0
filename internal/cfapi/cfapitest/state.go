package cfapitest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// Module is one module (multipart part) of a script.
type Module struct {
	Name        string
	ContentType string
	Data        []byte
}

// Script is a script's live state. PutScript reads MainModule (or
// BodyPart), Modules, Bindings and Settings; the snapshot returned by
// Server.Script fills in the rest.
type Script struct {
	// MainModule names the entry module (module syntax); BodyPart names it
	// for service-worker syntax. One of them is set.
	MainModule string
	BodyPart   string
	Modules    []Module
	// Bindings are the live bindings as stored: write-only values included.
	Bindings []wire.Binding
	// Settings are the live settings members (compatibility_date,
	// compatibility_flags, limits, logpush, observability, placement, tags,
	// tail_consumers, usage_model) as raw JSON; absent members are unset.
	Settings map[string]json.RawMessage

	ETag         string
	CreatedOn    time.Time
	ModifiedOn   time.Time
	MigrationTag string
	// Versions lists every version, oldest first.
	Versions []Version
	// Deployment is the current deployment.
	Deployment *Deployment
	// Deployments lists every deployment, oldest first (the last one is
	// Deployment).
	Deployments []Deployment
	// LastDeployedFrom is "wrangler" when the current deployment came from
	// a request with a wrangler User-Agent, "api" otherwise.
	LastDeployedFrom string
	// Subdomain tells whether the Worker is on the workers.dev subdomain
	// (POST …/subdomain), and its previews.
	Subdomain, PreviewsEnabled bool
}

// Version is one uploaded version of a script.
type Version struct {
	ID         string
	Number     int
	CreatedOn  time.Time
	ETag       string
	MainModule string
	BodyPart   string
	Modules    []Module
	// Bindings are stored with their write-only values.
	Bindings []wire.Binding
	// Settings holds the versioned members (compatibility_date,
	// compatibility_flags, limits, placement, usage_model).
	Settings    map[string]json.RawMessage
	Annotations json.RawMessage
	// Source is "wrangler" for a version uploaded with a wrangler
	// User-Agent, "api" otherwise.
	Source string
}

// Deployment routes a script's traffic to one or two versions.
type Deployment struct {
	ID          string              `json:"id"`
	Strategy    string              `json:"strategy"`
	Versions    []DeploymentVersion `json:"versions"`
	Annotations json.RawMessage     `json:"annotations,omitempty"`
	CreatedOn   time.Time           `json:"-"`
	// Source is "wrangler" or "api", as for versions.
	Source string `json:"-"`
}

// DeploymentVersion is one version of a deployment and its share of traffic.
type DeploymentVersion struct {
	VersionID  string  `json:"version_id"`
	Percentage float64 `json:"percentage"`
}

// settingsKeys are the settings members a script stores, in GET order.
var settingsKeys = []string{"compatibility_date", "compatibility_flags", "limits", "logpush",
	"observability", "placement", "tags", "tail_consumers", "usage_model"}

// versionedKeys are the settings members that belong to a version and
// change when a version is deployed.
var versionedKeys = []string{"compatibility_date", "compatibility_flags", "limits", "placement", "usage_model"}

type scriptKey struct{ account, namespace, name string }

type nsKey struct{ account, name string }

type namespace struct {
	id       string
	name     string
	created  time.Time
	modified time.Time
}

// script is the stored state of one script. Versions are immutable once
// added; the live fields are those of the deployed version plus the
// non-versioned settings.
type script struct {
	created, modified    time.Time
	etag                 string
	mainModule, bodyPart string
	modules              []Module
	bindings             []wire.Binding
	settings             map[string]json.RawMessage
	migrationTag         string
	versions             []*Version
	deployment           *Deployment
	// deployments is the history, oldest first; deployment is the last.
	deployments      []*Deployment
	lastDeployedFrom string
	// subdomain and previews: POST …/subdomain (off for a new script).
	subdomain, previews bool
}

func (sc *script) latest() *Version {
	if len(sc.versions) == 0 {
		return nil
	}
	return sc.versions[len(sc.versions)-1]
}

func (sc *script) version(id string) *Version {
	for _, v := range sc.versions {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// inheritSource looks up the bindings an inherit entry refers to: "" and
// "latest" mean the latest version. A nil script has no versions.
func (sc *script) inheritSource(id string) ([]wire.Binding, bool) {
	if sc == nil {
		return nil, id == "" || id == "latest"
	}
	v := sc.latest()
	if id != "" && id != "latest" {
		v = sc.version(id)
	}
	if v == nil {
		return nil, id == "" || id == "latest"
	}
	return v.Bindings, true
}

// notFound is the API's answer for a missing script.
func notFound(p params) *Error {
	if p.namespace == "" {
		return errorf(http.StatusNotFound, CodeWorkerNotFound, "This Worker does not exist on your account.")
	}
	return errorf(http.StatusNotFound, CodeDispatchNotFound,
		"Worker '%s' does not exist in dispatch namespace '%s'.", p.script, p.namespace)
}

func namespaceNotFound(name string) *Error {
	return errorf(http.StatusNotFound, CodeDispatchNotFound, "Dispatch namespace '%s' does not exist.", name)
}

// checkNamespace answers 404 10092 when p names a dispatch namespace that
// does not exist. The caller holds s.mu.
func (s *store) checkNamespace(p params) *Error {
	if p.namespace == "" {
		return nil
	}
	if _, ok := s.namespaces[nsKey{p.account, p.namespace}]; !ok {
		return namespaceNotFound(p.namespace)
	}
	return nil
}

// lookupScript returns the script p names. The caller holds s.mu.
func (s *store) lookupScript(p params) (*script, *Error) {
	if err := s.checkNamespace(p); err != nil {
		return nil, err
	}
	sc, ok := s.scripts[p.key()]
	if !ok {
		return nil, notFound(p)
	}
	return sc, nil
}

// withScript runs f with s.mu held and the script p names, or answers the
// lookup's error (missing namespace or script) without running f.
func (s *store) withScript(w http.ResponseWriter, p params, f func(sc *script)) {
	s.withLookup(w, func() (*script, *Error) { return s.lookupScript(p) }, f)
}

// withLookup runs f with s.mu held and the script lookup finds, or answers
// lookup's error.
func (s *store) withLookup(w http.ResponseWriter, lookup func() (*script, *Error), f func(sc *script)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, err := lookup()
	if err != nil {
		writeErr(w, err)
		return
	}
	f(sc)
}

// addVersion stores v as the script's next version and returns it. The
// caller holds s.mu.
func (s *store) addVersion(sc *script, v Version) *Version {
	v.ID = s.rnd.newUUID()
	v.Number = len(sc.versions) + 1
	v.CreatedOn = s.now()
	v.ETag = contentETag(v.ID, v.Modules)
	if v.Source == "" {
		v.Source = sourceAPI
	}
	sc.versions = append(sc.versions, &v)
	sc.modified = v.CreatedOn
	return &v
}

func contentETag(id string, modules []Module) string {
	h := sha256.New()
	h.Write([]byte(id))
	for _, m := range modules {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%d\x00", m.Name, m.ContentType, len(m.Data))
		h.Write(m.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// deploy makes d the script's deployment and its primary version (the one
// with the larger share; the first listed on a tie) the live state. The
// caller holds s.mu and has checked that the versions exist.
func (s *store) deploy(sc *script, d *Deployment) {
	d.ID = s.rnd.newUUID()
	d.CreatedOn = s.now()
	primary := d.Versions[0]
	for _, dv := range d.Versions[1:] {
		if dv.Percentage > primary.Percentage {
			primary = dv
		}
	}
	v := sc.version(primary.VersionID)
	if d.Source == "" {
		d.Source = sourceAPI
	}
	sc.deployment = d
	sc.deployments = append(sc.deployments, d)
	sc.lastDeployedFrom = d.Source
	sc.mainModule, sc.bodyPart = v.MainModule, v.BodyPart
	sc.modules = v.Modules
	sc.bindings = v.Bindings
	sc.etag = v.ETag
	for _, k := range versionedKeys {
		if val, ok := v.Settings[k]; ok {
			sc.settings[k] = val
		} else {
			delete(sc.settings, k)
		}
	}
	sc.modified = s.now()
}

// deployOnly deploys v at 100%, from the same source as v. The caller
// holds s.mu.
func (s *store) deployOnly(sc *script, v *Version, annotations json.RawMessage) {
	s.deploy(sc, &Deployment{Strategy: "percentage", Versions: []DeploymentVersion{{VersionID: v.ID, Percentage: 100}},
		Annotations: annotations, Source: v.Source})
}

// Sources of versions and deployments, from the request's User-Agent.
const (
	sourceWrangler = "wrangler"
	sourceAPI      = "api"
)

// ensureScript returns the script p names, creating an empty one. The
// caller holds s.mu and has checked the namespace.
func (s *store) ensureScript(p params) *script {
	sc, ok := s.scripts[p.key()]
	if !ok {
		now := s.now()
		sc = &script{created: now, modified: now, settings: map[string]json.RawMessage{}}
		s.scripts[p.key()] = sc
		if ns := s.namespaces[nsKey{p.account, p.namespace}]; ns != nil {
			ns.modified = now
		}
	}
	return sc
}

// versioned returns the versioned members of settings.
func versioned(settings map[string]json.RawMessage) map[string]json.RawMessage {
	return pick(settings, versionedKeys)
}

// pick returns the members of m with the given keys, those present.
func pick(m map[string]json.RawMessage, keys []string) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// CreateNamespace creates a dispatch namespace. It is idempotent: an
// existing namespace is left as is.
func (s *Server) CreateNamespace(account, name string) error {
	if !isAccountID(account) {
		return fmt.Errorf("cfapitest: invalid account id %q", account)
	}
	if name == "" {
		return fmt.Errorf("cfapitest: empty namespace name")
	}
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	s.db.addNamespace(account, name)
	return nil
}

// addNamespace adds the namespace unless it exists and reports whether
// it did. The caller holds s.mu.
func (s *store) addNamespace(account, name string) (*namespace, bool) {
	k := nsKey{account, name}
	if ns, ok := s.namespaces[k]; ok {
		return ns, false
	}
	now := s.now()
	ns := &namespace{id: s.rnd.newUUID(), name: name, created: now, modified: now}
	s.namespaces[k] = ns
	return ns, true
}

// PutScript stores a script directly, as a new version deployed at 100%,
// creating the script if needed. namespace "" means an ordinary script; a
// dispatch namespace must exist. Bindings are stored as given, without
// validation. Modules are stored main module first. When s has no modules,
// a one-line module "index.js" is used.
func (s *Server) PutScript(account, namespace, name string, sc Script) error {
	if !isAccountID(account) {
		return fmt.Errorf("cfapitest: invalid account id %q", account)
	}
	if name == "" {
		return fmt.Errorf("cfapitest: empty script name")
	}
	p := params{account: account, namespace: namespace, script: name}
	modules := cloneModules(sc.Modules)
	main, body := sc.MainModule, sc.BodyPart
	if len(modules) == 0 {
		modules = []Module{{Name: "index.js", ContentType: "application/javascript+module",
			Data: []byte("export default { fetch() { return new Response(\"ok\"); } };\n")}}
		main, body = "index.js", ""
	}
	if main == "" && body == "" {
		main = modules[0].Name
	}
	entry := main
	if entry == "" {
		entry = body
	}
	i := slices.IndexFunc(modules, func(m Module) bool { return m.Name == entry })
	if i < 0 {
		return fmt.Errorf("cfapitest: entry module %q is not among the modules", entry)
	}
	modules = append(append([]Module{modules[i]}, modules[:i]...), modules[i+1:]...)
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if err := s.db.checkNamespace(p); err != nil {
		return err
	}
	st := s.db.ensureScript(p)
	for k, v := range sc.Settings {
		if v == nil {
			delete(st.settings, k)
		} else {
			st.settings[k] = v
		}
	}
	v := s.db.addVersion(st, Version{MainModule: main, BodyPart: body, Modules: modules,
		Bindings: slices.Clone(sc.Bindings), Settings: versioned(st.settings)})
	s.db.deployOnly(st, v, nil)
	return nil
}

// DeleteScript removes a script and reports whether it existed.
func (s *Server) DeleteScript(account, namespace, name string) bool {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	k := scriptKey{account, namespace, name}
	_, ok := s.db.scripts[k]
	delete(s.db.scripts, k)
	return ok
}

// Bindings returns a script's live bindings as stored, write-only values
// included, in stored order.
func (s *Server) Bindings(account, namespace, name string) ([]wire.Binding, bool) {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	sc, ok := s.db.scripts[scriptKey{account, namespace, name}]
	if !ok {
		return nil, false
	}
	return slices.Clone(sc.bindings), true
}

// Script returns a snapshot of a script's state.
func (s *Server) Script(account, namespace, name string) (Script, bool) {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	sc, ok := s.db.scripts[scriptKey{account, namespace, name}]
	if !ok {
		return Script{}, false
	}
	out := Script{
		MainModule: sc.mainModule, BodyPart: sc.bodyPart, Modules: cloneModules(sc.modules),
		Bindings: slices.Clone(sc.bindings), Settings: maps.Clone(sc.settings),
		ETag: sc.etag, CreatedOn: sc.created, ModifiedOn: sc.modified, MigrationTag: sc.migrationTag,
		LastDeployedFrom: sc.lastDeployedFrom, Subdomain: sc.subdomain, PreviewsEnabled: sc.previews,
	}
	for _, d := range sc.deployments {
		cd := *d
		cd.Versions = slices.Clone(d.Versions)
		out.Deployments = append(out.Deployments, cd)
	}
	for _, v := range sc.versions {
		cv := *v
		cv.Modules = cloneModules(v.Modules)
		cv.Bindings = slices.Clone(v.Bindings)
		cv.Settings = maps.Clone(v.Settings)
		out.Versions = append(out.Versions, cv)
	}
	if sc.deployment != nil {
		d := *sc.deployment
		d.Versions = slices.Clone(d.Versions)
		out.Deployment = &d
	}
	return out, true
}

// ScriptNames returns the names of the scripts in a namespace ("" for
// ordinary scripts), sorted.
func (s *Server) ScriptNames(account, namespace string) []string {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	return s.db.scriptNames(account, namespace)
}

// scriptNames is ScriptNames for a caller holding s.mu.
func (s *store) scriptNames(account, namespace string) []string {
	var names []string
	for k := range s.scripts {
		if k.account == account && k.namespace == namespace {
			names = append(names, k.name)
		}
	}
	slices.Sort(names)
	return names
}

func cloneModules(ms []Module) []Module {
	out := make([]Module, len(ms))
	for i, m := range ms {
		out[i] = Module{Name: m.Name, ContentType: m.ContentType, Data: slices.Clone(m.Data)}
	}
	return out
}

// Seed creates each namespace (namespace "" seeds ordinary scripts) with
// tenantsPerNamespace scripts named tenant-0001, tenant-0002, ... Each has a
// module index.js, compatibility_date 2025-01-01, tags ["seeded", "even" or
// "odd"] and three bindings: kv_namespace KV (an id derived from namespace
// and name), plain_text TENANT (the script name) and secret_text API_TOKEN
// ("seed-secret-<namespace>-<name>"). Seeding is deterministic and
// replaces existing tenant scripts with a new version.
func (s *Server) Seed(account string, namespaces []string, tenantsPerNamespace int) error {
	for _, ns := range namespaces {
		if ns != "" {
			if err := s.CreateNamespace(account, ns); err != nil {
				return err
			}
		}
		for i := 1; i <= tenantsPerNamespace; i++ {
			if err := s.PutScript(account, ns, TenantName(i), tenantScript(ns, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// TenantName returns the name Seed gives the i-th tenant (from 1).
func TenantName(i int) string { return fmt.Sprintf("tenant-%04d", i) }

func tenantScript(ns string, i int) Script {
	name := TenantName(i)
	kvID := sha256.Sum256([]byte("kv\x00" + ns + "\x00" + name))
	mustNew := func(typ, bname string, fields map[string]any) wire.Binding {
		b, err := wire.NewBinding(typ, bname, fields)
		if err != nil {
			panic(err) // the literals below are valid
		}
		return b
	}
	parity := "odd"
	if i%2 == 0 {
		parity = "even"
	}
	tags, _ := json.Marshal([]string{"seeded", parity})
	return Script{
		MainModule: "index.js",
		Modules: []Module{{Name: "index.js", ContentType: "application/javascript+module",
			Data: fmt.Appendf(nil, "export default { fetch() { return new Response(%q); } };\n", name)}},
		Bindings: []wire.Binding{
			mustNew(wire.TypeKVNamespace, "KV", map[string]any{"namespace_id": hex.EncodeToString(kvID[:16])}),
			mustNew(wire.TypePlainText, "TENANT", map[string]any{"text": name}),
			mustNew(wire.TypeSecretText, "API_TOKEN", map[string]any{"text": "seed-secret-" + ns + "-" + name}),
		},
		Settings: map[string]json.RawMessage{
			"compatibility_date": json.RawMessage(`"2025-01-01"`),
			"tags":               tags,
		},
	}
}
