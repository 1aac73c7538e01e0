package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// PublishSummary counts what Publish did; every line that is not blank
// or a comment is counted once.
type PublishSummary struct {
	Published  int // acknowledged by the stream as new
	Duplicates int // dropped by the stream's duplicate window (same id)
	Invalid    int // refused before publishing (the check, or too long)
	Failed     int // published, but not acknowledged
	// Errors has one entry per invalid or failed line, in input order
	// for the invalid ones: "line N: ...".
	Errors []string
	// FirstInvalid is the message of the first invalid line ("" when
	// none).
	FirstInvalid string
}

// invalid records an invalid line.
func (s *PublishSummary) invalid(msg string) {
	s.Invalid++
	s.Errors = append(s.Errors, msg)
	if s.FirstInvalid == "" {
		s.FirstInvalid = msg
	}
}

// A Check derives the subject and message id of one input line, or says
// why the line cannot be published.
type Check func(body []byte, prefix string) (subject, id string, err error)

// CheckEvent publishes valid events only: a line that is not one is
// reported and skipped.
func CheckEvent(body []byte, prefix string) (string, string, error) {
	if len(body) > event.MaxEventBytes {
		return "", "", &TooLongError{Size: int64(len(body)), Limit: event.MaxEventBytes, What: "an event"}
	}
	ev, err := event.DecodeEvent(body, "", prefix)
	if err != nil {
		return "", "", err
	}
	return event.Subject(prefix, ev.Ref()), ev.ID, nil
}

// CheckSubject publishes lines as they are (to exercise the dead-letter
// path), as long as their subject can be derived.
func CheckSubject(body []byte, prefix string) (string, string, error) {
	var probe struct {
		ID        string `json:"id"`
		AccountID string `json:"account_id"`
		Namespace string `json:"dispatch_namespace"`
		Script    string `json:"script"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.AccountID == "" || probe.Script == "" {
		return "", "", errors.New("cannot derive a subject (need account_id and script)")
	}
	ref := cfapi.ScriptRef{AccountID: probe.AccountID, Namespace: probe.Namespace, Script: probe.Script}
	return event.Subject(prefix, ref), probe.ID, nil
}

// Publish reads events as JSON lines (blank lines and lines starting with
// '#' are skipped) and publishes each line that check accepts to its
// subject, with Nats-Msg-Id set to the event id. A line may be as long as
// one NATS message of the server may carry (its max_payload); a longer
// one, like a line check refuses, is counted invalid and the lines after
// it are still published. Every message published is waited for and
// counted, also when reading stops on an error.
func Publish(ctx context.Context, js jetstream.JetStream, prefix string, r io.Reader, check Check) (PublishSummary, error) {
	var sum PublishSummary
	limit, what := lineLimit(js)
	lr := NewLineReader(r, limit, what)
	const window = 256
	var futures []pubFuture
	flush := func() error {
		for _, f := range futures {
			select {
			case ack := <-f.f.Ok():
				if ack.Duplicate {
					sum.Duplicates++
				} else {
					sum.Published++
				}
			case err := <-f.f.Err():
				sum.Failed++
				sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: publishing: %v", f.line, err))
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for {
		raw, line, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var tooLong *TooLongError
		if errors.As(err, &tooLong) {
			sum.invalid(err.Error())
			continue
		}
		if err != nil {
			return sum, errors.Join(err, flush())
		}
		data := bytes.TrimSpace(raw)
		if len(data) == 0 || data[0] == '#' {
			continue
		}
		body := append([]byte(nil), data...)
		subject, id, err := check(body, prefix)
		if err != nil {
			if errors.As(err, &tooLong) && tooLong.Line == 0 {
				tooLong.Line = line
				sum.invalid(tooLong.Error())
			} else {
				sum.invalid(fmt.Sprintf("line %d: %v", line, err))
			}
			continue
		}
		m := nats.NewMsg(subject)
		m.Data = body
		if id != "" {
			m.Header.Set(jetstream.MsgIDHeader, id)
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			sum.Failed++
			sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: publishing: %v", line, err))
			continue
		}
		futures = append(futures, pubFuture{f: f, line: line})
		if len(futures) >= window {
			if err := flush(); err != nil {
				return sum, err
			}
		}
	}
	return sum, flush()
}

// lineLimit is the longest line Publish reads: the max_payload of the
// connection's server, else an event's limit.
func lineLimit(js jetstream.JetStream) (int, string) {
	if nc := js.Conn(); nc != nil && nc.MaxPayload() > 0 {
		return int(nc.MaxPayload()), "a NATS message on this server (max_payload)"
	}
	return event.MaxEventBytes, "an event"
}

type pubFuture struct {
	f    jetstream.PubAckFuture
	line int
}
