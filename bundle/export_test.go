package bundle_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// t0 is the time of event 0; event i happens i minutes later.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// fixture is a store seeded with two chains:
//
//	aks/0: 30 events in batches of 10 (checkpoints at 10, 20, 30); every
//	       third one an exec into a pod
//	acr/0: 8 events in one batch (checkpoint at 8), from minute 10
type fixture struct {
	eng      engine.Engine
	signer   note.Signer
	verifier note.Verifier
	other    note.Verifier // a key the store never used
}

// newFixture seeds a store on backend b (internal/storetest).
func newFixture(t testing.TB, b storetest.Backend) *fixture {
	t.Helper()
	fx := storetest.NewOn(t, "custody-test", b)
	f := &fixture{eng: fx.Eng, signer: fx.Signer, verifier: fx.Verifier}
	_, f.other = keyPair(t, "custody-test")
	for b := 0; b < 3; b++ {
		appendEvents(t, fx.Store, "aks/0", b*10, 10, aksEvent)
	}
	appendEvents(t, fx.Store, "acr/0", 0, 8, acrEvent)
	return f
}

func keyPair(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := storage.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func appendEvents(t testing.TB, st *storage.Store, chain string, from, n int, mk func(int) event.Event) {
	t.Helper()
	b := storage.Batch{Stream: chain, Offset: int64(from + n)}
	for i := from; i < from+n; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i + 1), Event: mk(i)})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// aksEvent is event i of the AKS chain. Its fields exercise every
// encoding: IPv4 and IPv6, an unknown address, text that is not UTF-8, a
// carriage return, control characters in attributes and raw bytes.
func aksEvent(i int) event.Event {
	ts := t0.Add(time.Duration(i) * time.Minute).Add(123456 * time.Microsecond)
	e := event.Event{
		ID: fmt.Sprintf("aks-%04d", i), Time: ts, ReceivedTime: ts.Add(2 * time.Second),
		Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
		SourcePosition: fmt.Sprintf("0/%d", i), TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", SubscriptionID: "4f1a2b3c-0000-4000-8000-00000000c0de",
		ResourceGroup: "rg1", Provider: "Microsoft.ContainerService", ResourceType: "managedClusters", ResourceName: "aks1",
		ResourceID: "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg1/providers/microsoft.containerservice/managedclusters/aks1",
		Actor:      event.Actor{Name: "alice@contoso.com", ObjectID: "oid-1", Type: event.ActorUser, Groups: []string{"system:authenticated", `g"2`}},
		SourceIP:   netip.MustParseAddr("203.0.113.7"), UserAgent: "kubectl/v1.31.0",
		Action: "k8s:pods:get", ActionClass: event.ClassRead,
		Target:  event.Target{Resource: "pods", Namespace: "prod", Name: fmt.Sprintf("web-%d", i)},
		Outcome: event.OutcomeSuccess, StatusCode: 200,
		Attributes: map[string]string{"k8s.stage": "ResponseComplete", "tab\tkey": "line\nbreak"},
		Raw:        []byte(fmt.Sprintf("{\"auditID\":\"aks-%04d\",\"bin\":\"\x00\xff\"}\n", i)), RawFormat: "json",
	}
	if i%3 == 0 {
		e.Action, e.ActionClass = "k8s:pods/exec:create", event.ClassExec
		e.Target.Subresource, e.Target.Container = "exec", "app"
		e.StatusCode, e.Tags = 101, []string{event.TagExecIntoContainer}
	}
	switch i % 5 {
	case 1:
		e.SourceIP = netip.MustParseAddr("2001:db8::7")
	case 2:
		e.SourceIP = netip.Addr{}
		e.UserAgent = "curl/8 \xff\xfe" // not UTF-8
	case 3:
		e.Reason = "first line\r\nsecond line" // CSV readers fold \r\n
	}
	return e
}

