package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// PublishSummary counts what Publish did.
type PublishSummary struct {
	Published  int
	Duplicates int // dropped by the stream's duplicate window (same id)
	Invalid    int
	Errors     []string // one per invalid or failed line: "line N: ..."
}

// Publish reads events as JSON lines (blank lines and lines starting with
// '#' are skipped) and publishes each to its subject with Nats-Msg-Id set to
// the event id. With validate, a line that is not a valid event is reported
// and skipped; without it, lines are sent as they are (to exercise the
// dead-letter path), as long as their subject can be derived.
func Publish(ctx context.Context, js jetstream.JetStream, prefix string, r io.Reader, validate bool) (PublishSummary, error) {
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
		var subject, id string
		if validate {
			ev, err := event.DecodeEvent(body, "", prefix)
			if err != nil {
				sum.Invalid++
				sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: %v", line, err))
				continue
			}
			subject, id = event.Subject(prefix, ev.Ref()), ev.ID
		} else {
			var probe struct {
				ID        string `json:"id"`
				AccountID string `json:"account_id"`
				Namespace string `json:"dispatch_namespace"`
				Script    string `json:"script"`
			}
			if err := json.Unmarshal(body, &probe); err != nil || probe.AccountID == "" || probe.Script == "" {
				sum.Invalid++
				sum.Errors = append(sum.Errors, fmt.Sprintf("line %d: cannot derive a subject (need account_id and script)", line))
				continue
			}
			ns := probe.Namespace
			if ns == "" {
				ns = event.NoNamespace
			}
			subject, id = prefix+"."+probe.AccountID+"."+ns+"."+probe.Script, probe.ID
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
