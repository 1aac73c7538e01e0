package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
)

// natsConn is a connection, and the embedded server when one was started.
type natsConn struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *natsembed.Server
	url      string
	closers  []func()
}

// onClose runs fn when the connection closes, before it drains.
func (c *natsConn) onClose(fn func()) { c.closers = append(c.closers, fn) }

// close drains the connection, then stops the embedded server last.
func (c *natsConn) close(log *zap.Logger, timeout time.Duration) {
	for _, fn := range c.closers {
		fn()
	}
	c.closers = nil
	if c.nc != nil {
		natsconn.Drain(c.nc, timeout)
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		if log != nil {
			log.Info("embedded NATS server stopped")
		}
	}
}

// connectNATS connects to --nats-url (or the URL of --nats-context) with
// the credentials and TLS options of internal/natsconn. For a process that
// runs the pipeline (pipeline), no URL means starting the embedded server
// in --data-dir (the directory is locked for the process's life), and an
// external server that is not up yet is waited for. For tools, no URL
// means the embedded server of a running `reconciler run` on
// --embedded-listen, and an unreachable server is an error at once.
func connectNATS(n *natsFlags, pipeline bool, log *zap.Logger) (*natsConn, error) {
	url, resolved, err := n.conn.Resolve(n.url)
	if err != nil {
		return nil, clihelp.Usagef("%v", err)
	}
	out := &natsConn{url: url}
	conn := n.conn
	if out.url == "" {
		if resolved.Authenticates() && log != nil {
			log.Warn("NATS credentials are set but no NATS URL: the embedded server has no authentication, the credentials are not used")
		}
		conn = natsconn.Options{}
		if pipeline {
			if err := out.startEmbedded(n, log); err != nil {
				return nil, err
			}
		} else {
			out.url = "nats://" + n.embeddedListen
		}
	}
	opts := natsconn.ClientOptions(log, pipeline && url != "")
	nc, err := conn.Connect(out.url, opts...)
	if err != nil {
		if out.embedded != nil {
			out.embedded.Shutdown()
		}
		var ce *natsconn.ConfigError
		if errors.As(err, &ce) {
			return nil, clihelp.Usagef("%v", err)
		}
		if url == "" && !pipeline {
			return nil, fmt.Errorf("cannot reach the embedded NATS server at %s (%v): start `reconciler run` first, or pass --nats-url", out.url, err)
		}
		return nil, err
	}
	out.nc = nc
	// An asynchronous publish whose acknowledgement is lost (the stream's
	// leader died with it in flight) fails after a while instead of
	// waiting for ever.
	if out.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second)); err != nil {
		out.close(log, time.Second)
		return nil, err
	}
	return out, nil
}

// startEmbedded starts the embedded server in --data-dir.
func (c *natsConn) startEmbedded(n *natsFlags, log *zap.Logger) error {
	s, err := natsembed.Start(n.dataDir, n.embeddedListen)
	if errors.Is(err, natsembed.ErrLocked) {
		return clihelp.Usagef("--data-dir %s: %v; stop the other `reconciler run`, or give this one another --data-dir", n.dataDir, err)
	}
	if err != nil {
		return fmt.Errorf("starting the embedded NATS server (--data-dir %s, --embedded-listen %s): %w", n.dataDir, n.embeddedListen, err)
	}
	c.embedded, c.url = s, s.ClientURL()
	log.Info("embedded NATS server started", zap.String("url", c.url), zap.String("data_dir", n.dataDir))
	if !natsembed.IsLoopback(n.embeddedListen) {
		log.Warn("the embedded NATS server listens on a non-loopback address WITHOUT authentication; "+
			"anyone who reaches it can publish events and read the event stream, which holds secret values for its max age "+
			"(use --embedded-listen 127.0.0.1:4222, or an external NATS with auth via --nats-url and --nats-creds)",
			zap.String("embedded_listen", n.embeddedListen))
	}
	return nil
}

// redactURL hides credentials in a NATS URL or a comma-separated list of
// them.
func redactURL(list string) string { return natsconn.RedactURL(list) }

// configBucket holds configuration shared by every replica.
const configBucket = state.ConfigBucket

// fingerprintKey returns the HMAC key of value fingerprints: from
// RECONCILER_FINGERPRINT_KEY, or else the key shared through the
// reconciler_config bucket (state.FingerprintKey). Only create (run)
// makes the bucket or the key; tools read them.
func fingerprintKey(ctx context.Context, js jetstream.JetStream, e clihelp.Env, replicas int, create bool) ([]byte, error) {
	if k := e("RECONCILER_FINGERPRINT_KEY"); k != "" {
		if len(k) < 16 {
			return nil, clihelp.Usagef("RECONCILER_FINGERPRINT_KEY must be at least 16 characters")
		}
		return []byte(k), nil
	}
	return state.FingerprintKey(ctx, js, replicas, natsconn.ConfigBucketMaxBytes, create)
}
