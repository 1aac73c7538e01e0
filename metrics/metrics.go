// Package metrics holds the reconciler's Prometheus collectors and its HTTP
// endpoints (/metrics, /healthz, /readyz).
//
// Every collector is registered on the Registerer passed to New, never on
// the global registry. Names start with reconciler_, counters end in
// _total, durations are histograms in _seconds, and labels are bounded:
// never a script name, account or event id. Known label values are
// pre-created so that series exist from the start.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// Event outcomes (EVENTS.md "Outcomes").
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

// Reasons for holding a script (the reason label of
// reconciler_scripts_held_total).
const (
	// HoldGradualDeployment: the script's traffic is split between two
	// versions (a gradual deployment in progress), and any write would
	// deploy one new version to 100%.
	HoldGradualDeployment = "gradual_deployment"
)

// Metrics is the set of reconciler collectors.
type Metrics struct {
	EventsReceived     prometheus.Counter
	EventsTotal        *prometheus.CounterVec // outcome
	EventRedeliveries  prometheus.Counter
	StaleOperations    prometheus.Counter
	DeadLetters        *prometheus.CounterVec // reason
	EventLag           prometheus.Histogram
	ReconcileTotal     *prometheus.CounterVec // result
	ReconcileDuration  prometheus.Histogram
	Writes             *prometheus.CounterVec // strategy
	QueueDepth         *prometheus.GaugeVec   // lane
	InflightReconciles prometheus.Gauge
	HeldEvents         *prometheus.GaugeVec // lane
	LastSuccess        prometheus.Gauge
	ConsumerPending    *prometheus.GaugeVec // lane
	BackfillPending    prometheus.Gauge
	BackfillScripts    *prometheus.CounterVec // outcome
	PanicsRecovered    prometheus.Counter
	APIAuthFailures    prometheus.Counter
	ScriptsHeld        *prometheus.CounterVec // reason

	APIRequests       *prometheus.CounterVec // endpoint, code
	APIDuration       *prometheus.HistogramVec
	APIRetries        *prometheus.CounterVec // endpoint
	APIRateLimited    prometheus.Counter
	BudgetWait        prometheus.Histogram
	BudgetWaitSeconds prometheus.Counter
}

var apiEndpoints = []string{
	cfapi.EPGetSettings, cfapi.EPGetBindings, cfapi.EPPatchSettings, cfapi.EPGetContent,
	cfapi.EPPutScript, cfapi.EPPostVersion, cfapi.EPPostDeployment, cfapi.EPListScripts,
	cfapi.EPGetScript, cfapi.EPCreateNamespace, cfapi.EPListNamespaces,
	cfapi.EPListDeployments, cfapi.EPGetWorkerVersion, cfapi.EPCreateWorkerVersion,
}

