package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// DLQEntry is one stored dead letter.
type DLQEntry struct {
	Seq    uint64           `json:"seq"`
	Record state.DeadLetter `json:"record"`
}

// ListDeadLetters returns the dead letters of stream dlq whose subject
// matches filter (empty: all), oldest first, at most limit (0: all).
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, dlqStream, filter string, limit int) ([]DLQEntry, error) {
	s, err := js.Stream(ctx, dlqStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("dead-letter stream %s: %w", dlqStream, state.ErrNotSetUp)
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
			var rec state.DeadLetter
			if err := json.Unmarshal(m.Data(), &rec); err != nil {
				rec = state.DeadLetter{Reason: "unreadable_record", Error: err.Error(), Subject: m.Subject()}
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
// Nats-Msg-Id so the duplicate window does not drop it. A backfill item's
// dead letter is replayed as a live event on its script's subject. With remove, the
// dead letter is deleted once the replay is stored.
func ReplayDeadLetter(ctx context.Context, js jetstream.JetStream, names state.Names, e DLQEntry, remove bool) ReplayResult {
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
	if _, key, ok := state.ParseBackfillSubject(subject, names.BackfillPrefix); ok {
		// A backfill item's event: replayed as a live event of its script
		// (its run may be over; the event is the same).
		subject = names.SubjectPrefix + "." + key
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

// DLQSelector says which dead letters a command acts on; its zero value
// selects them all.
type DLQSelector struct {
	// Filter is a subject filter of the DLQ stream ("" = all).
	Filter string
	// Reason keeps only the dead letters of this reason ("" = any).
	Reason string
	// Seqs keeps only these sequence numbers (empty = any).
	Seqs map[uint64]bool
	// Limit is the most to return (0 = all).
	Limit int
}

// SelectDeadLetters returns the dead letters of dlqStream that sel
// selects, oldest first.
func SelectDeadLetters(ctx context.Context, js jetstream.JetStream, dlqStream string, sel DLQSelector) ([]DLQEntry, error) {
	entries, err := ListDeadLetters(ctx, js, dlqStream, sel.Filter, 0)
	if err != nil {
		return nil, err
	}
	var out []DLQEntry
	for _, en := range entries {
		if sel.Reason != "" && string(en.Record.Reason) != sel.Reason || len(sel.Seqs) > 0 && !sel.Seqs[en.Seq] {
			continue
		}
		out = append(out, en)
		if sel.Limit > 0 && len(out) >= sel.Limit {
			break
		}
	}
	return out, nil
}

// ReplayDeadLetters republishes entries (ReplayDeadLetter), deleting each
// once republished unless keep; it reports each on stdout, or its failure
// on stderr, then a total, and returns how many failed.
func ReplayDeadLetters(ctx context.Context, js jetstream.JetStream, names state.Names, entries []DLQEntry, keep bool, stdout, stderr io.Writer) (failed int) {
	for _, en := range entries {
		r := ReplayDeadLetter(ctx, js, names, en, !keep)
		if r.Error != "" {
			failed++
			fmt.Fprintf(stderr, "#%d event=%s: %s\n", r.Seq, OrDash(r.EventID), r.Error)
			continue
		}
		fmt.Fprintf(stdout, "#%d event=%s replayed from the %s to %s\n", r.Seq, OrDash(r.EventID), r.Source, r.Subject)
	}
	fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", len(entries)-failed, len(entries))
	return failed
}
