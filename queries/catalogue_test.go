package queries

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoadEmbedded(t *testing.T) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	qs := cat.List()
	if len(qs) < 20 {
		t.Errorf("%d queries, the catalogue promises at least 20", len(qs))
	}
	for _, q := range qs {
		if q.Window <= 0 || q.Question == "" || q.Why == "" || q.Title == "" {
			t.Errorf("%s: incomplete metadata: %+v", q.Name, q)
		}
		if !strings.Contains(q.SQL, "event_time >= {from:DateTime64(6)}") || !strings.Contains(q.SQL, "event_time < {to:DateTime64(6)}") {
			t.Errorf("%s: the window must be event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}", q.Name)
		}
		// A query that collapses copies does it with the shared idiom
		// the page's Go-built SQL uses too (unapproved-images partitions
		// by event and image: one row per image of an event).
		if strings.Contains(q.SQL, "OVER copies") && !strings.Contains(q.SQL, "PARTITION BY event_id, image") {
			for _, frag := range []string{CopiesWindow, FirstCopy, DeliveredVia} {
				if !strings.Contains(q.SQL, frag) {
					t.Errorf("%s: collapses copies without %q", q.Name, frag)
				}
			}
		}
	}
}

const goodHeader = `-- title: T
-- question: Q?
-- why: W.
-- mitre:
--   - T1609 Container Administration Command
-- window: 7d
`

const goodWhere = "FROM {db:Identifier}.events WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}"

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, file, wantErr string
	}{
		{"Bad_Name", goodHeader + "SELECT 1 " + goodWhere,
			`query name "Bad_Name" must be lower-case words joined by '-'`},
		{"no-meta", "SELECT 1 " + goodWhere,
			"missing metadata comment block"},
		{"no-sql", goodHeader,
			"no SQL after the metadata block"},
		{"unknown-key", goodHeader + "-- colour: red\nSELECT 1 " + goodWhere,
			"metadata: yaml: unmarshal errors:\n  line 7: field colour not found in type queries.meta"},
		{"no-why", strings.Replace(goodHeader, "-- why: W.\n", "", 1) + "SELECT 1 " + goodWhere,
			"metadata: why is required"},
		{"bad-mitre", strings.Replace(goodHeader, "T1609 Container", "Container", 1) + "SELECT 1 " + goodWhere,
			`metadata: MITRE technique "Container Administration Command" must read "T1234[.567] Name"`},
		{"bad-window", strings.Replace(goodHeader, "7d", "soon", 1) + "SELECT 1 " + goodWhere,
			`metadata: window: duration "soon": want e.g. 90m, 24h, 7d, 2w`},
		{"undeclared", goodHeader + "SELECT {who:String} " + goodWhere,
			"SQL uses {who:String}, which the metadata does not declare"},
		{"type-mismatch", goodHeader + "-- params:\n--   - {name: who, type: String, help: h}\nSELECT {who:UInt8} " + goodWhere,
			"SQL uses {who:UInt8} but the metadata declares String"},
		{"unused", goodHeader + "-- params:\n--   - {name: who, type: String, help: h}\nSELECT 1 " + goodWhere,
			`parameter "who" is declared but not used in the SQL`},
		{"no-window", goodHeader + "SELECT 1 FROM {db:Identifier}.events",
			`parameter "from" is declared but not used in the SQL`},
		{"reserved", goodHeader + "-- params:\n--   - {name: from, type: String, help: h}\nSELECT 1 " + goodWhere,
			`metadata: parameter "from" declared twice or reserved`},
		{"bad-type", goodHeader + "-- params:\n--   - {name: n, type: Float64, help: h}\nSELECT {n:Float64} " + goodWhere,
			`metadata: parameter "n": unsupported type "Float64" (want String, UInt8..UInt64, Int8..Int64, DateTime64(6) or Array(String))`},
		{"bad-default", goodHeader + "-- params:\n--   - {name: n, type: UInt8, default: 300, help: h}\nSELECT {n:UInt8} " + goodWhere,
			`metadata: parameter "n": default: bad query parameter n (UInt8): "300" is not a whole number from 0 to 255`},
		{"bad-kind", goodHeader + "-- params:\n--   - {name: n, type: String, kind: cidr, help: h}\nSELECT {n:String} " + goodWhere,
			`metadata: parameter "n": kind cidr needs type Array(String)`},
		{"no-help", goodHeader + "-- params:\n--   - {name: n, type: String}\nSELECT {n:String} " + goodWhere,
			`metadata: parameter "n": help is required`},
		{"two-statements", goodHeader + "SELECT 1 " + goodWhere + ";\nDROP TABLE x",
			"SQL must be one statement without ';'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"c/" + tt.name + ".sql": {Data: []byte(tt.file)}}
			_, err := loadFS(fsys, "c")
			want := "bad query catalogue: " + tt.name + ".sql: " + tt.wantErr
			if err == nil || err.Error() != want {
				t.Errorf("error\n got: %v\nwant: %s", err, want)
			}
			if err != nil && !errors.Is(err, ErrBadCatalogue) {
				t.Error("error does not wrap ErrBadCatalogue")
			}
		})
	}
}

