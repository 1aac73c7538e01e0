package budget

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// maxInWindow is the most times within any half-open interval of length d;
// times must be sorted.
func maxInWindow(times []int64, d int64) int {
	best, j := 0, 0
	for i, t := range times {
		for t-times[j] >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestGCRANeverExceedsBudget simulates processes sharing one budget
// through the algorithm, with the worst the assumptions allow: clocks
// apart by up to MaxClockSkew, every token handed out up to MaxLateness/2
// late and taking up to MaxLateness/2 more to reach the API, each at one
// extreme or the other, demand in bursts and idle gaps, and processes
// dropping tokens (crashes, pauses). No window of the budget's length at
// the API ever holds more than the budget, and under full demand the
// budget is nearly used (so the simulation does press on the bound).
func TestGCRANeverExceedsBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 300 {
		budget := 2 + rng.IntN(1200)
		window := time.Duration(1+rng.IntN(300)) * 100 * time.Millisecond
		skew := time.Duration(rng.Int64N(int64(window / 50)))
		late := time.Duration(rng.Int64N(int64(window/50))) + time.Microsecond
		horizon := time.Duration(rng.Int64N(int64(window / 10)))
		g := newGCRA(budget, window, skew+late, horizon)
		procs := 1 + rng.IntN(4)
		offset := make([]int64, procs)
		for p := range offset {
			if rng.IntN(2) == 0 {
				offset[p] = int64(skew) // clock ahead by the full skew
			}
		}
		extreme := func(d time.Duration) int64 {
			if rng.IntN(2) == 0 {
				return 0
			}
			return int64(d)
		}
		saturate := run%2 == 0
		var arrivals []int64
		var tat, now int64 = 0, int64(time.Hour)
		for range 4 * budget {
			if saturate {
				now += rng.Int64N(g.interval + 1)
			} else {
				now += rng.Int64N(4 * g.interval * int64(1+rng.IntN(8)))
			}
			p := rng.IntN(procs)
			local := now + offset[p]
			cells, next := g.plan(tat, local, 1+rng.IntN(12))
			tat = next
			for _, c := range cells {
				if rng.IntN(50) == 0 {
					continue // dropped: crash, pause, expired
				}
				handedOut := max(now, c-offset[p]) + extreme(late/2)
				arrivals = append(arrivals, handedOut+extreme(late/2))
			}
		}
		slices.Sort(arrivals)
		peak := maxInWindow(arrivals, int64(window))
		if peak > budget {
			t.Fatalf("run %d: %d requests within %s, budget %d (skew %s, lateness %s, horizon %s, %d processes)",
				run, peak, window, budget, skew, late, horizon, procs)
		}
		if saturate && budget >= 50 && float64(peak) < 0.9*float64(budget) {
			t.Fatalf("run %d: full demand used only %d of %d per window", run, peak, budget)
		}
	}
}

// TestGCRAPlan: reservations from a full bucket hand out the burst at
// once, then one cell per interval; a reservation stops at the horizon.
func TestGCRAPlan(t *testing.T) {
	// 100 per second with 10ms + 10ms of margin: burst 2, T = 1.02s/99.
	g := newGCRA(100, time.Second, 20*time.Millisecond, 50*time.Millisecond)
	wantT := (int64(1020*time.Millisecond) + 98) / 99
	if g.burst != 2 || g.interval != wantT || g.tau != wantT {
		t.Fatalf("gcra %+v, want burst 2, T = τ = %d", g, wantT)
	}
	now := int64(time.Hour)
	if n := g.conforming(0, now); n != 2 {
		t.Errorf("a fresh bucket holds %d, want the burst of 2", n)
	}
	cells, tat := g.plan(0, now, 10)
	var got []string
	for _, c := range cells {
		got = append(got, fmt.Sprint(time.Duration(c-now).Round(time.Millisecond)))
	}
	// now, now (burst), then every 10.3ms up to 50ms after the first.
	want := []string{"0s", "0s", "10ms", "21ms", "31ms", "41ms"}
	if !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if n := g.conforming(tat, now); n != 0 {
		t.Errorf("after the reservation %d conform now, want 0", n)
	}
	// A one-cell demand reserves one cell.
	if cells, _ := g.plan(tat, now, 1); len(cells) != 1 || cells[0] != tat-g.tau {
		t.Errorf("plan(demand 1) = %v, want [TAT − τ]", cells)
	}
}