func acrEvent(i int) event.Event {
	ts := t0.Add(time.Duration(10+i)*time.Minute + 30*time.Second)
	return event.Event{
		ID: fmt.Sprintf("acr-%04d", i), Time: ts, ReceivedTime: ts.Add(time.Second),
		Service: event.ServiceACR, Category: "ContainerRegistryRepositoryEvents", SourceKind: "blob", SourceFormat: "resource-log",
		SourcePosition: fmt.Sprintf("PT1H.json/%d", i), ResourceName: "acr1", Provider: "Microsoft.ContainerRegistry", ResourceType: "registries",
		Actor:  event.Actor{Name: "ci-bot", Type: event.ActorServicePrincipal, AppID: "app-1"},
		Action: "acr:push", ActionClass: event.ClassWrite, Outcome: event.OutcomeSuccess, StatusCode: 201,
		Target: event.Target{Repository: "team/app", Tag: fmt.Sprintf("v%d", i), Digest: fmt.Sprintf("sha256:%064x", i)},
		Raw:    []byte(fmt.Sprintf(`{"correlationId":"acr-%04d"}`, i)), RawFormat: "json",
	}
}

// window returns [t0 + from minutes, t0 + to minutes).
func window(from, to int) (time.Time, time.Time) {
	return t0.Add(time.Duration(from) * time.Minute), t0.Add(time.Duration(to) * time.Minute)
}

func (f *fixture) export(t *testing.T, o export.Options) string {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "bundle")
	}
	o.Engine, o.Signer, o.Verifier, o.Actor = f.eng, f.signer, f.verifier, "auditor@test"
	o.Now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	if _, err := export.Export(context.Background(), o); err != nil {
		t.Fatalf("export: %v", err)
	}
	return o.Dir
}