func TestParamBind(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	tests := []struct {
		p    Param
		in   string
		want string
	}{
		{Param{Name: "a", Type: "Array(String)", Kind: kindCIDR}, " 10.1.2.3/8, 2001:DB8::1/32 ,192.0.2.7,, ::ffff:192.0.2.8", "['10.0.0.0/8','2001:db8::/32','192.0.2.7/32','192.0.2.8/32']"},
		{Param{Name: "a", Type: "Array(String)", Kind: kindCIDR}, "", "[]"},
		{Param{Name: "a", Type: "Array(String)", Kind: kindRegistry}, "MCR.microsoft.com, *.azurecr.io,localhost:5000", "['mcr.microsoft.com','*.azurecr.io','localhost:5000']"},
		{Param{Name: "a", Type: "Array(String)"}, "system:node:, x y", "['system:node:','x y']"},
		{Param{Name: "s", Type: "String"}, `it's a \ test`, `it's a \ test`},
		{Param{Name: "s", Type: "String", Kind: kindDigest}, "SHA256:" + strings.Repeat("AB", 32), "sha256:" + strings.Repeat("ab", 32)},
		{Param{Name: "s", Type: "String", Kind: kindResource}, "/SUBSCRIPTIONS/4F1A2B3C-0000-4000-8000-00000000C0DE/resourceGroups/RG/", "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg"},
		{Param{Name: "s", Type: "String", Kind: kindResource}, "Prod-AKS", "Prod-AKS"},
		{Param{Name: "s", Type: "String", Kind: kindIP}, "::ffff:10.0.0.1", "10.0.0.1"},
		{Param{Name: "n", Type: "UInt64", Max: u(100)}, " 42 ", "42"},
		{Param{Name: "n", Type: "UInt64"}, "18446744073709551615", "18446744073709551615"},
		{Param{Name: "n", Type: "Int16", Min: u(-5)}, "-5", "-5"},
		{Param{Name: "t", Type: "DateTime64(6)"}, "2025-05-06T11:12:33.104512+02:00", "2025-05-06 09:12:33.104512"},
		{Param{Name: "t", Type: "DateTime64(6)"}, "2025-05-06", "2025-05-06 00:00:00.000000"},
	}
	for _, tt := range tests {
		got, err := tt.p.Bind(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s (%s) %q: got %q, %v; want %q", tt.p.Name, tt.p.describe(), tt.in, got, err, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90m": 90 * time.Minute, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: got %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0d", "-1h", "1.5d", "d", "7x"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRender(t *testing.T) {
	res := &Result{
		Columns: []Column{{"event_time", "DateTime64(6, 'UTC')"}, {"actor", "String"}, {"n", "UInt64"}, {"ratio", "Float64"}, {"note", "LowCardinality(String)"}},
		Rows: [][]string{
			{"2025-05-06 09:12:33.104512", "dev@contoso.com", "42", "0.5", "plain"},
			{"2025-05-06 09:13:00.000000", "evil\x1b[31mred\x1b[0m", "7", "nan", "line1\nline2, \"quoted\""},
		},
	}
	tests := []struct {
		opts RenderOptions
		want string
	}{
		{RenderOptions{Format: FormatJSON}, `{"event_time":"2025-05-06T09:12:33.104512Z","actor":"dev@contoso.com","n":42,"ratio":0.5,"note":"plain"}
{"event_time":"2025-05-06T09:13:00.000000Z","actor":"evil\u001b[31mred\u001b[0m","n":7,"ratio":"nan","note":"line1\nline2, \"quoted\""}
`},
		{RenderOptions{Format: FormatCSV}, "event_time,actor,n,ratio,note\n" +
			"2025-05-06T09:12:33.104512Z,dev@contoso.com,42,0.5,plain\n" +
			"2025-05-06T09:13:00.000000Z,\x1b[31mred\x1b[0m,7,nan,\"line1\nline2, \"\"quoted\"\"\"\n"},
		// Control characters are shown, never sent to the terminal;
		// long cells are cut to fit 60 columns.
		{RenderOptions{Format: FormatTable, Width: 60}, "" +
			"EVENT_TIME                  ACTOR      N   RATIO  NOTE\n" +
			"2025-05-06 09:12:33.104512  dev@cont…  42  0.5    plain\n" +
			"2025-05-06 09:13:00.000000  evil\\u00…  7   nan    line1\\nli…\n"},
	}
	// The CSV case keeps bytes as stored: CSV is for machines.
	tests[1].want = strings.Replace(tests[1].want, "\x1b[31mred", "evil\x1b[31mred", 1)
	for _, tt := range tests {
		var buf bytes.Buffer
		n, err := Render(&buf, res.Stream(), tt.opts)
		if err != nil || n != 2 {
			t.Fatalf("%s: %d rows, %v", tt.opts.Format, n, err)
		}
		if buf.String() != tt.want {
			t.Errorf("%s\n got:\n%s\nwant:\n%s", tt.opts.Format, buf.String(), tt.want)
		}
	}
	if _, err := Render(&bytes.Buffer{}, res.Stream(), RenderOptions{Format: "xml"}); err == nil || err.Error() != `unknown output format "xml" (want table, json, csv)` {
		t.Errorf("xml: %v", err)
	}
}

// TestConflictFieldsAgree holds delivery-conflicts to ContentFields, the
// list `custody status` compares: the query fingerprints exactly those
// fields and names each one it finds differing.
func TestConflictFieldsAgree(t *testing.T) {
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	q, err := cat.Get("delivery-conflicts")
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(strings.Fields(q.SQL), " ")
	fp := "cityHash64( " + strings.Join(ContentFields(), ", ") + ")"
	if n := strings.Count(sql, fp); n != 3 {
		t.Errorf("delivery-conflicts fingerprints ContentFields %d times, want 3 (the copy, min and max): %s", n, fp)
	}
	for _, f := range ContentFields() {
		if !strings.Contains(sql, "if(uniqExact("+f+") > 1, '"+f+"', '')") {
			t.Errorf("delivery-conflicts does not name %s when it differs", f)
		}
	}
}
