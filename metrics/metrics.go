// Package metrics holds the reconciler's Prometheus collectors and its HTTP
// endpoints (/metrics, /healthz, /readyz).
//
// Every collector is registered on the Registerer passed to New, never on
// the global registry. Names start with reconciler_, counters end in
// _total, durations are histograms in _seconds, and labels are bounded:
// never a script name, account, run or event id. Every known label value
// is pre-created by New, so every series exists in a scrape from the start
// and dashboards and alerts see zeros instead of gaps.
//
// The dashboard (deploy/grafana) and the alert rules (deploy/prometheus)
// use these names; a test there fails when one of them is missing from a
// running reconciler's scrape, so rename nothing without changing them.
package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// Event outcomes (docs/events.md "Outcomes").
const (
	OutcomeApplied      = "applied"
	OutcomeNoop         = "noop"
	OutcomeStale        = "stale"
	OutcomeDeadLettered = "dead_lettered"
)

// Reconcile results.
const (
	ResultApplied   = "applied"
	ResultNoop      = "noop"
	ResultTransient = "transient_error"
	ResultPermanent = "permanent_error"
	ResultLeaseBusy = "lease_busy"
	// ResultHeld: the script was not written on purpose (see
	// ScriptsHeld); its events stay held until it can be.
	ResultHeld = "held"
)

// DriftKinds are the kind label values of reconciler_drift_repaired_total:
// the kinds of change a repair writes.
var DriftKinds = []string{DriftAdd, DriftUpdate, DriftRemove, DriftRename}

// Kinds of drift repair.
const (
	DriftAdd    = "add"    // a binding missing from live was added back
	DriftUpdate = "update" // a binding changed live was written again
	DriftRemove = "remove" // a binding that must not be there was removed
	DriftRename = "rename" // a rename was carried out
)

// Reasons for holding a script (the reason label of
// reconciler_scripts_held_total).
const (
	// HoldGradualDeployment: the script's traffic is split between two
	// versions (a gradual deployment in progress), and any write would
	// deploy one new version to 100%.
	HoldGradualDeployment = "gradual_deployment"
)

// Lanes of work: live events and backfills are queued and consumed apart.
const (
	LaneLive     = "live"
	LaneBackfill = "backfill"
)

// Outcomes of one backfilled script.
const (
	BackfillChanged   = "changed"
	BackfillUnchanged = "unchanged"
	BackfillFailed    = "failed"
)

// Write strategies (docs/architecture.md "Reading and writing").
const (
	StrategySettings = "settings"
	StrategyScript   = "script"
	StrategyVersion  = "version"
)

// Lanes are the lane label values.
var Lanes = []string{LaneLive, LaneBackfill}