func verify(t *testing.T, dir string, v note.Verifier) *bundle.Report {
	t.Helper()
	rep, err := bundle.Verify(context.Background(), dir, bundle.VerifyOptions{Verifier: v})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func readManifest(t *testing.T, dir string) *bundle.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, bundle.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m bundle.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestExportVerify(t *testing.T) { storetest.Run(t, testExportVerify) }

func testExportVerify(t *testing.T, b storetest.Backend) {
	f := newFixture(t, b)
	cat, err := queries.Load()
	if err != nil {
		t.Fatal(err)
	}
	aksExec, err := cat.Get("aks-exec")
	if err != nil {
		t.Fatal(err)
	}
	from, to := window(5, 26)
	all0, all1 := window(0, 60)
	late0, late1 := window(15, 60)

	t.Run("clean bundles verify", func(t *testing.T) {
		cases := []struct {
			name   string
			opts   export.Options
			rows   uint64
			chains map[string][]bundle.Run // first/last only
		}{
			{"jsonl window", export.Options{From: from, To: to, Output: bundle.Output{Format: bundle.FormatJSONL}}, 21 + 8,
				map[string][]bundle.Run{"acr/0": {{First: 1, Last: 8}}, "aks/0": {{First: 6, Last: 26}}}},
			{"csv window", export.Options{From: from, To: to, Output: bundle.Output{Format: bundle.FormatCSV}}, 29, nil},
			{"parquet window", export.Options{From: from, To: to, Output: bundle.Output{Format: bundle.FormatParquet}}, 29, nil},
			{"ocsf window", export.Options{From: from, To: to, Output: bundle.Output{Format: bundle.FormatOCSF}}, 29, nil},
			{"one chain from a stored compact range", export.Options{From: late0, To: late1, Chain: "aks/0", Output: bundle.Output{Format: bundle.FormatJSONL}}, 15,
				map[string][]bundle.Run{"aks/0": {{First: 16, Last: 30}}}},
			{"query selects scattered events", export.Options{From: all0, To: all1, Query: aksExec, Output: bundle.Output{Format: bundle.FormatJSONL}}, 10,
				map[string][]bundle.Run{"aks/0": {{First: 1, Last: 1}, {First: 4, Last: 4}, {First: 7, Last: 7}, {First: 10, Last: 10}, {First: 13, Last: 13},
					{First: 16, Last: 16}, {First: 19, Last: 19}, {First: 22, Last: 22}, {First: 25, Last: 25}, {First: 28, Last: 28}}}},
			{"query in parquet", export.Options{From: all0, To: all1, Query: aksExec, Output: bundle.Output{Format: bundle.FormatParquet}}, 10, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				dir := f.export(t, tc.opts)
				rep := verify(t, dir, f.verifier)
				if !rep.OK() {
					t.Fatalf("clean bundle fails: %v", rep.Findings)
				}
				if rep.Rows != tc.rows {
					t.Errorf("rows = %d, want %d", rep.Rows, tc.rows)
				}
				m := readManifest(t, dir)
				for _, c := range m.Chains {
					want, ok := tc.chains[c.Chain]
					if tc.chains == nil {
						continue
					}
					if !ok {
						t.Errorf("unexpected chain %s", c.Chain)
						continue
					}
					if len(want) != len(c.Runs) {
						t.Fatalf("chain %s runs = %+v, want %+v", c.Chain, c.Runs, want)
					}
					for i := range want {
						if c.Runs[i].First != want[i].First || c.Runs[i].Last != want[i].Last {
							t.Errorf("chain %s run %d = [%d, %d], want [%d, %d]", c.Chain, i, c.Runs[i].First, c.Runs[i].Last, want[i].First, want[i].Last)
						}
					}
				}
				if tc.chains != nil && len(m.Chains) != len(tc.chains) {
					t.Errorf("chains = %d, want %d", len(m.Chains), len(tc.chains))
				}
			})
		}
	})

	t.Run("manifest records the selection and the covering checkpoint", func(t *testing.T) {
		dir := f.export(t, export.Options{From: all0, To: all1, Query: aksExec, QueryArgs: map[string]string{}, Output: bundle.Output{Format: bundle.FormatJSONL}})
		m := readManifest(t, dir)
		if m.Selection.Query != "aks-exec" || m.Selection.From != "2026-11-27T10:00:00.000000Z" || m.CreatedBy != "auditor@test" || m.CreatedAt != "2026-12-01T00:00:00Z" {
			t.Errorf("selection = %+v, created %s by %s", m.Selection, m.CreatedAt, m.CreatedBy)
		}
		if !strings.HasPrefix(m.Key, "custody-test+") || m.Data != "jsonl" || m.Files[0].Name != "events.jsonl" || m.Files[0].Rows != 10 {
			t.Errorf("manifest = %+v", m)
		}
		c := m.Chains[0]
		// the first checkpoint covering seq 28 is the one at 30
		if c.TreeSize != 30 || !strings.HasPrefix(c.Checkpoint, "custody/aks/0\n30\n") || len(c.Gaps) != 11 {
			t.Errorf("chain = size %d, %d gaps, checkpoint %q", c.TreeSize, len(c.Gaps), c.Checkpoint)
		}
	})

	t.Run("aggregate query is refused", func(t *testing.T) {
		q, err := cat.Get("denial-bursts")
		if err != nil {
			t.Fatal(err)
		}
		_, err = export.Export(context.Background(), export.Options{
			Engine: f.eng,
			From:   all0,
			To:     all1,
			Query:  q,
			Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: "jsonl", Dir: filepath.Join(t.TempDir(), "b")},
		})
		if !errors.Is(err, export.ErrNoEventID) {
			t.Fatalf("err = %v, want ErrNoEventID", err)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		nonEmpty := t.TempDir()
		if err := os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		otherSigner, _ := keyPair(t, "custody-test")
		cases := []struct {
			name string
			mod  func(*export.Options)
			want string
		}{
			{"format", func(o *export.Options) { o.Format = "xml" }, `format "xml" (want jsonl, csv, parquet, ocsf)`},
			{"window", func(o *export.Options) { o.From, o.To = o.To, o.From }, "is not before"},
			{"no window", func(o *export.Options) { o.From = time.Time{} }, "--from and --to are required"},
			{"foreign key", func(o *export.Options) { o.Signer = otherSigner }, "is not the pair of the verification key"},
			{"not empty", func(o *export.Options) { o.Dir = nonEmpty }, "output directory is not empty"},
			{"database", func(o *export.Options) { o.Database = "x; DROP" }, "must be a plain identifier"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				o := export.Options{Engine: f.eng, From: from, To: to, Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: "jsonl", Dir: filepath.Join(t.TempDir(), "b")}}
				tc.mod(&o)
				_, err := export.Export(context.Background(), o)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
			})
		}
	})

	t.Run("tampering is detected", func(t *testing.T) {
		bundles := map[string]string{}
		for _, format := range bundle.Formats() {
			bundles[format] = f.export(t, export.Options{From: from, To: to, Output: bundle.Output{Format: format}})
		}
		replacement := f.export(t, export.Options{From: late0, To: late1, Chain: "aks/0", Output: bundle.Output{Format: bundle.FormatParquet}})
		// Lines of events.jsonl: acr/0 seq 1..8 on lines 1..8, then aks/0
		// seq 6..26 on lines 9..29.
		cases := []struct {
			name   string
			format string
			key    note.Verifier
			tamper func(t *testing.T, dir string)
			want   []string // Finding.String() prefixes, in report order
		}{
			{"edit a field in a jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.jsonl", 11, func(l string) string {
					return strings.Replace(l, `"actor_name":"alice@contoso.com"`, `"actor_name":"bob@contoso.com"`, 1)
				})
			}, []string{
				"modified: events.jsonl line 11: chain aks/0 seq 8: the row's fields hash to",
				"file_altered: events.jsonl: SHA-256",
			}},
			{"delete a jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.jsonl", 12, func(string) string { return "" })
			}, []string{
				"file_altered: events.jsonl: SHA-256",
				"file_altered: events.jsonl: 28 rows; the manifest says 29",
				"missing: chain aks/0: seq 9 is listed in the manifest but not in the data",
			}},
			{"add a copied jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				l := readLine(t, dir, "events.jsonl", 3)
				appendText(t, dir, "events.jsonl", l+"\n")
			}, []string{
				"added: events.jsonl line 30: chain acr/0 seq 3: appears again",
				"file_altered: events.jsonl: SHA-256",
				"file_altered: events.jsonl: 30 rows; the manifest says 29",
			}},
			{"add a forged jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				l := readLine(t, dir, "events.jsonl", 29)
				appendText(t, dir, "events.jsonl", strings.Replace(l, `"seq":26,`, `"seq":27,`, 1)+"\n")
			}, []string{
				"modified: events.jsonl line 30: chain aks/0 seq 27",
				"added: events.jsonl line 30: chain aks/0 seq 27: the manifest does not list this sequence number",
				"file_altered: events.jsonl: SHA-256",
				"file_altered: events.jsonl: 30 rows; the manifest says 29",
			}},
			{"swap two jsonl lines", "jsonl", nil, func(t *testing.T, dir string) {
				a, b := readLine(t, dir, "events.jsonl", 20), readLine(t, dir, "events.jsonl", 21)
				editLine(t, dir, "events.jsonl", 20, func(string) string { return b })
				editLine(t, dir, "events.jsonl", 21, func(string) string { return a })
			}, []string{
				"out_of_order: events.jsonl line 21: chain aks/0 seq 17: found after rows that follow it",
				"file_altered: events.jsonl: SHA-256",
			}},
			{"rewrite a row and its hash", "jsonl", nil, func(t *testing.T, dir string) {
				rehashLine(t, dir, 15)
			}, []string{
				"chain_break: events.jsonl line 16: chain aks/0 seq 13: prev_hash",
				"file_altered: events.jsonl: SHA-256",
				"root_mismatch: chain aks/0: the rows and the range proof give root",
			}},
			{"malformed jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.jsonl", 2, func(l string) string { return l[:40] })
			}, []string{
				"malformed: events.jsonl line 2: not a row object",
				"file_altered: events.jsonl: SHA-256",
				"missing: chain acr/0: seq 2 is listed",
			}},
			{"add a key to a jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.jsonl", 5, func(l string) string { return strings.Replace(l, `{"chain"`, `{"note":"benign","chain"`, 1) })
			}, []string{
				`malformed: events.jsonl line 5: not a row object: json: unknown field "note"`,
				"file_altered: events.jsonl: SHA-256",
				"missing: chain acr/0: seq 5 is listed",
			}},
			{"reformat a jsonl line", "jsonl", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.jsonl", 6, func(l string) string { return strings.Replace(l, `"chain":"acr/0",`, `"chain": "acr/0", `, 1) })
			}, []string{
				"malformed: events.jsonl line 6: the line is not the canonical encoding of its row",
				"file_altered: events.jsonl: SHA-256",
			}},
			{"edit a csv cell", "csv", nil, func(t *testing.T, dir string) {
				b := readFile(t, dir, "events.csv")
				b = bytes.Replace(b, []byte("acr-0004"), []byte("acr-9999"), 1)
				writeFile(t, dir, "events.csv", b)
			}, []string{
				"modified: events.csv record 5: chain acr/0 seq 5",
				"file_altered: events.csv: SHA-256",
			}},
			{"replace the parquet file", "parquet", nil, func(t *testing.T, dir string) {
				writeFile(t, dir, "events.parquet", readFile(t, replacement, "events.parquet"))
			}, []string{
				"added: events.parquet row 12: chain aks/0 seq 27: the manifest does not list",
				"added: events.parquet row 13: chain aks/0 seq 28: the manifest does not list",
				"added: events.parquet row 14: chain aks/0 seq 29: the manifest does not list",
				"added: events.parquet row 15: chain aks/0 seq 30: the manifest does not list",
				"file_altered: events.parquet: SHA-256",
				"file_altered: events.parquet: 15 rows; the manifest says 29",
				"missing: chain acr/0: seq 1–8 (8 rows) are listed in the manifest but not in the data",
				"missing: chain aks/0: seq 6–15 (10 rows) are listed",
			}},
			{"edit an OCSF field", "ocsf", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.ocsf.jsonl", 4, func(l string) string {
					return strings.Replace(l, `"status":"Success"`, `"status":"Failure"`, 1)
				})
			}, []string{
				"ocsf_mismatch: events.ocsf.jsonl line 4: chain acr/0 seq 4: OCSF fields status differ",
				"file_altered: events.ocsf.jsonl: SHA-256",
			}},
			{"edit the row inside an OCSF line", "ocsf", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.ocsf.jsonl", 4, func(l string) string {
					return strings.Replace(l, `"event_id":"acr-0003"`, `"event_id":"acr-9999"`, 1)
				})
			}, []string{
				"modified: events.ocsf.jsonl line 4: chain acr/0 seq 4: the row's fields hash to",
				"ocsf_mismatch: events.ocsf.jsonl line 4: chain acr/0 seq 4: OCSF fields metadata differ",
				"file_altered: events.ocsf.jsonl: SHA-256",
			}},
			{"reformat an OCSF line", "ocsf", nil, func(t *testing.T, dir string) {
				editLine(t, dir, "events.ocsf.jsonl", 7, func(l string) string { return strings.Replace(l, `":`, `": `, 3) })
			}, []string{
				// the same document: only the file's digest tells
				"file_altered: events.ocsf.jsonl: SHA-256",
			}},
			{"edit the manifest", "jsonl", nil, func(t *testing.T, dir string) {
				b := readFile(t, dir, bundle.ManifestFile)
				writeFile(t, dir, bundle.ManifestFile, bytes.Replace(b, []byte(`"auditor@test"`), []byte(`"someone@else"`), 1))
			}, []string{
				"manifest: manifest.json: manifest.json differs from the signed manifest: its SHA-256 is",
			}},
			{"remove the signature", "jsonl", nil, func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, bundle.SignatureFile)); err != nil {
					t.Fatal(err)
				}
			}, []string{"file_missing: manifest.sig: the manifest is unsigned"}},
			{"wrong public key", "jsonl", f.other, func(*testing.T, string) {}, []string{
				"bad_signature: manifest.json: manifest signature does not verify with key custody-test+",
				"bad_signature: manifest.json: chain acr/0: checkpoint: checkpoint signature does not verify",
				"bad_signature: manifest.json: chain aks/0: checkpoint: checkpoint signature does not verify",
			}},
			{"add a file", "csv", nil, func(t *testing.T, dir string) {
				writeFile(t, dir, "notes.txt", []byte("trust me"))
			}, []string{"file_added: notes.txt: not listed in the manifest"}},
			{"delete the data file", "parquet", nil, func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "events.parquet")); err != nil {
					t.Fatal(err)
				}
			}, []string{
				"file_missing: events.parquet: listed in the manifest with 29 rows",
				"missing: chain acr/0: seq 1–8 (8 rows)",
				"missing: chain aks/0: seq 6–26 (21 rows)",
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				dir := copyDir(t, bundles[tc.format])
				tc.tamper(t, dir)
				key := f.verifier
				if tc.key != nil {
					key = tc.key
				}
				rep := verify(t, dir, key)
				if rep.OK() {
					t.Fatal("tampered bundle verifies")
				}
				var got []string
				for _, fd := range rep.Findings {
					got = append(got, fd.String())
				}
				if len(got) != len(tc.want) {
					t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				for i := range got {
					if !strings.HasPrefix(got[i], tc.want[i]) {
						t.Errorf("finding %d = %q\nwant prefix %q", i, got[i], tc.want[i])
					}
				}
			})
		}
	})
}

