// Package natsembed starts the JetStream server that `reconciler run`
// embeds when no NATS URL is configured, and locks its data directory so
// that two processes never share one store.
//
// Invariants: the server stores in an absolute data directory that only
// the holder of its lock file uses; the lock is an advisory flock held for
// the process's life (released by the kernel when the process dies, so a
// crash never leaves a stale lock); the server accepts events up to
// MaxPayload bytes.
//
// Imports point one way: it imports only nats-server and the standard
// library; cmd and the tests import it.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where the embedded server listens so that `reconciler
// publish`, `reconciler dlq` and standard NATS tools can reach it when no
// NATS URL is configured.
const DefaultListen = "127.0.0.1:4222"

// MaxPayload lets an event of the full 1 MiB plus headers through, and the
// desired state of a script with large bindings (the NATS default is
// exactly 1 MiB; an external server must be configured with at least
// this much to store the largest desired states, see README).
const MaxPayload = 8 << 20

// LockFileName is the lock file created in the data directory.
const LockFileName = "reconciler.lock"

// ErrLocked is returned by Lock when another process holds the data
// directory.
var ErrLocked = errors.New("data directory is in use by another process")

// DirLock is a held data-directory lock.
type DirLock struct {
	f    *os.File
	path string
}

// Lock creates dir if needed and takes its lock file without waiting. It
// fails with an error wrapping ErrLocked (naming the holder's pid when
// known) when another process holds it.
func Lock(dir string) (*DirLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	path := filepath.Join(abs, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid := string(holder); pid != "" {
				return nil, fmt.Errorf("%s (%s is held by pid %s): %w", abs, LockFileName, pid, ErrLocked)
			}
			return nil, fmt.Errorf("%s: %w", abs, ErrLocked)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return &DirLock{f: f, path: path}, nil
}

// Unlock releases the lock.
func (l *DirLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// Server is a running embedded server and the lock of its store.
type Server struct {
	*server.Server
	lock *DirLock
}

// Start locks dataDir and starts a nats-server with JetStream storing in
// it, listening on listen ("host:port"; port -1 picks a free one). Stop it
// with Shutdown, which also releases the lock.
func Start(dataDir, listen string) (*Server, error) {
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
	lock, err := Lock(dataDir)
	if err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(dataDir)
	opts := &server.Options{
		ServerName: "reconciler-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   abs,
		MaxPayload: MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		lock.Unlock()
		return nil, fmt.Errorf("embedded NATS did not become ready on %s (is the port in use?)", listen)
	}
	return &Server{Server: s, lock: lock}, nil
}

// Shutdown stops the server, waits for it, and releases the data
// directory.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	s.lock.Unlock()
}

// IsLoopback reports whether a listen address ("host:port") accepts only
// local connections. The embedded server has no authentication, and the
// event stream holds secret values, so anything else deserves a warning.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
