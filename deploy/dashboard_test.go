package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const dashboardPath = "grafana/reconciler.json"

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Instant    bool           `json:"instant"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// loadDashboard reads the dashboard; panels of collapsed rows are
// flattened into the list.
func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	return d, all
}

// TestDashboardLoads checks the dashboard's structure: a datasource
// variable and no hard-coded datasource, unique panel ids, a layout without
// overlaps, a query in every panel, and a panel for each topic operators
// need.
func TestDashboardLoads(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want 39 or later (Grafana 11 and 12)", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
	}
	if vars["datasource"] != "datasource" {
		t.Fatalf("no variable \"datasource\" of type datasource: %v", vars)
	}
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("datasource variable queries %s, want \"prometheus\"", v.Query)
		}
	}

	// No datasource UID but the variable, anywhere in the file.
	var raw any
	b, _ := os.ReadFile(dashboardPath)
	_ = json.Unmarshal(b, &raw)
	walkJSON(raw, "", func(path string, obj map[string]any) {
		ds, ok := obj["datasource"]
		if !ok {
			return
		}
		ref, ok := ds.(map[string]any)
		if !ok {
			t.Errorf("%s.datasource is %v, want {type, uid: ${datasource}}", path, ds)
			return
		}
		builtin := ref["type"] == "grafana" && ref["uid"] == "-- Grafana --"
		if ref["uid"] != "${datasource}" && !builtin {
			t.Errorf("%s.datasource = %v: a hard-coded datasource; use uid ${datasource}", path, ref)
		}
	})

	ids := map[int]string{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var rects []rect
	covered := map[string]bool{}
	for _, p := range panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, r := range rects {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", r.title, p.Title)
			}
		}
		rects = append(rects, rect{p.Title, g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q, query %s: empty expression", p.Title, tg.RefID)
			}
			for _, m := range metricNames(tg.Expr) {
				covered[m] = true
			}
		}
	}
	// A panel for each topic of the issue, by the metric it must query.
	for _, m := range []string{
		"reconciler_events_total", "reconciler_reconcile_total", "reconciler_writes_total",
		"reconciler_api_requests_total", "reconciler_rate_budget_requests", "reconciler_rate_budget_window_seconds",
		"reconciler_api_rate_limited_total", "reconciler_rate_budget_wait_seconds_bucket",
		"reconciler_api_request_duration_seconds_bucket", "reconciler_queue_depth", "reconciler_held_events",
		"reconciler_inflight_reconciles", "reconciler_dead_letters_total", "reconciler_event_lag_seconds_bucket",
		"reconciler_backfill_pending", "reconciler_backfill_scripts_total",
		"reconciler_last_success_timestamp_seconds", "reconciler_build_info",
		"reconciler_api_ratelimit_quota", "reconciler_api_ratelimit_remaining", "reconciler_api_other_tools_requests",
	} {
		if !covered[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
}

var selectorRE = regexp.MustCompile(`\b(reconciler_[a-zA-Z0-9_]+)(\{[^}]*\})?`)

// TestDashboardFiltersByClusterAndNamespace: the cluster and namespace
// variables exist, in that order before job and instance, and every series
// selector of every query and variable uses both, so one Grafana can show
// one installation among many.
func TestDashboardFiltersByClusterAndNamespace(t *testing.T) {
	d, panels := loadDashboard(t)
	var order []string
	for _, v := range d.Templating.List {
		order = append(order, v.Name)
	}
	if strings.Join(order, ",") != "datasource,cluster,namespace,job,instance" {
		t.Errorf("variables %v, want datasource, cluster, namespace, job, instance", order)
	}
	check := func(where, expr string, vars ...string) {
		sels := selectorRE.FindAllStringSubmatch(expr, -1)
		if len(sels) == 0 {
			t.Errorf("%s: no reconciler_ series in %q", where, expr)
		}
		for _, m := range sels {
			for _, v := range vars {
				if !strings.Contains(m[2], v+`=~"$`+v+`"`) {
					t.Errorf("%s: %s%s does not filter by %s=~\"$%s\"", where, m[1], m[2], v, v)
				}
			}
		}
	}
	for _, p := range panels {
		for _, tg := range p.Targets {
			check(fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr, "cluster", "namespace")
		}
	}
	for _, v := range d.Templating.List {
		switch v.Name {
		case "namespace":
			check("variable namespace", v.Definition, "cluster")
		case "job", "instance":
			check("variable "+v.Name, v.Definition, "cluster", "namespace")
		}
	}
}

// walkJSON calls f for every object in v, with a path for messages.
func walkJSON(v any, path string, f func(path string, obj map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(path, x)
		for k, c := range x {
			walkJSON(c, path+"."+k, f)
		}
	case []any:
		for i, c := range x {
			walkJSON(c, fmt.Sprintf("%s[%d]", path, i), f)
		}
	}
}

var metricNameRE = regexp.MustCompile(`\breconciler_[a-zA-Z0-9_]+`)

// metricNames returns the reconciler metric names an expression mentions.
// Every metric of the project starts with reconciler_ and no label does.
func metricNames(expr string) []string { return metricNameRE.FindAllString(expr, -1) }

// grafanaVars are what Grafana substitutes in a query before Prometheus
// sees it; the test substitutes the same to check the queries.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__interval", "15s", "${__interval}", "15s",
	"$__range", "1h", "${__range}", "1h",
	"${cluster}", ".*", "$cluster", ".*",
	"${namespace}", ".*", "$namespace", ".*",
	"${job}", ".*", "$job", ".*",
	"${instance}", ".*", "$instance", ".*",
)

// expandVars substitutes the dashboard's variables, and reports any left.
func expandVars(expr string) (string, error) {
	out := grafanaVars.Replace(expr)
	if i := strings.IndexByte(out, '$'); i >= 0 {
		return "", fmt.Errorf("unknown variable at %q", out[i:])
	}
	return out, nil
}

// TestDashboardQueriesParse asks a real Prometheus server to evaluate
// every panel's query (instant queries as instant, the others as range
// queries, so a query of the wrong type fails too) and every variable's
// series selector, after substituting the variables as Grafana does.
func TestDashboardQueriesParse(t *testing.T) {
	d, panels := loadDashboard(t)
	prom := startPrometheus(t, "")
	now := time.Now()
	rangeParams := func(expr string) url.Values {
		return url.Values{"query": {expr}, "start": {strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)},
			"end": {strconv.FormatInt(now.Unix(), 10)}, "step": {"15"}}
	}
	n := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr, err := expandVars(tg.Expr)
			if err != nil {
				t.Errorf("panel %q, query %s: %v", p.Title, tg.RefID, err)
				continue
			}
			if tg.Instant {
				_, err = prom.api("/api/v1/query", url.Values{"query": {expr}})
			} else {
				_, err = prom.api("/api/v1/query_range", rangeParams(expr))
			}
			if err != nil {
				t.Errorf("panel %q, query %s: Prometheus refuses %q: %v", p.Title, tg.RefID, expr, err)
			}
			n++
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *[a-zA-Z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: definition %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		sel, err := expandVars(m[1])
		if err == nil {
			_, err = prom.api("/api/v1/series", url.Values{"match[]": {sel}})
		}
		if err != nil {
			t.Errorf("variable %s: selector %q: %v", v.Name, m[1], err)
		}
		n++
	}
	t.Logf("%d queries accepted by Prometheus", n)
}
