package main

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
)

// connectNATS connects to the NATS of n (natsconn.Dial): for a process
// that runs the pipeline, no URL starts the embedded server in --data-dir;
// for tools it means a running `reconciler run` on --embedded-listen. A
// bad option is a usage error.
func connectNATS(n *natsFlags, pipeline bool, log *zap.Logger) (*natsconn.Conn, error) {
	c, err := natsconn.Dial(natsconn.Target{URL: n.url, DataDir: n.dataDir, EmbeddedListen: n.embeddedListen, Options: n.conn, Pipeline: pipeline}, log)
	var ce *natsconn.ConfigError
	if errors.As(err, &ce) {
		return nil, clihelp.Usagef("%v", err)
	}
	return c, err
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
