package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// fakeStore keeps desired states and last-applied records in memory, each
// with a revision, and hands out copies (encoded and decoded, as the KV
// store does) so that a reconcile never shares memory with it.
type fakeStore struct {
	mu      sync.Mutex
	rev     uint64
	desired map[string]storedValue
	applied map[string]storedValue
}

type storedValue struct {
	data []byte
	rev  uint64
}

func newFakeStore() *fakeStore {
	return &fakeStore{desired: map[string]storedValue{}, applied: map[string]storedValue{}}
}

// put stores ds as the desired state of its script and returns the key
// and the revision.
func (s *fakeStore) put(t *testing.T, ds *event.DesiredState) (string, uint64) {
	t.Helper()
	data, err := state.EncodeState(ds)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	key := event.ScriptKey(ds.Ref)
	s.desired[key] = storedValue{data, s.rev}
	return key, s.rev
}

func (s *fakeStore) LoadDesired(_ context.Context, key string) (*event.DesiredState, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.desired[key]
	if !ok {
		return nil, 0, state.ErrNotFound
	}
	ds, err := state.DecodeDesired(key, v.data)
	return ds, v.rev, err
}

func (s *fakeStore) UpdateDesired(_ context.Context, key string, edit func(*event.DesiredState) bool) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.desired[key]
	if !ok {
		return 0, state.ErrNotFound
	}
	ds, err := state.DecodeDesired(key, v.data)
	if err != nil {
		return 0, err
	}
	if !edit(ds) {
		return v.rev, nil
	}
	data, err := state.EncodeState(ds)
	if err != nil {
		return 0, err
	}
	s.rev++
	s.desired[key] = storedValue{data, s.rev}
	return s.rev, nil
}

func (s *fakeStore) LoadApplied(_ context.Context, key string) (*state.AppliedRecord, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.applied[key]
	if !ok {
		return &state.AppliedRecord{Version: 1, Bindings: map[string]planner.Applied{}}, 0, nil
	}
	var rec state.AppliedRecord
	if err := json.Unmarshal(v.data, &rec); err != nil {
		return nil, 0, err
	}
	if rec.Bindings == nil {
		rec.Bindings = map[string]planner.Applied{}
	}
	return &rec, v.rev, nil
}

func (s *fakeStore) SaveApplied(_ context.Context, key string, rec *state.AppliedRecord, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied[key].rev != rev {
		return 0, state.ErrAppliedChanged
	}
	data, err := state.EncodeState(rec)
	if err != nil {
		return 0, err
	}
	s.rev++
	s.applied[key] = storedValue{data, s.rev}
	return s.rev, nil
}

