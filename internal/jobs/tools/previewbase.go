package tools

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// BaseChoice says which state previews start from.
type BaseChoice struct {
	// Stored requires the stored state (--stored); NoStored refuses it
	// (--no-stored). Neither: the stored state when JS is not nil.
	Stored, NoStored bool
	// JS is the reachable pipeline's JetStream (nil = none), Names its
	// resources and URL where it is (for the text; already redacted).
	JS    jetstream.JetStream
	Names state.Names
	URL   string
	// EmbeddedListen is where no pipeline answered, for the error of
	// Stored without one.
	EmbeddedListen string
	// Key returns the pipeline's fingerprint key, read only.
	Key func(ctx context.Context) ([]byte, error)
	Log *zap.Logger
}

// PreviewBase is the state previews start from, and what it is.
type PreviewBase struct {
	State  BaseState
	Stored bool
	// Text says which it is, for the output's first line.
	Text string
}

// ChooseBase returns the state plans start from and a planner: the stored
// state and fingerprint key of the pipeline behind c.JS (read only), with
// Stored or by default when there is one; otherwise a fresh state with a
// throwaway key. A stored state that cannot be read is an error with
// Stored, else a warning and the fresh state.
func ChooseBase(ctx context.Context, c BaseChoice) (PreviewBase, *planner.Planner, error) {
	fpKey := make([]byte, 32)
	_, _ = rand.Read(fpKey)
	b := PreviewBase{State: FreshState, Text: "a reconciler that has applied nothing (--no-stored): ownership and secret fingerprints are not known"}
	switch {
	case c.Stored && c.JS == nil:
		return b, nil, fmt.Errorf("--stored: no running reconciler reachable at %s: pass --nats-url, or start `reconciler run`", c.EmbeddedListen)
	case c.NoStored:
	case c.JS == nil:
		b.Text = "a reconciler that has applied nothing (no pipeline reachable): ownership and secret fingerprints are not known"
	default:
		st, err := StoredState(ctx, c.JS, c.Names)
		var key []byte
		if err == nil {
			key, err = c.Key(ctx)
		}
		switch {
		case err == nil:
			b, fpKey = PreviewBase{State: st, Stored: true, Text: "the state stored by the pipeline at " + c.URL}, key
		case c.Stored:
			return b, nil, err
		default:
			c.Log.Warn("reading the pipeline's stored state failed: planning from a fresh state", zap.Error(err))
			b.Text = "a reconciler that has applied nothing (the pipeline's stored state could not be read): ownership and secret fingerprints are not known"
		}
	}
	pl, err := planner.New(planner.Options{FingerprintKey: fpKey})
	if err != nil {
		return b, nil, err
	}
	return b, pl, nil
}
