package queries

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage/engine"
)

var update = flag.Bool("update", false, "rewrite the expected rows of testdata/cases/*.txt")

// caseFile is one script in testdata/cases: which query to run with which
// window and parameters, then "----" and the expected result as CSV.
//
//	# what the case shows
//	query: aks-exec
//	from: 2025-05-06T00:00:00Z
//	to: 2025-05-07T00:00:00Z
//	param: name=value
//	expect: rows | empty
//	----
//	<expected CSV, header first>
type caseFile struct {
	path     string
	comments []string
	query    string
	from, to time.Time
	args     map[string]string
	params   []string // as written, for rewriting
	empty    bool
	want     string
}

func readCase(t *testing.T, path string) caseFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, want, ok := strings.Cut(string(b), "----\n")
	if !ok {
		t.Fatalf("%s: no ---- line before the expected rows", path)
	}
	c := caseFile{path: path, args: map[string]string{}, want: want}
	for _, line := range strings.Split(strings.TrimSpace(head), "\n") {
		if strings.HasPrefix(line, "#") {
			c.comments = append(c.comments, line)
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		switch k {
		case "query":
			c.query = v
		case "from", "to":
			tm, err := ParseTime(v)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if k == "from" {
				c.from = tm
			} else {
				c.to = tm
			}
		case "param":
			name, val, ok := strings.Cut(v, "=")
			if !ok {
				t.Fatalf("%s: param %q is not name=value", path, v)
			}
			c.args[name] = val
			c.params = append(c.params, v)
		case "expect":
			c.empty = v == "empty"
		default:
			t.Fatalf("%s: unknown key %q", path, k)
		}
	}
	return c
}

func (c caseFile) render(got string) string {
	var b strings.Builder
	for _, l := range c.comments {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "query: %s\n", c.query)
	fmt.Fprintf(&b, "from: %s\n", c.from.Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "to: %s\n", c.to.Format(time.RFC3339Nano))
	for _, p := range c.params {
		fmt.Fprintf(&b, "param: %s\n", p)
	}
	if c.empty {
		b.WriteString("expect: empty\n")
	}
	b.WriteString("----\n")
	b.WriteString(got)
	return b.String()
}

// TestCatalogueCases runs every case script on its store and compares the
// exact rows: testdata/cases on the seeded store, testdata/deliveries/cases
// on the deliveries store (every event delivered through Event Hubs, an
// archive and Log Analytics). Every query must have at least one case that
// returns rows.
//
// On a server the queries run as the reader role's account, as `custody
// query` does.
func TestCatalogueCases(t *testing.T) { storetest.Run(t, testCatalogueCases) }

