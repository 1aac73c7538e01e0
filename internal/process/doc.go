// Package process assembles the parts of a reconciler process from its
// settings: the API client on the token's budget (shared through NATS, or
// of this process alone), the pipeline's runner, and the /metrics,
// /healthz and /readyz endpoints. cmd/reconciler parses the flags and
// calls it; it holds no flag and no global.
//
// Invariants: a budget of this process alone is spent against the real
// API only when asked (Budget.Local); the credentials given never appear
// in an error or a log line (the shared budget keeps a hash of its key);
// every error that a setting causes is a clihelp.UsageError naming the
// flag.
package process
