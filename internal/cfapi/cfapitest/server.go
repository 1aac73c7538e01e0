package cfapitest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configures a Server. The zero value is a server without auth,
// rate limit or faults under /client/v4.
type Options struct {
	// Prefix is the path the API is served under; "" means "/client/v4".
	Prefix string

	// Token, when set, is required as "Authorization: Bearer <Token>".
	Token string
	// Email and Key, when both set, are accepted as X-Auth-Email and
	// X-Auth-Key (instead of, or besides, the token).
	Email, Key string
	// MoreTokens are further tokens of the same user, accepted like Token
	// and sharing its rate limit; UserID is that user's id (GET /user;
	// default DefaultUserID). See ratelimit_user.go.
	MoreTokens []string
	UserID     string
	// OmitRateHeaders leaves the Ratelimit and Ratelimit-Policy headers
	// out, as a proxy that strips them would.
	OmitRateHeaders bool
	// OtherToolRate makes another tool spend this many requests per second
	// of the rate limit (SetOtherToolRate).
	OtherToolRate float64

	// RateLimit is the number of requests allowed per RateWindow, counted in
	// fixed windows unless RateSliding is set; 0 turns the limit off.
	RateLimit  int
	RateWindow time.Duration
	// RateSliding counts RateLimit over a strict sliding window instead, as
	// the real API does: a request that would make more than RateLimit
	// accepted requests within any RateWindow blocks the token for
	// RateBlock, and every request until the block ends is answered 429
	// code 971 with Retry-After. Refused requests do not count.
	RateSliding bool
	// RateBlock is how long a sliding-window block lasts; 0 means
	// RateWindow.
	RateBlock time.Duration

	// Faults are injected at random (see Faults); SetFaults changes them.
	Faults Faults
	// Seed seeds the random source of faults, ids and ray ids.
	Seed uint64

	// RejectOverlappingWrites answers a write to a script that starts while
	// another write to the same script is in flight with 409 code 10035, as
	// the real API does for concurrent modifications. When false both
	// writes proceed (and are counted in Stats.OverlappingWrites).
	RejectOverlappingWrites bool

	// MaxScriptSize bounds the module bytes of one upload (10027 beyond);
	// 0 means 64 MiB.
	MaxScriptSize int64

	// Now is the clock for timestamps and rate-limit windows; nil means
	// time.Now. Latency is always real time.
	Now func() time.Time

	// SplitEdits says what a settings PATCH or a secret edit does to a
	// script whose deployment splits traffic between its latest version
	// and another one. The zero value collapses the split (see SplitEditMode).
	SplitEdits SplitEditMode

	// Guesses switch the answers the API reference leaves open to their
	// other plausible behaviour (see SpecGuesses).
	Guesses SpecGuesses
}

// SplitEditMode is the emulator's answer to a settings PATCH or a secret
// edit (PUT/DELETE …/secrets, PATCH …/secrets-bulk) while the script's
// deployment splits traffic between its latest version and another one.
// The API documents neither (doc.go, "Guesses"); both are plausible.
type SplitEditMode int

const (
	// SplitEditCollapse, the default and the worst case for a caller,
	// creates the new version from the latest one and deploys it at 100%:
	// the split is gone.
	SplitEditCollapse SplitEditMode = iota
	// SplitEditReject answers as when the latest version is not deployed
	// at all: 400 with code 10214 (settings) or 10215 (secrets).
	SplitEditReject
)

// Faults are random failures and delays. Rates are fractions of requests
// in [0,1]; a request draws one fault at most.
type Faults struct {
	// FailRate is the fraction answered 500, 502 or 503 with code 10013.
	FailRate float64
	// ThrottleRate is the fraction answered 429 code 971 with Retry-After: 1.
	ThrottleRate float64
	// ResetRate is the fraction whose connection is reset without an answer.
	ResetRate float64
	// Latency is added to every request.
	Latency time.Duration
	// WriteLatency is added to every script write while it is in flight,
	// so that concurrent writes to one script overlap observably.
	WriteLatency time.Duration
}

// Server is the emulator: an http.Handler serving the Workers API from
// memory. It is safe for concurrent use. Its parts: the scripts and
// namespaces (store, served by the small handler types of each API area),
// fault injection (Inject), the rate limit and the other tool sharing it
// (rateLimit), and the counters (statsRecorder).
type Server struct {
	// Inject injects faults: random ones, the next requests' failures, and
	// those aimed at one script or account. SetFaults, FailNext and
	// AnswerPageNext are its most used methods, also on Server.
	Inject *Injector

	db     *store
	routes []route
	user   userAPI
	rate   *rateLimit
	stats  *statsRecorder
}

