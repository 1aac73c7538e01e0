// Package event is the pure event domain of the reconciler: the event
// contract (docs/events.md) decoded and validated by DecodeEvent, the
// dead-letter reasons, and a script's desired state with its fold.
//
// It does no I/O and imports neither NATS nor the Runner: every other part
// of internal/jobs imports it, and it imports only internal/cfapi (the
// binding model) and internal/planner (what a desired state asks of it).
//
// Invariants of the fold (DesiredState.Fold): per binding name the newest
// operation wins by Stamp (generation, then event id); a replace sets a
// floor that drops every older name; folding the same event again, or the
// events of a script in any order, gives the same state.
package event
