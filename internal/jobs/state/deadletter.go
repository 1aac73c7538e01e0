package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// DeadLetter is the record published to the dead-letter stream
// (docs/events.md, "Dead-letter record"). event.Event holds the original event with
// every write-only value replaced by "<redacted>"; when the body was not
// JSON at all it is null and only its size and digest are kept, since it
// could hold a secret that cannot be located.
type DeadLetter struct {
	Event      json.RawMessage `json:"event"`
	Reason     event.Reason    `json:"reason"`
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

// NewDeadLetter builds the record of one event body. The body is kept with
// its write-only values redacted, or only as its size and digest when it
// is over a bound of event.CheckBounds (checked first, so that nothing
// walks or copies such a body) or not JSON (it could hold a secret that
// cannot be located).
func NewDeadLetter(body []byte, subject, stream string, seq, deliveries uint64, reason event.Reason, cause error) DeadLetter {
	rec := DeadLetter{
		Reason:    reason,
		Error:     cause.Error(),
		Attempts:  int(deliveries),
		FailedAt:  time.Now().UTC(),
		Subject:   subject,
		Stream:    stream,
		StreamSeq: seq,
	}
	if body == nil || event.CheckBounds(body) != nil {
		rec.digestOnly(body)
		return rec
	}
	if red, ok := wire.RedactJSON(body); ok {
		rec.Event = red
		var probe struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(red, &probe) == nil && len(probe.ID) <= 256 {
			rec.EventID = probe.ID
		}
	} else {
		rec.digestOnly(body)
	}
	return rec
}

// digestOnly keeps of body only its size and SHA-256.
func (d *DeadLetter) digestOnly(body []byte) {
	d.Event = json.RawMessage("null")
	sum := sha256.Sum256(body)
	d.BodyBytes = len(body)
	d.BodySHA256 = hex.EncodeToString(sum[:])
}

// shrink keeps only what identifies the event: its digest, size and
// stream sequence, and the first KiB of the error.
func (d *DeadLetter) Shrink() {
	if len(d.Event) > 0 && string(d.Event) != "null" {
		sum := sha256.Sum256(d.Event)
		d.BodyBytes = len(d.Event)
		d.BodySHA256 = hex.EncodeToString(sum[:])
	}
	d.Event = json.RawMessage("null")
	d.Error = cfapi.Truncate(d.Error, 1024)
}

// DLQSuffix maps an event subject (<prefix>.<account>.<namespace>.<script>)
// or a backfill item subject (<backfill prefix>.<run>.<account>.<namespace>.<script>)
// to the dead-letter subject suffix <account>.<namespace>.<script>;
// subjects of another shape go under "_invalid".
func DLQSuffix(subject, prefix, backfillPrefix string) string {
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
