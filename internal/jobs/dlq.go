package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// DeadLetter is the record published to the dead-letter stream
// (EVENTS.md, "Dead-letter record"). Event holds the original event with
// every write-only value replaced by "<redacted>"; when the body was not
// JSON at all it is null and only its size and digest are kept, since it
// could hold a secret that cannot be located.
type DeadLetter struct {
	Event      json.RawMessage `json:"event"`
	Reason     Reason          `json:"reason"`
	Error      string          `json:"error"`
	Attempts   int             `json:"attempts"`
	FailedAt   time.Time       `json:"failed_at"`
	EventID    string          `json:"event_id,omitempty"`
	Subject    string          `json:"subject"`
	Stream     string          `json:"stream,omitempty"`
	StreamSeq  uint64          `json:"stream_seq,omitempty"`
	BodyBytes  int             `json:"body_bytes,omitempty"`
	BodySHA256 string          `json:"body_sha256,omitempty"`
}

// Headers on dead letters.
const (
	HeaderDLQReason    = "Reconciler-Dlq-Reason"
	HeaderOrigStream   = "Reconciler-Orig-Stream"
	HeaderOrigSequence = "Reconciler-Orig-Seq"
)

// newDeadLetter builds the record of one event body. The body is kept with
// its write-only values redacted, or, when it is not JSON (and so could
// hold a secret that cannot be located), only as its size and digest.
func newDeadLetter(body []byte, subject, stream string, seq, deliveries uint64, reason Reason, cause error) DeadLetter {
	rec := DeadLetter{
		Reason:    reason,
		Error:     cause.Error(),
		Attempts:  int(deliveries),
		FailedAt:  time.Now().UTC(),
		Subject:   subject,
		Stream:    stream,
		StreamSeq: seq,
	}
	if red, ok := cfapi.RedactJSON(body); ok && len(body) <= MaxEventBytes && body != nil {
		rec.Event = red
		var probe struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(red, &probe) == nil && len(probe.ID) <= 256 {
			rec.EventID = probe.ID
		}
	} else {
		rec.Event = json.RawMessage("null")
		sum := sha256.Sum256(body)
		rec.BodyBytes = len(body)
		rec.BodySHA256 = hex.EncodeToString(sum[:])
	}
	return rec
}

// publishDeadLetter stores rec in the dead-letter stream and waits for the
// stream's acknowledgement. Its Nats-Msg-Id is derived from the event's
// stream sequence and delivery count, so that replicas (and retries)
// recording the same failure store it once; duplicate reports whether the
// stream had it already.
func (r *Runner) publishDeadLetter(ctx context.Context, rec DeadLetter, deliveries uint64) (duplicate bool, err error) {
	data, err := encodeState(rec)
	if err != nil {
		return false, err
	}
	if len(data) > r.maxState {
		// Too large for one message on this connection: keep the digest
		// and the stream sequence (replay reads the event from there).
		rec.shrink()
		if data, err = encodeState(rec); err != nil {
			return false, err
		}
	}
	m := nats.NewMsg(r.cfg.DLQPrefix + "." + dlqSuffix(rec.Subject, r.cfg.SubjectPrefix, r.cfg.BackfillPrefix))
	m.Data = data
	m.Header.Set(HeaderDLQReason, string(rec.Reason))
	m.Header.Set(HeaderOrigStream, rec.Stream)
	m.Header.Set(HeaderOrigSequence, strconv.FormatUint(rec.StreamSeq, 10))
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d:%d", rec.Stream, rec.StreamSeq, deliveries))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ack, err := r.pub.PublishMsg(pctx, m)
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}

// shrink keeps only what identifies the event: its digest, size and
// stream sequence, and the first KiB of the error.
func (d *DeadLetter) shrink() {
	if len(d.Event) > 0 && string(d.Event) != "null" {
		sum := sha256.Sum256(d.Event)
		d.BodyBytes = len(d.Event)
		d.BodySHA256 = hex.EncodeToString(sum[:])
	}
	d.Event = json.RawMessage("null")
	d.Error = cfapi.Truncate(d.Error, 1024)
}

