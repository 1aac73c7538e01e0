package jobs

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// deadLetters records the events that cannot be applied in the
// dead-letter stream.
type deadLetters struct {
	cfg Config
	// res is where a record's event is read back from when only its
	// sequence is kept (nil in unit tests, where every event has a body).
	res *state.Resources
	pub publisher
	// maxState bounds a record: what one NATS message may carry.
	maxState int
	log      *zap.Logger
}

// publish stores rec in the dead-letter stream and waits for the
// stream's acknowledgement. Its Nats-Msg-Id is derived from the event's
// stream sequence and delivery count, so that replicas (and retries)
// recording the same failure store it once; duplicate reports whether the
// stream had it already.
func (d *deadLetters) publish(ctx context.Context, rec state.DeadLetter, deliveries uint64) (duplicate bool, err error) {
	data, err := state.EncodeState(rec)
	if err != nil {
		return false, err
	}
	if len(data) > d.maxState {
		// Too large for one message on this connection: keep the digest
		// and the stream sequence (replay reads the event from there).
		rec.Shrink()
		if data, err = state.EncodeState(rec); err != nil {
			return false, err
		}
	}
	m := nats.NewMsg(d.cfg.DLQPrefix + "." + state.DLQSuffix(rec.Subject, d.cfg.SubjectPrefix, d.cfg.BackfillPrefix))
	m.Data = data
	m.Header.Set(state.HeaderDLQReason, string(rec.Reason))
	m.Header.Set(state.HeaderOrigStream, rec.Stream)
	m.Header.Set(state.HeaderOrigSequence, strconv.FormatUint(rec.StreamSeq, 10))
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d:%d", rec.Stream, rec.StreamSeq, deliveries))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ack, err := d.pub.PublishMsg(pctx, m)
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}

// record builds the record of h: from the body it came with, or
// read back from its stream by sequence.
func (d *deadLetters) record(ctx context.Context, h *waitingEvent, reason event.Reason, cause error) state.DeadLetter {
	body, subject := h.body, h.subject
	if body == nil && h.streamSeq > 0 {
		if raw, err := d.streamOf(h).GetMsg(ctx, h.streamSeq); err == nil {
			body, subject = raw.Data, raw.Subject
		} else {
			d.log.Warn("reading a dead-lettered event back from its stream", zap.Uint64("stream_seq", h.streamSeq), zap.Error(err))
		}
	}
	rec := state.NewDeadLetter(body, subject, h.stream, h.streamSeq, h.delivered, reason, cause)
	if rec.EventID == "" {
		rec.EventID = h.id
	}
	return rec
}

// streamOf returns the stream h was delivered from.
func (d *deadLetters) streamOf(h *waitingEvent) jetstream.Stream {
	if h.stream == d.cfg.BackfillStream {
		return d.res.Backfill
	}
	return d.res.Stream
}