// DeadLetterReasons are the reason label values known in advance.
var DeadLetterReasons = []string{
	"invalid_json", "too_large", "unsupported_schema", "missing_field", "invalid_field",
	"invalid_binding", "subject_mismatch", "not_found", "api_rejected", "invalid_desired_state",
	"max_deliveries", "panic",
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_events_received_total", Help: "Event deliveries received from JetStream, redeliveries included."}),
		EventsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_events_total", Help: "Events acknowledged or terminated, by outcome (applied, noop, stale, dead_lettered)."}, []string{"outcome"}),
		EventRedeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_event_redeliveries_total", Help: "Deliveries of events that had been delivered before."}),
		StaleOperations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_stale_operations_total", Help: "Binding operations skipped because a newer operation (by generation) was already folded."}),
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
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reconciler_queue_depth", Help: "Scripts waiting for a reconcile, by lane (live, backfill)."}, []string{"lane"}),
		InflightReconciles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reconciler_inflight_reconciles", Help: "Reconciles running now."}),
		HeldEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reconciler_held_events", Help: "Events folded and waiting for their script's reconcile before they are acknowledged, by lane."}, []string{"lane"}),
		ConsumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reconciler_consumer_pending", Help: "Messages not yet delivered by the lane's consumer."}, []string{"lane"}),
		BackfillPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reconciler_backfill_pending", Help: "Backfill scripts waiting or in progress."}),
		BackfillScripts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_backfill_scripts_total", Help: "Backfill scripts finished by this process, by outcome."}, []string{"outcome"}),
		PanicsRecovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_panics_recovered_total", Help: "Panics recovered in a reconcile or a decode."}),
		APIAuthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_api_auth_failures_total", Help: "Reconciles stopped because the API rejected the credentials."}),
		ScriptsHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_scripts_held_total", Help: "Reconciles that held a script instead of writing it, by reason (gradual_deployment: its traffic is split between two versions); its events stay unacknowledged and it is checked again later."}, []string{"reason"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reconciler_last_success_timestamp_seconds", Help: "Unix time of the last successful reconcile."}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_api_requests_total", Help: "Cloudflare API attempts, by endpoint and HTTP status (\"error\" when no response)."}, []string{"endpoint", "code"}),
		APIDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reconciler_api_request_duration_seconds", Help: "Cloudflare API attempt latency, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 13)}, []string{"endpoint"}),
		APIRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_api_retries_total", Help: "Cloudflare API retries after a transient failure, by endpoint."}, []string{"endpoint"}),
		APIRateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_api_rate_limited_total", Help: "429 answers from the Cloudflare API; each pauses the shared budget. The goal is zero."}),
		BudgetWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reconciler_rate_budget_wait_seconds", Help: "Time an API attempt waited for the shared request budget.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		BudgetWaitSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reconciler_rate_budget_wait_seconds_total", Help: "Total time spent waiting for the shared request budget."}),
	}
	reg.MustRegister(m.EventsReceived, m.EventsTotal, m.EventRedeliveries, m.StaleOperations, m.DeadLetters,
		m.EventLag, m.ReconcileTotal, m.ReconcileDuration, m.Writes, m.QueueDepth, m.InflightReconciles,
		m.HeldEvents, m.LastSuccess, m.ConsumerPending, m.BackfillPending, m.BackfillScripts, m.PanicsRecovered, m.APIAuthFailures, m.ScriptsHeld, m.APIRequests, m.APIDuration, m.APIRetries, m.APIRateLimited,
		m.BudgetWait, m.BudgetWaitSeconds)
	for _, o := range []string{OutcomeApplied, OutcomeNoop, OutcomeStale, OutcomeDeadLettered} {
		m.EventsTotal.WithLabelValues(o).Add(0)
	}
	for _, r := range DeadLetterReasons {
		m.DeadLetters.WithLabelValues(r).Add(0)
	}
	for _, r := range []string{ResultApplied, ResultNoop, ResultTransient, ResultPermanent, ResultLeaseBusy, ResultHeld} {
		m.ReconcileTotal.WithLabelValues(r).Add(0)
	}
	m.ScriptsHeld.WithLabelValues(HoldGradualDeployment).Add(0)
	for _, l := range []string{"live", "backfill"} {
		m.QueueDepth.WithLabelValues(l).Set(0)
		m.HeldEvents.WithLabelValues(l).Set(0)
		m.ConsumerPending.WithLabelValues(l).Set(0)
	}
	for _, o := range []string{"changed", "unchanged", "failed"} {
		m.BackfillScripts.WithLabelValues(o).Add(0)
	}
	for _, s := range []string{"settings", "script", "version"} {
		m.Writes.WithLabelValues(s).Add(0)
	}
	for _, ep := range apiEndpoints {
		m.APIRetries.WithLabelValues(ep).Add(0)
	}
	return m
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
		},
		Retry: func(endpoint string, _ int, _ time.Duration, _ error) {
			m.APIRetries.WithLabelValues(endpoint).Inc()
		},
		RateLimited: func(string, time.Duration) { m.APIRateLimited.Inc() },
		BudgetWait: func(_ string, d time.Duration) {
			m.BudgetWait.Observe(d.Seconds())
			m.BudgetWaitSeconds.Add(d.Seconds())
		},
	}
}
