package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// maxDeliveriesAdvisory is the part of JetStream's
// io.nats.jetstream.advisory.v1.max_deliver advisory the runner reads.
type maxDeliveriesAdvisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries dead-letters the events JetStream gives up on by
// itself: an event whose deliveries all ended in an ack timeout (a process
// that keeps dying mid-reconcile) reaches MaxDeliver without the runner
// ever seeing a failure, and JetStream then only publishes an advisory.
// Every replica receives it; the record's Nats-Msg-Id makes the dead-letter
// stream keep one copy.
func (r *Runner) watchMaxDeliveries(ctx context.Context) (*nats.Subscription, error) {
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", r.cfg.Stream, r.cfg.Consumer)
	return r.res.JS.Conn().Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			r.log.Warn("unreadable max-deliveries advisory", zap.Error(err))
			return
		}
		raw, err := r.res.Stream.GetMsg(ctx, adv.StreamSeq)
		if err != nil {
			r.log.Error("event exceeded its deliveries and cannot be read back for the dead-letter stream",
				zap.Uint64("stream_seq", adv.StreamSeq), zap.Error(err))
			return
		}
		rec := newDeadLetter(raw.Data, raw.Subject, adv.Stream, adv.StreamSeq, adv.Deliveries, "max_deliveries",
			fmt.Errorf("JetStream stopped redelivering after %d deliveries that were never acknowledged (ack timeouts)", adv.Deliveries))
		dup, err := r.publishDeadLetter(ctx, rec, adv.Deliveries)
		if err != nil {
			r.log.Error("dead-letter publish of an exhausted event failed", zap.Uint64("stream_seq", adv.StreamSeq), zap.Error(err))
			return
		}
		if !dup {
			r.countDeadLetter(rec)
		}
	})
}
