package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// Status is the verdict of one check.
type Status string

// The verdicts.
const (
	StatusOK   Status = "ok"
	StatusFail Status = "FAIL"
	StatusSkip Status = "skip"
)

// ProbePrefix starts the name of the temporary script of the write probe.
const ProbePrefix = "reconciler-doctor-"

// DefaultCleanupTimeout bounds the deletion of the probe script.
const DefaultCleanupTimeout = 30 * time.Second

// Outcome is what a check found: its verdict, what it saw and, when the
// verdict calls for it, what to do.
type Outcome struct {
	Status Status
	Seen   string
	Do     string
}

// Check is one row of the table: a name, what it proves when it holds and
// the function that runs it. Write checks run only with
// Options.WriteProbe.
type Check struct {
	Name   string
	Proves string
	Write  bool
	Run    func(ctx context.Context, s *session) Outcome
}

// Result is the report of one check.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Proves string `json:"proves"`
	Seen   string `json:"seen"`
	Do     string `json:"do,omitempty"`
}

// Report is the outcome of a Run.
type Report struct {
	AccountID  string `json:"account_id"`
	Namespace  string `json:"dispatch_namespace,omitempty"`
	WriteProbe bool   `json:"write_probe"`
	// ProbeScript is the temporary script's name ("" without the write
	// probe).
	ProbeScript string   `json:"probe_script,omitempty"`
	Results     []Result `json:"checks"`
	// Requests is the number of API requests (attempts) the run made.
	Requests int64 `json:"requests"`
	// Interrupted says that ctx ended before every check ran.
	Interrupted bool `json:"interrupted,omitempty"`
	OK          bool `json:"ok"`
}

// Failed returns the number of checks that failed.
func (r *Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Status == StatusFail {
			n++
		}
	}
	return n
}

// Result returns the result of the named check.
func (r *Report) Result(name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Check == name {
			return res, true
		}
	}
	return Result{}, false
}

// Options configure a Run.
type Options struct {
	// Client is the API client; its hooks should come from Recorder.
	Client *cfapi.Client
	// Recorder counts the client's requests and keeps the rate-limit
	// headers of its answers. Required.
	Recorder *Recorder
	// AccountID is the account checked; Namespace ("" = none) the
	// dispatch namespace. Without a namespace the listing checks skip and
	// the write probe uses an ordinary Worker.
	AccountID string
	Namespace string
	// TokenAuth says the client authenticates with an API token (not the
	// legacy email and key), so the token can be verified.
	TokenAuth bool
	// WriteProbe allows the checks that create, change and delete the
	// temporary script.
	WriteProbe bool
	// KVNamespaceID, when set, is an existing KV namespace the probe
	// script binds, so the settings check covers a KV binding too (the API
	// refuses a KV binding to a namespace that does not exist).
	KVNamespaceID string
	// CleanupTimeout bounds the deletion of the probe script
	// (DefaultCleanupTimeout when zero).
	CleanupTimeout time.Duration
	// Checks replaces the table (Checks()) when non-nil.
	Checks []Check
}

// Run runs the checks in order and returns the report. Each check sees
// what the previous ones found (a failed upload skips the checks that need
// the script). With the write probe, the probe script is deleted at the
// end whatever happened, and the deletion is the last result.
func Run(ctx context.Context, opts Options) *Report {
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = DefaultCleanupTimeout
	}
	checks := opts.Checks
	if checks == nil {
		checks = Checks()
	}
	s := newSession(opts)
	rep := &Report{AccountID: opts.AccountID, Namespace: opts.Namespace, WriteProbe: opts.WriteProbe}
	if opts.WriteProbe {
		rep.ProbeScript = s.ref.Script
	}
	start := opts.Recorder.Requests()
	for _, c := range checks {
		var o Outcome
		switch {
		case ctx.Err() != nil:
			rep.Interrupted = true
			o = Outcome{Status: StatusSkip, Seen: "interrupted before this check ran"}
		case c.Write && !opts.WriteProbe:
			o = Outcome{Status: StatusSkip, Seen: "read-only run", Do: "pass --write-probe to check this on a temporary script"}
		default:
			o = c.Run(ctx, s)
			if ctx.Err() != nil && o.Status != StatusOK {
				rep.Interrupted = true
				o = Outcome{Status: StatusSkip, Seen: "interrupted while this check ran"}
			}
		}
		rep.Results = append(rep.Results, Result{Check: c.Name, Status: o.Status, Proves: c.Proves, Seen: o.Seen, Do: o.Do})
	}
	if opts.WriteProbe {
		o := s.cleanup(ctx)
		rep.Results = append(rep.Results, Result{Check: "cleanup", Status: o.Status,
			Proves: "the temporary script " + s.ref.Script + " is gone", Seen: o.Seen, Do: o.Do})
	}
	rep.Requests = opts.Recorder.Requests() - start
	rep.OK = rep.Failed() == 0 && !rep.Interrupted
	return rep
}