// store is the state every handler shares: the namespaces and scripts,
// the options, the clock and the seeded random source.
type store struct {
	prefix    string
	opts      Options
	now       func() time.Time
	maxScript int64
	rnd       *random
	inj       *Injector // RefuseRemoval's refusals

	mu         sync.Mutex // guards the state below
	namespaces map[nsKey]*namespace
	scripts    map[scriptKey]*script
}

// New returns a server with empty state.
func New(opts Options) *Server {
	db := &store{
		prefix:     strings.TrimSuffix(opts.Prefix, "/"),
		opts:       opts,
		now:        opts.Now,
		maxScript:  opts.MaxScriptSize,
		rnd:        &random{rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))},
		namespaces: make(map[nsKey]*namespace),
		scripts:    make(map[scriptKey]*script),
	}
	if opts.Prefix == "" {
		db.prefix = "/client/v4"
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.maxScript <= 0 {
		db.maxScript = 64 << 20
	}
	stats := &statsRecorder{}
	stats.init()
	db.inj = &Injector{faults: opts.Faults, rnd: db.rnd, stats: stats}
	s := &Server{
		Inject: db.inj,
		db:     db,
		routes: routeTable(db),
		user:   userAPI{db},
		rate:   &rateLimit{now: db.now, omitHeaders: opts.OmitRateHeaders, stats: stats},
		stats:  stats,
	}
	if opts.RateSliding {
		s.rate.lim.setSliding(opts.RateLimit, opts.RateWindow, opts.RateBlock)
	} else {
		s.rate.lim.set(opts.RateLimit, opts.RateWindow)
	}
	if opts.OtherToolRate > 0 {
		s.SetOtherToolRate(opts.OtherToolRate)
	}
	return s
}

// Prefix returns the path the API is served under, such as "/client/v4".
func (s *Server) Prefix() string { return s.db.prefix }

// Endpoint names, shared with the client's metrics.
const (
	EndpointGetSettings     = "get_settings"
	EndpointGetBindings     = "get_bindings"
	EndpointPatchSettings   = "patch_settings"
	EndpointGetContent      = "get_content"
	EndpointPutScript       = "put_script"
	EndpointPostVersion     = "post_version"
	EndpointPostDeployment  = "post_deployment"
	EndpointListScripts     = "list_scripts"
	EndpointGetScript       = "get_script"
	EndpointCreateNamespace = "create_namespace"
	EndpointListNamespaces  = "list_namespaces"
	EndpointGetNamespace    = "get_namespace"
	EndpointUnknown         = "unknown"

	// Routes wrangler calls (wrangler.go).
	EndpointGetService          = "get_service"
	EndpointListSecrets         = "list_secrets"
	EndpointGetSecret           = "get_secret"
	EndpointPutSecret           = "put_secret"
	EndpointDeleteSecret        = "delete_secret"
	EndpointPatchSecrets        = "patch_secrets"
	EndpointListDeployments     = "list_deployments"
	EndpointGetVersion          = "get_version"
	EndpointListVersions        = "list_versions"
	EndpointGetScriptSettings   = "get_script_settings"
	EndpointPatchScriptSettings = "patch_script_settings"
	EndpointGetSubdomain        = "get_subdomain"
	EndpointGetScriptSubdomain  = "get_script_subdomain"
	EndpointPostScriptSubdomain = "post_script_subdomain"
	EndpointGetR2Bucket         = "get_r2_bucket"

	// The beta Workers API (beta.go).
	EndpointGetWorker           = "get_worker"
	EndpointCreateWorkerVersion = "create_worker_version"
	EndpointGetWorkerVersion    = "get_worker_version"
	EndpointListWorkerVersions  = "list_worker_versions"
)

// params are the path parameters of a request. namespace is "" for an
// ordinary (account-level) script; id is the last parameter of routes
// below a script or account (a version id, secret name or bucket name).
type params struct {
	account, namespace, script, id string
}

func (p params) key() scriptKey { return scriptKey{p.account, p.namespace, p.script} }

type route struct {
	method   string
	segs     []string // "{account}", "{ns}", "{script}" and "{id}" are parameters
	endpoint string
	handle   handler
	access   access
}

// handler answers one routed request.
type handler = func(http.ResponseWriter, *http.Request, params)

// access tells what a route does, for Stats and the write checks.
type access int

const (
	// reads change nothing.
	reads access = iota
	// writes change the account (a new dispatch namespace).
	writes
	// writesScript changes one script: such writes are tracked in flight,
	// delayed by WriteLatency and checked for overlap.
	writesScript
)

