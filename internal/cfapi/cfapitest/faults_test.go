package cfapitest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRateLimitFixedWindow(t *testing.T) {
	clock := newFakeClock()
	s, a := newAPI(t, Options{RateLimit: 3, RateWindow: 10 * time.Second, Now: clock.Now})
	seedScript(t, s, "", "w", plainGr)
	path := scriptPath("", "w") + "/settings"

	for i := range 3 {
		r := a.get(path)
		expect(t, r, http.StatusOK, 0)
		if got, want := r.Header.Get("Ratelimit"), fmt.Sprintf(`"default";r=%d;t=10`, 2-i); got != want {
			t.Errorf("Ratelimit = %q, want %q", got, want)
		}
		if got := r.Header.Get("Ratelimit-Policy"); got != `"default";q=3;w=10` {
			t.Errorf("Ratelimit-Policy = %q", got)
		}
		if r.Header.Get("Retry-After") != "" {
			t.Error("Retry-After before the limit")
		}
	}
	clock.Advance(2500 * time.Millisecond)
	r := a.get(path)
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if r.Env.Errors[0].Message != "Please wait and consider throttling your request speed" {
		t.Errorf("message %q", r.Env.Errors[0].Message)
	}
	if got := r.Header.Get("Retry-After"); got != "8" { // 7.5 s rounded up
		t.Errorf("Retry-After = %q, want 8", got)
	}
	// Blocked for every endpoint until the window ends, writes included.
	clock.Advance(7 * time.Second)
	r = a.do(http.MethodPatch, path, nil, "")
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if got := r.Header.Get("Retry-After"); got != "1" { // 0.5 s rounds up to 1
		t.Errorf("Retry-After = %q, want 1", got)
	}
	clock.Advance(500 * time.Millisecond)
	expect(t, a.get(path), http.StatusOK, 0)

	st := s.Stats()
	if st.Throttled != 2 || st.RateLimited != 2 || st.RateBlocks != 0 || st.Requests[EndpointGetSettings][http.StatusTooManyRequests] != 1 ||
		st.Requests[EndpointPatchSettings][http.StatusTooManyRequests] != 1 {
		t.Errorf("stats %+v", st)
	}
	if got := st.MaxRequestsInWindow(10 * time.Second); got != 5 {
		// 3 at t0, 1 at t0+2.5s, 1 at t0+9.5s; the last one at t0+10s is outside.
		t.Errorf("MaxRequestsInWindow(10s) = %d, want 5", got)
	}
	if got := st.MaxRequestsInWindow(time.Second); got != 3 {
		t.Errorf("MaxRequestsInWindow(1s) = %d, want 3", got)
	}

	s.SetRateLimit(0, 0)
	for range 5 {
		expect(t, a.get(path), http.StatusOK, 0)
	}
}

