package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ConfigBucket holds configuration shared by every replica.
const ConfigBucket = "reconciler_config"

// FingerprintKey returns the HMAC key of value fingerprints: a random
// key created once in the ConfigBucket KV bucket (of at most maxBytes),
// so that every replica and restart shares it. Only create (run) makes
// the bucket or the key; tools read them, and fail when they are missing.
func FingerprintKey(ctx context.Context, js jetstream.KeyValueManager, replicas int, maxBytes int64, create bool) ([]byte, error) {
	var kv jetstream.KeyValue
	var err error
	if create {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: ConfigBucket, Description: "Reconciler configuration shared by replicas.",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas, MaxBytes: maxBytes,
		})
	} else {
		kv, err = js.KeyValue(ctx, ConfigBucket)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bucket %s: not set up: start `reconciler run` on this NATS first", ConfigBucket)
		}
		return nil, fmt.Errorf("bucket %s: %w", ConfigBucket, err)
	}
	if e, err := kv.Get(ctx, "fingerprint_key"); err == nil {
		return e.Value(), nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, err
	}
	if !create {
		return nil, fmt.Errorf("bucket %s has no fingerprint_key: start `reconciler run` on this NATS first", ConfigBucket)
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