// newRoute builds a route.
func newRoute(method, path, endpoint string, h handler, a access) route {
	return route{method: method, segs: strings.Split(strings.Trim(path, "/"), "/"), endpoint: endpoint, handle: h, access: a}
}

// Route paths, relative to the prefix.
const (
	pathAccount        = "/accounts/{account}"
	pathWorkers        = pathAccount + "/workers"
	pathNamespaces     = pathWorkers + "/dispatch/namespaces"
	pathNamespace      = pathNamespaces + "/{ns}"
	pathDispatchScript = pathNamespace + "/scripts/{script}"
	pathScript         = pathWorkers + "/scripts/{script}"
)

// scriptPaths are the paths of a script of either kind: in a dispatch
// namespace and an ordinary one.
var scriptPaths = []string{pathDispatchScript, pathScript}

// routeTable is the one list of routes. When a path serves several
// methods, their order here is the order of the Allow header.
func routeTable(st *store) []route {
	set, scr, nss := settingsAPI{st}, scriptsAPI{st}, namespacesAPI{st}
	r := newRoute
	var out []route
	for _, sc := range scriptPaths {
		out = append(out,
			r(http.MethodGet, sc+"/settings", EndpointGetSettings, set.getSettings, reads),
			r(http.MethodPatch, sc+"/settings", EndpointPatchSettings, set.patchSettings, writesScript),
			r(http.MethodPut, sc, EndpointPutScript, scr.putScript, writesScript),
			r(http.MethodDelete, sc, EndpointDeleteScript, scr.deleteScript, writesScript), // delete.go
			r(http.MethodPost, sc+"/versions", EndpointPostVersion, scr.postVersion, writesScript),
			r(http.MethodPost, sc+"/deployments", EndpointPostDeployment, scr.postDeployment, writesScript),
		)
	}
	return slices.Concat(out, []route{
		r(http.MethodGet, pathDispatchScript+"/bindings", EndpointGetBindings, set.getBindings, reads),
		r(http.MethodGet, pathDispatchScript+"/content", EndpointGetContent, set.getContent, reads),
		r(http.MethodGet, pathScript+"/content/v2", EndpointGetContent, set.getContent, reads),
		r(http.MethodGet, pathDispatchScript, EndpointGetScript, nss.getScript, reads),
		r(http.MethodGet, pathNamespace+"/scripts", EndpointListScripts, nss.listScripts, reads),
		r(http.MethodGet, pathNamespace, EndpointGetNamespace, nss.getNamespace, reads),
		r(http.MethodGet, pathNamespaces, EndpointListNamespaces, nss.listNamespaces, reads),
		r(http.MethodPost, pathNamespaces, EndpointCreateNamespace, nss.createNamespace, writes),
	}, wranglerRoutes(st), betaRoutes(st))
}

// match finds the route for a request. When the path matches routes of
// other methods only, rt is nil and allowed lists those methods.
func match(routes []route, prefix string, r *http.Request) (rt *route, p params, allowed []string) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix+"/")
	if !ok {
		return nil, params{}, nil
	}
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, params{}, nil
		}
		segs[i] = u
	}
	for i := range routes {
		cand := &routes[i]
		cp, ok := matchSegs(cand.segs, segs)
		if !ok {
			continue
		}
		if cand.method == r.Method {
			return cand, cp, nil
		}
		allowed = append(allowed, cand.method)
	}
	return nil, params{}, allowed
}

func matchSegs(pattern, segs []string) (params, bool) {
	var p params
	if len(pattern) != len(segs) {
		return p, false
	}
	for i, pat := range pattern {
		seg := segs[i]
		switch pat {
		case "{account}":
			p.account = seg
		case "{ns}":
			p.namespace = seg
		case "{script}":
			p.script = seg
		case "{id}":
			p.id = seg
		default:
			if pat != seg {
				return p, false
			}
			continue
		}
		if seg == "" {
			return p, false
		}
	}
	return p, true
}

