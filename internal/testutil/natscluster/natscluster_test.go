package natscluster

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/testutil"
)

// TestLeaderStopAndRestart: a stream with 3 replicas keeps taking
// messages when its leader's node stops, and the node catches up when it
// starts again on its store.
func TestLeaderStopAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	c := New(t, 3)
	if os.Getenv("NATSCLUSTER_LOG") != "" {
		c.Logf = t.Logf
	}
	c.Start()
	c.WaitJetStream(30 * time.Second)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	t.Logf("R3 stream created in %s", time.Since(start).Round(time.Millisecond))
	for i := 0; i < 10; i++ {
		if _, err := js.Publish(ctx, "s.a", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	leader, err := c.StreamLeader(ctx, js, "S")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(leader)
	if leader.Running() || leader.Server() != nil {
		t.Fatal("stopped node still running")
	}
	stopped := time.Now()
	// Publishing goes on with two nodes once a new leader is elected.
	testutil.Eventually(t, 30*time.Second, func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "s.a", []byte("y"))
		return err == nil
	}, "publish after the leader stopped")
	t.Logf("publishing again %s after the leader stopped", time.Since(stopped).Round(time.Millisecond))
	if l, err := c.StreamLeader(ctx, js, "S"); err != nil || l == leader {
		t.Fatalf("leader after the stop: %v, %v", l, err)
	}
	if ok, _, err := StreamReplicasCurrent(ctx, js, "S"); err != nil || ok {
		t.Fatalf("replicas current with a node down: %v %v", ok, err)
	}
	c.StartNode(leader)
	testutil.Eventually(t, 30*time.Second, func() bool {
		ok, n, err := StreamReplicasCurrent(ctx, js, "S")
		return err == nil && ok && n == 3
	}, "the restarted node catches up")
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 11 {
		t.Fatalf("messages after restart: %+v %v", info, err)
	}
}
