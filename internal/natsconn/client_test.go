package natsconn

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestDrainClosesTheConnection: Drain delivers what was published before
// it to the subscription and leaves the connection closed.
func TestDrainClosesTheConnection(t *testing.T) {
	s := startServer(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT})
	nc, err := nats.Connect(s.ClientURL(), ClientOptions(nil, false)...)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	if _, err := nc.Subscribe("x", func(m *nats.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	Drain(nc, 10*time.Second)
	if !nc.IsClosed() {
		t.Error("connection not closed after Drain")
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Errorf("got %q", m)
		}
	default:
		t.Error("the message published before Drain was not delivered")
	}
}
