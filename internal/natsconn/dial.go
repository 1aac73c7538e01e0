package natsconn

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/natsembed"
)

// Conn is a connection with its JetStream context, and the embedded
// server when Dial started one.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// URL is where it connected (with its credentials; log it through
	// RedactURL).
	URL      string
	embedded *natsembed.Server
	closers  []func()
}

// Target is where Dial connects.
type Target struct {
	// URL is the server URL(s), comma-separated; empty = the embedded
	// server (or the URL of the Options' natscli context).
	URL string
	// DataDir and EmbeddedListen are the store and the address of the
	// embedded server.
	DataDir, EmbeddedListen string
	// Options is the credentials and TLS of an external server.
	Options Options
	// Pipeline is a process that runs the pipeline: without a URL it
	// starts the embedded server in DataDir (locked for the process's
	// life), and an external server that is not up yet is waited for.
	// Otherwise (a tool) no URL means the embedded server of a running
	// `reconciler run` on EmbeddedListen, and an unreachable server is an
	// error at once.
	Pipeline bool
}

// Dial connects to t. A bad option, or a DataDir another process holds,
// is a *ConfigError; log (nil = none) gets the embedded server's start,
// stop and warnings.
func Dial(t Target, log *zap.Logger) (*Conn, error) {
	url, resolved, err := t.Options.Resolve(t.URL)
	if err != nil {
		return nil, &ConfigError{err}
	}
	out := &Conn{URL: url}
	opts := t.Options
	if out.URL == "" {
		if resolved.Authenticates() && log != nil {
			log.Warn("NATS credentials are set but no NATS URL: the embedded server has no authentication, the credentials are not used")
		}
		opts = Options{}
		if t.Pipeline {
			if err := out.startEmbedded(t, log); err != nil {
				return nil, err
			}
		} else {
			out.URL = "nats://" + t.EmbeddedListen
		}
	}
	nc, err := opts.Connect(out.URL, ClientOptions(log, t.Pipeline && url != "")...)
	if err != nil {
		if out.embedded != nil {
			out.embedded.Shutdown()
		}
		var ce *ConfigError
		if url == "" && !t.Pipeline && !errors.As(err, &ce) {
			return nil, fmt.Errorf("cannot reach the embedded NATS server at %s (%v): start `reconciler run` first, or pass --nats-url", out.URL, err)
		}
		return nil, err
	}
	out.NC = nc
	// An asynchronous publish whose acknowledgement is lost (the stream's
	// leader died with it in flight) fails after a while instead of
	// waiting for ever.
	if out.JS, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second)); err != nil {
		out.Close(log, time.Second)
		return nil, err
	}
	return out, nil
}

// startEmbedded starts the embedded server of t.
func (c *Conn) startEmbedded(t Target, log *zap.Logger) error {
	s, err := natsembed.Start(t.DataDir, t.EmbeddedListen)
	if errors.Is(err, natsembed.ErrLocked) {
		return &ConfigError{fmt.Errorf("--data-dir %s: %w; stop the other `reconciler run`, or give this one another --data-dir", t.DataDir, err)}
	}
	if err != nil {
		return fmt.Errorf("starting the embedded NATS server (--data-dir %s, --embedded-listen %s): %w", t.DataDir, t.EmbeddedListen, err)
	}
	c.embedded, c.URL = s, s.ClientURL()
	if log == nil {
		log = zap.NewNop()
	}
	log.Info("embedded NATS server started", zap.String("url", c.URL), zap.String("data_dir", t.DataDir))
	if !natsembed.IsLoopback(t.EmbeddedListen) {
		log.Warn("the embedded NATS server listens on a non-loopback address WITHOUT authentication; "+
			"anyone who reaches it can publish events and read the event stream, which holds secret values for its max age "+
			"(use --embedded-listen 127.0.0.1:4222, or an external NATS with auth via --nats-url and --nats-creds)",
			zap.String("embedded_listen", t.EmbeddedListen))
	}
	return nil
}

// OnClose runs fn when the connection closes, before it drains.
func (c *Conn) OnClose(fn func()) { c.closers = append(c.closers, fn) }

// Close runs the OnClose functions, drains the connection within
// timeout, then stops the embedded server last.
func (c *Conn) Close(log *zap.Logger, timeout time.Duration) {
	for _, fn := range c.closers {
		fn()
	}
	c.closers = nil
	if c.NC != nil {
		Drain(c.NC, timeout)
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
		if log != nil {
			log.Info("embedded NATS server stopped")
		}
	}
}
