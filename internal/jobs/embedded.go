package jobs

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultEmbeddedListen is where the embedded server listens so that
// `reconciler publish`, `reconciler dlq` and standard NATS tools can reach
// it when no NATS URL is configured.
const DefaultEmbeddedListen = "127.0.0.1:4222"

// EmbeddedMaxPayload lets an event of the full 1 MiB plus headers through
// (the NATS default is exactly 1 MiB).
const EmbeddedMaxPayload = 8 << 20

// StartEmbedded starts a nats-server with JetStream storing in dataDir,
// listening on listen ("host:port"; port -1 picks a free one). The caller
// shuts it down with Shutdown and WaitForShutdown.
func StartEmbedded(dataDir, listen string) (*server.Server, error) {
	if dataDir == "" {
		return nil, errors.New("embedded NATS needs a data directory")
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: bad port", listen)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "reconciler-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   abs,
		MaxPayload: EmbeddedMaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not become ready on %s (is the port in use?)", listen)
	}
	return s, nil
}
