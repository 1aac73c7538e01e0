package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// requests adds up the answered requests to the given endpoints.
func requests(st cfapitest.Stats, endpoints ...string) int {
	n := 0
	for _, ep := range endpoints {
		for _, c := range st.Requests[ep] {
			n += c
		}
	}
	return n
}

// script returns the emulator's snapshot of a script.
func (h *harness) script(ns, name string) cfapitest.Script {
	h.t.Helper()
	sc, ok := h.emu.Script(acct, ns, name)
	if !ok {
		h.t.Fatalf("script %s/%s does not exist", ns, name)
	}
	return sc
}

// annotations decodes a version's annotations.
func annotations(t *testing.T, v cfapitest.Version) map[string]string {
	t.Helper()
	out := map[string]string{}
	if len(v.Annotations) > 0 {
		if err := json.Unmarshal(v.Annotations, &out); err != nil {
			t.Fatalf("annotations %s: %v", v.Annotations, err)
		}
	}
	return out
}

// sentTo returns the bodies sent to paths ending in suffix.
func sentTo(bodies []string, method, suffix string) []string {
	var out []string
	for _, b := range bodies {
		line, body, _ := strings.Cut(b, "\n")
		if strings.HasPrefix(line, method+" ") && strings.HasSuffix(line, suffix) {
			out = append(out, body)
		}
	}
	return out
}

const (
	secretKeep = `{"type":"secret_text","name":"THEIR_SECRET","text":"keep-me"}`
	plainTheir = `{"type":"plain_text","name":"THEIRS","text":"x"}`
	kvOld      = `{"type":"kv_namespace","name":"OLD_KV","namespace_id":"0ld"}`
)