// session is what the checks of one run share.
type session struct {
	opts Options
	api  *cfapi.Client
	ref  cfapi.ScriptRef // the probe script

	// list is the first listing's answer (script-list), for list-cursor.
	listRan    bool
	listPage   []cfapi.ScriptInfo
	listCursor string
	listErr    error

	// The probe script: whether an upload was attempted, whether it
	// succeeded, and the values of its bindings.
	attempted bool
	created   bool
	plain     string
	secret    string
}

func newSession(opts Options) *session {
	return &session{opts: opts, api: opts.Client,
		ref:   cfapi.ScriptRef{AccountID: opts.AccountID, Namespace: opts.Namespace, Script: ProbePrefix + randomHex(4)},
		plain: "doctor-" + randomHex(4), secret: randomHex(16)}
}

// cleanup deletes the probe script when an upload was attempted, on a
// context that ctx's cancellation does not end.
func (s *session) cleanup(ctx context.Context) Outcome {
	if !s.attempted {
		return Outcome{Status: StatusSkip, Seen: "no script was created"}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.CleanupTimeout)
	defer cancel()
	err := s.api.DeleteScript(cctx, s.ref)
	switch {
	case err == nil:
		return Outcome{Status: StatusOK, Seen: "deleted " + s.ref.String()}
	case errors.Is(err, cfapi.ErrNotFound) && !s.created:
		return Outcome{Status: StatusOK, Seen: "the upload had not created it"}
	}
	return Outcome{Status: StatusFail, Seen: "deleting " + s.ref.String() + ": " + errText(err),
		Do: "delete the script " + s.ref.Script + " by hand (dashboard, or `wrangler delete`)"}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errText is an error for a report line: the client's errors hold the
// method, path, status, codes and messages, never credentials.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Recorder observes a client through its hooks: the number of requests
// and the rate-limit headers of the answers. It is safe for concurrent
// use.
type Recorder struct {
	requests atomic.Int64

	mu       sync.Mutex
	answers  int // attempts that got an HTTP answer
	views    int // answers with a usable Ratelimit item
	policies int // ... and a usable Ratelimit-Policy
	last     ratelimit.RateLimitView
	ignored  []string
}

// Hooks returns next with the recorder's observers added in front.
func (r *Recorder) Hooks(next cfapi.Hooks) cfapi.Hooks {
	h := next
	h.Request = func(info cfapi.RequestInfo) {
		r.requests.Add(1)
		if info.Status != 0 {
			r.mu.Lock()
			r.answers++
			r.mu.Unlock()
		}
		if next.Request != nil {
			next.Request(info)
		}
	}
	h.RateLimitSeen = func(v ratelimit.RateLimitView) {
		r.mu.Lock()
		r.views++
		if v.HasPolicy() {
			r.policies++
		}
		r.last = v
		r.mu.Unlock()
		if next.RateLimitSeen != nil {
			next.RateLimitSeen(v)
		}
	}
	h.RateLimitIgnored = func(endpoint string, errs []error) {
		r.mu.Lock()
		for _, err := range errs {
			if len(r.ignored) < 4 {
				r.ignored = append(r.ignored, endpoint+": "+err.Error())
			}
		}
		r.mu.Unlock()
		if next.RateLimitIgnored != nil {
			next.RateLimitIgnored(endpoint, errs)
		}
	}
	return h
}

// Requests returns the number of request attempts so far.
func (r *Recorder) Requests() int64 { return r.requests.Load() }

// rateLimit returns what the answers said about the rate limit.
func (r *Recorder) rateLimit() (answers, views, policies int, last ratelimit.RateLimitView, ignored []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers, r.views, r.policies, r.last, append([]string(nil), r.ignored...)
}

// WriteText prints the report line by line: the verdict, the check and
// what was seen, then what to do, and a summary with the request count.
func (r *Report) WriteText(w io.Writer) error {
	mode := "read-only"
	if r.WriteProbe {
		mode = "with --write-probe (temporary script " + r.ProbeScript + ")"
	}
	where := "account " + r.AccountID
	if r.Namespace != "" {
		where += ", dispatch namespace " + r.Namespace
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reconciler doctor: %s, %s\n", where, mode)
	counts := map[Status]int{}
	for _, res := range r.Results {
		counts[res.Status]++
		fmt.Fprintf(&b, "%-4s  %-21s %s\n", res.Status, res.Check, res.Seen)
		if res.Do != "" {
			fmt.Fprintf(&b, "      %-21s do: %s\n", "", res.Do)
		}
	}
	verdict := "every check holds"
	switch {
	case r.Interrupted:
		verdict = "interrupted"
	case counts[StatusFail] > 0:
		verdict = "some checks FAIL: see do: above"
	}
	fmt.Fprintf(&b, "%d ok, %d FAIL, %d skip; %d API requests; %s\n",
		counts[StatusOK], counts[StatusFail], counts[StatusSkip], r.Requests, verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
