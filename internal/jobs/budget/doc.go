// Package budget shares the request budget of one Cloudflare API token
// among every process that uses it (every `run`, `plan` and `backfill` on
// the same NATS), through one JetStream KV key per token. A Source is a
// ratelimit.TokenSource: wire it with ratelimit.NewSharedLimiter.
//
// # The guarantee
//
// With budget B per window W, no interval of length W sees more than B
// requests from all processes together, whatever the number of processes,
// as long as the assumptions below hold. Bursts are bounded as for one
// process: at most ratelimit.BurstFor(B) requests back to back. A 429 seen by
// any process pauses all of them (Pause; the key carries the pause).
//
// # How: GCRA in one KV key, reserved in small blocks
//
// The key holds the state of the generic cell rate algorithm (GCRA): the
// theoretical arrival time TAT, in Unix nanoseconds. With emission interval
// T and burst b (tolerance τ = (b−1)·T), a cell (one request) may go at
// c = max(now, TAT − τ), and TAT becomes max(TAT, c) + T. A process
// reserves cells with compare-and-set on the key's revision: it reads the
// state, computes up to `demand` cells (at least one; all within Horizon of
// the first), and writes the new TAT only if nobody wrote in between; on a
// conflict it reads again and recomputes. Reserving a few cells per write
// keeps the cost low at 200 requests/s (the benchmark's budget); at the real
// budget of about 4 requests/s it is one write per request.
//
// Why no window exceeds the budget. Number the cells in the order their
// compare-and-set succeeded. The revision check makes the writes a single
// sequence, so for cells i < j, TAT grew between them by at least (j−i)·T,
// and c_j ≥ TAT_(j−1) − τ ≥ c_i + (j−i−b+1)·T. If the cells within a
// half-open interval of length D run from index i to j, then
// (j−i−b+1)·T ≤ c_j − c_i < D, so there are fewer than D/T + b of them.
// T is (W + M)/(B − b + 1), rounded up, so any interval of length W + M
// holds at most B cell times. The margin M = MaxClockSkew + MaxLateness
// absorbs the gap between a cell's time and the moment its request reaches
// the API; only the spread of that gap matters, not a constant delay:
//
//   - A cell's time is in the clock of the process that reserved it; the
//     process sends it when its own clock reaches that time. Clocks that
//     differ by at most MaxClockSkew stretch an interval by at most that.
//   - A process hands a cell to a caller no later than MaxLateness/2 after
//     its time, or throws it away (Stats.Expired); the other half covers
//     the variation of the trip from handing it out to the API.
//
// So the requests that reach the API within any interval of length W had
// their cells within an interval of length at most W + M: at most B. The
// defaults, min(1s, W/200) of skew and min(1s, W/50) of lateness, cost 0.7%
// of the real budget (1100/5m) and 2.5% of a 1 s test window; raise
// MaxClockSkew where clocks are not kept by NTP. TestGCRANeverExceedsBudget
// simulates the worst of these assumptions.
//
// The bound counts cells, so everything that may happen to a process only
// ever leaves cells unused:
//
//   - Start: a new process reads the shared state; it has no bucket of its
//     own, so it adds no burst.
//   - Stop, crash, SIGKILL: the cells it reserved and did not use are lost
//     (at most one block: Horizon's worth). Nobody else may use them, so
//     the budget is under-used for a moment, never over-used. Nothing is
//     leased for longer than a block, so nothing has to expire or be
//     recovered.
//   - Losing NATS: a request is sent only with a cell whose reservation was
//     confirmed by the server. Without NATS no reservation succeeds, so the
//     process sends only the cells it already holds (at most one block, each
//     within MaxLateness/2 of its time) and then waits, retrying; it never
//     falls back to a local budget. A write whose answer was lost (or that
//     the client buffered and sent after reconnecting) may still have been
//     applied: its cells are then reserved and never used.
//   - Pause: a 429 pauses the process at once and writes paused_until into
//     the key; every process watches the key, drops the cells it holds and
//     waits until paused_until + MaxClockSkew. Cells are reserved only when
//     no pause is in force.
//
// Assumptions. Clocks of the processes differ by at most MaxClockSkew (a
// clock that steps is skew too); the trip from hand-out to the API varies
// by at most MaxLateness/2; every process sharing a token runs with the same budget (a process
// with a larger one takes cells faster; each warns when the key was last
// written with other settings); the KV bucket is durable (file storage,
// Replicas for a cluster): if the key is lost, the next process starts with
// a full burst again.
//
// # Keys, tokens and setup
//
// The key is "token_" and 32 hex digits of a SHA-256 of the credential
// (KeyFor), never the credential itself: two tokens have two budgets, and
// nothing in NATS reveals a token. Ensure creates the bucket (used by
// `run`); Open only uses an existing one and fails naming the bucket when
// it is missing (`plan` never creates or changes resources).
//
// Imports point one way: it imports internal/cfapi (it implements
// ratelimit.TokenSource) and NATS, nothing else of internal/jobs; cmd wires it
// into the client the Runner uses.
package budget
