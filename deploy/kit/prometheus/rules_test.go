package prometheus_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"go.yaml.in/yaml/v3"
)

const rulesDir = "../../prometheus"

// unitTestFile is promtool's rule unit-test file format (the subset the
// cases here use: alert tests).
type unitTestFile struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	Tests              []testGroup    `yaml:"tests"`
}

type testGroup struct {
	Name          string          `yaml:"name"`
	Interval      model.Duration  `yaml:"interval"`
	InputSeries   []series        `yaml:"input_series"`
	AlertRuleTest []alertTestCase `yaml:"alert_rule_test"`
}

type series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTestCase struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

// alert is one firing alert: its labels and expanded annotations, in the
// comparable form promtool prints.
type alert struct {
	labels, annotations string
}

func (a alert) String() string { return a.labels + " " + a.annotations }

func sortedPairs(m map[string]string) string {
	ks := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ruleFiles returns the rule files of deploy/prometheus, parsed and
// validated by Prometheus's rule parser (expressions and templates
// included).
func ruleFiles(t *testing.T) map[string]*rulefmt.RuleGroups {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(rulesDir, "*.rules.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files in %s: %v", rulesDir, err)
	}
	out := map[string]*rulefmt.RuleGroups{}
	for _, p := range paths {
		rgs, errs := rulefmt.ParseFile(p, false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
		for _, err := range errs {
			t.Errorf("%s: %v", p, err)
		}
		if rgs != nil {
			out[filepath.Base(p)] = rgs
		}
	}
	return out
}

// TestRules runs every *.rules.test.yml. Each rules file must have one, and
// every alert of it must be tested firing at least once.
func TestRules(t *testing.T) {
	files := ruleFiles(t)
	for name, rgs := range files {
		testPath := filepath.Join(rulesDir, strings.TrimSuffix(name, ".yml")+".test.yml")
		b, err := os.ReadFile(testPath)
		if err != nil {
			t.Errorf("%s has no unit tests: %v", name, err)
			continue
		}
		var uf unitTestFile
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&uf); err != nil {
			t.Fatalf("%s: %v", testPath, err)
		}
		if !slices.Equal(uf.RuleFiles, []string{name}) {
			t.Errorf("%s: rule_files %v, want [%s]", testPath, uf.RuleFiles, name)
		}
		if uf.EvaluationInterval == 0 {
			uf.EvaluationInterval = model.Duration(time.Minute)
		}
		fired := map[string]bool{}
		for i, g := range uf.Tests {
			t.Run(fmt.Sprintf("%s/%d-%s", name, i, g.Name), func(t *testing.T) {
				runGroup(t, rgs, g, time.Duration(uf.EvaluationInterval), fired)
			})
		}
		for _, rg := range rgs.Groups {
			for _, r := range rg.Rules {
				if r.Alert != "" && !fired[r.Alert] {
					t.Errorf("%s: alert %s is never tested firing", name, r.Alert)
				}
			}
		}
	}
}

// runGroup evaluates every alerting rule of rgs over the group's series at
// each evaluation interval from 0, keeping each alert's active-since time
// (an alert fires once its expression has returned it for `for`), and
// compares the firing alerts at each eval_time with the expected ones.
func runGroup(t *testing.T, rgs *rulefmt.RuleGroups, g testGroup, evalInterval time.Duration, fired map[string]bool) {
	ctx := context.Background()
	interval := time.Duration(g.Interval)
	if interval == 0 {
		interval = time.Minute
	}
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", model.Duration(interval))
	for _, s := range g.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	st := promqltest.LoadedStorage(t, load.String())
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1_000_000)
	query := func(ctx context.Context, q string, ts time.Time) (promql.Vector, error) {
		return instant(ctx, engine, st, q, ts)
	}

	type active struct {
		since time.Time
		alert alert
	}
	want := map[time.Duration]map[string][]string{} // eval time -> alertname -> alerts
	var end time.Duration
	for _, c := range g.AlertRuleTest {
		et := time.Duration(c.EvalTime)
		end = max(end, et)
		if want[et] == nil {
			want[et] = map[string][]string{}
		}
		exp := []string{}
		for _, a := range c.ExpAlerts {
			l := maps.Clone(a.ExpLabels)
			if l == nil {
				l = map[string]string{}
			}
			l["alertname"] = c.Alertname
			exp = append(exp, alert{sortedPairs(l), sortedPairs(a.ExpAnnotations)}.String())
		}
		sort.Strings(exp)
		want[et][c.Alertname] = exp
	}

	state := map[string]map[string]active{} // alertname -> labels -> active
	for ts := time.Duration(0); ts <= end; ts += evalInterval {
		now := timestamp.Time(0).Add(ts)
		for _, rg := range rgs.Groups {
			for _, r := range rg.Rules {
				if r.Alert == "" {
					continue
				}
				vec, err := query(ctx, r.Expr, now)
				if err != nil {
					t.Fatalf("%s at %s: %v", r.Alert, model.Duration(ts), err)
				}
				prev, next := state[r.Alert], map[string]active{}
				for _, smpl := range vec {
					a := expandAlert(ctx, t, r, smpl, now, query)
					since := now
					if p, ok := prev[a.labels]; ok {
						since = p.since
					}
					next[a.labels] = active{since: since, alert: a}
				}
				state[r.Alert] = next
			}
		}
		for name, exp := range want[ts] {
			var got []string
			for _, a := range state[name] {
				if now.Sub(a.since) >= time.Duration(ruleFor(rgs, name)) {
					got = append(got, a.alert.String())
				}
			}
			sort.Strings(got)
			if got == nil {
				got = []string{}
			}
			if len(got) > 0 {
				fired[name] = true
			}
			if !slices.Equal(got, exp) {
				t.Errorf("alert %s at %s:\n got  %q\n want %q", name, model.Duration(ts), got, exp)
			}
		}
	}
}

func ruleFor(rgs *rulefmt.RuleGroups, name string) model.Duration {
	for _, rg := range rgs.Groups {
		for _, r := range rg.Rules {
			if r.Alert == name {
				return r.For
			}
		}
	}
	return 0
}

func instant(ctx context.Context, engine *promql.Engine, st storage.Queryable, q string, ts time.Time) (promql.Vector, error) {
	qry, err := engine.NewInstantQuery(ctx, st, nil, q, ts)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		return promql.Vector{promql.Sample{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}, nil
	}
	return nil, fmt.Errorf("query %q returned %s, want a vector", q, res.Value.Type())
}

// expandAlert builds an alert the way rules.AlertingRule does: the
// sample's labels without __name__, the rule's labels, alertname, and the
// annotations expanded with $labels and $value.
func expandAlert(ctx context.Context, t *testing.T, r rulefmt.Rule, smpl promql.Sample, now time.Time, query template.QueryFunc) alert {
	t.Helper()
	data := template.AlertTemplateData(smpl.Metric.Map(), nil, "", smpl)
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	expand := func(text string) string {
		out, err := template.NewTemplateExpander(ctx, defs+text, "__alert_"+r.Alert, data,
			model.Time(timestamp.FromTime(now)), query, &url.URL{}, nil).Expand()
		if err != nil {
			t.Errorf("alert %s: expanding %q: %v", r.Alert, text, err)
		}
		return out
	}
	l := smpl.Metric.Map()
	delete(l, labels.MetricName)
	for k, v := range r.Labels {
		l[k] = expand(v)
	}
	l["alertname"] = r.Alert
	ann := map[string]string{}
	for k, v := range r.Annotations {
		ann[k] = expand(v)
	}
	return alert{sortedPairs(l), sortedPairs(ann)}
}