// Metrics is the set of reconciler collectors. Fields are set once by New
// and safe for concurrent use.
type Metrics struct {
	// EventsReceived counts event deliveries, redeliveries included.
	EventsReceived prometheus.Counter
	// EventsTotal counts settled events by outcome (Outcome*).
	EventsTotal *prometheus.CounterVec
	// EventsFolded counts events folded into their script's desired state
	// (or found stale or already applied there).
	EventsFolded prometheus.Counter
	// EventRedeliveries counts deliveries of events delivered before.
	EventRedeliveries prometheus.Counter
	// StaleOperations counts binding operations older than what was folded.
	StaleOperations prometheus.Counter
	// DeadLetters counts dead letters by reason (the reasons New is given:
	// jobs.Reasons).
	DeadLetters *prometheus.CounterVec
	// EventLag observes occurred_at → acknowledgement, in seconds.
	EventLag prometheus.Histogram
	// ReconcileTotal counts script reconciles by result (Result*).
	ReconcileTotal *prometheus.CounterVec
	// ReconcileDuration observes one script reconcile, in seconds.
	ReconcileDuration prometheus.Histogram
	// Writes counts successful binding writes by strategy (Strategy*).
	Writes *prometheus.CounterVec
	// StrategyFallbacks counts writes made with another strategy than
	// planned because the API refused the planned one (a settings PATCH
	// refusing {type, name} entries: from settings to version).
	StrategyFallbacks *prometheus.CounterVec
	// QueueDepth is the number of scripts waiting for a reconcile, by lane
	// (Lanes).
	QueueDepth *prometheus.GaugeVec
	// InflightReconciles is the number of reconciles running now.
	InflightReconciles prometheus.Gauge
	// HeldEvents is the number of folded events waiting for their script's
	// reconcile before they are acknowledged, by lane (Lanes).
	HeldEvents *prometheus.GaugeVec
	// LastSuccess is the Unix time of the last successful reconcile.
	LastSuccess prometheus.Gauge
	// PanicsRecovered counts panics recovered in workers (each one is a bug).
	PanicsRecovered prometheus.Counter
	// ScriptsHeld counts reconciles that held a script on purpose instead
	// of writing it, by reason (Hold*).
	ScriptsHeld *prometheus.CounterVec

	// ConsumerPending is the number of messages a durable consumer has not
	// delivered yet (ConsumerInfo.NumPending), by lane (Lanes).
	ConsumerPending *prometheus.GaugeVec
	// NATSConnected is 1 while the NATS connection is up, else 0.
	NATSConnected prometheus.Gauge
	// Ready is 1 while /readyz answers 200, else 0.
	Ready prometheus.Gauge

	// BackfillScripts counts backfill scripts this process finished, by
	// outcome (Backfill*).
	BackfillScripts *prometheus.CounterVec
	// DriftRepaired counts binding changes written by a resync (a
	// reconcile no event asked for: the live bindings had drifted from
	// what the reconciler applied or wants), by kind of change (Drift*).
	DriftRepaired *prometheus.CounterVec
	// BackfillPending is the number of backfill scripts waiting, read from
	// the backfill consumer.
	BackfillPending prometheus.Gauge
	// BackfillRunsActive is the number of backfill runs not yet finished.
	BackfillRunsActive prometheus.Gauge

	// APIRequests counts Cloudflare API attempts by endpoint and HTTP
	// status ("error" when no response arrived).
	APIRequests *prometheus.CounterVec
	// APIDuration observes API attempt latency by endpoint, in seconds.
	APIDuration *prometheus.HistogramVec
	// APIRetries counts API retries by endpoint.
	APIRetries *prometheus.CounterVec
	// APIRateLimited counts 429 answers; each pauses the shared budget.
	APIRateLimited prometheus.Counter
	// APIAuthFailures counts 401 and 403 answers.
	APIAuthFailures prometheus.Counter
	// BudgetWait observes the time an attempt waited for the budget.
	BudgetWait prometheus.Histogram
	// BudgetRequests is the requests the budget allows per window.
	BudgetRequests prometheus.Gauge
	// BudgetWindow is the budget's window, in seconds.
	BudgetWindow prometheus.Gauge
	// BudgetTokens is the requests that could be sent at once now, sampled.
	BudgetTokens prometheus.Gauge
	// BudgetPaused is 1 while a 429 pause of the budget is in force.
	BudgetPaused prometheus.Gauge

	// The user's budget as the API's Ratelimit headers state it (every
	// tool of the user together): the quota left, the seconds until it
	// resets, the policy's quota and window, and an estimate of the
	// requests in the window that no reconciler process made.
	APIQuotaRemaining prometheus.Gauge
	APIQuotaReset     prometheus.Gauge
	APIQuota          prometheus.Gauge
	APIQuotaWindow    prometheus.Gauge
	APIOtherRequests  prometheus.Gauge

	// BuildInfo has one series, set to 1, whose labels are the version,
	// commit and Go version of the binary (SetBuildInfo).
	BuildInfo *prometheus.GaugeVec
}

