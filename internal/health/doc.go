// Package health decides whether a process is alive in the sense a
// liveness probe needs: not merely up, but making progress.
//
// Contract: a Watchdog is healthy while no work is pending, or while some
// loop has made progress (Beat, or a change of the Progress value) within
// the bound. It is unhealthy only when work has been pending and nothing
// progressed for longer than the bound: a wedged process, which a restart
// cures. Time comes from an injected clock; the Watchdog is safe for
// concurrent use and Beat is cheap enough for every loop iteration.
package health
