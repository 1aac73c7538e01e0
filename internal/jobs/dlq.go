package jobs

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// publishDeadLetter stores rec in the dead-letter stream and waits for the
// stream's acknowledgement. Its Nats-Msg-Id is derived from the event's
// stream sequence and delivery count, so that replicas (and retries)
// recording the same failure store it once; duplicate reports whether the
// stream had it already.
func (r *Runner) publishDeadLetter(ctx context.Context, rec state.DeadLetter, deliveries uint64) (duplicate bool, err error) {
	data, err := state.EncodeState(rec)
	if err != nil {
		return false, err
	}
	if len(data) > r.maxState {
		// Too large for one message on this connection: keep the digest
		// and the stream sequence (replay reads the event from there).
		rec.Shrink()
		if data, err = state.EncodeState(rec); err != nil {
			return false, err
		}
	}
	m := nats.NewMsg(r.cfg.DLQPrefix + "." + state.DLQSuffix(rec.Subject, r.cfg.SubjectPrefix, r.cfg.BackfillPrefix))
	m.Data = data
	m.Header.Set(state.HeaderDLQReason, string(rec.Reason))
	m.Header.Set(state.HeaderOrigStream, rec.Stream)
	m.Header.Set(state.HeaderOrigSequence, strconv.FormatUint(rec.StreamSeq, 10))
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d:%d", rec.Stream, rec.StreamSeq, deliveries))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ack, err := r.pub.PublishMsg(pctx, m)
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}
