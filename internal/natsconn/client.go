package natsconn

import (
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ClientOptions are the options of every reconciler connection: named
// "reconciler", reconnecting for ever once a second, and logging
// disconnects and reconnects to log (nil: none). With retry the first
// connect is retried too (a process that waits for its server).
func ClientOptions(log *zap.Logger, retry bool) []nats.Option {
	if log == nil {
		log = zap.NewNop()
	}
	opts := []nats.Option{
		nats.Name("reconciler"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	if retry {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	return opts
}

// Drain drains nc, so that what it published is flushed and what its
// subscriptions hold is handled, and closes it at the latest after
// timeout.
func Drain(nc *nats.Conn, timeout time.Duration) {
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
		nc.Close()
	}
}
