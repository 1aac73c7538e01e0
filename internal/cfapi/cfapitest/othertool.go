package cfapitest

import (
	"sync"
	"time"
)

// otherTool plays the other tools that share the user's budget (wrangler,
// terraform, CI, the dashboard): requests counted by the rate limit but
// made by nobody the test controls, at a steady rate that can change.
type otherTool struct {
	mu       sync.Mutex
	rate     float64       // requests per second; 0 stops the loop
	changed  chan struct{} // closed and replaced when rate changes
	running  bool
	accepted int
	refused  int // answered 429 (over the limit or blocked)
	blocks   int // refused requests that started a block (sliding mode)
}

// OtherToolStats counts the requests of the other tool.
type OtherToolStats struct {
	// Accepted requests were counted within the limit; RateLimited were
	// answered 429.
	Accepted, RateLimited int
	// Blocks counts the requests of the other tool that found the sliding
	// window full and started a block (Stats.RateBlocks counts those of
	// the reconciler): which side's request came first to a full window,
	// not which side filled it.
	Blocks int
}

// SetOtherToolRate makes another tool spend perSecond requests per second
// of the token's rate limit outside the reconciler (0 stops it). Its
// requests count in the limit's window like any other, a 429 blocks the
// token for everyone in sliding mode, and they appear in neither Stats nor
// RequestLog (OtherToolStats counts them). The requests are paced in real
// time, evenly.
func (s *Server) SetOtherToolRate(perSecond float64) {
	o := &s.rate.other
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rate = max(perSecond, 0)
	if o.changed != nil {
		close(o.changed)
	}
	o.changed = make(chan struct{})
	if o.rate > 0 && !o.running {
		o.running = true
		go s.rate.runOtherTool()
	}
}

// OtherToolStats returns what the other tool's requests got.
func (s *Server) OtherToolStats() OtherToolStats {
	o := &s.rate.other
	o.mu.Lock()
	defer o.mu.Unlock()
	return OtherToolStats{Accepted: o.accepted, RateLimited: o.refused, Blocks: o.blocks}
}

// runOtherTool makes the other tool's requests until its rate is 0.
func (rl *rateLimit) runOtherTool() {
	o := &rl.other
	next := time.Now()
	for {
		o.mu.Lock()
		rate, changed := o.rate, o.changed
		if rate <= 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		next = next.Add(time.Duration(float64(time.Second) / rate))
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-changed:
				t.Stop()
				next = time.Now()
				continue
			}
		} else if d < -time.Second {
			next = time.Now() // fell far behind (a stalled machine): no catch-up burst
		}
		v := rl.lim.take(rl.now())
		o.mu.Lock()
		if v.ok {
			o.accepted++
		} else {
			o.refused++
		}
		if v.blocked {
			o.blocks++
		}
		o.mu.Unlock()
	}
}
