package jobs

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// worstEvents returns bodies at the limits of an event: 1 MiB nested as
// deep as it goes, 1 MiB of many values each just under encoding/json's
// own depth limit (wide and deep), the same inside a json binding, and a
// body over the size limit. Each is on its own script.
func worstEvents() map[string][]byte {
	head := func(script string) string {
		return fmt.Sprintf(`{"schema":%q,"id":"worst-%s","account_id":%q,"dispatch_namespace":"customers","script":%q,"op":"patch",`,
			event.SchemaV1, script, acct, script)
	}
	fill := func(prefix, unit, suffix string, size int) []byte {
		var buf bytes.Buffer
		buf.WriteString(prefix)
		for buf.Len()+len(unit)+len(suffix) < size {
			if buf.Len() > len(prefix) {
				buf.WriteByte(',')
			}
			buf.WriteString(unit)
		}
		buf.WriteString(suffix)
		return buf.Bytes()
	}
	const limit = event.MaxEventBytes
	deepN := (limit - 400) / 2
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	return map[string][]byte{
		"deep":         []byte(head("deep") + `"upsert":[],"x":` + nested(deepN) + "}"),
		"wide-deep":    fill(head("wide-deep")+`"upsert":[],"x":[`, nested(9000), "]}", limit),
		"deep-binding": fill(head("deep-binding")+`"upsert":[{"type":"json","name":"J","json":[`, nested(9000), "]}]}", limit),
		"wide-secret":  fill(head("wide-secret")+`"upsert":[`, `{"type":"secret_text","name":"S","text":"`+strings.Repeat("s", 200)+`","x":`+nested(60)+`}`, "]}", limit),
		"over-size":    fill(head("over-size")+`"upsert":[],"x":[`, nested(50), "]}", limit+4096),
	}
}

// TestWorstEventsAreBoundedBeforeDecoding publishes the worst events an
// external publisher can send (1 MiB nested deep, wide and deep, deep
// inside a binding, over the size limit) through a runner on a real
// embedded server and measures the heap with runtime.MemStats while they
// are dead-lettered: the peak stays within a small multiple of the
// events' own size, each dead letter is the digest, stream sequence and
// reason (too_deep or too_large) after one delivery, and a good event
// published after them applies.
func TestWorstEventsAreBoundedBeforeDecoding(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events := worstEvents()
	for name := range events {
		h.seedScript("customers", name)
	}
	h.seedScript("customers", "after-worst")
	// Published before the runner starts, so that what is measured is the
	// pipeline's share: delivery, decoding, dead letters.
	h.setup()
	for name, body := range events {
		h.publishRaw("bindings."+acct+".customers."+name, body, "worst-"+name)
	}
	h.publish(newEvent("after-worst", "customers", "after-worst", 1, "patch",
		map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"AFTER","text":"ok"}`)}}))

	// A low GC target makes the heap's peak follow what is live rather
	// than when the collector last ran.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	h.startRunner("r1")
	h.waitDrained(60 * time.Second)
	close(stop)
	wg.Wait()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	grew := int64(peak.Load()) - int64(base.HeapAlloc)
	allocated := end.TotalAlloc - base.TotalAlloc
	t.Logf("worst events: heap peak %.1f MiB over a base of %.1f MiB; %.1f MiB allocated in all",
		float64(grew)/(1<<20), float64(base.HeapAlloc)/(1<<20), float64(allocated)/(1<<20))

	want := map[string]string{"deep": "too_deep", "wide-deep": "too_deep", "deep-binding": "too_deep",
		"wide-secret": "invalid_binding", "over-size": "too_large"}
	got := map[string]bool{}
	for _, e := range h.deadLetters() {
		r := e.Record
		name := r.Subject[strings.LastIndexByte(r.Subject, '.')+1:]
		got[name] = true
		if w := want[name]; string(r.Reason) != w {
			t.Errorf("%s: reason %q, want %q (error: %s)", name, r.Reason, w, cfapi.Truncate(r.Error, 200))
		}
		if r.Attempts != 1 || r.StreamSeq == 0 {
			t.Errorf("%s: attempts %d, stream_seq %d: want one delivery and the sequence", name, r.Attempts, r.StreamSeq)
		}
		if w := want[name]; (w == "too_deep" || w == "too_large") && (string(r.Event) != "null" || r.BodySHA256 == "" || r.BodyBytes != len(events[name])) {
			t.Errorf("%s: a dead letter over a bound keeps %d bytes of event, body_bytes %d, digest %q: want only the digest and size",
				name, len(r.Event), r.BodyBytes, r.BodySHA256)
		}
		if len(r.Error) > 1024 {
			t.Errorf("%s: error is %d bytes", name, len(r.Error))
		}
	}
	for name := range want {
		if !got[name] {
			t.Errorf("%s: no dead letter", name)
		}
	}
	if h.stored("customers", "after-worst")["AFTER"] == "" {
		t.Error("the good event after the worst ones was not applied")
	}
	total := 0
	for _, body := range events {
		total += len(body)
	}
	if limit := int64(total) * 3; grew > limit {
		t.Errorf("heap grew by %.1f MiB while %.1f MiB of worst events went through; want at most %.1f MiB",
			float64(grew)/(1<<20), float64(total)/(1<<20), float64(limit)/(1<<20))
	}
}
