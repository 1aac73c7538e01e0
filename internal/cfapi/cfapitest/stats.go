package cfapitest

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// Stats is a snapshot of what the server has seen since it started or
// since ResetStats.
type Stats struct {
	// Requests counts requests by endpoint name and HTTP status. Status 0
	// means no answer: the connection was reset or the client went away.
	Requests map[string]map[int]int
	// Total counts every request.
	Total int
	// Reads counts requests to read endpoints (get_*, list_*).
	Reads int
	// Writes counts attempts at write endpoints (patch_settings,
	// put_script, delete_script, post_version, post_deployment, create_namespace, the
	// secret writes, patch_script_settings, post_script_subdomain and
	// create_worker_version), whatever their answer.
	Writes int
	// Throttled counts 429 answers, whether from the rate limit or injected.
	Throttled int
	// RateLimited counts 429 answers of the rate limit itself (not
	// injected ones), and RateBlocks the times a sliding-window limit was
	// exceeded and blocked the token.
	RateLimited int
	RateBlocks  int
	// Injected counts requests failed by FailNext or the random faults.
	Injected int
	// OverlappingWrites counts script writes that started while another
	// write to the same script was in flight.
	OverlappingWrites int

	arrivals []time.Time
}

// MaxRequestsInWindow returns the largest number of requests that arrived
// within any interval of length d (sliding window over arrival times; every
// request counts, 429s included).
func (st Stats) MaxRequestsInWindow(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	best, j := 0, 0
	for i, t := range st.arrivals {
		for t.Sub(st.arrivals[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// Arrivals returns the arrival time of every recorded request, in order.
func (st Stats) Arrivals() []time.Time { return slices.Clone(st.arrivals) }

// Request is one entry of the request log.
type Request struct {
	Time     time.Time
	Method   string
	Path     string // unescaped URL path, prefix included
	Query    string
	Endpoint string
	Status   int // 0 when no answer was sent
	// Account, Namespace and Script are the path parameters ("" when absent).
	Account, Namespace, Script string
}

// maxLog bounds the request log and the arrival times kept for Stats; the
// oldest half is dropped when it is reached.
const maxLog = 1 << 20

type statsRecorder struct {
	mu       sync.Mutex
	st       Stats
	log      []Request
	inflight map[scriptKey]int
}

func (r *statsRecorder) init() {
	r.st = Stats{Requests: map[string]map[int]int{}}
	r.log = nil
	if r.inflight == nil {
		r.inflight = map[scriptKey]int{}
	}
}

// begin counts a request arriving at t for rt (nil: no route).
func (r *statsRecorder) begin(t time.Time, rt *route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Total++
	switch {
	case rt == nil: // no route: neither a read nor a write
	case rt.access == reads:
		r.st.Reads++
	default:
		r.st.Writes++
	}
	if len(r.st.arrivals) >= maxLog {
		r.st.arrivals = slices.Delete(r.st.arrivals, 0, maxLog/2)
	}
	// Keep arrivals sorted even if concurrent requests record out of order.
	i := len(r.st.arrivals)
	for i > 0 && r.st.arrivals[i-1].After(t) {
		i--
	}
	r.st.arrivals = slices.Insert(r.st.arrivals, i, t)
}

func (r *statsRecorder) end(req Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byStatus := r.st.Requests[req.Endpoint]
	if byStatus == nil {
		byStatus = map[int]int{}
		r.st.Requests[req.Endpoint] = byStatus
	}
	byStatus[req.Status]++
	if req.Status == http.StatusTooManyRequests {
		r.st.Throttled++
	}
	if len(r.log) >= maxLog {
		r.log = slices.Delete(r.log, 0, maxLog/2)
	}
	r.log = append(r.log, req)
}

func (r *statsRecorder) rateLimited(blocked bool) {
	r.mu.Lock()
	r.st.RateLimited++
	if blocked {
		r.st.RateBlocks++
	}
	r.mu.Unlock()
}

func (r *statsRecorder) injected() {
	r.mu.Lock()
	r.st.Injected++
	r.mu.Unlock()
}

// beginWrite marks a write to k in flight and reports whether another one
// already was.
func (r *statsRecorder) beginWrite(k scriptKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	overlap := r.inflight[k] > 0
	if overlap {
		r.st.OverlappingWrites++
	}
	r.inflight[k]++
	return overlap
}

func (r *statsRecorder) endWrite(k scriptKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight[k]--; r.inflight[k] <= 0 {
		delete(r.inflight, k)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	st := s.stats.st
	st.Requests = make(map[string]map[int]int, len(s.stats.st.Requests))
	for ep, byStatus := range s.stats.st.Requests {
		m := make(map[int]int, len(byStatus))
		for code, n := range byStatus {
			m[code] = n
		}
		st.Requests[ep] = m
	}
	st.arrivals = slices.Clone(s.stats.st.arrivals)
	return st
}

// ResetStats clears the counters and the request log. Writes in flight
// stay tracked.
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	s.stats.init()
	s.stats.mu.Unlock()
}

// InFlightWrites returns the number of script writes in flight.
func (s *Server) InFlightWrites() int {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	n := 0
	for _, c := range s.stats.inflight {
		n += c
	}
	return n
}

// RequestLog returns the finished requests in the order they finished.
func (s *Server) RequestLog() []Request {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return slices.Clone(s.stats.log)
}