// TestVersionStrategyOneWrite: a change with strategy "version" on an
// ordinary Worker reads the active deployment and the deployed version
// (2 reads), then creates and deploys one version in one request (1
// write) that carries the deployed code, settings and secrets, inherits
// every binding that stays from the deployed version by name (no
// keep_bindings), and says who wrote it.
func TestVersionStrategyOneWrite(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("", "vw", secretKeep, plainTheir)
	before := h.script("", "vw")
	deployed := before.Deployment.Versions[0].VersionID
	rn := h.startRunner("r1")
	h.publish(newEvent("sv-1", "", "vw", 1, "patch", map[string]any{"strategy": "version",
		"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`), b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
	h.waitDrained(20 * time.Second)

	st := h.emu.Stats()
	t.Logf("version strategy, ordinary Worker: reads=%d (list_deployments %d, get_worker_version %d, get_settings %d) writes=%d (create_worker_version %d)",
		st.Reads, requests(st, "list_deployments"), requests(st, "get_worker_version"), requests(st, "get_settings"),
		st.Writes, requests(st, "create_worker_version"))
	if st.Reads > 2 || st.Writes != 1 || st.Requests["create_worker_version"][200] != 1 {
		t.Fatalf("reads=%d writes=%d, want ≤ 2 and exactly 1 create_worker_version: %v", st.Reads, st.Writes, st.Requests)
	}
	after := h.script("", "vw")
	if len(after.Versions) != len(before.Versions)+1 || len(after.Deployments) != len(before.Deployments)+1 {
		t.Fatalf("versions %d → %d, deployments %d → %d: want one more of each",
			len(before.Versions), len(after.Versions), len(before.Deployments), len(after.Deployments))
	}
	nv := after.Versions[len(after.Versions)-1]
	if d := after.Deployment; len(d.Versions) != 1 || d.Versions[0].VersionID != nv.ID || d.Versions[0].Percentage != 100 {
		t.Fatalf("deployment %+v, want the new version %s at 100%%", d.Versions, nv.ID)
	}
	if after.MainModule != before.MainModule || len(after.Modules) != 1 || !bytes.Equal(after.Modules[0].Data, before.Modules[0].Data) ||
		after.Modules[0].ContentType != before.Modules[0].ContentType {
		t.Errorf("code not carried over: main %q modules %+v", after.MainModule, after.Modules)
	}
	if got := string(after.Settings["compatibility_date"]); got != `"2025-01-01"` {
		t.Errorf("compatibility_date = %s", got)
	}
	got := h.stored("", "vw")
	want := map[string]string{
		"THEIR_SECRET": canon(secretKeep), "THEIRS": canon(plainTheir),
		"KV":   canon(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`),
		"PLAN": canon(`{"type":"plain_text","name":"PLAN","text":"pro"}`),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bindings (-want +got):\n%s", diff)
	}
	ann := annotations(t, nv)
	if ann["workers/message"] != "reconciler: bindings +KV +PLAN (event sv-1)" || ann["workers/triggered_by"] == "reconciler event sv-1" {
		t.Errorf("annotations %v", ann)
	}
	bodies := sentTo(h.sentBodies(), "POST", "/workers/workers/vw/versions")
	if len(bodies) != 1 {
		t.Fatalf("%d version bodies sent", len(bodies))
	}
	var body struct {
		Bindings []map[string]any `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(bodies[0]), &body); err != nil {
		t.Fatal(err)
	}
	for _, bnd := range body.Bindings {
		if bnd["type"] == "inherit" && bnd["version_id"] != deployed {
			t.Errorf("inherit %v is not pinned to the deployed version %s", bnd, deployed)
		}
	}
	if strings.Contains(bodies[0], "keep_bindings") || strings.Contains(bodies[0], "keep-me") ||
		!strings.Contains(bodies[0], `{"name":"THEIR_SECRET","type":"inherit","version_id":"`+deployed+`"}`) {
		t.Errorf("the secret is not inherited by name from the deployed version: %s", bodies[0])
	}
	if n := promtestutil.ToFloat64(rn.m.Writes.WithLabelValues("version")); n != 1 {
		t.Errorf("version writes = %v", n)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}

	// The same change again is a no-op: 2 reads, no write.
	h.emu.ResetStats()
	h.publish(newEvent("sv-2", "", "vw", 2, "patch", map[string]any{"strategy": "version",
		"upsert": []any{b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
	h.waitDrained(20 * time.Second)
	if st := h.emu.Stats(); st.Reads != 2 || st.Writes != 0 {
		t.Errorf("no-op: reads=%d writes=%d, want 2 and 0", st.Reads, st.Writes)
	}
}

// TestVersionRenameByOldName: a rename (inherit with old_name) written as
// a version moves the value to the new name in one write; the event names
// no strategy and Config.DefaultStrategy makes it a version.
func TestVersionRenameByOldName(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{DefaultStrategy: planner.StrategyVersion}})
	h.seedScript("", "rn", secretKeep, kvOld, `{"type":"secret_text","name":"OLD_SECRET","text":"s1"}`)
	h.startRunner("r1")
	h.publish(newEvent("rn-1", "", "rn", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"inherit","name":"NEW_KV","old_name":"OLD_KV"}`),
		b(`{"type":"inherit","name":"NEW_SECRET","old_name":"OLD_SECRET"}`),
	}}))
	h.waitDrained(20 * time.Second)
	st := h.emu.Stats()
	t.Logf("rename by old_name as a version: reads=%d writes=%d %v", st.Reads, st.Writes, st.Requests)
	if st.Reads > 2 || st.Writes != 1 || st.Requests["create_worker_version"][200] != 1 {
		t.Fatalf("reads=%d writes=%d: %v", st.Reads, st.Writes, st.Requests)
	}
	want := map[string]string{
		"THEIR_SECRET": canon(secretKeep),
		"NEW_KV":       canon(`{"type":"kv_namespace","name":"NEW_KV","namespace_id":"0ld"}`),
		"NEW_SECRET":   canon(`{"type":"secret_text","name":"NEW_SECRET","text":"s1"}`),
	}
	if diff := cmp.Diff(want, h.stored("", "rn")); diff != "" {
		t.Errorf("bindings (-want +got):\n%s", diff)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// ghostAPI makes the first read of a deployed version show a binding
// GHOST that the stored version does not have: a read that raced with a
// change, so only the API can tell that the inherit is invalid.
type ghostAPI struct {
	API
	done atomic.Bool
}

func (g *ghostAPI) GetWorkerVersion(ctx context.Context, ref cfapi.ScriptRef, id string, modules bool) (*cfapi.WorkerVersion, error) {
	v, err := g.API.GetWorkerVersion(ctx, ref, id, modules)
	if err == nil && g.done.CompareAndSwap(false, true) {
		v.Bindings = append(v.Bindings, wire.MustParseBinding(`{"type":"kv_namespace","name":"GHOST","namespace_id":"g"}`))
	}
	return v, err
}

// TestVersionInheritOfMissingBinding: an inherit of a binding the Worker
// does not have is dead-lettered. The planner finds it against the
// deployed version before any write; when only the API can tell (the read
// raced with a change), the API's 10057 is permanent: the event to blame
// is dead-lettered with the API's message after one write attempt, and the
// other event's change still lands.
func TestVersionInheritOfMissingBinding(t *testing.T) {
	t.Run("planner", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.seedScript("", "im", plainTheir)
		h.startRunner("r1")
		h.publish(newEvent("im-1", "", "im", 1, "patch", map[string]any{"strategy": "version",
			"upsert": []any{b(`{"type":"inherit","name":"GONE"}`)}}))
		h.waitDrained(20 * time.Second)
		dl := h.deadLetters()
		if len(dl) != 1 || dl[0].Record.Reason != event.ReasonInvalidDesired || !strings.Contains(dl[0].Record.Error, "GONE") {
			t.Fatalf("dead letters %+v, want im-1 with invalid_desired_state naming GONE", dl)
		}
		if st := h.emu.Stats(); st.Writes != 0 {
			t.Errorf("writes = %d, want 0", st.Writes)
		}
	})
	t.Run("api", func(t *testing.T) {
		h := newHarness(t, harnessOpts{wrapAPI: func(api API) API { return &ghostAPI{API: api} }})
		h.seedScript("", "ia", plainTheir)
		h.setup()
		h.publish(newEvent("ia-ghost", "", "ia", 1, "patch", map[string]any{"strategy": "version",
			"upsert": []any{b(`{"type":"inherit","name":"GHOST"}`)}}))
		h.publish(newEvent("ia-kv", "", "ia", 2, "patch", map[string]any{"strategy": "version",
			"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`)}}))
		h.startRunner("r1")
		h.waitDrained(20 * time.Second)
		dl := h.deadLetters()
		if len(dl) != 1 || dl[0].Record.EventID != "ia-ghost" || dl[0].Record.Reason != event.ReasonAPIRejected ||
			!strings.Contains(dl[0].Record.Error, "10057") || !strings.Contains(dl[0].Record.Error, "inherit binding 'GHOST' is invalid") {
			t.Fatalf("dead letters %+v, want ia-ghost with api_rejected and the API's 10057 message", dl)
		}
		st := h.emu.Stats()
		t.Logf("inherit refused by the API: reads=%d writes=%d %v", st.Reads, st.Writes, st.Requests)
		if st.Requests["create_worker_version"][400] != 1 || st.Requests["create_worker_version"][200] != 1 {
			t.Errorf("create_worker_version answers %v, want one 400 (not retried) and one 200", st.Requests["create_worker_version"])
		}
		if got := h.stored("", "ia"); got["KV"] == "" || got["GHOST"] != "" {
			t.Errorf("bindings %v, want KV and no GHOST", keys(got))
		}
	})
}

