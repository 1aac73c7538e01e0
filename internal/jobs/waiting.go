package jobs

import (
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acker settles one delivered JetStream message. It is what the pipeline
// keeps of a message once its event is folded, so that a waiting event costs
// a few dozen bytes rather than its whole body.
type acker interface {
	Ack() error
	NakWithDelay(time.Duration) error
	InProgress() error
	TermWithReason(string) error
}

// replyAcker settles a message by publishing to its reply subject, as
// jetstream.Msg does, without keeping the message.
type replyAcker struct {
	nc    *nats.Conn
	reply string
}

func (a replyAcker) Ack() error        { return a.nc.Publish(a.reply, []byte("+ACK")) }
func (a replyAcker) InProgress() error { return a.nc.Publish(a.reply, []byte("+WPI")) }
func (a replyAcker) NakWithDelay(d time.Duration) error {
	return a.nc.Publish(a.reply, []byte(`-NAK {"delay": `+strconv.FormatInt(int64(d), 10)+`}`))
}
func (a replyAcker) TermWithReason(reason string) error {
	return a.nc.Publish(a.reply, []byte("+TERM "+reason))
}

// compactAcker returns the acker to keep for msg.
func compactAcker(nc *nats.Conn, msg message) acker {
	if m, ok := msg.(jetstream.Msg); ok && nc != nil && m.Reply() != "" {
		return replyAcker{nc: nc, reply: m.Reply()}
	}
	return msg
}

// waitingEvent is a folded event waiting for a reconcile of its script.
type waitingEvent struct {
	ack        acker
	id         string
	lane       lane
	stream     string // the stream it came from, to read it back for a dead letter
	streamSeq  uint64
	delivered  uint64
	foldRev    uint64 // the desired-state revision that holds its fold
	occurredAt time.Time
	backfill   *backfillItem // set for work of a backfill run
	// body and subject are kept only for a message that is settled before
	// it was folded (bad input); a waiting event's body is read back from its
	// stream if it is ever dead-lettered.
	body    []byte
	subject string
}

// scriptState is what the process holds for one script: its folded events
// waiting for a reconcile, and the listing's modified_on to record once a
// read finds it converged.
type scriptState struct {
	events     []*waitingEvent
	modifiedOn string
}

// waitTable holds the events of every script between fold and settle.
type waitTable struct {
	mu      sync.Mutex
	scripts map[string]*scriptState
	count   [numLanes]int
}

func newWaitTable() *waitTable { return &waitTable{scripts: map[string]*scriptState{}} }

// stateLocked returns key's state, creating it; t.mu is held.
func (t *waitTable) stateLocked(key string) *scriptState {
	st := t.scripts[key]
	if st == nil {
		st = &scriptState{}
		t.scripts[key] = st
	}
	return st
}

// add keeps events of key waiting.
func (t *waitTable) add(key string, hs ...*waitingEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stateLocked(key)
	st.events = append(st.events, hs...)
	for _, h := range hs {
		t.count[h.lane]++
	}
}

// setModifiedOn records the listing's modified_on of key.
func (t *waitTable) setModifiedOn(key, modifiedOn string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stateLocked(key)
	st.modifiedOn = modifiedOn
}

// snapshot returns what a reconcile of key starts from: the highest fold
// revision of its waiting events (the reconcile must read at least that
// revision) and the id of the newest one (for its log lines).
func (t *waitTable) snapshot(key string) (minRevision uint64, eventID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.scripts[key]
	if st == nil {
		return 0, ""
	}
	for _, h := range st.events {
		if h.foldRev >= minRevision {
			minRevision, eventID = h.foldRev, h.id
		}
	}
	return minRevision, eventID
}

// modifiedOn returns the listing's modified_on recorded for key.
func (t *waitTable) modifiedOn(key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.scripts[key]; st != nil {
		return st.modifiedOn
	}
	return ""
}

// take removes and returns the waiting events of key whose fold is at or
// below rev (all of them when rev is ^0).
func (t *waitTable) take(key string, rev uint64) []*waitingEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.scripts[key]
	if st == nil {
		return nil
	}
	var done []*waitingEvent
	kept := st.events[:0]
	for _, h := range st.events {
		if h.foldRev <= rev {
			done = append(done, h)
			t.count[h.lane]--
		} else {
			kept = append(kept, h)
		}
	}
	clear(st.events[len(kept):])
	st.events = kept
	if len(st.events) == 0 {
		delete(t.scripts, key)
	}
	return done
}

// takeAll removes and returns every waiting event.
func (t *waitTable) takeAll() []*waitingEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*waitingEvent
	for key, st := range t.scripts {
		out = append(out, st.events...)
		delete(t.scripts, key)
	}
	t.count = [numLanes]int{}
	return out
}

// keepAlive sends InProgress for every waiting event of lane l, so that
// AckWait never redelivers it while its script waits for a reconcile.
func (t *waitTable) keepAlive(l lane) {
	t.mu.Lock()
	out := make([]acker, 0, t.count[l])
	for _, st := range t.scripts {
		for _, h := range st.events {
			if h.lane == l {
				out = append(out, h.ack)
			}
		}
	}
	t.mu.Unlock()
	for _, a := range out {
		_ = a.InProgress()
	}
}

// counts returns the number of waiting events per lane.
func (t *waitTable) counts() [numLanes]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}
