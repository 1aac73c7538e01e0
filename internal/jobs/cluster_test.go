package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/testutil/natscluster"
	"github.com/reconciler/reconciler/metrics"
)

// laggingKV is a desired-state bucket read from a follower that is behind
// its leader (with 3 replicas, KV reads are direct gets that any replica
// may answer): while behind is positive, each Get answers from the past —
// the entry old, or "not found" when old is nil (a follower that has not
// seen the key's first fold yet). Writes go to the real bucket.
type laggingKV struct {
	jetstream.KeyValue
	mu     sync.Mutex
	behind int
	old    jetstream.KeyValueEntry
	gets   int
}

func (k *laggingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.mu.Lock()
	k.gets++
	if k.behind > 0 {
		k.behind--
		old := k.old
		k.mu.Unlock()
		if old == nil {
			return nil, jetstream.ErrKeyNotFound
		}
		return old, nil
	}
	k.mu.Unlock()
	return k.KeyValue.Get(ctx, key)
}

// lag makes the next n reads answer old (nil: not found).
func (k *laggingKV) lag(n int, old jetstream.KeyValueEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.behind, k.old, k.gets = n, old, 0
}

func (k *laggingKV) reads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gets
}

// hookedAPI runs beforeRead once, at the first live read of a reconcile.
type hookedAPI struct {
	API
	once       sync.Once
	beforeRead func()
}

func (a *hookedAPI) GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error) {
	a.once.Do(a.beforeRead)
	return a.API.GetSettings(ctx, ref)
}

// freshReads is a Runner (not running: the test drives process) over a
// real NATS and the emulator, whose desired-state reads can be made to
// lag.
type freshReads struct {
	h   *harness
	res *state.Resources
	r   *Runner
	kv  *laggingKV
	api *hookedAPI
}

