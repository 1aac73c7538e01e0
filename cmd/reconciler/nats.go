package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs"
)

// natsConn is a connection, and the embedded server when one was started.
type natsConn struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *server.Server
	url      string
}

// close drains the connection, then stops the embedded server last.
func (c *natsConn) close(log *zap.Logger, timeout time.Duration) {
	if c.nc != nil {
		done := make(chan struct{})
		c.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := c.nc.Drain(); err != nil {
			c.nc.Close()
		} else {
			select {
			case <-done:
			case <-time.After(timeout):
				c.nc.Close()
			}
		}
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		c.embedded.WaitForShutdown()
		if log != nil {
			log.Info("embedded NATS server stopped")
		}
	}
}

// connectNATS connects to --nats-url. With no URL, startEmbedded starts the
// embedded server in --data-dir (for run); otherwise it connects to the
// embedded server of a running `reconciler run` on --embedded-listen.
func connectNATS(c *common, startEmbedded bool, log *zap.Logger) (*natsConn, error) {
	out := &natsConn{url: c.natsURL}
	if out.url == "" {
		if startEmbedded {
			s, err := jobs.StartEmbedded(c.dataDir, c.embeddedListen)
			if err != nil {
				return nil, fmt.Errorf("starting the embedded NATS server (--data-dir %s, --embedded-listen %s): %w", c.dataDir, c.embeddedListen, err)
			}
			out.embedded = s
			out.url = s.ClientURL()
			log.Info("embedded NATS server started", zap.String("url", out.url), zap.String("data_dir", c.dataDir))
		} else {
			out.url = "nats://" + c.embeddedListen
		}
	}
	opts := []nats.Option{
		nats.Name("reconciler"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && log != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			if log != nil {
				log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
			}
		}),
	}
	if !startEmbedded {
		opts = append(opts, nats.RetryOnFailedConnect(false))
	}
	nc, err := nats.Connect(out.url, opts...)
	if err != nil {
		if out.embedded != nil {
			out.embedded.Shutdown()
		}
		if c.natsURL == "" && !startEmbedded {
			return nil, fmt.Errorf("cannot reach the embedded NATS server at %s (%v): start `reconciler run` first, or pass --nats-url", out.url, err)
		}
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(out.url), err)
	}
	out.nc = nc
	out.js, err = jetstream.New(nc)
	if err != nil {
		out.close(log, time.Second)
		return nil, err
	}
	return out, nil
}

// redactURL hides credentials in a NATS URL.
func redactURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil || pu.User == nil {
		return u
	}
	pu.User = url.User("***")
	return pu.String()
}

// fingerprintKey returns the HMAC key of value fingerprints: from
// RECONCILER_FINGERPRINT_KEY, or else a random key created once in the
// reconciler_config KV bucket so that every replica and restart shares it.
func fingerprintKey(ctx context.Context, js jetstream.JetStream, e env, replicas int) ([]byte, error) {
	if k := e("RECONCILER_FINGERPRINT_KEY"); k != "" {
		if len(k) < 16 {
			return nil, usagef("RECONCILER_FINGERPRINT_KEY must be at least 16 characters")
		}
		return []byte(k), nil
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "reconciler_config", Description: "Reconciler configuration shared by replicas.",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket reconciler_config: %w", err)
	}
	if e, err := kv.Get(ctx, "fingerprint_key"); err == nil {
		return e.Value(), nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	key := []byte(hex.EncodeToString(buf))
	if _, err := kv.Create(ctx, "fingerprint_key", key); err != nil {
		// Another replica created it first: use theirs.
		if e, gerr := kv.Get(ctx, "fingerprint_key"); gerr == nil {
			return e.Value(), nil
		}
		return nil, err
	}
	return key, nil
}
