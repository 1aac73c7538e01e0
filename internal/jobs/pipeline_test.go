package jobs

import (
	"fmt"
	"strings"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/metrics"
)

// TestReplaceAndPatchConverge: replace and patch events over many scripts
// (dispatch and ordinary) converge exactly, and an unowned binding
// survives a replace.
func TestReplaceAndPatchConverge(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const n = 12
	type target struct{ ns, script string }
	var targets []target
	for i := 0; i < n; i++ {
		ns := "customers"
		if i%4 == 3 {
			ns = "" // ordinary Worker
		}
		tg := target{ns, fmt.Sprintf("tenant-%02d", i)}
		targets = append(targets, tg)
		h.seedScript(tg.ns, tg.script, `{"type":"d1","name":"THEIR_DB","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`)
	}
	h.startRunner("r1")
	for i, tg := range targets {
		h.publish(newEvent(fmt.Sprintf("e%d-1", i), tg.ns, tg.script, 1, "replace", map[string]any{"bindings": []any{
			b(`{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`),
			b(`{"type":"plain_text","name":"PLAN","text":"free"}`),
			b(`{"type":"r2_bucket","name":"OLD_BUCKET","bucket_name":"old"}`),
			b(`{"type":"json","name":"CONFIG","json":{"b":1,"a":[1,2]}}`),
		}}))
		h.publish(newEvent(fmt.Sprintf("e%d-2", i), tg.ns, tg.script, 2, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"PLAN","text":"pro"}`), b(`{"type":"service","name":"AUTH","service":"auth-worker"}`)},
			"remove": []any{"OLD_BUCKET"},
		}))
	}
	h.waitDrained(30 * time.Second)
	for _, tg := range targets {
		got := h.stored(tg.ns, tg.script)
		want := map[string]string{
			"THEIR_DB": `{"type":"d1","name":"THEIR_DB","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`,
			"USER_KV":  `{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`,
			"PLAN":     `{"type":"plain_text","name":"PLAN","text":"pro"}`,
			"CONFIG":   `{"type":"json","name":"CONFIG","json":{"b":1,"a":[1,2]}}`,
			"AUTH":     `{"type":"service","name":"AUTH","service":"auth-worker"}`,
		}
		if len(got) != len(want) {
			t.Errorf("%s/%s: bindings %v, want %v", tg.ns, tg.script, keys(got), keys(want))
		}
		for name, raw := range want {
			if got[name] != canon(raw) {
				t.Errorf("%s/%s %s = %s, want %s", tg.ns, tg.script, name, got[name], raw)
			}
		}
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("unexpected dead letters: %+v", dl)
	}
	// A second replace without USER_KV removes it (owned) but leaves
	// THEIR_DB (never applied by the reconciler).
	h.emu.ResetStats()
	h.publish(newEvent("e0-3", targets[0].ns, targets[0].script, 3, "replace", map[string]any{"bindings": []any{
		b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
	h.waitDrained(20 * time.Second)
	got := h.stored(targets[0].ns, targets[0].script)
	if _, ok := got["USER_KV"]; ok {
		t.Errorf("owned USER_KV survived a replace without it: %v", keys(got))
	}
	if _, ok := got["THEIR_DB"]; !ok {
		t.Errorf("unowned THEIR_DB was removed by a replace: %v", keys(got))
	}
	if st := h.emu.Stats(); st.Writes != 1 {
		t.Errorf("writes = %d, want 1", st.Writes)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Test1000EventsFor10Scripts: a backlog of 1,000 events for 10 scripts
// costs at most 30 reads, and every script ends at its newest value.
func Test1000EventsFor10Scripts(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.setup()
	for s := 0; s < 10; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	for i := 0; i < 1000; i++ {
		s := i % 10
		gen := uint64(i/10 + 1)
		h.publish(newEvent(fmt.Sprintf("ev-%04d", i), "customers", fmt.Sprintf("tenant-%d", s), gen, "patch", map[string]any{
			"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"VERSION","text":"%d"}`, gen))}}))
	}
	rn := h.startRunner("r1")
	h.waitDrained(60 * time.Second)
	for s := 0; s < 10; s++ {
		got := h.stored("customers", fmt.Sprintf("tenant-%d", s))
		if got["VERSION"] != canon(`{"type":"plain_text","name":"VERSION","text":"100"}`) {
			t.Errorf("tenant-%d VERSION = %s, want text 100", s, got["VERSION"])
		}
	}
	st := h.emu.Stats()
	t.Logf("1000 events / 10 scripts: reads=%d writes=%d total=%d", st.Reads, st.Writes, st.Total)
	if st.Reads > 30 {
		t.Errorf("reads = %d, want ≤ 30", st.Reads)
	}
	if got := sumOf(rn.m.EventsTotal, allOutcomes...); got != 1000 {
		t.Errorf("events settled = %v, want 1000", got)
	}
}

// TestSameEventTwiceOneWrite: delivering the same event twice (a publisher
// retry outside the duplicate window) performs one write; the second copy
// is acknowledged without a reconcile because the last-applied record
// shows that a reconcile which read its fold has succeeded.
func TestSameEventTwiceOneWrite(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	rn := h.startRunner("r1")
	ev := newEvent("dup-1", "customers", "tenant-1", 7, "patch", map[string]any{
		"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"abc"}`)}})
	h.publish(ev, "first-copy")
	h.waitDrained(20 * time.Second)
	h.publish(ev, "second-copy")
	h.waitDrained(20 * time.Second)
	st := h.emu.Stats()
	if st.Writes != 1 {
		t.Fatalf("writes = %d, want 1 (requests %v)", st.Writes, st.Requests)
	}
	if st.Reads != 1 {
		t.Fatalf("reads = %d, want 1: the second copy needs no read", st.Reads)
	}
	if n := promtestutil.ToFloat64(rn.m.EventsTotal.WithLabelValues("noop")); n != 1 {
		t.Fatalf("noop events = %v, want 1 (the second copy)", n)
	}
}

// TestSecretsKeptAndRewritten: a secret is written once, kept across
// unrelated changes (never re-sent), and rewritten when its value changes.
func TestSecretsKeptAndRewritten(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	h.startRunner("r1")
	h.publish(newEvent("s1", "customers", "tenant-1", 1, "replace", map[string]any{"bindings": []any{
		b(`{"type":"secret_text","name":"API_KEY","text":"v1-secret"}`),
		b(`{"type":"plain_text","name":"PLAN","text":"free"}`)}}))
	h.waitDrained(20 * time.Second)
	if got := h.stored("customers", "tenant-1")["API_KEY"]; !strings.Contains(got, "v1-secret") {
		t.Fatalf("API_KEY = %s", got)
	}
	h.emu.ResetStats()
	h.sentBodies()
	h.publish(newEvent("s2", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
	h.waitDrained(20 * time.Second)
	got := h.stored("customers", "tenant-1")
	if !strings.Contains(got["API_KEY"], "v1-secret") || !strings.Contains(got["PLAN"], "pro") {
		t.Fatalf("after unrelated change: %v", got)
	}
	bodies := h.sentBodies()
	if len(bodies) != 1 {
		t.Fatalf("sent %d bodies, want 1 (the PATCH)", len(bodies))
	}
	if strings.Contains(bodies[0], "v1-secret") || !strings.Contains(bodies[0], `{"type":"secret_text","name":"API_KEY"}`) {
		t.Fatalf("unchanged secret must be kept by {type,name}, body:\n%s", bodies[0])
	}
	if h.emu.Stats().Writes != 1 {
		t.Fatalf("writes = %d", h.emu.Stats().Writes)
	}
	h.publish(newEvent("s3", "customers", "tenant-1", 3, "patch", map[string]any{"upsert": []any{
		b(`{"type":"secret_text","name":"API_KEY","text":"v2-secret"}`)}}))
	h.waitDrained(20 * time.Second)
	if got := h.stored("customers", "tenant-1")["API_KEY"]; !strings.Contains(got, "v2-secret") {
		t.Fatalf("API_KEY after change = %s", got)
	}
}

// TestStaleOperationsSkipped: an older operation on a name is skipped
// while newer operations on other names in the same event still apply.
func TestStaleOperationsSkipped(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	rn := h.startRunner("r1")
	h.publish(newEvent("p5", "customers", "tenant-1", 5, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"A","text":"gen5"}`)}}))
	h.waitDrained(20 * time.Second)
	h.publish(newEvent("p3", "customers", "tenant-1", 3, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"A","text":"gen3"}`), b(`{"type":"plain_text","name":"B","text":"gen3"}`)}}))
	h.publish(newEvent("p2", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"A","text":"gen2"}`)}}))
	h.waitDrained(20 * time.Second)
	got := h.stored("customers", "tenant-1")
	if !strings.Contains(got["A"], "gen5") || !strings.Contains(got["B"], "gen3") {
		t.Fatalf("bindings = %v", got)
	}
	if n := promtestutil.ToFloat64(rn.m.StaleOperations); n != 2 {
		t.Errorf("stale operations = %v, want 2", n)
	}
	if n := promtestutil.ToFloat64(rn.m.EventsTotal.WithLabelValues("stale")); n != 1 {
		t.Errorf("stale events = %v, want 1 (p2)", n)
	}
}

// TestRateLimit429PausesEveryoneNoLoss: the emulator's budget is smaller
// than the client's and its answers carry no Ratelimit headers (a proxy
// stripped them, so nothing warns the client), so 429s happen; each
// pauses the limiter the two runners share (how the events split
// between them is logged: the consumer decides it), and every event still
// converges with nothing dead-lettered. (Processes that share a budget through NATS, and the
// Ratelimit headers, are tested in internal/jobs/budget.)
func TestRateLimit429PausesEveryoneNoLoss(t *testing.T) {
	for _, tc := range []struct {
		name     string
		omit     bool
		want429s bool
	}{{"headers stripped", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{emu: cfapitest.Options{RateLimit: 15, RateWindow: time.Second, OmitRateHeaders: tc.omit}})
			for s := 0; s < 8; s++ {
				h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
			}
			runners := []*runner{h.startRunner("r1"), h.startRunner("r2")}
			for s := 0; s < 8; s++ {
				for g := 1; g <= 3; g++ {
					h.publish(newEvent(fmt.Sprintf("rl-%d-%d", s, g), "customers", fmt.Sprintf("tenant-%d", s), uint64(g), "patch", map[string]any{
						"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"G%d","text":"x"}`, g))}}))
				}
			}
			h.waitDrained(90 * time.Second)
			for s := 0; s < 8; s++ {
				got := h.stored("customers", fmt.Sprintf("tenant-%d", s))
				if len(got) != 3 {
					t.Errorf("tenant-%d: %v", s, keys(got))
				}
			}
			if dl := h.deadLetters(); len(dl) != 0 {
				t.Fatalf("dead letters: %+v", dl)
			}
			throttled := h.emu.Stats().Throttled
			var paused float64
			for _, rn := range runners {
				paused += promtestutil.ToFloat64(rn.m.APIRateLimited)
				applied := promtestutil.ToFloat64(rn.m.ReconcileTotal.WithLabelValues(metrics.ResultApplied))
				t.Logf("%s: %v reconciles applied, %v pauses", rn.r.cfg.Owner, applied, promtestutil.ToFloat64(rn.m.APIRateLimited))
			}
			t.Logf("429s from emulator: %d; pauses of the shared limiter: %v", throttled, paused)
			switch {
			case tc.want429s && (throttled == 0 || paused == 0):
				t.Fatalf("the test did not exercise a 429 (throttled %d, paused %v)", throttled, paused)
			case !tc.want429s && throttled != 0:
				t.Fatalf("%d answers 429 though every answer said what was left", throttled)
			}
		})
	}
}