func testCatalogueCases(t *testing.T, b storetest.Backend) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	t.Run("seed", func(t *testing.T) {
		eng, srv := querytest.OpenSeededOn(t, b)
		runCases(t, cat, querytest.Reader(t, eng, srv), filepath.Join("testdata", "cases"), covered)
	})
	t.Run("deliveries", func(t *testing.T) {
		f, _ := querytest.OpenDeliveriesOn(t, b)
		runCases(t, cat, querytest.Reader(t, f.Eng, f.Server), filepath.Join("testdata", "deliveries", "cases"), covered)
	})
	var missing []string
	for _, q := range cat.List() {
		if !covered[q.Name] {
			missing = append(missing, q.Name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("queries without a case returning rows in testdata/cases or testdata/deliveries/cases: %s", strings.Join(missing, ", "))
	}
}

// runCases runs the case scripts of dir on eng and records in covered the
// queries that returned rows.
func runCases(t *testing.T, cat *Catalogue, eng engine.Engine, dir string, covered map[string]bool) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no case scripts in %s", dir)
	}
	ctx := context.Background()
	for _, p := range paths {
		c := readCase(t, p)
		t.Run(strings.TrimSuffix(filepath.Base(p), ".txt"), func(t *testing.T) {
			q, err := cat.Get(c.query)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := Run(ctx, eng, q, c.args, c.from, c.to)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n, err := Render(&buf, rows, RenderOptions{Format: FormatCSV})
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.empty != (n == 0) {
				t.Errorf("%d rows, but the case says expect: %v", n, map[bool]string{true: "empty", false: "rows"}[c.empty])
			}
			if !c.empty {
				covered[c.query] = true
			}
			got := buf.String()
			if *update {
				if err := os.WriteFile(p, []byte(c.render(got)), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != c.want {
				t.Errorf("rows differ (go test ./queries -run TestCatalogueCases -update rewrites them)\n--- got\n%s--- want\n%s", got, c.want)
			}
		})
	}
}

// TestParameterAsData passes SQL in a parameter: it must be compared as a
// value (no rows, no error) and the store must be unchanged. The engine
// has every privilege, so injected SQL would run if it got through.
func TestParameterAsData(t *testing.T) { storetest.Run(t, testParameterAsData) }

func testParameterAsData(t *testing.T, b storetest.Backend) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := querytest.OpenSeededOn(t, b)
	ctx := context.Background()
	count := func() string {
		rows, err := eng.Query(ctx, "SELECT toString(count()) FROM custody.events", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var n string
		for rows.Next() {
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	before := count()
	from := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2025, 5, 7, 0, 0, 0, 0, time.UTC)
	for _, v := range []string{
		"x' OR '1'='1",
		"dev@contoso.com' OR 1=1 --",
		"'; DROP TABLE custody.events; --",
		`\' OR 1=1 --`,
		"dev@contoso.com}{to:DateTime64(6)}",
		"{actor:String}",
	} {
		q, _ := cat.Get("principal-timeline")
		rows, err := Run(ctx, eng, q, map[string]string{"actor": v}, from, to)
		if err != nil {
			t.Fatalf("actor %q: %v", v, err)
		}
		res, err := Collect(rows)
		if err != nil {
			t.Fatalf("actor %q: %v", v, err)
		}
		if len(res.Rows) != 0 {
			t.Errorf("actor %q matched %d rows; a parameter must only ever be compared as data", v, len(res.Rows))
		}
	}
	// The same with a string that does exist, to show the comparison is
	// live: a quote-free control value matches.
	q, _ := cat.Get("principal-timeline")
	rows, err := Run(ctx, eng, q, map[string]string{"actor": "dev@contoso.com"}, from, to)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Collect(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) == 0 {
		t.Error("control value matched nothing")
	}
	// List values are data too, quotes and backslashes included: hostile
	// prefixes beside the default ones match no actor, so secret-access
	// returns what it returns with the defaults alone.
	sa, _ := cat.Get("secret-access")
	rowsOf := func(args map[string]string) int {
		rows, err := Run(ctx, eng, sa, args, from, to)
		if err != nil {
			t.Fatalf("secret-access %v: %v", args, err)
		}
		res, err := Collect(rows)
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Rows)
	}
	def := sa.Params[0].Default
	if want, got := rowsOf(nil), rowsOf(map[string]string{"system_prefixes": def + `,it's,CONTOSO\alice,'] OR 1=1 --,\',x`}); got != want || want == 0 {
		t.Errorf("secret-access with hostile list values: %d rows, with the defaults %d (want equal, non-zero)", got, want)
	}
	if after := count(); after != before {
		t.Errorf("events: %s before, %s after", before, after)
	}
}

// TestBadParameters checks that bad values are refused before anything
// reaches the engine, with errors that name the parameter and the fix.
func TestBadParameters(t *testing.T) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2025, 5, 6, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	tests := []struct {
		query   string
		args    map[string]string
		from    time.Time
		to      time.Time
		wantErr string
		sentry  error
	}{
		{"aks-exec", map[string]string{"actor": "x"}, from, to,
			`bad query parameter: query aks-exec has no parameter "actor" (it takes none besides --from and --to)`, ErrBadParam},
		{"denial-bursts", map[string]string{"min_denials": "5", "bucket": "5", "db": "system"}, from, to,
			`bad query parameter: query denial-bursts has no parameter "bucket", "db" (it takes bucket_minutes, min_denials)`, ErrBadParam},
		{"principal-timeline", nil, from, to,
			`bad query parameter: query principal-timeline needs --param actor=<String>: user name, UPN, Kubernetes username or Entra object id`, ErrBadParam},
		{"principal-timeline", map[string]string{"actor": "  "}, from, to,
			`bad query parameter: query principal-timeline needs a non-empty actor: user name, UPN, Kubernetes username or Entra object id`, ErrBadParam},
		{"principal-timeline", map[string]string{"actor": "a\x00b"}, from, to,
			`bad query parameter actor (String): value "a\x00b" contains control character U+0000`, ErrBadParam},
		{"principal-timeline", map[string]string{"actor": "\xff"}, from, to,
			`bad query parameter actor (String): value "\xff" is not valid UTF-8`, ErrBadParam},
		{"principal-timeline", map[string]string{"actor": "x"}, to, from,
			`bad time window: from 2025-05-07T00:00:00Z is not before to 2025-05-06T00:00:00Z`, ErrBadWindow},
		{"principal-timeline", map[string]string{"actor": "x"}, time.Time{}, to,
			`bad time window: from and to are required`, ErrBadWindow},
		{"denial-bursts", map[string]string{"min_denials": "many"}, from, to,
			`bad query parameter min_denials (UInt32): "many" is not a whole number from 0 to 4294967295`, ErrBadParam},
		{"denial-bursts", map[string]string{"min_denials": "-1"}, from, to,
			`bad query parameter min_denials (UInt32): "-1" is not a whole number from 0 to 4294967295`, ErrBadParam},
		{"denial-bursts", map[string]string{"min_denials": "0"}, from, to,
			`bad query parameter min_denials (UInt32): 0 is below the minimum 1`, ErrBadParam},
		{"denial-bursts", map[string]string{"bucket_minutes": "5000"}, from, to,
			`bad query parameter bucket_minutes (UInt32): 5000 is above the maximum 1440`, ErrBadParam},
		{"denial-bursts", map[string]string{"bucket_minutes": "99999999999"}, from, to,
			`bad query parameter bucket_minutes (UInt32): "99999999999" is not a whole number from 0 to 4294967295`, ErrBadParam},
		{"denial-bursts", map[string]string{"bucket_minutes": "5; DROP TABLE x"}, from, to,
			`bad query parameter bucket_minutes (UInt32): "5; DROP TABLE x" is not a whole number from 0 to 4294967295`, ErrBadParam},
		{"outside-ip-ranges", map[string]string{"allowed_ranges": "10.0.0.0/8, 300.1.2.3/8"}, from, to,
			`bad query parameter allowed_ranges (Array(String), cidr): "300.1.2.3/8" is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32)`, ErrBadParam},
		{"outside-ip-ranges", map[string]string{"allowed_ranges": "10.0.0.0/33"}, from, to,
			`bad query parameter allowed_ranges (Array(String), cidr): "10.0.0.0/33" is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32)`, ErrBadParam},
		{"outside-ip-ranges", map[string]string{"allowed_ranges": "corp"}, from, to,
			`bad query parameter allowed_ranges (Array(String), cidr): "corp" is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32) or an address`, ErrBadParam},
		{"outside-ip-ranges", map[string]string{"allowed_ranges": "10.0.0.0/8','0.0.0.0/0"}, from, to,
			`bad query parameter allowed_ranges (Array(String), cidr): "10.0.0.0/8'" is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32)`, ErrBadParam},
		{"unapproved-images", map[string]string{"allowed_registries": "mcr.microsoft.com,https://evil.io"}, from, to,
			`bad query parameter allowed_registries (Array(String), registry): "https://evil.io" is not a registry host name (e.g. myacr.azurecr.io, *.azurecr.io, localhost:5000)`, ErrBadParam},
		{"unapproved-images", map[string]string{"allowed_registries": "ghcr.io/evil"}, from, to,
			`bad query parameter allowed_registries (Array(String), registry): "ghcr.io/evil" is not a registry host name (e.g. myacr.azurecr.io, *.azurecr.io, localhost:5000)`, ErrBadParam},
		{"unapproved-images", map[string]string{"allowed_registries": "*.io:5000"}, from, to,
			`bad query parameter allowed_registries (Array(String), registry): "*.io:5000" is not a registry host name (e.g. myacr.azurecr.io, *.azurecr.io, localhost:5000)`, ErrBadParam},
		{"image-blast-radius", map[string]string{"digest": "sha256:abc"}, from, to,
			`bad query parameter digest (String, digest): "sha256:abc" is not an image digest (want sha256: and 64 hex digits)`, ErrBadParam},
		{"image-blast-radius", map[string]string{}, from, to,
			`bad query parameter: query image-blast-radius needs --param digest=<String, digest>: manifest digest, sha256:<64 hex digits>`, ErrBadParam},
		{"resource-timeline", map[string]string{"resource": "/resourceGroups/prod-rg"}, from, to,
			`bad query parameter resource (String, resource): "/resourceGroups/prod-rg" is not an Azure resource id (/subscriptions/<id>/...) or a resource name`, ErrBadParam},
	}
	for _, tt := range tests {
		t.Run(tt.query+"/"+tt.wantErr[:min(len(tt.wantErr), 40)], func(t *testing.T) {
			q, err := cat.Get(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			// A nil engine: a value that got past validation would panic
			// here instead of reaching a store.
			_, err = Run(context.Background(), nil, q, tt.args, tt.from, tt.to)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.wantErr)
			}
			if !errors.Is(err, tt.sentry) {
				t.Errorf("error does not wrap %v", tt.sentry)
			}
		})
	}
}

func TestUnknownQuery(t *testing.T) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	_, err = cat.Get("drop-everything")
	want := fmt.Sprintf(`unknown query "drop-everything" (custody query --list shows the %d known queries)`, len(cat.List()))
	if err == nil || err.Error() != want || !errors.Is(err, ErrUnknownQuery) {
		t.Errorf("got %v, want %s", err, want)
	}
}
