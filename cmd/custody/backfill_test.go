package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/ingest/archive"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage/engine"
)

// writePT1H writes a diagnostic-settings archive blob of n kube-audit-admin
// records (shaped as Microsoft documents AKS resource logs in storage) plus
// one line that is not JSON.
func writePT1H(t *testing.T, dir string, n int) string {
	t.Helper()
	// The resourceId=/... segments of the real layout are left out: the
	// stream name (and the checkpoint file named after it) would exceed
	// the file-name limit under a temporary directory.
	p := filepath.Join(dir, "insights-logs-kube-audit-admin", "y=2025", "m=05", "d=06", "h=09", "m=00", "PT1H.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		log := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"backfill-%04d","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/payments/secrets/db-%d","verb":"get","user":{"username":"alice@contoso.com"},"sourceIPs":["20.61.12.7"],`+
			`"objectRef":{"resource":"secrets","apiVersion":"v1","namespace":"payments","name":"db-%d"},"responseStatus":{"metadata":{},"code":200},`+
			`"requestReceivedTimestamp":"2025-05-06T09:%02d:00.000000Z","stageTimestamp":"2025-05-06T09:%02d:00.100000Z"}`, i, i, i, i%60, i%60)
		fmt.Fprintf(&b, `{"category": "kube-audit-admin", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read", "properties": {"log": %q, "pod": "kube-apiserver-0"}, "resourceId": "/SUBSCRIPTIONS/4F1A2B3C-0000-4000-8000-00000000C0DE/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS", "time": "2025-05-06T09:%02d:00.200000Z"}`+"\n", log+"\n", i%60)
		if i == 3 {
			b.WriteString("{not json\n")
		}
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// custodyCLI runs the real app with the store flags pointing into dir.
func custodyCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	base := []string{"custody", "--store", filepath.Join(dir, "store"), "--signing-key", filepath.Join(dir, "k"),
		"--verify-key", filepath.Join(dir, "k.pub"), "--checkpoint-dir", filepath.Join(dir, "cp"), "--log-level", "warn"}
	err := app.Run(context.Background(), append(base, args...))
	if err != nil || os.Getenv("CUSTODY_TEST_STDERR") != "" {
		t.Logf("custody %s: stderr:\n%s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

func TestBackfillStoresOnce(t *testing.T) { storetest.Run(t, testBackfillStoresOnce) }

func testBackfillStoresOnce(t *testing.T, b storetest.Backend) {
	s := newCLIStore(t, b)
	const n = 25
	arch := filepath.Join(s.dir, "archive")
	writePT1H(t, arch, n)
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		s.mustCLI(args...)
	}

	out, err := s.cli("backfill", "--batch", "4", arch)
	if err != nil {
		t.Fatalf("backfill: %v", err)
	}
	want := fmt.Sprintf("backfill: %d events stored, 0 already stored, 1 quarantined, 0 dropped by policy (%d messages)\n", n, n+1)
	if out != want {
		t.Errorf("first backfill printed %q, want %q", out, want)
	}

	out, err = s.cli("backfill", "--batch", "4", arch)
	if err != nil {
		t.Fatalf("second backfill: %v", err)
	}
	if want := "backfill: 0 events stored, 0 already stored, 0 quarantined, 0 dropped by policy (0 messages)\n"; out != want {
		t.Errorf("second backfill printed %q, want %q", out, want)
	}

	// The time range excludes the archive's hour: nothing is read.
	out, err = s.cli("backfill", "--from", "2025-05-07", arch)
	if err != nil || !strings.Contains(out, "(0 messages)") {
		t.Errorf("out-of-range backfill = %q, %v; want 0 messages", out, err)
	}

	qs := []string{
		"SELECT count() FROM custody.events",
		"SELECT uniqExact(event_id) FROM custody.events",
		"SELECT count() FROM custody.quarantine",
		"SELECT count() FROM custody.events WHERE source_kind='file'",
	}
	for i, got := range s.count(qs...) {
		if want := []uint64{n, n, 1, n}[i]; got != want {
			t.Errorf("%s = %d, want %d", qs[i], got, want)
		}
	}

	if _, err := s.cli("verify"); err != nil {
		t.Errorf("verify after backfill: %v", err)
	}
}

func TestBackfillUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backfill"}, "backfill needs a PATH or --blob-container-url/--blob-connection-string"},
		{[]string{"backfill", "--from", "yesterday", "x"}, `--from: "yesterday" is not 2006-01-02, 2006-01-02T15 or RFC 3339`},
		{[]string{"backfill", "--format", "xml", "x"}, "--format: "},
		{[]string{"backfill", "--blob-connection-string", "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0", "x"}, "give paths or a Blob container, not both"},
		{[]string{"backfill", "--blob-connection-string", "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0"}, "--container is required with --blob-connection-string"},
		{[]string{"backfill", "--from", "2025-05-07", "--to", "2025-05-06", "x"}, "range: from"},
	} {
		_, err := custodyCLI(t, dir, tc.args...)
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want usage error containing %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "c2VjcmV0") {
			t.Errorf("%v: error reveals the account key: %v", tc.args, err)
		}
	}
}

