// Package progress is how the CLI's long-running tools show what they are
// doing on stderr: a one-line bar on a terminal (Bar), periodic log lines
// otherwise (LogView), the ETA of what is left under the API budget the
// process really has (BudgetETA), and a one-line notice when a tool waits
// for the shared budget (WaitNotice).
//
// Invariants: one line at most is drawn, and only on a terminal; nothing
// is drawn before there is something to count; Finish leaves no bar line
// behind; log lines written through a Console never share a line with
// the bar (the bar is cleared first and drawn again after). Time comes
// from an injected clock, so tests never wait.
//
// It imports internal/cfapi and internal/jobs/budget (to read a budget)
// and internal/jobs/backfill (the progress it shows); only cmd/reconciler
// imports it.
package progress
