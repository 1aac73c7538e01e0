package cfapitest

import (
	"testing"
	"time"
)

// TestOtherToolBlocksAreItsOwn: another tool that alone sends more than
// the sliding window allows fills it and starts the block itself; the
// counts say so (OtherToolStats.Blocks), and the reconciler's side
// (Stats.RateBlocks) has none. The emulator's clock stands still, so the
// window holds exactly the quota.
func TestOtherToolBlocksAreItsOwn(t *testing.T) {
	clock := newFakeClock()
	s, _ := newAPI(t, Options{RateLimit: 5, RateWindow: time.Second, RateSliding: true, Now: clock.Now})
	s.SetOtherToolRate(500)
	deadline := time.Now().Add(30 * time.Second)
	for s.OtherToolStats().RateLimited < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the other tool got no 429s: %+v", s.OtherToolStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.SetOtherToolRate(0)
	st := s.OtherToolStats()
	if st.Accepted != 5 || st.Blocks != 1 {
		t.Errorf("other tool: %+v, want 5 accepted and the one block it started", st)
	}
	if b := s.Stats().RateBlocks; b != 0 {
		t.Errorf("blocks started by the reconciler's requests: %d, want 0", b)
	}
}
