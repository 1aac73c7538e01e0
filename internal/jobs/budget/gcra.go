package budget

import (
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// gcra holds the generic cell rate algorithm's parameters for one budget.
// Times are Unix nanoseconds.
type gcra struct {
	burst    int
	interval int64 // emission interval T
	tau      int64 // burst tolerance (b−1)·T
	horizon  int64 // one reservation reaches at most this far past its first cell
}

// newGCRA returns the parameters that let at most budget cells into any
// interval of length window + margin, with burst ratelimit.BurstFor(budget).
//
// For cells i < j (in the order of the writes that reserved them),
// c_j ≥ c_i + (j−i−b+1)·T. So if the cells of a half-open interval of length
// D run from index i to j, then (j−i−b+1)·T ≤ c_j − c_i < D, and there are
// at most j−i+1 < D/T + b of them. With T ≥ D/(budget − b + 1), that is
// fewer than budget + 1.
func newGCRA(budget int, window, margin, horizon time.Duration) gcra {
	b := ratelimit.BurstFor(budget)
	span := int64(window + margin)
	n := int64(budget - b + 1)
	t := (span + n - 1) / n // rounded up: never faster than the budget
	return gcra{burst: b, interval: t, tau: int64(b-1) * t, horizon: int64(horizon)}
}

// plan returns the cells of up to demand tokens (at least one, all within
// the horizon of the first) for a reservation at now, and the TAT after
// them: a cell may go at max(now, TAT − τ), and each moves TAT to
// max(TAT, c) + T.
func (g gcra) plan(tat, now int64, demand int) (cells []int64, newTAT int64) {
	demand = min(max(demand, 1), 4*g.burst+64)
	var first int64
	for len(cells) < demand {
		c := max(now, tat-g.tau)
		if len(cells) > 0 && c > first+g.horizon {
			break
		}
		if len(cells) == 0 {
			first = c
		}
		cells = append(cells, c)
		tat = max(tat, c) + g.interval
	}
	return cells, tat
}

// conforming returns how many cells could go back to back at now: the k
// with TAT + (k−1)·T − τ ≤ now, at most the burst.
func (g gcra) conforming(tat, now int64) int {
	k := (now-tat+g.tau)/g.interval + 1
	return int(min(max(k, 0), int64(g.burst)))
}

// slowedTo returns g with its interval raised to at least window/n: n
// cells per window at most, the burst kept. A slower interval on the
// shared schedule only ever spaces cells further apart, so the budget's
// guarantee holds.
func (g gcra) slowedTo(n int, window int64) gcra {
	if n < 1 {
		return g
	}
	if iv := (window + int64(n) - 1) / int64(n); iv > g.interval {
		g.interval, g.tau = iv, int64(g.burst-1)*iv
	}
	return g
}
