// Package natscluster runs a JetStream cluster of nats-server instances
// inside a test process: each node has its own server name, client and
// route ports on the loopback interface and a temporary store, and a node
// can be stopped and started again on the same ports and store (a crash
// and a restart of one machine of a production cluster). It is imported
// only from _test.go files.
package natscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxPayload is the nodes' max_payload: what the README asks of a
// production NATS (the embedded server's 8 MiB).
const MaxPayload = 8 << 20

// Node is one server of the cluster.
type Node struct {
	Name       string
	clientPort int
	routePort  int
	storeDir   string

	mu  sync.Mutex
	srv *server.Server
}

// URL is the node's client URL; it stays the same across restarts.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// Running reports whether the node is up.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv != nil
}

// Server returns the running server, nil when the node is stopped.
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Cluster is a running cluster.
type Cluster struct {
	t     testing.TB
	Name  string
	Nodes []*Node
	// Logf, when set before Start, receives the servers' notices and
	// errors (for debugging a test).
	Logf func(format string, args ...any)
	opts func(n *Node) *server.Options
}

// New prepares a cluster of n nodes named n1..nN with free loopback ports
// and temporary stores; Start starts them. Every node is stopped when the
// test ends.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Name: "reconciler-test"}
	ports := freePorts(t, 2*n)
	routes := make([]string, n)
	for i := 0; i < n; i++ {
		c.Nodes = append(c.Nodes, &Node{Name: fmt.Sprintf("n%d", i+1), clientPort: ports[2*i], routePort: ports[2*i+1], storeDir: t.TempDir()})
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[2*i+1])
	}
	c.opts = func(node *Node) *server.Options {
		var others []string
		for i, r := range routes {
			if c.Nodes[i] != node {
				others = append(others, r)
			}
		}
		return &server.Options{
			ServerName: node.Name,
			Host:       "127.0.0.1",
			Port:       node.clientPort,
			JetStream:  true,
			StoreDir:   node.storeDir,
			MaxPayload: MaxPayload,
			NoSigs:     true,
			NoLog:      c.Logf == nil,
			Cluster:    server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: node.routePort},
			Routes:     server.RoutesFromStr(strings.Join(others, ",")),
		}
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			c.Stop(node)
		}
	})
	return c
}

// freePorts returns n distinct free TCP ports on the loopback interface.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	out := make([]int, 0, n)
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natscluster: free port: %v", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// URLs returns the client URLs of every node, comma-separated (what a
// client's --nats-url lists).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Start starts every node that is not running, without waiting for the
// cluster to elect its JetStream leaders (see WaitJetStream).
func (c *Cluster) Start() {
	c.t.Helper()
	for _, n := range c.Nodes {
		if !n.Running() {
			c.StartNode(n)
		}
	}
}

// StartNode starts node n (again) on its ports and store and waits until
// it accepts client connections.
func (c *Cluster) StartNode(n *Node) {
	c.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return
	}
	s, err := server.NewServer(c.opts(n))
	if err != nil {
		c.t.Fatalf("natscluster: node %s: %v", n.Name, err)
	}
	if c.Logf != nil {
		s.SetLoggerV2(logger{name: n.Name, logf: c.Logf}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("natscluster: node %s not ready on %s", n.Name, n.URL())
	}
	n.srv = s
}

// Stop stops node n at once (its clients are disconnected, nothing is
// drained) and waits until it is down. Its store is kept.
func (c *Cluster) Stop(n *Node) {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("natscluster: no node %q", name)
	return nil
}

// WaitJetStream waits until a running node is the JetStream meta leader
// and every running node sees the cluster's meta group current.
func (c *Cluster) WaitJetStream(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		leader, current := false, true
		for _, n := range c.Nodes {
			s := n.Server()
			if s == nil {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natscluster: no JetStream meta leader within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StreamLeader returns the node that leads stream (from the stream's
// cluster information), asking through js.
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (*Node, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader", stream)
	}
	for _, n := range c.Nodes {
		if n.Name == info.Cluster.Leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("stream %s: leader %q is not a node of this cluster", stream, info.Cluster.Leader)
}

// ErrNoLeader is returned by StreamReplicasCurrent when the stream has
// no leader.
var ErrNoLeader = errors.New("no leader")

// StreamReplicasCurrent reports whether stream has a leader and every one
// of its replicas is current, and how many replicas it has.
func StreamReplicasCurrent(ctx context.Context, js jetstream.JetStream, stream string) (bool, int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return false, 0, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return false, 0, fmt.Errorf("stream %s: %w", stream, ErrNoLeader)
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current || p.Offline {
			return false, len(info.Cluster.Replicas) + 1, nil
		}
	}
	return true, len(info.Cluster.Replicas) + 1, nil
}

// logger forwards the server's notices, warnings and errors.
type logger struct {
	name string
	logf func(format string, args ...any)
}

func (l logger) Noticef(format string, v ...any) { l.logf("["+l.name+"] "+format, v...) }
func (l logger) Warnf(format string, v ...any)   { l.logf("["+l.name+"] WARN "+format, v...) }
func (l logger) Fatalf(format string, v ...any)  { l.logf("["+l.name+"] FATAL "+format, v...) }
func (l logger) Errorf(format string, v ...any)  { l.logf("["+l.name+"] ERROR "+format, v...) }
func (l logger) Debugf(string, ...any)           {}
func (l logger) Tracef(string, ...any)           {}
