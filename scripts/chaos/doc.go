// Package chaos is the chaos suite: the guarantees of docs/guarantees.md
// checked against the real binary, a separately started nats-server and the
// API emulator, with faults injected. Run it with
//
//	make chaos                      # or:
//	go test -tags chaos -run . -v -timeout 60m ./scripts/chaos/
//
// It builds `reconciler` (./cmd/reconciler) and `nats-server` (the module in
// go.mod) into a temporary directory, serves the emulator
// (internal/cfapi/cfapitest) in the test process, runs `reconciler run` as a
// child process that it can SIGKILL, and prints a table of figures at the
// end. The scenarios:
//
//  1. Crash: scripts reconciled while `reconciler run` is killed with SIGKILL
//     at random moments and restarted.
//  2. NATS restart: the nats-server stopped mid-run and started again on the
//     same store.
//  3. API faults: 5xx, 429 with Retry-After, connection resets and latency
//     spikes from the emulator.
//  4. Bad input: the catalogue of package badinput against a NATS with the
//     default 1 MiB max_payload, its staged cases (API faults arranged in
//     the emulator, later events, changes by hand, `reconciler dlq replay`)
//     taken in lockstep. The largest and deepest events go first, one at
//     a time, the child's peak RSS (VmHWM) reset before each: the table
//     shows the worst event's peak.
//
// The crash scenario reports how long the events of the killed processes
// take to settle, measured by the suite's clock from the last SIGKILL.
//
// Knobs (environment): CHAOS_SCRIPTS (2000, scenario 1), CHAOS_KILLS (5),
// CHAOS_NATS_SCRIPTS (600), CHAOS_NATS_DOWN (5s), CHAOS_FAULT_SCRIPTS
// (600), CHAOS_ACK_WAIT (20s, the default --ack-wait of `reconciler run`), CHAOS_SEED
// (random; printed), CHAOS_ONLY (e.g. "crash,faults"), CHAOS_KEEP (keep the
// processes' logs, also kept when a scenario fails), CHAOS_LOG_LEVEL (of
// `reconciler run`), CHAOS_TRACE (log the reconciler's figures four times
// a second during scenario 1). Without the chaos build tag the
// package holds no tests; the fast parts of the suite (the bad-input
// catalogue, goleak, the fuzz seeds) run in the ordinary `go test ./...`.
// docs/guarantees.md maps each guarantee to the test that proves it.
package chaos