// record returns the last-applied record of key and its revision.
func (s *fakeStore) record(t *testing.T, key string) (*state.AppliedRecord, uint64) {
	t.Helper()
	rec, rev, err := s.LoadApplied(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return rec, rev
}

// fakeLeases grants a lease unless another owner holds the key; lost
// makes every held lease fail its Check.
type fakeLeases struct {
	mu       sync.Mutex
	other    map[string]bool // held by another replica
	held     map[string]bool
	lost     bool
	acquired int
}

func (l *fakeLeases) Acquire(ctx context.Context, key string) (Lease, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.other[key] || l.held[key] {
		return nil, false, nil
	}
	if l.held == nil {
		l.held = map[string]bool{}
	}
	l.held[key] = true
	l.acquired++
	lctx, cancel := context.WithCancel(ctx)
	return &fakeLease{leases: l, key: key, ctx: lctx, cancel: cancel}, true, nil
}

type fakeLease struct {
	leases *fakeLeases
	key    string
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *fakeLease) Context() context.Context { return l.ctx }

func (l *fakeLease) Check() error {
	l.leases.mu.Lock()
	defer l.leases.mu.Unlock()
	if l.leases.lost {
		return state.ErrLeaseLost
	}
	return l.ctx.Err()
}

func (l *fakeLease) Release() {
	l.cancel()
	l.leases.mu.Lock()
	defer l.leases.mu.Unlock()
	delete(l.leases.held, l.key)
}

// fakeAPI serves the settings of scripts from memory and applies settings
// PATCHes to them; refuse, when set, answers every PATCH with that error.
// It lists the deployments it is given. Any other call fails the test: a
// settings write needs nothing else.
type fakeAPI struct {
	t       *testing.T
	mu      sync.Mutex
	live    map[string][]wire.Binding // by script key
	reads   int
	patches []cfapi.SettingsPatch
	refuse  error
	// deployments are the deployments of ordinary Workers, newest first.
	deployments map[string][]cfapi.ScriptDeployment
}

func (a *fakeAPI) GetSettings(_ context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reads++
	bs, ok := a.live[event.ScriptKey(ref)]
	if !ok {
		return nil, &cfapi.APIError{StatusCode: http.StatusNotFound, Errors: []cfapi.ErrorDetail{{Code: cfapi.CodeWorkerNotFound, Message: "not found"}}}
	}
	return &cfapi.Settings{Bindings: append(wire.Bindings(nil), bs...)}, nil
}

func (a *fakeAPI) PatchSettings(_ context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.patches = append(a.patches, p)
	if a.refuse != nil {
		return nil, a.refuse
	}
	// The request carries every binding the script keeps (inherit
	// entries of only {type, name} keep their value): replace the list.
	live := map[string]wire.Binding{}
	for _, b := range a.live[event.ScriptKey(ref)] {
		live[b.Name()] = b
	}
	var out []wire.Binding
	for _, b := range p.Bindings {
		if old, ok := live[b.Name()]; ok && b.Type() == wire.TypeInherit {
			b = old
		}
		out = append(out, b)
	}
	a.live[event.ScriptKey(ref)] = out
	return &cfapi.Settings{Bindings: out}, nil
}

func (a *fakeAPI) unexpected(what string) error {
	a.t.Errorf("unexpected API call: %s", what)
	return errors.New("not served by the fake API")
}

func (a *fakeAPI) GetScriptContent(context.Context, cfapi.ScriptRef) (*cfapi.ScriptContent, error) {
	return nil, a.unexpected("GetScriptContent")
}
func (a *fakeAPI) UploadScript(context.Context, cfapi.ScriptRef, cfapi.ScriptUpload) (*cfapi.UploadResult, error) {
	return nil, a.unexpected("UploadScript")
}
func (a *fakeAPI) CreateVersion(context.Context, cfapi.ScriptRef, cfapi.ScriptUpload) (*cfapi.Version, error) {
	return nil, a.unexpected("CreateVersion")
}
func (a *fakeAPI) DeployVersion(context.Context, cfapi.ScriptRef, string, string) (*cfapi.Deployment, error) {
	return nil, a.unexpected("DeployVersion")
}
func (a *fakeAPI) ListDeployments(_ context.Context, ref cfapi.ScriptRef) ([]cfapi.ScriptDeployment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds, ok := a.deployments[event.ScriptKey(ref)]
	if !ok {
		return nil, a.unexpected("ListDeployments")
	}
	return ds, nil
}
func (a *fakeAPI) GetWorkerVersion(context.Context, cfapi.ScriptRef, string, bool) (*cfapi.WorkerVersion, error) {
	return nil, a.unexpected("GetWorkerVersion")
}
func (a *fakeAPI) CreateWorkerVersion(context.Context, cfapi.ScriptRef, cfapi.NewWorkerVersion, bool) (*cfapi.WorkerVersion, error) {
	return nil, a.unexpected("CreateWorkerVersion")
}

// fixture is a Reconciler over the fakes, and a dispatch namespace script
// whose live bindings are one KV namespace its owner added by hand.
type fixture struct {
	rec    *Reconciler
	store  *fakeStore
	leases *fakeLeases
	api    *fakeAPI
	m      *metrics.Metrics
	ref    cfapi.ScriptRef
	ds     *event.DesiredState
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	p, err := planner.New(planner.Options{FingerprintKey: []byte("reconcile-test-key")})
	if err != nil {
		t.Fatal(err)
	}
	ref := cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-1"}
	f := &fixture{store: newFakeStore(), leases: &fakeLeases{other: map[string]bool{}}, m: metrics.New(prometheus.NewRegistry()), ref: ref,
		api: &fakeAPI{t: t, live: map[string][]wire.Binding{event.ScriptKey(ref): {kvBinding("THEIRS", "1")}}},
		ds:  event.NewDesiredState(ref)}
	f.rec = New(Config{}, f.store, f.leases, f.api, p, f.m, zaptest.NewLogger(t))
	return f
}

// patch folds a patch event that upserts bindings into the script's
// desired state, stores it and returns the key and revision.
func (f *fixture) patch(t *testing.T, id string, gen uint64, bs ...wire.Binding) (string, uint64) {
	t.Helper()
	f.ds.Fold(&event.Event{ID: id, Generation: u64(gen), Op: event.OpPatch, Upsert: bs})
	return f.store.put(t, f.ds)
}

// liveNames returns the names of the script's live bindings.
func (f *fixture) liveNames() []string {
	f.api.mu.Lock()
	defer f.api.mu.Unlock()
	var out []string
	for _, b := range f.api.live[event.ScriptKey(f.ref)] {
		out = append(out, b.Name())
	}
	return out
}

// TestReconcileWritesTheDifferenceOnce: a reconcile of a patch writes one
// settings PATCH that adds the binding and keeps the owner's, records
// what it applied at the revision it read, and reports the change; the
// next reconcile of the same state writes nothing.
func TestReconcileWritesTheDifferenceOnce(t *testing.T) {
	f := newFixture(t)
	key, rev := f.patch(t, "ev-1", 1, kvBinding("CACHE", "42"))

	res, err := f.rec.Reconcile(context.Background(), key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requeue || !res.Wrote || res.Strategy != planner.StrategySettings || res.Revision != rev {
		t.Fatalf("result %+v, want a settings write at revision %d", res, rev)
	}
	if len(res.Changes) != 1 || res.Changes[0].Name != "CACHE" || res.Changes[0].Kind != state.ChangeAdd {
		t.Errorf("changes %+v, want one add of CACHE", res.Changes)
	}
	if len(f.api.patches) != 1 {
		t.Fatalf("%d PATCHes, want 1", len(f.api.patches))
	}
	if got := fmt.Sprint(f.liveNames()); got != "[CACHE THEIRS]" && got != "[THEIRS CACHE]" {
		t.Errorf("live bindings %s, want CACHE added beside THEIRS", got)
	}
	rec, _ := f.store.record(t, key)
	if rec.DesiredRevision != rev || rec.Strategy != string(planner.StrategySettings) || rec.Bindings["CACHE"].Fingerprint == "" {
		t.Errorf("record %+v, want CACHE applied from revision %d", rec, rev)
	}
	if _, owned := rec.Bindings["THEIRS"]; owned {
		t.Error("the record claims the owner's binding THEIRS")
	}
	if rec.WrittenBy["CACHE"].ID != "ev-1" {
		t.Errorf("written by %+v, want CACHE by ev-1", rec.WrittenBy)
	}
	if n := promtestutil.ToFloat64(f.m.Writes.WithLabelValues(string(planner.StrategySettings))); n != 1 {
		t.Errorf("reconciler_writes_total{strategy=settings} = %v, want 1", n)
	}

	again, err := f.rec.Reconcile(context.Background(), key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if again.Wrote || again.Requeue || len(f.api.patches) != 1 {
		t.Errorf("second reconcile %+v with %d PATCHes in all, want a no-op", again, len(f.api.patches))
	}
	if f.leases.acquired != 2 || len(f.leases.held) != 0 {
		t.Errorf("leases acquired %d, still held %v; want 2 and none", f.leases.acquired, f.leases.held)
	}
}

// TestReconcileLeaseHeldElsewhere: while another replica holds the
// script's lease, a reconcile asks to be tried again and neither reads
// nor writes anything.
func TestReconcileLeaseHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	key, rev := f.patch(t, "ev-1", 1, kvBinding("CACHE", "42"))
	f.leases.other[key] = true

	res, err := f.rec.Reconcile(context.Background(), key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Requeue || res.RequeueAfter <= 0 || res.Wrote {
		t.Errorf("result %+v, want a requeue after a delay", res)
	}
	if f.api.reads != 0 || len(f.api.patches) != 0 {
		t.Errorf("%d reads, %d PATCHes; want none", f.api.reads, len(f.api.patches))
	}
	if _, recRev := f.store.record(t, key); recRev != 0 {
		t.Errorf("a record was saved (revision %d)", recRev)
	}
}

// TestReconcileReadBehind: a desired-state read below the revision the
// reconcile must cover (a follower behind its leader) is retried, and
// then reported as a requeue, never as a success that would settle the
// events folded above it.
func TestReconcileReadBehind(t *testing.T) {
	f := newFixture(t)
	key, rev := f.patch(t, "ev-1", 1, kvBinding("CACHE", "42"))

	res, err := f.rec.Reconcile(context.Background(), key, rev+5)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Requeue || res.Wrote || res.Revision != 0 {
		t.Errorf("result %+v, want a requeue that covers no revision", res)
	}
	if len(f.api.patches) != 0 {
		t.Errorf("%d PATCHes, want none", len(f.api.patches))
	}

	missing, err := f.rec.Reconcile(context.Background(), event.ScriptKey(cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "none"}), 0)
	if err != nil || missing.Requeue || missing.Wrote {
		t.Errorf("a script with nothing desired: %+v, %v; want an empty result", missing, err)
	}
}

// TestReconcileQuarantinesTheRefusedBinding: when the API refuses a
// write and names a binding, the operation on it is quarantined in the
// desired state and the reconcile asks to be tried again; that try writes
// the rest, and the refused binding is never sent again.
func TestReconcileQuarantinesTheRefusedBinding(t *testing.T) {
	f := newFixture(t)
	f.patch(t, "good", 1, kvBinding("CACHE", "42"))
	key, rev := f.patch(t, "bad", 2, kvBinding("BROKEN", "7"))
	f.api.refuse = &cfapi.APIError{StatusCode: http.StatusBadRequest, Method: "PATCH", Path: "/settings",
		Errors: []cfapi.ErrorDetail{{Code: 10021, Message: "binding BROKEN: namespace 7 does not exist"}}}

	res, err := f.rec.Reconcile(context.Background(), key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Requeue || !res.Quarantined || res.Wrote {
		t.Fatalf("result %+v, want a quarantine and a requeue", res)
	}
	ds, qrev, err := f.store.LoadDesired(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if q := ds.Quarantined("bad"); q == nil || q.Reason != event.ReasonAPIRejected {
		t.Errorf("event bad: quarantine %+v, want %s", q, event.ReasonAPIRejected)
	}
	if ds.Quarantined("good") != nil {
		t.Error("event good was quarantined too")
	}

	f.api.refuse = nil
	res, err = f.rec.Reconcile(context.Background(), key, qrev)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Wrote || res.Revision != qrev {
		t.Fatalf("after the quarantine: %+v, want a write at revision %d", res, qrev)
	}
	last := f.api.patches[len(f.api.patches)-1]
	for _, b := range last.Bindings {
		if b.Name() == "BROKEN" {
			t.Errorf("the quarantined binding was sent again: %v", last.Bindings)
		}
	}
	if got := fmt.Sprint(f.liveNames()); got != "[CACHE THEIRS]" && got != "[THEIRS CACHE]" {
		t.Errorf("live bindings %s, want CACHE beside THEIRS", got)
	}
}

// TestReconcileLostLeaseNeverWrites: a reconcile that cannot prove it
// holds the lease when it is about to write does not write and records
// nothing.
func TestReconcileLostLeaseNeverWrites(t *testing.T) {
	f := newFixture(t)
	key, rev := f.patch(t, "ev-1", 1, kvBinding("CACHE", "42"))
	f.leases.lost = true

	_, err := f.rec.Reconcile(context.Background(), key, rev)
	if !errors.Is(err, state.ErrLeaseLost) {
		t.Fatalf("error %v, want the lost lease", err)
	}
	var term *TerminalError
	if errors.As(err, &term) {
		t.Errorf("a lost lease is terminal: %v", err)
	}
	if len(f.api.patches) != 0 {
		t.Errorf("%d PATCHes, want none", len(f.api.patches))
	}
	if _, recRev := f.store.record(t, key); recRev != 0 {
		t.Errorf("a record was saved (revision %d)", recRev)
	}
}

// TestReconcileHoldsAGradualDeployment: an ordinary Worker whose active
// deployment splits traffic between two versions is not written; the
// Result says it is held, and when to look again.
func TestReconcileHoldsAGradualDeployment(t *testing.T) {
	f := newFixture(t)
	f.ref = cfapi.ScriptRef{AccountID: acct, Script: "worker"}
	f.ds = event.NewDesiredState(f.ref)
	f.api.live[event.ScriptKey(f.ref)] = []wire.Binding{kvBinding("THEIRS", "1")}
	f.api.deployments = map[string][]cfapi.ScriptDeployment{event.ScriptKey(f.ref): {{ID: "d-2",
		Versions: []cfapi.DeploymentShare{{VersionID: "v-new", Percentage: 10}, {VersionID: "v-old", Percentage: 90}}}}}
	key, rev := f.patch(t, "ev-1", 1, kvBinding("CACHE", "42"))

	res, err := f.rec.Reconcile(context.Background(), key, rev)
	if err != nil {
		t.Fatal(err)
	}
	if res.Held != metrics.HoldGradualDeployment || !res.Requeue || res.RequeueAfter < f.rec.cfg.HoldRetry || res.Wrote {
		t.Errorf("result %+v, want held for the gradual deployment, retried after at least %s", res, f.rec.cfg.HoldRetry)
	}
	if len(f.api.patches) != 0 {
		t.Errorf("%d PATCHes while traffic is split, want none", len(f.api.patches))
	}
	if rec, _ := f.store.record(t, key); rec.DesiredRevision != 0 {
		t.Errorf("the record says revision %d is applied", rec.DesiredRevision)
	}

	f.api.deployments[key] = []cfapi.ScriptDeployment{{ID: "d-3", Versions: []cfapi.DeploymentShare{{VersionID: "v-new", Percentage: 100}}}}
	res, err = f.rec.Reconcile(context.Background(), key, rev)
	if err != nil || !res.Wrote || res.Held != "" || len(f.api.patches) != 1 {
		t.Errorf("once the deployment is done: %+v, %v, %d PATCHes; want one write", res, err, len(f.api.patches))
	}
}
