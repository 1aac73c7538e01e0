package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	grafana "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// sdkError returns err, or nil when it is an empty cog.BuildErrors (the
// SDK returns its error list as an error even when the list is empty).
func sdkError(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// TestDashboardDecodesWithGrafanaTypes decodes the dashboard strictly
// with Grafana's own Go types (grafana-foundation-sdk): a field Grafana's
// schema does not have, a value of the wrong type, a panel option its
// panel plugin does not know, or a query that is not a Prometheus query is
// an error; then the SDK's validation runs.
func TestDashboardDecodesWithGrafanaTypes(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	// The file is a classic (schema v1) dashboard, which the Grafana sidecar
	// and the dashboard import take; dashboardv2 is another format.
	var d grafana.Dashboard //lint:ignore SA1019 the file is a schema v1 dashboard
	if err := sdkError(d.UnmarshalJSONStrict(b)); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if err := sdkError(d.Validate()); err != nil {
		t.Errorf("%s: %v", dashboardPath, err)
	}
	// The SDK drops a panel or a query whose strict decoding returns its
	// empty error list (see sdkError), so each panel and each query is
	// decoded again on its own.
	var raw struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	n := 0
	var decode func(where string, ps []json.RawMessage)
	decode = func(where string, ps []json.RawMessage) {
		for i, rp := range ps {
			var head struct {
				Type    string            `json:"type"`
				Title   string            `json:"title"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []json.RawMessage `json:"targets"`
			}
			if err := json.Unmarshal(rp, &head); err != nil {
				t.Fatal(err)
			}
			at := fmt.Sprintf("%s[%d] %q", where, i, head.Title)
			if head.Type == "row" {
				var fields map[string]json.RawMessage
				_ = json.Unmarshal(rp, &fields)
				fields["panels"] = json.RawMessage("[]")
				rowOnly, _ := json.Marshal(fields)
				var row grafana.RowPanel
				if err := sdkError(row.UnmarshalJSONStrict(rowOnly)); err != nil {
					t.Errorf("%s: %v", at, err)
				}
				decode(at+".panels", head.Panels)
				continue
			}
			var p grafana.Panel
			if err := sdkError(p.UnmarshalJSONStrict(rp)); err != nil {
				t.Errorf("%s: %v", at, err)
				continue
			}
			if err := sdkError(p.Validate()); err != nil {
				t.Errorf("%s: %v", at, err)
			}
			if p.Datasource == nil || p.Datasource.Type == nil || *p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want a Prometheus one", at, p.Datasource)
			}
			if len(head.Targets) == 0 {
				t.Errorf("%s: no query", at)
			}
			for j, tg := range head.Targets {
				var q prometheus.Dataquery
				if err := sdkError(q.UnmarshalJSONStrict(tg)); err != nil {
					t.Errorf("%s target %d: not a Prometheus query: %v", at, j, err)
				} else if err := sdkError(q.Validate()); err != nil {
					t.Errorf("%s target %d: %v", at, j, err)
				} else if q.Expr == "" {
					t.Errorf("%s target %d: no expr", at, j)
				}
				n++
			}
		}
	}
	decode("panels", raw.Panels)
	if n < 20 {
		t.Errorf("%d Prometheus queries decoded, want the dashboard's", n)
	}
}