// dlqSuffix maps an event subject (<prefix>.<account>.<namespace>.<script>)
// or a backfill item subject (<backfill prefix>.<run>.<account>.<namespace>.<script>)
// to the dead-letter subject suffix <account>.<namespace>.<script>;
// subjects of another shape go under "_invalid".
func dlqSuffix(subject, prefix, backfillPrefix string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		if rest, ok = strings.CutPrefix(subject, backfillPrefix+"."); ok {
			_, rest, ok = strings.Cut(rest, ".")
		}
	}
	if ok && strings.Count(rest, ".") == 2 && !strings.ContainsAny(rest, "*> ") {
		return rest
	}
	return "_invalid._._"
}

// DLQEntry is one stored dead letter.
type DLQEntry struct {
	Seq    uint64     `json:"seq"`
	Record DeadLetter `json:"record"`
}

// ListDeadLetters returns the dead letters of stream dlq whose subject
// matches filter (empty: all), oldest first, at most limit (0: all).
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, dlqStream, filter string, limit int) ([]DLQEntry, error) {
	s, err := js.Stream(ctx, dlqStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("dead-letter stream %s: %w", dlqStream, ErrNotSetUp)
	}
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", dlqStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var out []DLQEntry
	for {
		ci, err := cons.Info(ctx)
		if err != nil {
			return nil, err
		}
		if ci.NumPending == 0 && len(out) > 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, _ := m.Metadata()
			var rec DeadLetter
			if err := json.Unmarshal(m.Data(), &rec); err != nil {
				rec = DeadLetter{Reason: "unreadable_record", Error: err.Error(), Subject: m.Subject()}
			}
			e := DLQEntry{Record: rec}
			if meta != nil {
				e.Seq = meta.Sequence.Stream
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			return nil, batch.Error()
		}
		if got == 0 {
			return out, nil
		}
	}
}

// ReplayResult is the outcome of replaying one dead letter.
type ReplayResult struct {
	Seq     uint64 `json:"seq"`
	EventID string `json:"event_id,omitempty"`
	Subject string `json:"subject,omitempty"`
	Source  string `json:"source,omitempty"` // "original" or "record"
	Error   string `json:"error,omitempty"`
}

// ReplayDeadLetter republishes one dead letter to the event stream. It
// prefers the original event, read back from the event stream by sequence
// (its secrets intact); when that has aged out it republishes the redacted
// record only if nothing was redacted in it. The new message gets a fresh
// Nats-Msg-Id so the duplicate window does not drop it. With remove, the
// dead letter is deleted once the replay is stored.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, names Names, e DLQEntry, remove bool) ReplayResult {
	names = names.WithDefaults()
	res := ReplayResult{Seq: e.Seq, EventID: e.Record.EventID}
	fail := func(format string, args ...any) ReplayResult {
		res.Error = fmt.Sprintf(format, args...)
		return res
	}
	var body []byte
	var subject string
	if e.Record.StreamSeq > 0 && e.Record.Stream != "" {
		if s, err := js.Stream(ctx, e.Record.Stream); err == nil {
			if raw, err := s.GetMsg(ctx, e.Record.StreamSeq); err == nil {
				body, subject, res.Source = raw.Data, raw.Subject, "original"
			}
		}
	}
	if body == nil {
		if len(e.Record.Event) == 0 || string(e.Record.Event) == "null" {
			return fail("the original event is gone from stream %s and the record holds no event body", e.Record.Stream)
		}
		if bytes.Contains(e.Record.Event, []byte(`"`+"<redacted>"+`"`)) {
			return fail("the original event is gone from stream %s and the record's secret values were redacted; republish the event from its source", e.Record.Stream)
		}
		body, subject, res.Source = e.Record.Event, e.Record.Subject, "record"
	}
	if !strings.HasPrefix(subject, names.SubjectPrefix+".") || strings.Count(subject, ".") != 3 {
		return fail("subject %q is not an event subject under %q", subject, names.SubjectPrefix)
	}
	res.Subject = subject
	m := nats.NewMsg(subject)
	m.Data = body
	id := e.Record.EventID
	if id == "" {
		id = "unknown"
	}
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("replay:%d:%s", e.Seq, id))
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fail("publishing: %v", err)
	}
	if remove {
		if s, err := js.Stream(ctx, names.DLQStream); err == nil {
			if err := s.DeleteMsg(ctx, e.Seq); err != nil {
				return fail("replayed, but deleting dead letter %d failed: %v", e.Seq, err)
			}
		}
	}
	return res
}