// TestGradualDeploymentHeld: a Worker whose traffic is split 50/50 is not
// written, whatever the strategy (settings PATCH and version on ordinary
// Workers, and a dispatch script with SplitCheckDispatch), though the
// emulator's default models the worst case (a PATCH collapses the split).
// Its events stay unacknowledged and are not dead-lettered, a metric
// counts the holds, and once the rollout ends the change lands on the
// version that then serves all traffic.
func TestGradualDeploymentHeld(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{HoldRetry: 200 * time.Millisecond, SplitCheckDispatch: true}})
	type target struct{ ns, name, strategy string }
	targets := []target{{"", "split-settings", "settings"}, {"", "split-version", "version"}, {"customers", "split-dispatch", "settings"}}
	rollout := map[string]string{} // script → version B
	for _, tg := range targets {
		h.seedScript(tg.ns, tg.name, secretKeep, `{"type":"plain_text","name":"STAGE","text":"a"}`)
		a := h.script(tg.ns, tg.name).Deployment.Versions[0].VersionID
		bid, err := h.emu.AddVersion(acct, tg.ns, tg.name, cfapitest.Script{
			MainModule: "index.js",
			Modules:    []cfapitest.Module{{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default { fetch() { return new Response('b') } }")}},
			Bindings:   []wire.Binding{wire.MustParseBinding(secretKeep), wire.MustParseBinding(`{"type":"plain_text","name":"STAGE","text":"b"}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.emu.Deploy(acct, tg.ns, tg.name, cfapitest.DeploymentVersion{VersionID: a, Percentage: 50},
			cfapitest.DeploymentVersion{VersionID: bid, Percentage: 50}); err != nil {
			t.Fatal(err)
		}
		rollout[tg.name] = bid
	}
	split := func(tg target) []cfapitest.DeploymentVersion { return h.script(tg.ns, tg.name).Deployment.Versions }
	before := map[string][]cfapitest.DeploymentVersion{}
	for _, tg := range targets {
		before[tg.name] = split(tg)
	}
	h.emu.ResetStats()
	rn := h.startRunner("r1")
	for i, tg := range targets {
		h.publish(newEvent("gd-"+tg.name, tg.ns, tg.name, 1, "patch", map[string]any{"strategy": tg.strategy,
			"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k` + string(rune('1'+i)) + `"}`)}}))
	}
	// Each script is checked at least twice (held, then held again).
	h.eventually("every split script held twice", 20*time.Second, func() (bool, string) {
		n := map[string]int{}
		for _, r := range h.emu.RequestLog() {
			if r.Endpoint == "list_deployments" {
				n[r.Script]++
			}
		}
		for _, tg := range targets {
			if n[tg.name] < 2 {
				return false, ""
			}
		}
		// The metrics are counted after the reconcile's last read, so
		// wait for them too rather than race the sixth hold.
		held := promtestutil.ToFloat64(rn.m.ReconcileTotal.WithLabelValues(metrics.ResultHeld))
		scripts := promtestutil.ToFloat64(rn.m.ScriptsHeld.WithLabelValues(metrics.HoldGradualDeployment))
		return held >= 6 && scripts >= 6, fmt.Sprintf("held reconciles %v, scripts held %v", held, scripts)
	})
	st := h.emu.Stats()
	t.Logf("held: reads=%d writes=%d %v", st.Reads, st.Writes, st.Requests)
	if st.Writes != 0 {
		t.Fatalf("writes to split scripts: %v", st.Requests)
	}
	for _, tg := range targets {
		if diff := cmp.Diff(before[tg.name], split(tg)); diff != "" {
			t.Errorf("%s: split changed (-before +now):\n%s", tg.name, diff)
		}
	}
	if held := promtestutil.ToFloat64(rn.m.ScriptsHeld.WithLabelValues(metrics.HoldGradualDeployment)); held < 6 {
		t.Errorf("scripts held = %v, want ≥ 6", held)
	}
	if n := promtestutil.ToFloat64(rn.m.ReconcileTotal.WithLabelValues(metrics.ResultHeld)); n < 6 {
		t.Errorf("held reconciles = %v, want ≥ 6", n)
	}
	if settled := sumOf(rn.m.EventsTotal, allOutcomes...); settled != 0 {
		t.Errorf("%v events settled while held", settled)
	}
	if ok, ds := h.drained(); ok || !strings.Contains(ds, "ack_pending=3") {
		t.Errorf("events not held unacknowledged: %s", ds)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}

	// The rollout ends: version B takes all traffic; the change lands on it.
	for _, tg := range targets {
		if err := h.emu.Deploy(acct, tg.ns, tg.name, cfapitest.DeploymentVersion{VersionID: rollout[tg.name], Percentage: 100}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitDrained(20 * time.Second)
	for i, tg := range targets {
		sc := h.script(tg.ns, tg.name)
		got := h.stored(tg.ns, tg.name)
		if !strings.Contains(got["KV"], `"k`+string(rune('1'+i))+`"`) || !strings.Contains(got["STAGE"], `"b"`) || got["THEIR_SECRET"] != canon(secretKeep) {
			t.Errorf("%s: bindings after the rollout: %v", tg.name, got)
		}
		if string(sc.Modules[0].Data) != "export default { fetch() { return new Response('b') } }" {
			t.Errorf("%s: code is not version B's: %s", tg.name, sc.Modules[0].Data)
		}
		if d := sc.Deployment.Versions; len(d) != 1 || d[0].Percentage != 100 {
			t.Errorf("%s: deployment %+v", tg.name, d)
		}
	}
	if n := promtestutil.ToFloat64(rn.m.EventsTotal.WithLabelValues(metrics.OutcomeApplied)); n != 3 {
		t.Errorf("applied events = %v, want 3", n)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// TestSettingsRefusedWhileLatestUndeployed: after a version upload without
// a deploy, the settings PATCH is refused (10214, not retryable). The
// change is then written as a version built on the deployed version: its
// code and bindings plus the change, deployed at 100%, while the
// undeployed version stays as it is. Nothing is dead-lettered. An
// ordinary Worker gets one beta request; a dispatch script the multipart
// version and a deployment.
func TestSettingsRefusedWhileLatestUndeployed(t *testing.T) {
	for _, tc := range []struct {
		ns     string
		writes map[string]int // endpoint → 200 answers
	}{
		{"", map[string]int{"create_worker_version": 1}},
		{"customers", map[string]int{"post_version": 1, "post_deployment": 1}},
	} {
		t.Run("namespace="+tc.ns, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.seedScript(tc.ns, "undeployed", secretKeep, plainTheir)
			deployedCode := h.script(tc.ns, "undeployed").Modules[0].Data
			staged, err := h.emu.AddVersion(acct, tc.ns, "undeployed", cfapitest.Script{
				MainModule: "index.js",
				Modules:    []cfapitest.Module{{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default { fetch() { return new Response('staged') } }")}},
				Bindings:   []wire.Binding{wire.MustParseBinding(`{"type":"plain_text","name":"STAGED_ONLY","text":"s"}`)},
			})
			if err != nil {
				t.Fatal(err)
			}
			h.emu.ResetStats()
			rn := h.startRunner("r1")
			h.publish(newEvent("ud-1", tc.ns, "undeployed", 1, "patch", map[string]any{
				"upsert": []any{b(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`)}}))
			h.waitDrained(20 * time.Second)
			st := h.emu.Stats()
			t.Logf("settings PATCH refused (10214), written as a version: reads=%d writes=%d %v", st.Reads, st.Writes, st.Requests)
			if st.Requests["patch_settings"][400] != 1 || st.Writes != 1+len(tc.writes) {
				t.Fatalf("requests %v", st.Requests)
			}
			for ep, n := range tc.writes {
				if st.Requests[ep][200] != n {
					t.Errorf("%s: %v, want %d answered 200", ep, st.Requests[ep], n)
				}
			}
			if dl := h.deadLetters(); len(dl) != 0 {
				t.Fatalf("dead letters: %+v", dl)
			}
			sc := h.script(tc.ns, "undeployed")
			want := map[string]string{"THEIR_SECRET": canon(secretKeep), "THEIRS": canon(plainTheir),
				"KV": canon(`{"type":"kv_namespace","name":"KV","namespace_id":"k1"}`)}
			if diff := cmp.Diff(want, h.stored(tc.ns, "undeployed")); diff != "" {
				t.Errorf("bindings (-want +got):\n%s", diff)
			}
			if !bytes.Equal(sc.Modules[0].Data, deployedCode) {
				t.Errorf("code %q, want the deployed version's", sc.Modules[0].Data)
			}
			if d := sc.Deployment.Versions; len(d) != 1 || d[0].VersionID == staged || d[0].Percentage != 100 {
				t.Errorf("deployment %+v", d)
			}
			if n := promtestutil.ToFloat64(rn.m.Writes.WithLabelValues("version")); n != 1 {
				t.Errorf("version writes = %v, want 1", n)
			}
			if n := promtestutil.ToFloat64(rn.m.EventsTotal.WithLabelValues(metrics.OutcomeApplied)); n != 1 {
				t.Errorf("applied events = %v, want 1", n)
			}
		})
	}
}
