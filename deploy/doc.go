// Package deploy holds no code: it is the home of the deployment files
// (Dockerfile, Kubernetes manifests, NATS definitions, Grafana dashboard,
// Prometheus alert rules) and of the tests that check them with the real
// tools.
//
// The tests check that:
//   - the alert rules pass `promtool check rules` and their unit tests
//     (`promtool test rules`), and that every alert has a test in which it
//     fires;
//   - the dashboard loads, uses only the datasource variable, and every
//     panel's query is accepted by a real Prometheus server;
//   - every metric named by the dashboard or the alert rules is in a scrape
//     of a freshly started `reconciler run`, so that a rename cannot blank
//     a panel or silence an alert;
//   - a real Prometheus server scraping an end-to-end run returns, through
//     PromQL, the reconciles and writes that the run made;
//   - the NATS definitions (CLI JSON and NACK resources) produce exactly
//     the streams, consumers and buckets that `reconciler run` creates, and
//     every resource `run` creates has a definition.
//
// The Kubernetes manifests are checked in the deploy/kubernetes package,
// apart, because the kustomize and Kubernetes API modules cost a minute of
// cold build time.
//
// Generated files: kubernetes/base/prometheusrule.yaml wraps
// prometheus/alerts.yaml into a PrometheusRule; `go generate ./deploy/...`
// rewrites it and TestPrometheusRuleIsGenerated fails when it is stale.
//
// Runbook links: every alert's runbook_url is
// https://github.com/reconciler/reconciler/blob/main/docs/runbooks.md#<alert
// name in lower case>, a `##` section of docs/runbooks.md. An installation
// that keeps its own copy (a fork, an internal mirror, a release tag) sets
// the part before "#" once, in its overlay: the example overlay's
// runbook-base ConfigMap (a local-config resource, never applied) feeds a
// kustomize replacement that rewrites every runbook_url of the
// PrometheusRule.
//
// Tests that need promtool or prometheus (the Debian package prometheus)
// skip with a message when the binary is not on PATH; .ci/run installs it.
package deploy

//go:generate go test -run TestPrometheusRuleIsGenerated . -args -update