func queryCount(t *testing.T, eng engine.Engine, q string) uint64 {
	t.Helper()
	rows, err := eng.Query(context.Background(), q, nil)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var got uint64
	if !rows.Next() {
		t.Fatalf("%s: no row (%v)", q, rows.Err())
	}
	if err := rows.Scan(&got); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return got
}

// TestBackfillOutcomeMessages: what a failed backfill says, by cause. A
// permanent failure (the content of an object) must say that running it
// again will not help and never offer to resume; a dead engine or a
// transient failure says to run it again. The content errors come from
// the real archive reader over real files.
func TestBackfillOutcomeMessages(t *testing.T) {
	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"records":[]}` + "\n"))
	zw.Close()
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 0x93 // not '{', not the Avro or gzip magic
	files := map[string][]byte{
		"gzip":      gz.Bytes(),
		"random":    random,
		"avro-cut":  []byte("Obj\x01\x04\x14avro.codec"),
		"records":   []byte(`{"records": [{"a":1}, oops]}`),
		"unreadble": []byte(`{"a":1}` + "\n"),
	}
	readErr := func(name string) error {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		if name == "unreadble" {
			os.Remove(p) // gone between listing and reading: an access problem
		}
		st, err := archive.NewLocal(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg := archive.DefaultConfig()
		if name == "records" {
			cfg.Format = archive.FormatRecords
		}
		src, err := archive.New(st, cfg, archive.Resume{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := src.Connect(ctx); err != nil {
			return fmt.Errorf("pipeline backfill: connect source: %w", err)
		}
		for {
			_, ack, err := src.ReadBatch(ctx)
			if err != nil {
				return fmt.Errorf("pipeline backfill: read source: %w", err)
			}
			ack(ctx, nil)
		}
	}
	const (
		noHelp = "running the backfill again will not help"
		resume = "run the same command again to resume"
	)
	for _, tc := range []struct {
		name        string
		err         error
		interrupted bool
		failures    int
		want        []string
		not         []string
	}{
		{name: "gzip", err: readErr("gzip"), want: []string{"gzip-compressed content", noHelp}, not: []string{"resume"}},
		{name: "random bytes", err: readErr("random"), want: []string{"not a JSON object or an Avro file", noHelp}, not: []string{"resume"}},
		{name: "truncated avro", err: readErr("avro-cut"), want: []string{"malformed archive content", noHelp}, not: []string{"resume"}},
		{name: "broken records blob", err: readErr("records"), want: []string{"malformed archive content", noHelp}, not: []string{"resume"}},
		{name: "file vanished", err: readErr("unreadble"), want: []string{"no such file", "fix the path or its permissions"}, not: []string{"resume"}},
		{name: "engine gone", err: fmt.Errorf("pipeline backfill: write 1 batches: append: %w", engine.ErrEngineGone), want: []string{"engine process exited", "engine.log", resume}},
		{name: "other write failure", err: errors.New("pipeline backfill: write 2 batches: connection reset"), want: []string{"connection reset", resume}},
		{name: "interrupted", interrupted: true, want: []string{"interrupted", resume}},
		{name: "objects failed", failures: 2, want: []string{"2 objects could not be read", "retries only them"}, not: []string{"resume"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := backfillOutcome(tc.err, tc.interrupted, tc.failures)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n) {
					t.Errorf("message %q says %q", msg, n)
				}
			}
		})
	}
	if err := backfillOutcome(nil, false, 0); err != nil {
		t.Errorf("success = %v", err)
	}
}

// TestBackfillGrowingFileKeepsPartialLine (issue 11 item 3): Azure appends
// to the current hour's PT1H.json, so a backfill can meet a last line cut
// short. It is left for the next run (not quarantined, its offset not
// stored); once the line is complete the next run stores it: every event
// once, as many as `custody normalize` finds in the finished file.
func TestBackfillGrowingFileKeepsPartialLine(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	dir := t.TempDir()
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		if _, err := custodyCLI(t, dir, args...); err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
	}
	whole := pt1hLines(1, 12)
	cut := strings.Index(whole, pt1hLines(10, 1)) + 200 // inside line 10
	p := filepath.Join(dir, "PT1H.json")
	if err := os.WriteFile(p, []byte(whole[:cut]), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := custodyCLI(t, dir, "backfill", p)
	if err != nil {
		t.Fatalf("first backfill: %v", err)
	}
	want := "backfill: 9 events stored, 0 already stored, 0 quarantined, 0 dropped by policy (9 messages)\n" +
		"incomplete: " + p + " ends in a partial line (still being written); the next run reads it whole\n"
	if out != want {
		t.Errorf("first backfill printed\n%q, want\n%q", out, want)
	}
	if err := os.WriteFile(p, []byte(whole), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = custodyCLI(t, dir, "backfill", p)
	if err != nil {
		t.Fatalf("second backfill: %v", err)
	}
	if want := "backfill: 3 events stored, 0 already stored, 0 quarantined, 0 dropped by policy (3 messages)\n"; out != want {
		t.Errorf("second backfill printed %q, want %q", out, want)
	}
	norm, err := custodyCLI(t, dir, "normalize", p)
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Count(norm, "\n")
	out, err = custodyCLI(t, dir, "sql", "--format", "tsv", "SELECT count(), uniqExact(event_id), (SELECT count() FROM custody.quarantine) FROM custody.events")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) < 3 || got[len(got)-3] != fmt.Sprint(events) || got[len(got)-2] != fmt.Sprint(events) || got[len(got)-1] != "0" {
		t.Errorf("store holds %q (events, distinct, quarantined), want %d, %d, 0 (custody normalize finds %d)", out, events, events, events)
	}
}

// TestOversizeRecordAgrees (issue 11 item 9): a record over
// --max-record-bytes is quarantined by backfill and by normalize alike,
// with a reason that names the limit and the whole record's SHA-256; one
// within a generous limit is an event in both.
func TestOversizeRecordAgrees(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	dir := t.TempDir()
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		if _, err := custodyCLI(t, dir, args...); err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
	}
	lines := strings.SplitAfter(pt1hLines(1, 3), "\n")
	big := strings.Replace(lines[1], `"pod": "kube-apiserver-0"`, `"pod": "`+strings.Repeat("p", 3000)+`"`, 1)
	p := filepath.Join(dir, "PT1H.json")
	if err := os.WriteFile(p, []byte(lines[0]+big+lines[2]), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(strings.TrimSuffix(big, "\n")))
	wantReason := fmt.Sprintf("record of %d bytes is over the max_record_bytes limit of 2048 bytes (raise --max-record-bytes to keep it whole): only its first 2048 bytes are kept; SHA-256 of the whole record: %x", len(big)-1, sum)

	out, err := custodyCLI(t, dir, "--max-record-bytes", "2KiB", "backfill", p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "backfill: 2 events stored, 0 already stored, 1 quarantined, 0 dropped by policy (3 messages)\n"; out != want {
		t.Errorf("backfill printed %q, want %q", out, want)
	}
	out, err = custodyCLI(t, dir, "sql", "--format", "tsv", "SELECT reason, length(raw) FROM custody.quarantine")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, wantReason+"\t2048") {
		t.Errorf("stored quarantine %q, want reason %q and 2048 bytes kept", out, wantReason)
	}

	var stdout, stderr bytes.Buffer
	err = runNormalize(context.Background(), normalizeOptions{Files: []string{p}, MaxRecordBytes: 2048, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout.String(), "\n"); n != 2 {
		t.Errorf("normalize printed %d events, want 2", n)
	}
	if !strings.Contains(stderr.String(), `"reason":"`+wantReason+`"`) {
		t.Errorf("normalize quarantined %q, want reason %q", stderr.String(), wantReason)
	}
	// Within the default limit the same record is an event for both.
	stdout.Reset()
	if err := runNormalize(context.Background(), normalizeOptions{Files: []string{p}, Stdout: &stdout, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout.String(), "\n"); n != 3 {
		t.Errorf("normalize with the default limit printed %d events, want 3", n)
	}
}

// TestBackfillSameArchiveElsewhere (issue 11 item 10): an archive already
// stored is recognised by its size and SHA-256 when it turns up at another
// path, in a later backfill or in the same one, and skipped with a line
// that says which stream holds it; nothing is stored twice.
func TestBackfillSameArchiveElsewhere(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	dir := t.TempDir()
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		if _, err := custodyCLI(t, dir, args...); err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
	}
	content := []byte(pt1hLines(1, 5))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a/PT1H.json", content)
	if out, err := custodyCLI(t, dir, "backfill", a); err != nil || !strings.HasPrefix(out, "backfill: 5 events stored") {
		t.Fatalf("first backfill: %q, %v", out, err)
	}
	b := write("copy/PT1H.json", content)
	other := write("other/PT1H.json", []byte(pt1hLines(6, 5))) // same size, other content
	out, err := custodyCLI(t, dir, "backfill", b, other)
	if err != nil {
		t.Fatal(err)
	}
	want := "backfill: 5 events stored, 0 already stored, 0 quarantined, 0 dropped by policy (5 messages)\n" +
		"already stored: " + b + " has the content (size and SHA-256) of file" + a + "; skipped\n"
	if out != want {
		t.Errorf("second backfill printed\n%q, want\n%q", out, want)
	}
	// Two new copies in one run: the second is recognised too.
	fresh := []byte(pt1hLines(20, 3))
	c1, c2 := write("c1/PT1H.json", fresh), write("c2/PT1H.json", fresh)
	out, err = custodyCLI(t, dir, "backfill", c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "backfill: 3 events stored") || !strings.Contains(out, "already stored: "+c2+" has the content (size and SHA-256) of file"+c1) {
		t.Errorf("third backfill printed %q", out)
	}
	out, err = custodyCLI(t, dir, "sql", "--format", "tsv", "SELECT count(), uniqExact(event_id) FROM custody.events")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) < 2 || got[len(got)-2] != "13" || got[len(got)-1] != "13" {
		t.Errorf("store holds %q, want 13 events, 13 distinct", out)
	}
}
