package prometheus_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promparser "github.com/prometheus/prometheus/promql/parser"

	"github.com/custody-audit/custody/ingest"
)

// rootDir is the custody module, whose Go code registers the metrics.
const rootDir = "../../.."

// prometheusOwn are series Prometheus itself writes for every target.
var prometheusOwn = map[string]bool{"up": true}

// registeredNames returns every metric name the custody module's non-test
// Go code declares: prometheus.*Opts literals (Namespace, Subsystem, Name
// as string literals or constants of the same file) and NewDesc calls. A
// histogram or summary also yields its _bucket, _sum and _count series.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(rootDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// deploy/kit is a module of its own; testdata and hidden
			// directories hold no registrations.
			if rel, _ := filepath.Rel(rootDir, path); rel == filepath.Join("deploy", "kit") || d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && rel != ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		consts := fileStringConsts(f)
		str := func(e ast.Expr) (string, bool) {
			switch v := e.(type) {
			case *ast.BasicLit:
				if v.Kind == token.STRING {
					s, err := strconv.Unquote(v.Value)
					return s, err == nil
				}
			case *ast.Ident:
				s, ok := consts[v.Name]
				return s, ok
			}
			return "", false
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch v := n.(type) {
			case *ast.CompositeLit:
				sel, ok := v.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
					return true
				}
				var ns, sub, name string
				for _, el := range v.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, _ := kv.Key.(*ast.Ident)
					s, ok := str(kv.Value)
					if key == nil || !ok {
						continue
					}
					switch key.Name {
					case "Namespace":
						ns = s
					case "Subsystem":
						sub = s
					case "Name":
						name = s
					}
				}
				if name == "" {
					t.Errorf("%s: %s literal with a Name this test cannot read", fset.Position(v.Pos()), sel.Sel.Name)
					return true
				}
				fq := prometheus.BuildFQName(ns, sub, name)
				names[fq] = true
				if sel.Sel.Name == "HistogramOpts" || sel.Sel.Name == "SummaryOpts" {
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						names[fq+suffix] = true
					}
				}
			case *ast.CallExpr:
				sel, ok := v.Fun.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "NewDesc" || len(v.Args) == 0 {
					return true
				}
				if s, ok := str(v.Args[0]); ok {
					names[s] = true
				} else {
					t.Errorf("%s: NewDesc with a name this test cannot read", fset.Position(v.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// fileStringConsts returns the string constants declared anywhere in f.
func fileStringConsts(f *ast.File) map[string]string {
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		gd, ok := n.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			return true
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if s, err := strconv.Unquote(lit.Value); err == nil {
							out[name.Name] = s
						}
					}
				}
			}
		}
		return true
	})
	return out
}

// describeRecorder records the descriptors of everything registered.
type describeRecorder struct{ names map[string]bool }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r describeRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}
func (r describeRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}
func (r describeRecorder) Unregister(prometheus.Collector) bool { return true }

// TestSourceScanFindsIngestMetrics holds the source scan to what the code
// really registers: every collector ingest.NewMetrics registers is found.
func TestSourceScanFindsIngestMetrics(t *testing.T) {
	rec := describeRecorder{names: map[string]bool{}}
	if _, err := ingest.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.names) < 5 {
		t.Fatalf("ingest registered %d metrics: %v", len(rec.names), rec.names)
	}
	scanned := registeredNames(t)
	for n := range rec.names {
		if !scanned[n] {
			t.Errorf("ingest registers %s, which the source scan missed", n)
		}
	}
}

// TestRuleMetricsRegistered fails when a rule uses a metric the Go code does
// not register, so renaming a metric breaks this test rather than the alert.
func TestRuleMetricsRegistered(t *testing.T) {
	registered := registeredNames(t)
	used := map[string]bool{}
	for file, rgs := range ruleFiles(t) {
		for _, rg := range rgs.Groups {
			for _, r := range rg.Rules {
				expr, err := promparser.NewParser(promparser.Options{}).ParseExpr(r.Expr)
				if err != nil {
					t.Fatalf("%s: %s: %v", file, r.Alert, err)
				}
				promparser.Inspect(expr, func(n promparser.Node, _ []promparser.Node) error {
					vs, ok := n.(*promparser.VectorSelector)
					if !ok {
						return nil
					}
					name := vs.Name
					for _, m := range vs.LabelMatchers {
						if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
							name = m.Value
						}
					}
					if name == "" {
						t.Errorf("%s: %s selects series without a metric name", file, r.Alert)
						return nil
					}
					used[name] = true
					if !registered[name] && !prometheusOwn[name] {
						t.Errorf("%s: alert %s uses %s, which no custody Go code registers", file, r.Alert, name)
					}
					return nil
				})
			}
		}
	}
	t.Logf("metrics used by the rules: %v", slices.Sorted(maps.Keys(used)))
}
