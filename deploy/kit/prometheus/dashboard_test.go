package prometheus_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/model/labels"
	promparser "github.com/prometheus/prometheus/promql/parser"
)

// runtimeNames returns the series of the Go and process collectors, which
// the collector registers next to its own (cmd/custody/run.go).
func runtimeNames(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(rootDir, "cmd", "custody", "run.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	if !strings.Contains(string(src), "collectors.NewGoCollector(") || !strings.Contains(string(src), "collectors.NewProcessCollector(") {
		return names
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// TestCollectorDashboard checks the collector-health dashboard's PromQL:
// every expression parses, and every metric is one the collector exports.
func TestCollectorDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(rootDir, "deploy", "grafana", "dashboards", "custody-collector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	known := registeredNames(t)
	for n := range runtimeNames(t) {
		known[n] = true
	}
	// Grafana's own range variable, replaced before the query reaches
	// Prometheus.
	grafanaVars := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			n++
			expr, err := promparser.NewParser(promparser.Options{}).ParseExpr(grafanaVars.Replace(tg.Expr))
			if err != nil {
				t.Errorf("panel %q: %q: %v", p.Title, tg.Expr, err)
				continue
			}
			promparser.Inspect(expr, func(node promparser.Node, _ []promparser.Node) error {
				vs, ok := node.(*promparser.VectorSelector)
				if !ok {
					return nil
				}
				name := vs.Name
				for _, m := range vs.LabelMatchers {
					if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
						name = m.Value
					}
				}
				if !known[name] && !prometheusOwn[name] {
					t.Errorf("panel %q uses %s, which the collector does not export", p.Title, name)
				}
				return nil
			})
		}
	}
	if n < 5 {
		t.Errorf("%d PromQL targets: is this the collector dashboard?", n)
	}
}