// TestVerifyMissingManifest: a directory that is not a bundle.
// TestExportSpills checks that an export larger than its memory buffer,
// whose rows go to a temporary file as sorted runs, writes exactly the
// data file an export held in memory writes, in every format.
func TestExportSpills(t *testing.T) { storetest.Run(t, testExportSpills) }

func testExportSpills(t *testing.T, b storetest.Backend) {
	f := newFixture(t, b)
	from, to := window(0, 60)
	for _, format := range bundle.Formats() {
		t.Run(format, func(t *testing.T) {
			o := export.Options{From: from, To: to, Output: bundle.Output{Format: format}}
			inMemory := readManifest(t, f.export(t, o))
			// a few rows a run, the last ones left in memory
			o.RowBuffer = 2000
			spilledDir := f.export(t, o)
			spilled := readManifest(t, spilledDir)
			if spilled.Rows != 38 || spilled.Files[0].SHA256 != inMemory.Files[0].SHA256 {
				t.Errorf("spilled export wrote %d rows, sha256 %s; in memory %d rows, %s",
					spilled.Rows, spilled.Files[0].SHA256, inMemory.Rows, inMemory.Files[0].SHA256)
			}
			if rep := verify(t, spilledDir, f.verifier); !rep.OK() {
				t.Errorf("spilled bundle fails: %v", rep.Findings)
			}
		})
	}
}