// TestRateLimitSlidingWindow: in sliding mode no interval of the window's
// length holds more than the limit of accepted requests, and the request
// that would exceed it blocks the token for the block period: every
// request, of any endpoint, is then refused with Retry-After.
func TestRateLimitSlidingWindow(t *testing.T) {
	clock := newFakeClock()
	s, a := newAPI(t, Options{RateLimit: 3, RateWindow: 10 * time.Second, RateSliding: true, RateBlock: 4 * time.Second, Now: clock.Now})
	seedScript(t, s, "", "w", plainGr)
	path := scriptPath("", "w") + "/settings"
	body, ct := settingsPatch(t, map[string]any{"logpush": true})
	step := func(advance time.Duration, wantStatus int, wantRetryAfter string) *apiResponse {
		t.Helper()
		clock.Advance(advance)
		r := a.get(path)
		if wantStatus == http.StatusOK {
			expect(t, r, http.StatusOK, 0)
		} else {
			expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
		}
		if got := r.Header.Get("Retry-After"); got != wantRetryAfter {
			t.Errorf("Retry-After = %q, want %q", got, wantRetryAfter)
		}
		return r
	}
	r := step(0, http.StatusOK, "")
	if got := r.Header.Get("Ratelimit"); got != `"default";r=2;t=10` {
		t.Errorf("Ratelimit = %q", got)
	}
	if got := r.Header.Get("Ratelimit-Policy"); got != `"default";q=3;w=10` {
		t.Errorf("Ratelimit-Policy = %q", got)
	}
	step(9500*time.Millisecond, http.StatusOK, "")                    // t = 9.5
	r = step(0, http.StatusOK, "")                                    // t = 9.5, the third
	if got := r.Header.Get("Ratelimit"); got != `"default";r=0;t=1` { // t=0 leaves in 0.5 s
		t.Errorf("Ratelimit = %q", got)
	}
	// A fixed window would start afresh at t = 10; the sliding one still
	// holds the two requests of t = 9.5 and admits one more.
	step(700*time.Millisecond, http.StatusOK, "") // t = 10.2: (0.2, 10.2] held 2
	// The fourth within (0.3, 10.3] blocks the token for 4 s.
	step(100*time.Millisecond, http.StatusTooManyRequests, "4")
	clock.Advance(3 * time.Second) // t = 13.3: blocked, writes too
	expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusTooManyRequests, CodeRateLimited)
	step(900*time.Millisecond, http.StatusTooManyRequests, "1") // t = 14.2, 0.1 s left
	// t = 14.3: the block is over and (4.3, 14.3] holds the three of
	// t = 9.5 and 10.2 ... which is the limit, so this one blocks again.
	step(100*time.Millisecond, http.StatusTooManyRequests, "4")
	clock.Advance(10 * time.Second) // t = 24.3: everything has left
	for range 3 {
		step(0, http.StatusOK, "")
	}
	st := s.Stats()
	if st.RateLimited != 4 || st.RateBlocks != 2 || st.Throttled != 4 {
		t.Errorf("RateLimited %d, RateBlocks %d, Throttled %d; want 4, 2, 4", st.RateLimited, st.RateBlocks, st.Throttled)
	}
	// The accepted requests never exceed 3 in any 10 s: the accepted ones
	// are at 0, 9.5, 9.5, 10.2, 24.3 ×3.
	var accepted []time.Time
	for _, req := range s.RequestLog() {
		if req.Status == http.StatusOK {
			accepted = append(accepted, req.Time)
		}
	}
	if got := (Stats{arrivals: accepted}).MaxRequestsInWindow(10 * time.Second); got != 3 {
		t.Errorf("accepted requests in the busiest 10 s: %d, want 3", got)
	}
	// Injected 429s count as Throttled, not RateLimited.
	s.SetRateLimit(0, 0)
	s.FailNext(1, http.StatusTooManyRequests, CodeRateLimited, time.Second)
	expect(t, a.get(path), http.StatusTooManyRequests, CodeRateLimited)
	if st := s.Stats(); st.Throttled != 5 || st.RateLimited != 4 {
		t.Errorf("after an injected 429: Throttled %d, RateLimited %d; want 5, 4", st.Throttled, st.RateLimited)
	}
	// SetSlidingRateLimit turns it on again with a fresh history.
	s.SetSlidingRateLimit(1, time.Minute, 0)
	step(0, http.StatusOK, "")
	step(0, http.StatusTooManyRequests, "60") // block defaults to the window
}

func TestRateLimitRealClock(t *testing.T) {
	s, a := newAPI(t, Options{RateLimit: 2, RateWindow: time.Second})
	seedScript(t, s, "", "w", plainGr)
	path := scriptPath("", "w") + "/settings"
	// Send until refused; the window may roll over on a slow machine, so
	// the test only relies on a refusal happening and ending.
	var r *apiResponse
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("never throttled")
		}
		if r = a.get(path); r.Status == http.StatusTooManyRequests {
			break
		}
	}
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra != 1 {
		t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	eventually(t, 10*time.Second, func() bool { return a.get(path).Status == http.StatusOK })
}

