package tools

import (
	"bufio"
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

// PublishSummary counts what Publish did.
type PublishSummary struct {
	Published  int
	Duplicates int // dropped by the stream's duplicate window (same id)
	Invalid    int
	Errors     []string // one per invalid or failed line: "line N: ..."
}

// A Check derives the subject and message id of one input line, or says
// why the line cannot be published.
type Check func(body []byte, prefix string) (subject, id string, err error)

// CheckEvent publishes valid events only: a line that is not one is
// reported and skipped.
func CheckEvent(body []byte, prefix string) (string, string, error) {
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
// subject, with Nats-Msg-Id set to the event id.
func Publish(ctx context.Context, js jetstream.JetStream, prefix string, r io.Reader, check Check) (PublishSummary, error) {
	var sum PublishSummary
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), event.MaxEventBytes+64*1024)
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
				sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: publishing: %v", f.line, err))
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		data := bytes.TrimSpace(sc.Bytes())
		if len(data) == 0 || data[0] == '#' {
			continue
		}
		body := append([]byte(nil), data...)
		subject, id, err := check(body, prefix)
		if err != nil {
			sum.Invalid++
			sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		m := nats.NewMsg(subject)
		m.Data = body
		if id != "" {
			m.Header.Set(jetstream.MsgIDHeader, id)
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
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
	if err := sc.Err(); err != nil {
		return sum, fmt.Errorf("line %d: reading input: %w", line+1, err)
	}
	return sum, flush()
}

type pubFuture struct {
	f    jetstream.PubAckFuture
	line int
}