// apiEndpoints are the endpoint label values known in advance.
var apiEndpoints = []string{
	cfapi.EPGetSettings, cfapi.EPGetBindings, cfapi.EPPatchSettings, cfapi.EPGetContent,
	cfapi.EPPutScript, cfapi.EPPostVersion, cfapi.EPPostDeployment, cfapi.EPListScripts,
	cfapi.EPGetScript, cfapi.EPCreateNamespace, cfapi.EPListNamespaces,
	cfapi.EPListDeployments, cfapi.EPGetWorkerVersion, cfapi.EPCreateWorkerVersion, cfapi.EPListWorkerVersions,
}

// New creates the collectors, registers them on reg and pre-creates every
// known label value; deadLetterReasons are the reason label values of
// reconciler_dead_letters_total (the pipeline's typed list, jobs.Reasons,
// so that it is kept in one place). The build info starts as what the Go
// toolchain stamped into the binary; SetBuildInfo replaces it. (It is
// long because it is one table of every collector with its help text,
// read top to bottom; splitting it would scatter the table.)
func New(reg prometheus.Registerer, deadLetterReasons ...string) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	perLane := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"lane"})
	}
	m := &Metrics{
		EventsReceived: counter("reconciler_events_received_total",
			"Event deliveries received from JetStream, redeliveries included."),
		EventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_events_total", Help: "Events acknowledged or terminated, by outcome (applied, noop, stale, dead_lettered)."}, []string{"outcome"}),
		EventsFolded: counter("reconciler_events_folded_total",
			"Events folded into their script's desired state, stale and already-applied ones included."),
		EventRedeliveries: counter("reconciler_event_redeliveries_total",
			"Deliveries of events that had been delivered before."),
		StaleOperations: counter("reconciler_stale_operations_total",
			"Binding operations skipped because a newer operation (by generation) was already folded."),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_dead_letters_total", Help: "Events written to the dead-letter stream, by reason."}, []string{"reason"}),
		EventLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reconciler_event_lag_seconds", Help: "Time from an event's occurred_at to its acknowledgement after a successful reconcile.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}),
		ReconcileTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_reconcile_total", Help: "Reconciles of one script, by result."}, []string{"result"}),
		ReconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reconciler_reconcile_duration_seconds", Help: "Duration of one script reconcile, budget waits included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		Writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_writes_total", Help: "Successful binding writes, by strategy (settings, script, version)."}, []string{"strategy"}),
		StrategyFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_strategy_fallbacks_total", Help: "Writes made with another strategy than planned because the API refused the planned one, by planned (from) and used (to) strategy."}, []string{"from", "to"}),
		QueueDepth: perLane("reconciler_queue_depth",
			"Scripts waiting for a reconcile, by lane (live, backfill)."),
		InflightReconciles: gauge("reconciler_inflight_reconciles",
			"Reconciles running now."),
		HeldEvents: perLane("reconciler_held_events",
			"Events folded and waiting for their script's reconcile before they are acknowledged, by lane (live, backfill)."),
		LastSuccess: gauge("reconciler_last_success_timestamp_seconds",
			"Unix time of the last successful reconcile (0 before the first)."),
		PanicsRecovered: counter("reconciler_panics_recovered_total",
			"Panics recovered in the pipeline; each one is a bug to report."),
		ScriptsHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_scripts_held_total", Help: "Reconciles that held a script on purpose instead of writing it, by reason (gradual_deployment: its traffic is split between two versions)."}, []string{"reason"}),
		ConsumerPending: perLane("reconciler_consumer_pending",
			"Messages the lane's durable consumer has not delivered yet, from the consumer info."),
		NATSConnected: gauge("reconciler_nats_connected",
			"1 while the connection to NATS is up, else 0."),
		Ready: gauge("reconciler_ready",
			"1 while the process is ready (/readyz answers 200), else 0."),
		BackfillScripts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_backfill_scripts_total", Help: "Backfill scripts finished by this process, by outcome (changed, unchanged, failed)."}, []string{"outcome"}),
		DriftRepaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_drift_repaired_total", Help: "Binding changes a resync wrote because the live bindings had drifted, by kind (add, update, remove, rename)."}, []string{"kind"}),
		BackfillPending: gauge("reconciler_backfill_pending",
			"Backfill scripts waiting to be reconciled, from the backfill consumer."),
		BackfillRunsActive: gauge("reconciler_backfill_runs_active",
			"Backfill runs started and not yet finished."),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_api_requests_total", Help: "Cloudflare API attempts, by endpoint and HTTP status (\"error\" when no response)."}, []string{"endpoint", "code"}),
		APIDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reconciler_api_request_duration_seconds", Help: "Cloudflare API attempt latency, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 13)}, []string{"endpoint"}),
		APIRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_api_retries_total", Help: "Cloudflare API retries after a transient failure, by endpoint."}, []string{"endpoint"}),
		APIRateLimited: counter("reconciler_api_rate_limited_total",
			"429 answers from the Cloudflare API; each pauses the shared budget. The goal is zero."),
		APIAuthFailures: counter("reconciler_api_auth_failures_total",
			"401 and 403 answers from the Cloudflare API: a wrong, expired or underprivileged token."),
		BudgetWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reconciler_rate_budget_wait_seconds", Help: "Time an API attempt waited for the shared request budget.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		BudgetRequests: gauge("reconciler_rate_budget_requests",
			"Requests the API token's budget allows per window, shared by every replica."),
		BudgetWindow: gauge("reconciler_rate_budget_window_seconds",
			"Length of the request budget's window."),
		BudgetTokens: gauge("reconciler_rate_budget_tokens_available",
			"Requests that could be sent at once now without waiting for the budget (sampled)."),
		BudgetPaused: gauge("reconciler_rate_budget_paused",
			"1 while a 429 pause of the whole budget is in force, else 0."),
		APIQuotaRemaining: gauge("reconciler_api_ratelimit_remaining",
			"Requests left in the user's API window, as the last answer's Ratelimit header said (every tool of the user counts)."),
		APIQuotaReset: gauge("reconciler_api_ratelimit_reset_seconds",
			"Seconds until the user's API quota resets, as the last answer's Ratelimit header said."),
		APIQuota: gauge("reconciler_api_ratelimit_quota",
			"The user's API quota per window (Ratelimit-Policy q); 0 until an answer states it."),
		APIQuotaWindow: gauge("reconciler_api_ratelimit_window_seconds",
			"The window of the user's API quota (Ratelimit-Policy w); 0 until an answer states it."),
		APIOtherRequests: gauge("reconciler_api_other_tools_requests",
			"Estimated requests in the user's API window made by no reconciler process sharing the budget (other tools, people)."),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reconciler_build_info", Help: "Always 1; the labels say which build is running."}, []string{"version", "commit", "go_version"}),
	}
	reg.MustRegister(m.EventsReceived, m.EventsFolded, m.EventsTotal, m.EventRedeliveries, m.StaleOperations, m.DeadLetters,
		m.EventLag, m.ReconcileTotal, m.ReconcileDuration, m.Writes, m.StrategyFallbacks, m.QueueDepth, m.InflightReconciles,
		m.HeldEvents, m.LastSuccess, m.PanicsRecovered, m.ScriptsHeld, m.ConsumerPending, m.NATSConnected, m.Ready,
		m.BackfillScripts, m.BackfillPending, m.BackfillRunsActive, m.DriftRepaired,
		m.APIRequests, m.APIDuration, m.APIRetries, m.APIRateLimited, m.APIAuthFailures,
		m.BudgetWait, m.BudgetRequests, m.BudgetWindow, m.BudgetTokens, m.BudgetPaused, m.BuildInfo,
		m.APIQuotaRemaining, m.APIQuotaReset, m.APIQuota, m.APIQuotaWindow, m.APIOtherRequests)
	for _, o := range []string{OutcomeApplied, OutcomeNoop, OutcomeStale, OutcomeDeadLettered} {
		m.EventsTotal.WithLabelValues(o).Add(0)
	}
	for _, r := range deadLetterReasons {
		m.DeadLetters.WithLabelValues(r).Add(0)
	}
	for _, r := range []string{ResultApplied, ResultNoop, ResultTransient, ResultPermanent, ResultLeaseBusy, ResultHeld} {
		m.ReconcileTotal.WithLabelValues(r).Add(0)
	}
	for _, s := range []string{StrategySettings, StrategyScript, StrategyVersion} {
		m.Writes.WithLabelValues(s).Add(0)
	}
	m.StrategyFallbacks.WithLabelValues(StrategySettings, StrategyVersion).Add(0)
	m.ScriptsHeld.WithLabelValues(HoldGradualDeployment).Add(0)
	for _, l := range Lanes {
		m.QueueDepth.WithLabelValues(l).Set(0)
		m.HeldEvents.WithLabelValues(l).Set(0)
		m.ConsumerPending.WithLabelValues(l).Set(0)
	}
	for _, o := range []string{BackfillChanged, BackfillUnchanged, BackfillFailed} {
		m.BackfillScripts.WithLabelValues(o).Add(0)
	}
	for _, k := range DriftKinds {
		m.DriftRepaired.WithLabelValues(k).Add(0)
	}
	for _, ep := range apiEndpoints {
		// The "200" series starts at zero so that the first request of
		// each endpoint shows in rate() instead of being its first sample.
		m.APIRequests.WithLabelValues(ep, "200").Add(0)
		m.APIDuration.WithLabelValues(ep)
		m.APIRetries.WithLabelValues(ep).Add(0)
	}
	m.SetBuildInfo("", "")
	return m
}