func newFreshReads(t *testing.T) *freshReads {
	h := newHarness(t, harnessOpts{})
	res := h.setup()
	f := &freshReads{h: h, api: &hookedAPI{API: h.client(cfapi.Hooks{}), beforeRead: func() {}}}
	cfg := h.cfg
	cfg.Owner = "fresh-reads"
	f.kv = &laggingKV{KeyValue: res.Desired}
	res.Desired = f.kv
	f.res = res
	f.r = NewRunner(cfg, res, f.api, h.planner, metrics.New(prometheus.NewRegistry()), zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	t.Cleanup(f.r.queue.ShutDown)
	return f
}

// fold folds one event that sets binding LAG of script to value into its
// desired state (as intake does) and returns the revision that holds it.
func (f *freshReads) fold(script, id string, gen uint64, value string) (key string, rev uint64) {
	t := f.h.t
	t.Helper()
	ev := newEvent(id, "customers", script, gen, "patch", map[string]any{"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"LAG","text":%q}`, value))}})
	data, _ := json.Marshal(ev)
	e, err := event.DecodeEvent(data, subjectOf(ev), "bindings")
	if err != nil {
		t.Fatal(err)
	}
	job := &state.ScriptBatch{Key: e.Key(), Events: []*event.Event{e}}
	f.r.st.Commit(context.Background(), []*state.ScriptBatch{job}, f.r.maxState)
	if job.Err != nil || job.Rev == 0 {
		t.Fatalf("fold %s: rev %d, %v", id, job.Rev, job.Err)
	}
	return job.Key, job.Rev
}

// hold holds an event of key folded at rev, as intake does.
func (f *freshReads) hold(key, id string, rev uint64) *fakeAcker {
	a := &fakeAcker{}
	f.r.waiting.add(key, &waitingEvent{ack: a, id: id, lane: laneLive, foldRev: rev, delivered: 1})
	return a
}

// entry reads key's current entry from the real bucket.
func (f *freshReads) entry(key string) jetstream.KeyValueEntry {
	f.h.t.Helper()
	e, err := f.kv.KeyValue.Get(context.Background(), key)
	if err != nil {
		f.h.t.Fatal(err)
	}
	return e
}

// process reconciles key once, as a worker does.
// setStore puts st in place of the stores both the Runner's intake and
// its Reconciler use.
func (f *freshReads) setStore(st *state.Store) {
	f.r.st = st
	f.r.rec = newReconciler(f.r.cfg, st, f.api, f.h.planner, metrics.New(prometheus.NewRegistry()), zaptest.NewLogger(f.h.t), f.r.waiting.modifiedOn)
}

func (f *freshReads) process(key string) {
	f.r.process(context.Background(), key, laneLive)
}

// requeued waits for the queue to hand key out again (a reconcile that
// could not read what it must cover asks to be tried again).
func (f *freshReads) requeued(key string) bool {
	got := make(chan string, 1)
	go func() {
		k, _, ok := f.r.queue.Get()
		if ok {
			f.r.queue.Done(k)
		}
		got <- k
	}()
	select {
	case k := <-got:
		return k == key
	case <-time.After(10 * time.Second):
		return false
	}
}

func (f *freshReads) lagValue(script string) string {
	bs, _ := f.h.emu.Bindings(acct, "customers", script)
	if b, ok := wire.Bindings(bs).ByName("LAG"); ok {
		s, _ := b.String("text")
		return s
	}
	return ""
}

func actions(a *fakeAcker) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.actions)
}

// TestStaleDesiredReadNeverAcks: with 3 replicas a desired-state read may
// come from a follower that is behind the fold of a held event. Such a
// reconcile writes nothing and settles nothing; it reads again a few
// times, then hands the script back to the queue. Once the read is fresh,
// the write carries the newest fold and both events are acknowledged.
func TestStaleDesiredReadNeverAcks(t *testing.T) {
	f := newFreshReads(t)
	f.h.seedScript("customers", "lag-1", `{"type":"plain_text","name":"TENANT","text":"lag-1"}`)
	key, rev1 := f.fold("lag-1", "e1", 1, "one")
	old := f.entry(key)
	_, rev2 := f.fold("lag-1", "e2", 2, "two")
	if rev2 <= rev1 {
		t.Fatalf("fold revisions %d then %d", rev1, rev2)
	}
	a1, a2 := f.hold(key, "e1", rev1), f.hold(key, "e2", rev2)

	// The follower stays at rev1 for every read of this reconcile.
	f.kv.lag(1000, old)
	f.process(key)
	if n := f.kv.reads(); n < 2 {
		t.Errorf("the stale read was not retried: %d reads", n)
	}
	if got := append(actions(a1), actions(a2)...); len(got) != 0 {
		t.Fatalf("events settled after a stale read: %v", got)
	}
	if w := f.h.emu.Stats().Writes; w != 0 {
		t.Fatalf("%d writes planned from a stale desired state", w)
	}
	if !isWaiting(f.r.waiting, key) {
		t.Fatal("the events are no longer held")
	}
	if !f.requeued(key) {
		t.Fatal("the script was not handed back to the queue")
	}

	// The follower catches up after two more stale reads: the same
	// reconcile reads again and covers both folds.
	f.kv.lag(2, old)
	f.process(key)
	if n := f.kv.reads(); n != 3 {
		t.Errorf("%d desired-ds reads, want 2 stale and 1 fresh", n)
	}
	if v := f.lagValue("lag-1"); v != "two" {
		t.Fatalf("LAG = %q, want the newest fold's \"two\"", v)
	}
	for _, a := range []*fakeAcker{a1, a2} {
		if got := actions(a); !slices.Equal(got, []string{"ack"}) {
			t.Fatalf("after a fresh read: %v, want [ack]", got)
		}
	}
	if isWaiting(f.r.waiting, key) {
		t.Fatal("events still held after they were applied")
	}
}

// TestDesiredNotYetVisibleIsRetried: a follower that has not yet seen a
// script's first fold answers "not found". The reconcile must not take
// that as "nothing desired" (its events would stay held, unacknowledged
// and never reconciled again): it reads again, and applies them.
func TestDesiredNotYetVisibleIsRetried(t *testing.T) {
	f := newFreshReads(t)
	f.h.seedScript("customers", "lag-2", `{"type":"plain_text","name":"TENANT","text":"lag-2"}`)
	key, rev := f.fold("lag-2", "n1", 1, "new")
	a := f.hold(key, "n1", rev)

	f.kv.lag(1000, nil)
	f.process(key)
	if got := actions(a); len(got) != 0 {
		t.Fatalf("settled with the desired state not found: %v", got)
	}
	if n := f.kv.reads(); n < 2 {
		t.Errorf("the read was not retried: %d reads", n)
	}
	if !f.requeued(key) {
		t.Fatal("the script was not handed back to the queue: its events would stay held for ever")
	}

	f.kv.lag(1, nil)
	f.process(key)
	if v := f.lagValue("lag-2"); v != "new" {
		t.Fatalf("LAG = %q, want \"new\"", v)
	}
	if got := actions(a); !slices.Equal(got, []string{"ack"}) {
		t.Fatalf("after a fresh read: %v, want [ack]", got)
	}
}

// TestEventFoldedDuringReconcileStaysHeld: an event folded while a
// reconcile is under way (after its desired-state read) is not covered by
// that reconcile's write: it stays held, is not acknowledged, and its
// script is reconciled again.
func TestEventFoldedDuringReconcileStaysHeld(t *testing.T) {
	f := newFreshReads(t)
	f.h.seedScript("customers", "lag-3", `{"type":"plain_text","name":"TENANT","text":"lag-3"}`)
	key, rev1 := f.fold("lag-3", "d1", 1, "first")
	a1 := f.hold(key, "d1", rev1)
	var a2 *fakeAcker
	f.api.beforeRead = func() {
		_, rev2 := f.fold("lag-3", "d2", 2, "second")
		a2 = f.hold(key, "d2", rev2)
		f.r.queue.Debounce(key, laneLive) // as intake does
	}
	f.process(key)
	if v := f.lagValue("lag-3"); v != "first" {
		t.Fatalf("LAG = %q after the first reconcile, want \"first\"", v)
	}
	if got := actions(a1); !slices.Equal(got, []string{"ack"}) {
		t.Fatalf("event read by the reconcile: %v, want [ack]", got)
	}
	if got := actions(a2); len(got) != 0 {
		t.Fatalf("event folded after the read was settled: %v", got)
	}
	if !isWaiting(f.r.waiting, key) {
		t.Fatal("the later event is not held")
	}
	if !f.requeued(key) {
		t.Fatal("the script was not queued for the later event")
	}
	f.process(key)
	if v := f.lagValue("lag-3"); v != "second" {
		t.Fatalf("LAG = %q, want \"second\"", v)
	}
	if got := actions(a2); !slices.Equal(got, []string{"ack"}) {
		t.Fatalf("later event after its reconcile: %v, want [ack]", got)
	}
}

// TestHeldTableTakesOnlyWhatWasRead: take settles the events folded at or
// below the revision read, and keeps the others with their revision.
func TestHeldTableTakesOnlyWhatWasRead(t *testing.T) {
	ht := newWaitTable()
	for _, rev := range []uint64{5, 9, 7} {
		ht.add("k", &waitingEvent{id: fmt.Sprint(rev), foldRev: rev, lane: laneLive})
	}
	if want, _ := ht.snapshot("k"); want != 9 {
		t.Fatalf("snapshot = %d, want 9 (the newest fold)", want)
	}
	var got []string
	for _, h := range ht.take("k", 7) {
		got = append(got, h.id)
	}
	if !slices.Equal(got, []string{"5", "7"}) {
		t.Fatalf("take(7) = %v, want [5 7]", got)
	}
	if want, _ := ht.snapshot("k"); want != 9 || !isWaiting(ht, "k") || ht.counts()[laneLive] != 1 {
		t.Fatalf("after take(7): snapshot %d, held %v, count %d", want, isWaiting(ht, "k"), ht.counts()[laneLive])
	}
	if hs := ht.take("k", 8); len(hs) != 0 {
		t.Fatalf("take(8) settled %d events folded at 9", len(hs))
	}
}

// TestEnsureStreamsConcurrentlyOnCluster: two processes set up the same
// resources with 3 replicas at the same moment on a 3-node cluster
// (where the requests that collide are never answered); both succeed and
// every stream, consumer and bucket has 3 replicas.
func TestEnsureStreamsConcurrentlyOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node NATS cluster")
	}
	cl := natscluster.New(t, 3)
	cl.Start()
	cl.WaitJetStream(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		nc, err := nats.Connect(cl.Nodes[i].URL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = state.EnsureStreams(ctx, js, state.SetupConfig{Replicas: 3}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(fmt.Sprint("p", i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	nc, err := nats.Connect(cl.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	names := js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		n++
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s: %d replicas", name, r)
		}
	}
	if names.Err() != nil || n != 9 {
		t.Fatalf("%d streams (%v), want 5 streams and 4 buckets", n, names.Err())
	}
	for _, c := range [][2]string{{"BINDINGS", "reconciler"}, {"BINDINGS_BACKFILL", "reconciler_backfill"}} {
		cons, err := js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		if ci := cons.CachedInfo(); ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
			t.Errorf("consumer %s: cluster %+v, want a leader and 2 replicas", c[1], ci.Cluster)
		}
	}
}

// lostAckJS is a JetStream whose asynchronous publishes are never
// acknowledged: the stream's leader dies with the write in flight, after
// it stored it (written) or before (not written), while the process stays
// connected to another node.
type lostAckJS struct {
	jetstream.JetStream
	written bool
	seq     uint64 // the sequence of the last write stored
}

type lostFuture struct{ msg *nats.Msg }

func (f lostFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f lostFuture) Err() <-chan error            { return nil }
func (f lostFuture) Msg() *nats.Msg               { return f.msg }

func (js *lostAckJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if js.written {
		ack, err := js.JetStream.PublishMsg(context.Background(), m, opts...)
		if err != nil {
			return nil, err
		}
		js.seq = ack.Sequence
	}
	return lostFuture{msg: m}, nil
}

// TestLostFoldAckDoesNotStallIntake: a fold whose pipelined write is
// never acknowledged does not block intake for ever: after a while it is
// folded again from a fresh read, and the event is held with the
// revision that holds its fold, whether the lost write was stored or not.
func TestLostFoldAckDoesNotStallIntake(t *testing.T) {
	for _, written := range []bool{false, true} {
		t.Run(fmt.Sprintf("written=%v", written), func(t *testing.T) {
			f := newFreshReads(t)
			lost := &lostAckJS{JetStream: f.res.JS, written: written}
			f.setStore(state.NewStore(lost, f.res.Desired, f.res.Applied, f.res.Leases, state.StoreOptions{AsyncAckWait: 100 * time.Millisecond}))
			done := make(chan struct{})
			var key string
			var rev uint64
			go func() {
				defer close(done)
				key, rev = f.fold("lost-1", "l1", 1, "kept")
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the fold waits for ever for an acknowledgement that was lost")
			}
			e := f.entry(key)
			if e.Revision() != rev {
				t.Fatalf("fold revision %d, stored revision %d", rev, e.Revision())
			}
			st, err := state.DecodeDesired(key, e.Value())
			if err != nil || st.Names["LAG"] == nil || st.Names["LAG"].Stamp.ID != "l1" {
				t.Fatalf("stored desired state lacks the fold: %+v %v", st, err)
			}
			if written && rev != lost.seq {
				// The write was stored: folding again must find it, not
				// write again.
				t.Fatalf("the lost write (revision %d) was repeated (revision %d)", lost.seq, rev)
			}
		})
	}
}

// silentKV is a bucket whose reads are never answered (the replica that
// took the request died): Get waits until its context ends.
type silentKV struct{ jetstream.KeyValue }

func (silentKV) Get(ctx context.Context, _ string) (jetstream.KeyValueEntry, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestLostKVAnswerFailsTheReconcile: a desired-state read whose answer
// never comes fails after the KV request timeout instead of holding the
// script for the reconcile's whole timeout; its event is handed back for
// redelivery, not acknowledged.
func TestLostKVAnswerFailsTheReconcile(t *testing.T) {
	f := newFreshReads(t)
	f.h.seedScript("customers", "silent-1", `{"type":"plain_text","name":"TENANT","text":"silent-1"}`)
	key, rev := f.fold("silent-1", "s1", 1, "x")
	a := f.hold(key, "s1", rev)
	f.setStore(state.NewStore(f.res.JS, silentKV{f.kv}, f.res.Applied, f.res.Leases, state.StoreOptions{OpTimeout: 200 * time.Millisecond}))
	done := make(chan struct{})
	go func() { defer close(done); f.process(key) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the reconcile waits for an answer that never comes")
	}
	if got := actions(a); !slices.Equal(got, []string{"nak"}) {
		t.Fatalf("event after a lost read: %v, want [nak]", got)
	}
	if w := f.h.emu.Stats().Writes; w != 0 {
		t.Fatalf("%d writes without a desired state", w)
	}
}