func TestVerifyMissingManifest(t *testing.T) {
	_, v := keyPair(t, "k")
	rep, err := bundle.Verify(context.Background(), t.TempDir(), bundle.VerifyOptions{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Findings) != 1 || !strings.HasPrefix(rep.Findings[0].String(), "file_missing: manifest.json: the bundle has no readable manifest") {
		t.Fatalf("findings = %v", rep.Findings)
	}
	if _, err := bundle.Verify(context.Background(), filepath.Join(t.TempDir(), "nope"), bundle.VerifyOptions{Verifier: v}); err == nil {
		t.Fatal("a missing directory must be an error")
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendText(t *testing.T, dir, name, s string) {
	t.Helper()
	writeFile(t, dir, name, append(readFile(t, dir, name), s...))
}

func lines(t *testing.T, dir, name string) []string {
	t.Helper()
	return strings.Split(strings.TrimSuffix(string(readFile(t, dir, name)), "\n"), "\n")
}

func readLine(t *testing.T, dir, name string, n int) string {
	t.Helper()
	return lines(t, dir, name)[n-1]
}

// editLine replaces line n (1-based); an empty result deletes the line.
func editLine(t *testing.T, dir, name string, n int, fn func(string) string) {
	t.Helper()
	ls := lines(t, dir, name)
	if l := fn(ls[n-1]); l == "" {
		ls = append(ls[:n-1], ls[n:]...)
	} else {
		ls[n-1] = l
	}
	writeFile(t, dir, name, []byte(strings.Join(ls, "\n")+"\n"))
}

// rehashLine alters a field of jsonl line n and recomputes the row's hash,
// as a forger with the format spec would.
func rehashLine(t *testing.T, dir string, n int) {
	t.Helper()
	editLine(t, dir, "events.jsonl", n, func(l string) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		old := m["hash"].(string)
		l = strings.Replace(l, `"actor_name":"alice@contoso.com"`, `"actor_name":"mallory@contoso.com"`, 1)
		r := rowFromJSON(t, l)
		h := trail.EventHash(&r)
		return strings.Replace(l, old, hex.EncodeToString(h[:]), 1)
	})
}

func rowFromJSON(t *testing.T, line string) trail.Row {
	t.Helper()
	r, err := bundle.DecodeJSONRow([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExportRefusesAlteredStore checks that a stored row no longer
// matching its hash fails the export in every format, leaving nothing
// behind.
func TestExportRefusesAlteredStore(t *testing.T) { storetest.Run(t, testExportRefusesAlteredStore) }

func testExportRefusesAlteredStore(t *testing.T, b storetest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.eng.Exec(ctx, "ALTER TABLE custody.events UPDATE reason = 'forged' WHERE chain = 'aks/0' AND seq = 12 SETTINGS mutations_sync = 2", nil); err != nil {
		t.Fatal(err)
	}
	from, to := window(0, 60)
	for _, format := range bundle.Formats() {
		t.Run(format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			_, err := export.Export(ctx, export.Options{Engine: f.eng, From: from, To: to, Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: format, Dir: dir}})
			if !errors.Is(err, bundle.ErrStore) || !strings.Contains(err.Error(), "chain aks/0 seq 12 no longer matches its hash") {
				t.Fatalf("export of an altered store: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed export left %s behind (%v)", dir, err)
			}
		})
	}
}

// TestExportNeedsCheckpoints checks that rows no signed checkpoint covers
// fail the export (their proof cannot be made), leaving nothing behind.
func TestExportNeedsCheckpoints(t *testing.T) { storetest.Run(t, testExportNeedsCheckpoints) }

func testExportNeedsCheckpoints(t *testing.T, b storetest.Backend) {
	f := newFixture(t, b)
	ctx := context.Background()
	if err := f.eng.Exec(ctx, "ALTER TABLE custody.checkpoints DELETE WHERE chain = 'acr/0' SETTINGS mutations_sync = 2", nil); err != nil {
		t.Fatal(err)
	}
	from, to := window(0, 60)
	for _, format := range bundle.Formats() {
		t.Run(format, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			_, err := export.Export(ctx, export.Options{Engine: f.eng, From: from, To: to, Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: format, Dir: dir}})
			if err == nil || !strings.Contains(err.Error(), "prove chain acr/0: no signed checkpoint covers seq 8") {
				t.Fatalf("export of unattested rows: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed export left %s behind (%v)", dir, err)
			}
		})
	}
}