// SetBuildInfo sets reconciler_build_info to one series labelled with
// version, commit and the Go version of the running binary. An empty
// version or commit is taken from what the Go toolchain stamped into the
// binary ("dev" and "unknown" when it stamped nothing).
func (m *Metrics) SetBuildInfo(version, commit string) {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && commit == "" {
				commit = s.Value
			}
		}
		if v := info.Main.Version; version == "" && v != "" && v != "(devel)" {
			version = v
		}
	}
	if version == "" {
		version = "dev"
	}
	if commit == "" {
		commit = "unknown"
	}
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// SetRateBudget publishes the request budget: requests allowed per window
// for the whole API token (every replica shares it).
func (m *Metrics) SetRateBudget(requests int, window time.Duration) {
	m.BudgetRequests.Set(float64(requests))
	m.BudgetWindow.Set(window.Seconds())
}

// APIHooks returns cfapi hooks that feed the API metrics.
func (m *Metrics) APIHooks() cfapi.Hooks {
	return cfapi.Hooks{
		Request: func(ri cfapi.RequestInfo) {
			code := "error"
			if ri.Status != 0 {
				code = strconv.Itoa(ri.Status)
			}
			m.APIRequests.WithLabelValues(ri.Endpoint, code).Inc()
			m.APIDuration.WithLabelValues(ri.Endpoint).Observe(ri.Duration.Seconds())
			if ri.Status == 401 || ri.Status == 403 {
				m.APIAuthFailures.Inc()
			}
		},
		Retry: func(endpoint string, _ int, _ time.Duration, _ error) {
			m.APIRetries.WithLabelValues(endpoint).Inc()
		},
		RateLimited: func(string, time.Duration) { m.APIRateLimited.Inc() },
		BudgetWait: func(_ string, d time.Duration) {
			m.BudgetWait.Observe(d.Seconds())
		},
		RateLimitSeen: m.ObserveRateLimit,
	}
}

// ObserveRateLimit publishes the API's view of the user's budget from one
// answer.
func (m *Metrics) ObserveRateLimit(v ratelimit.RateLimitView) {
	m.APIQuotaRemaining.Set(float64(v.Remaining))
	m.APIQuotaReset.Set(v.Reset.Seconds())
	if v.HasPolicy() {
		m.APIQuota.Set(float64(v.Quota))
		m.APIQuotaWindow.Set(v.Window.Seconds())
	}
}