// ServeHTTP answers one API request: it records it, applies latency, the
// rate limit, auth and injected faults, in that order, and then runs the
// route's handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrival := s.db.now()
	rt, p, allowed := match(s.routes, s.db.prefix, r)
	endpoint := EndpointUnknown
	if rt != nil {
		endpoint = rt.endpoint
	}
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set("cf-ray", s.db.rnd.rayID())
	s.stats.begin(arrival, rt)
	defer func() {
		s.stats.end(Request{
			Time: arrival, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Endpoint: endpoint,
			Status: rec.status, Account: p.account, Namespace: p.namespace, Script: p.script,
		})
	}()

	faults := s.Inject.Faults()
	if !sleepCtx(r.Context(), faults.Latency) {
		return
	}
	if !s.rate.apply(rec, arrival) {
		return
	}
	if !s.user.authorized(r) {
		writeError(rec, http.StatusForbidden, CodeAuth, "Authentication error")
		return
	}
	if s.Inject.denied(p.account) {
		writeError(rec, http.StatusForbidden, CodeAuth, "Authentication error")
		return
	}
	if s.Inject.inject(rec, endpoint, p.script, faults) {
		return
	}
	if s.user.serveUser(rec, r) { // ratelimit_user.go
		return
	}
	switch {
	case rt == nil && len(allowed) > 0:
		rec.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			fmt.Sprintf("%s method not allowed for the api_token authentication scheme", r.Method))
		return
	case rt == nil:
		writeError(rec, http.StatusNotFound, CodeNoRoute, "No route for that URI")
		return
	}
	if !isAccountID(p.account) {
		writeErr(rec, &Error{Status: http.StatusNotFound, Code: CodeInvalidAccount,
			Message: fmt.Sprintf("Could not route to %s, perhaps your object identifier is invalid?", strings.TrimPrefix(r.URL.Path, s.db.prefix)),
			More:    []ErrorEntry{{Code: CodeNoRoute, Message: "No route for that URI"}}})
		return
	}
	if rt.access == writesScript {
		overlap := s.stats.beginWrite(p.key())
		defer s.stats.endWrite(p.key())
		if overlap && s.db.opts.RejectOverlappingWrites {
			writeError(rec, http.StatusConflict, CodeConcurrentModify, messageConcurrentEdit)
			return
		}
		if faults.WriteLatency > 0 {
			// Read the body first, as the real API receives the whole
			// upload before it works on it: then a client that gives up
			// (closes the connection) cancels r.Context() during the wait,
			// and the write is not made.
			body, err := io.ReadAll(http.MaxBytesReader(rec, r.Body, 256<<20))
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if !sleepCtx(r.Context(), faults.WriteLatency) {
				return
			}
		}
	}
	rt.handle(rec, r, p)
}

// isAccountID reports whether id is 32 lowercase hex digits; every such id
// is an account of the emulator.
func isAccountID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// recorder remembers the status a handler wrote.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type envelope struct {
	Success    bool         `json:"success"`
	Errors     []errorEntry `json:"errors"`
	Messages   []errorEntry `json:"messages"`
	Result     any          `json:"result"`
	ResultInfo any          `json:"result_info,omitempty"`
}

type errorEntry struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeError answers with an error envelope holding one entry.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeErr(w, &Error{Status: status, Code: code, Message: msg})
}

// writeErr answers with the error envelope of e.
func writeErr(w http.ResponseWriter, e *Error) {
	env := envelope{Errors: []errorEntry{}, Messages: []errorEntry{}}
	for _, en := range e.entries() {
		env.Errors = append(env.Errors, errorEntry(en))
	}
	writeJSON(w, e.Status, env)
}

// invalidJSON is the answer to a request body that is not valid JSON.
func invalidJSON() *Error {
	return errorf(http.StatusBadRequest, CodeUnparsableBody, "could not parse request body: invalid JSON")
}

// readJSON decodes the request body into v, or answers invalidJSON and
// reports false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeErr(w, invalidJSON())
		return false
	}
	return true
}

// writeResult answers 200 with a success envelope.
func writeResult(w http.ResponseWriter, result, resultInfo any) {
	writeJSON(w, http.StatusOK, envelope{Success: true, Errors: []errorEntry{}, Messages: []errorEntry{},
		Result: result, ResultInfo: resultInfo})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"success":false,"errors":[{"code":10013,"message":"workers.api.error.unknown"}],"messages":[],"result":null}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// random is the server's one random source, seeded by Options.Seed: ray
// ids, ids and the draws of random faults.
type random struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func (s *random) rayID() string {
	s.mu.Lock()
	v := s.rng.Uint64()
	s.mu.Unlock()
	return fmt.Sprintf("%016x-EMU", v)
}

func (s *random) float() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64()
}

func (s *random) intN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

// newUUID returns a random version 4 UUID from the seeded source.
func (s *random) newUUID() string {
	var b [16]byte
	s.mu.Lock()
	for i := 0; i < 16; i += 8 {
		v := s.rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	s.mu.Unlock()
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// timestamp formats t as the API does: "2025-01-01T00:00:00.000000Z".
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// listenURL turns a listener address into a base URL, replacing an
// unspecified host with the loopback address.
func listenURL(addr net.Addr, prefix string) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + prefix
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + prefix
}