func TestFailNext(t *testing.T) {
	s, a := newAPI(t, Options{})
	seedScript(t, s, "", "w", plainGr)
	path := scriptPath("", "w") + "/settings"

	s.FailNext(2, http.StatusServiceUnavailable, CodeUnknown, 0, EndpointPatchSettings)
	s.FailNext(1, http.StatusTooManyRequests, CodeRateLimited, 1500*time.Millisecond)
	// The first GET does not match the PATCH rule, so the second rule takes it.
	r := a.get(path)
	expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
	if r.Header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	expect(t, a.get(path), http.StatusOK, 0)
	body, ct := settingsPatch(t, map[string]any{"logpush": true})
	for range 2 {
		r := a.do(http.MethodPatch, path, body, ct)
		expect(t, r, http.StatusServiceUnavailable, CodeUnknown)
		if r.Env.Errors[0].Message != "workers.api.error.unknown" {
			t.Errorf("message %q", r.Env.Errors[0].Message)
		}
	}
	expect(t, a.do(http.MethodPatch, path, body, ct), http.StatusOK, 0)

	// Status 0 resets the connection.
	s.FailNext(1, 0, 0, 0)
	a.fresh = true // Go's transport retries a GET reset on a reused connection
	if _, err := a.send(http.MethodGet, path, nil, ""); err == nil {
		t.Error("reset request got an answer")
	}
	a.fresh = false
	expect(t, a.get(path), http.StatusOK, 0)

	eventually(t, 10*time.Second, func() bool { return s.Stats().Total == len(s.RequestLog()) })
	st := s.Stats()
	want := map[string]map[int]int{
		EndpointGetSettings:   {429: 1, 200: 2, 0: 1},
		EndpointPatchSettings: {503: 2, 200: 1},
	}
	if diff := cmp.Diff(want, st.Requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if st.Total != 7 || st.Reads != 4 || st.Writes != 3 || st.Throttled != 1 || st.Injected != 4 {
		t.Errorf("stats %+v", st)
	}
	log := s.RequestLog()
	if len(log) != 7 || log[0].Endpoint != EndpointGetSettings || log[0].Status != 429 || log[0].Script != "w" ||
		log[0].Account != acct || log[0].Method != http.MethodGet {
		t.Errorf("log %+v", log)
	}
	s.ResetStats()
	if st := s.Stats(); st.Total != 0 || len(st.Requests) != 0 || len(s.RequestLog()) != 0 {
		t.Errorf("after reset %+v", st)
	}
}

func TestRandomFaults(t *testing.T) {
	t.Run("fail", func(t *testing.T) {
		s, a := newAPI(t, Options{Faults: Faults{FailRate: 1}})
		seen := map[int]bool{}
		for range 30 {
			r := a.get("/anything")
			if r.code() != CodeUnknown {
				t.Fatalf("HTTP %d code %d", r.Status, r.code())
			}
			seen[r.Status] = true
		}
		for status := range seen {
			if status != 500 && status != 502 && status != 503 {
				t.Errorf("status %d", status)
			}
		}
		if len(seen) < 2 {
			t.Errorf("only statuses %v", seen)
		}
		if s.Stats().Injected != 30 {
			t.Errorf("injected %d", s.Stats().Injected)
		}
		// Turned off at runtime.
		s.SetFaults(Faults{})
		expect(t, a.get("/anything"), http.StatusNotFound, CodeNoRoute)
	})
	t.Run("throttle", func(t *testing.T) {
		s, a := newAPI(t, Options{Faults: Faults{ThrottleRate: 1}})
		r := a.get("/anything")
		expect(t, r, http.StatusTooManyRequests, CodeRateLimited)
		if r.Header.Get("Retry-After") != "1" || s.Stats().Throttled != 1 {
			t.Errorf("Retry-After %q, stats %+v", r.Header.Get("Retry-After"), s.Stats())
		}
	})
	t.Run("reset", func(t *testing.T) {
		s, a := newAPI(t, Options{Faults: Faults{ResetRate: 1}})
		a.fresh = true
		if _, err := a.send(http.MethodGet, "/anything", nil, ""); err == nil {
			t.Error("got an answer")
		}
		// The handler records the request after closing the connection.
		eventually(t, 10*time.Second, func() bool { return s.Stats().Requests[EndpointUnknown][0] == 1 })
	})
	t.Run("seeded", func(t *testing.T) {
		run := func() []int {
			s := New(Options{Seed: 42, Faults: Faults{FailRate: 0.3, ThrottleRate: 0.2}})
			var out []int
			for range 50 {
				rec := newRecorder()
				s.ServeHTTP(rec, httpRequest(t, http.MethodGet, "/client/v4/nope"))
				out = append(out, rec.Code)
			}
			return out
		}
		first, second := run(), run()
		if diff := cmp.Diff(first, second); diff != "" {
			t.Errorf("same seed, different faults:\n%s", diff)
		}
		kinds := map[int]int{}
		for _, c := range first {
			kinds[c]++
		}
		if kinds[404] == 0 || kinds[429] == 0 || kinds[404] == 50 {
			t.Errorf("fault mix %v", kinds)
		}
	})
	t.Run("latency", func(t *testing.T) {
		// A cancelled request does not wait out the latency.
		s := New(Options{Faults: Faults{Latency: time.Hour}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rec := newRecorder()
		s.ServeHTTP(rec, httpRequest(t, http.MethodGet, "/client/v4/nope").WithContext(ctx))
		if s.Stats().Requests[EndpointUnknown][0] != 1 {
			t.Errorf("stats %+v", s.Stats())
		}
	})
}

func TestOverlappingWrites(t *testing.T) {
	for _, reject := range []bool{false, true} {
		t.Run(fmt.Sprintf("reject=%v", reject), func(t *testing.T) {
			s, a := newAPI(t, Options{Faults: Faults{WriteLatency: time.Second}, RejectOverlappingWrites: reject})
			seedScript(t, s, "my-ns", "w", plainGr)
			seedScript(t, s, "my-ns", "other", plainGr)
			path := scriptPath("my-ns", "w") + "/settings"
			body, ct := settingsPatch(t, map[string]any{"logpush": true})

			var wg sync.WaitGroup
			results := make([]*apiResponse, 2)
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[0], _ = a.send(http.MethodPatch, path, body, ct)
			}()
			// Start the second write once the first is in flight, and a
			// write to another script, which does not overlap.
			eventually(t, 10*time.Second, func() bool { return s.InFlightWrites() == 1 })
			var other *apiResponse
			wg.Add(2)
			go func() {
				defer wg.Done()
				results[1], _ = a.send(http.MethodPatch, path, body, ct)
			}()
			go func() {
				defer wg.Done()
				other, _ = a.send(http.MethodPatch, scriptPath("my-ns", "other")+"/settings", body, ct)
			}()
			wg.Wait()
			if other == nil || other.Status != http.StatusOK {
				t.Errorf("write to another script: %+v", other)
			}
			if got := s.Stats().OverlappingWrites; got != 1 {
				t.Errorf("OverlappingWrites = %d, want 1", got)
			}
			if results[0] == nil || results[1] == nil {
				t.Fatal("a request failed")
			}
			expect(t, results[0], http.StatusOK, 0)
			if reject {
				expect(t, results[1], http.StatusConflict, CodeConcurrentModify)
			} else {
				expect(t, results[1], http.StatusOK, 0)
			}
			if s.InFlightWrites() != 0 {
				t.Errorf("in flight after the writes: %d", s.InFlightWrites())
			}
		})
	}
}

func TestMaxRequestsInWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	st := Stats{arrivals: []time.Time{t0, t0.Add(100 * time.Millisecond), t0.Add(900 * time.Millisecond),
		t0.Add(1000 * time.Millisecond), t0.Add(1050 * time.Millisecond), t0.Add(5 * time.Second)}}
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{{time.Second, 4}, {100 * time.Millisecond, 2}, {time.Millisecond, 1}, {10 * time.Second, 6}, {0, 0}} {
		if got := st.MaxRequestsInWindow(tc.d); got != tc.want {
			t.Errorf("MaxRequestsInWindow(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	if (Stats{}).MaxRequestsInWindow(time.Second) != 0 {
		t.Error("empty stats")
	}
}

func TestListenAndServe(t *testing.T) {
	s := New(Options{})
	if err := s.Seed(acct, []string{"ns"}, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0", func(u string) { urls <- u }) }()
	var base string
	select {
	case base = <-urls:
	case err := <-done:
		t.Fatal(err)
	}
	a := &api{t: t, base: base, hdr: http.Header{}}
	expect(t, a.get(scriptPath("ns", TenantName(1))+"/settings"), http.StatusOK, 0)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
	if _, err := a.send(http.MethodGet, "/x", nil, ""); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestListenURL(t *testing.T) {
	for addr, want := range map[string]string{
		"[::]:8787":       "http://127.0.0.1:8787/client/v4",
		"0.0.0.0:1":       "http://127.0.0.1:1/client/v4",
		"10.1.2.3:80":     "http://10.1.2.3:80/client/v4",
		"[2001:db8::1]:9": "http://[2001:db8::1]:9/client/v4",
	} {
		if got := listenURL(fakeAddr(addr), "/client/v4"); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
