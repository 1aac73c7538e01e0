package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/testutil"
	"github.com/reconciler/reconciler/internal/testutil/natscluster"
)

// jsConfigs returns the configuration of every stream (KV buckets
// included) and durable consumer on js, by name, as JSON. Ephemeral
// consumers (the watchers of a process, e.g. on the shared budget) come
// and go with the processes and configure nothing.
func jsConfigs(t *testing.T, js jetstream.JetStream) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		data, _ := json.Marshal(si.Config)
		out["stream "+si.Config.Name] = string(data)
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		cons := s.ListConsumers(ctx)
		for ci := range cons.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			data, _ := json.Marshal(ci.Config)
			out["consumer "+si.Config.Name+"/"+ci.Name] = string(data)
		}
		if err := cons.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// toolEvents are two events for plan and publish.
var toolEvents = fmt.Sprintf(`{"schema":"bindings.change/v1","id":"t1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","generation":1,"op":"patch","upsert":[{"type":"plain_text","name":"TOOL","text":"x"}]}
{"schema":"bindings.change/v1","id":"t2","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0002","generation":1,"op":"patch","remove":["TENANT"]}
`, acct, acct)

// TestToolsNeverCreateResources: against a NATS where `run` has set up
// nothing, publish, plan (with and without --stored), dlq list, status,
// drift and backfill list|status|cancel fail
// with a message that says to start `reconciler run`, and create no
// stream, consumer or bucket.
func TestToolsNeverCreateResources(t *testing.T) {
	srv, err := natsembed.Start(t.TempDir(), "127.0.0.1:-1")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	_, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	env := map[string]string{"NATS_URL": srv.ClientURL(), "CLOUDFLARE_API_BASE_URL": base, "CLOUDFLARE_API_TOKEN": "tools-test-token"}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if before := jsConfigs(t, js); len(before) != 0 {
		t.Fatalf("a fresh server has resources: %v", before)
	}
	for _, args := range [][]string{
		{"publish", "-"},
		{"plan", "--stored", "-"},
		{"plan", "-"},
		{"dlq", "list"},
		{"status", "tenant-0001", "--account", acct, "--dispatch-namespace", "customers"},
		{"drift", "--account", acct, "--dispatch-namespace", "customers"},
		{"backfill", "list"},
		{"backfill", "status", "bf-1"},
		{"backfill", "cancel", "bf-1"},
	} {
		code, out, stderr := call(t, env, toolEvents, args...)
		if code == 0 {
			t.Errorf("%v succeeded on a NATS without the pipeline's resources:\n%s%s", args, out, stderr)
		}
		if !strings.Contains(stderr, "start `reconciler run`") {
			t.Errorf("%v: stderr does not say to start `reconciler run` first: %q", args, stderr)
		}
		if strings.Contains(stderr+out, "tools-test-token") {
			t.Errorf("%v: output shows the API token", args)
		}
		if after := jsConfigs(t, js); len(after) != 0 {
			t.Fatalf("%v created resources: %v", args, after)
		}
	}
}

// TestToolsLeaveAnR3SetupAlone: on a 3-node cluster set up by `run
// --stream-replicas 3`, publish, plan (--stored, and by default) and dlq
// list change no stream, consumer or bucket; reconciler_config keeps its
// 3 replicas.
func TestToolsLeaveAnR3SetupAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node NATS cluster")
	}
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 2); err != nil {
		t.Fatal(err)
	}
	cl := natscluster.New(t, 3)
	cl.Start()
	cl.WaitJetStream(30 * time.Second)
	env := map[string]string{"NATS_URL": cl.URLs(), "CLOUDFLARE_API_BASE_URL": base, "CLOUDFLARE_API_TOKEN": "tools-test-token",
		"RECONCILER_METRICS_ADDR": testutil.FreeAddr(t), "RECONCILER_STREAM_REPLICAS": "3"}

	// `run` sets everything up; stop it so that only the tools act after.
	ctx, cancel := context.WithCancel(context.Background())
	log := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- realMain(ctx, []string{"run"}, strings.NewReader(""), log, log, envMap(env)) }()
	testutil.Eventually(t, 90*time.Second, func() bool { return strings.Contains(log.String(), "reconciler running") }, "run sets up: %s", stringerFunc(log.String))
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run exited %d:\n%s", code, log.String())
	}

	nc, err := nats.Connect(cl.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	before := jsConfigs(t, js)
	if !strings.Contains(before["stream KV_"+configBucket], `"num_replicas":3`) {
		t.Fatalf("run did not create %s with 3 replicas: %s", configBucket, before["stream KV_"+configBucket])
	}
	for _, args := range [][]string{
		{"plan", "--stored", "-"},
		{"publish", "-"},
		{"plan", "--stored", "--output", "json", "-"},
		{"dlq", "list"},
		{"plan", "-"},
	} {
		code, out, stderr := call(t, env, toolEvents, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, stderr)
		}
		// A reachable pipeline: plan starts from its stored state by
		// default, and says so.
		if args[0] == "plan" && !strings.Contains(strings.Join(args, " "), "json") && !strings.HasPrefix(out, "Planning from the state stored by the pipeline at ") {
			t.Errorf("%v does not say it starts from the stored state:\n%s", args, out)
		}
		after := jsConfigs(t, js)
		for name, cfg := range before {
			if after[name] != cfg {
				t.Errorf("%v changed %s:\nbefore %s\nafter  %s", args, name, cfg, after[name])
			}
		}
		for name := range after {
			if _, ok := before[name]; !ok {
				t.Errorf("%v created %s", args, name)
			}
		}
	}
}