// TestScriptAndVersionStrategies: a change asked to go through a script
// upload or a new version lands with the script's modules and settings
// carried over and its secrets kept.
func TestScriptAndVersionStrategies(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, s := range []string{"via-script", "via-version"} {
		h.seedScript("customers", s, `{"type":"secret_text","name":"THEIR_SECRET","text":"keep-me"}`, `{"type":"plain_text","name":"THEIRS","text":"x"}`)
	}
	h.startRunner("r1")
	h.publish(newEvent("st-1", "customers", "via-script", 1, "patch", map[string]any{"strategy": "script",
		"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`), b(`{"type":"secret_text","name":"MINE","text":"mine-1"}`)}}))
	h.publish(newEvent("sv-1", "customers", "via-version", 1, "patch", map[string]any{"strategy": "version",
		"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`)}}))
	h.waitDrained(20 * time.Second)
	for _, s := range []string{"via-script", "via-version"} {
		got := h.stored("customers", s)
		if !strings.Contains(got["THEIR_SECRET"], "keep-me") || got["THEIRS"] == "" || !strings.Contains(got["KV"], "k1") {
			t.Errorf("%s: bindings after the write: %v", s, got)
		}
		sc, _ := h.emu.Script(acct, "customers", s)
		if sc.MainModule != "index.js" || len(sc.Modules) != 1 || string(sc.Settings["compatibility_date"]) != `"2025-01-01"` {
			t.Errorf("%s: modules or settings not carried over: main=%q modules=%d settings=%s", s, sc.MainModule, len(sc.Modules), sc.Settings["compatibility_date"])
		}
	}
	if got := h.stored("customers", "via-script")["MINE"]; !strings.Contains(got, "mine-1") {
		t.Errorf("secret written by script upload: %s", got)
	}
	st := h.emu.Stats()
	if st.Requests["put_script"][200] != 1 || st.Requests["post_version"][200] != 1 || st.Requests["post_deployment"][200] != 1 {
		t.Fatalf("requests: %v", st.Requests)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}
