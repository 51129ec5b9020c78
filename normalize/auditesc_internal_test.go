package normalize

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// generalAudit is what aksAudit does with a string properties.log when the
// escaped reader gives up: decode the string that starts s, trim it, parse
// the event. end is the offset past the string.
func generalAudit(s []byte, sc *strCache) (a auditEvent, end int, ok bool) {
	dec, end, err := scanUnescape(nil, s, 0)
	if err != nil {
		return auditEvent{}, 0, false
	}
	inner := dec[skipSpace(dec, 0):]
	inner = inner[:len(inner)-trailingSpace(inner)]
	if !isObject(inner) {
		return auditEvent{}, 0, false
	}
	a, innerEnd, err := parseAudit(inner, sc)
	if err != nil || innerEnd != len(inner) {
		return auditEvent{}, 0, false
	}
	a.materialize(sc, nil)
	return a, end, true
}

// escapedAudit reads the JSON string that starts s with the escaped
// reader.
func escapedAudit(s []byte, sc, esc *strCache) (auditEvent, int, bool) {
	var a auditEvent
	end, ok, _ := parseAuditEsc(s, 0, &a, sc, esc, nil)
	if !ok {
		return auditEvent{}, 0, false
	}
	a.materialize(sc, esc)
	return a, end, true
}

// comparable clears the difference between nil and empty byte slices,
// which no caller can see.
func comparable(a auditEvent) auditEvent {
	for _, b := range []*[]byte{&a.requestObject, &a.respObject, &a.requestReceived, &a.stageTS, &a.timestamp} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	return a
}

// checkEscaped compares the escaped reader with the general path on the
// JSON string s. It reports whether the escaped reader handled s.
func checkEscaped(t *testing.T, s []byte) bool {
	t.Helper()
	var sc, esc strCache
	got, end, ok := escapedAudit(s, &sc, &esc)
	if !ok {
		return false
	}
	want, wend, wok := generalAudit(s, &sc)
	if !wok {
		t.Fatalf("escaped reader accepted %s, which the general path rejects", s)
	}
	if end != wend {
		t.Fatalf("escaped reader ends the string at %d, the general path at %d: %s", end, wend, s)
	}
	if !reflect.DeepEqual(comparable(got), comparable(want)) {
		t.Fatalf("escaped reader and general path differ on %s:\n got %+v\nwant %+v", s, got, want)
	}
	// A second read through warm caches gives the same event.
	again, _, _ := escapedAudit(s, &sc, &esc)
	if !reflect.DeepEqual(comparable(again), comparable(want)) {
		t.Fatalf("escaped reader differs on a second read of %s", s)
	}
	return true
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

const escTestEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"4a2c5a8e-1b2f-4a3c-9d6e-7f8a9b0c1d2e",` +
	`"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods/web-0/exec?command=sh\u0026container=app\u0026stdin=true","verb":"create",` +
	`"user":{"username":"alice@contoso.com","uid":"u-1","groups":["g1","system:authenticated"],"extra":{"oid":["0b1f8c2e"],"scopes":["a","b"]}},` +
	`"impersonatedUser":{"username":"bob"},"sourceIPs":["10.1.2.3","::1"],"userAgent":"kubectl/v1.30.3 (linux/amd64)",` +
	`"objectRef":{"resource":"pods","namespace":"payments","name":"web-0","apiVersion":"v1","subresource":"exec"},` +
	`"responseStatus":{"metadata":{},"status":"Failure","reason":"Forbidden","message":"pods \"web-0\" is forbidden","code":403},` +
	`"requestObject":{"kind":"Pod","spec":{"containers":[{"image":"docker.io/x:1","securityContext":{"privileged":true}}],"hostPID":true}},` +
	`"responseObject":{"n":[1,-2.5e3,true,false,null]},` +
	`"requestReceivedTimestamp":"2025-04-20T16:00:00.123456Z","stageTimestamp":"2025-04-20T16:00:00.223456Z",` +
	`"annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":"RBAC: no \"role\" for \\ user","pod-security.kubernetes.io/enforce-policy":"privileged:latest"}}`

func TestEscapedReaderMatchesGeneralPath(t *testing.T) {
	handled := []struct {
		name string
		s    []byte
	}{
		{"json.Marshal", jsonString(escTestEvent)},
		{"trailing newline", jsonString(escTestEvent + "\n")},
		{"surrounding whitespace", jsonString(" \t\r\n" + escTestEvent + " \n ")},
		{"pretty-printed", func() []byte {
			var v any
			if err := json.Unmarshal([]byte(escTestEvent), &v); err != nil {
				t.Fatal(err)
			}
			b, _ := json.MarshalIndent(v, "", "\t")
			return jsonString(string(b))
		}()},
		{"escaped slash and unicode", []byte(`"{\"verb\":\"get\",\"requestURI\":\"\/api\/v1\/pods?x=1\u0026y=\u00e9\",\"auditID\":\"\u0061b\",\"user\":{\"username\":\"sys\u0074em:node:n1\"}}"`)},
		{"inner escapes", []byte(`"{\"verb\":\"get\",\"userAgent\":\"a\\\"b\\\\c\\\/d\\n\\u00e9\\ud83d\\ude00\",\"annotations\":{\"x\":\"\\t\"}}"`)},
		{"non-string scalars", []byte(`"{\"verb\":1,\"auditID\":2,\"level\":true,\"stage\":null,\"requestURI\":{},\"userAgent\":[],\"stageTimestamp\":5,\"objectRef\":{\"name\":7},\"responseStatus\":{\"code\":\"201\"},\"sourceIPs\":\"10.0.0.1\"}"`)},
		{"non-object members", []byte(`"{\"verb\":\"get\",\"objectRef\":null,\"responseStatus\":[1],\"annotations\":\"x\",\"impersonatedUser\":5}"`)},
		{"duplicate members", []byte(`"{\"verb\":\"get\",\"verb\":\"list\",\"objectRef\":{\"name\":\"a\"},\"objectRef\":{\"resource\":\"pods\"},\"user\":{\"groups\":[\"a\"]},\"user\":{\"username\":\"u\"}}"`)},
		{"duplicate annotations and extra", []byte(`"{\"annotations\":{\"a\":\"1\",\"authorization.k8s.io/reason\":\"r1\"},\"annotations\":{\"b\":\"2\",\"a\":\"3\",\"authorization.k8s.io/decision\":\"allow\"},\"annotations\":{\"authorization.k8s.io/decision\":\"forbid\"},` +
			`\"user\":{\"username\":\"u\",\"uid\":\"id\",\"extra\":{\"oid\":[\"o1\"],\"x\":[\"1\",\"2\"]},\"extra\":{\"y\":[\"3\"],\"oid\":[\"o2\"]},\"extra\":5},` +
			`\"responseStatus\":{\"status\":\"Failure\",\"reason\":\"Forbidden\",\"message\":\"no \\\"x\\\"\",\"message\":\"m2\",\"code\":403}}"`)},
		{"empty", []byte(`"{}"`)},
		{"empty strings", []byte(`"{\"verb\":\"\",\"auditID\":\"\",\"requestReceivedTimestamp\":\"\",\"objectRef\":{\"name\":\"\"}}"`)},
	}
	for _, tc := range handled {
		t.Run(tc.name, func(t *testing.T) {
			if !checkEscaped(t, tc.s) {
				t.Fatalf("escaped reader gave up on %s", tc.s)
			}
		})
	}

	// Inputs the reader leaves to the general path, valid or not.
	givesUp := []string{
		`"{\"verb\":\"get\"} x"`,               // trailing data
		`"{\"verb\":\"get\"}{}"`,               // a second value
		`"[1]"`,                                // not an object
		`"plain text log line"`,                // not JSON
		`"{\"verb\":\"get\",}"`,                // syntax error
		`"{\"verb\":\"a\nb\"}"`,                // control character inside an inner string
		`"{\"verb\":\"get\"`,                   // unterminated
		`"{\"user\":\"alice\"}"`,               // user is not an object: an error
		`"{\u0022verb\u0022:\u0022get\u0022}"`, // quotes escaped as \u0022
		`"{\"verb\":\"a\u0022b\"}"`,            // a quote escaped as \u0022 inside a string
		`"{\"verb\":\"a\u005c\"}"`,             // a backslash escaped as \u005c
		`"{\"v\u0065rb\":\"get\"}"`,            // a key with an escape
		`"{\"verb\":\"\ud83d\ude00\"}"`,        // a surrogate pair at the outer level
		`"{\"verb\":\"get\"}\u0020"`,           // whitespace escaped as \u0020
		`"{\"code\":1\u0030}"`,                 // a number with an escaped digit
		`"{\"verb\":\"get\"` + "\x01" + `}"`,   // raw control character
		`"{\"verb\":\"get\\x\"}"`,              // invalid inner escape
		`"{\"verb\":01}"`,                      // invalid number
		`"{\"verb\":tru}"`,                     // invalid literal
		`"` + strings.Repeat(`[`, 300) + `"`,   // nesting beyond the limit
		`"{\"a\":` + strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300) + `}"`,
	}
	for _, s := range givesUp {
		if checkEscaped(t, []byte(s)) {
			t.Errorf("escaped reader accepted %s", s)
		}
	}
}

func TestSingleIPv4(t *testing.T) {
	for _, s := range []string{
		`["10.224.1.2"]`, `[ "0.0.0.0" ]`, `["255.255.255.255"]`, `["256.1.1.1"]`, `["01.2.3.4"]`, `["1.2.3"]`,
		`["1.2.3.4.5"]`, `["1.2.3.4 "]`, `["::1"]`, `["1.2.3.4","5.6.7.8"]`, `[]`, `"1.2.3.4"`, `["1.2.3.4:80"]`,
		`["1.2.3.1234"]`, `["1..3.4"]`, `[1]`, `["1.2.3.4"] x`,
	} {
		var want netip.Addr
		if l, _ := stringList([]byte(s)); len(l) == 1 {
			want = parseIP(l[0])
		}
		for _, escaped := range []bool{false, true} {
			in := s
			if escaped {
				in = strings.ReplaceAll(s, `"`, `\"`)
			}
			got, ok := singleIPv4([]byte(in), escaped)
			if ok && (!want.IsValid() || got != want || !isArray([]byte(s))) {
				t.Errorf("singleIPv4(%s, %v) = %v, parseIP gives %v", in, escaped, got, want)
			}
			if !ok && s == `["10.224.1.2"]` {
				t.Errorf("singleIPv4(%s, %v) gave up on the common form", in, escaped)
			}
		}
	}
}

// FuzzEscapedAudit checks the escaped reader against the general path:
// whatever it accepts, the general path accepts with the same event.
func FuzzEscapedAudit(f *testing.F) {
	f.Add([]byte(escTestEvent), true)
	f.Add([]byte(`{"verb":"get","user":{"username":"a\"b"}}`), true)
	f.Add([]byte(`{\"verb\":\"get\\\"\"}`), false)
	files, _ := filepath.Glob("testdata/*/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(b), `auditID`) {
			continue
		}
		var doc struct {
			Records []struct {
				Properties struct {
					Log json.RawMessage `json:"log"`
				} `json:"properties"`
			} `json:"records"`
		}
		if json.Unmarshal(b, &doc) == nil {
			for _, r := range doc.Records {
				if len(r.Properties.Log) > 1 && r.Properties.Log[0] == '"' {
					f.Add([]byte(r.Properties.Log[1:len(r.Properties.Log)-1]), false)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, encode bool) {
		s := append(append([]byte{'"'}, b...), '"')
		if encode {
			s = jsonString(string(b))
		}
		checkEscaped(t, s)
	})
}

// processDump is everything Process reports for body, as text.
func processDump(t *testing.T, n *Normalizer, body []byte) string {
	t.Helper()
	res, err := n.Process(context.Background(), Input{Body: body, Format: FormatEventHubs, SourceKind: "eventhubs", Position: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, e := range res.Events {
		j, err := MarshalEventJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(j)
		out.WriteByte('\n')
	}
	for _, q := range res.Quarantined {
		fmt.Fprintf(&out, "quarantined %q %q %q %q\n", q.Raw, q.Reason, q.Format, q.Position)
	}
	keys := make([]string, 0, len(res.Dropped))
	for k := range res.Dropped {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&out, "dropped %s %d\n", k, res.Dropped[k])
	}
	return out.String()
}

// FuzzEscapedReaderProcess checks that Process gives the same result with
// and without the escaped reader, on Event Hubs bodies of kube-audit
// records whose properties.log is the fuzzed audit event.
//
// Each call builds its own pair of Normalizers and runs them through the
// same steps: a fixed record first (so the fuzzed one meets caches filled
// by another event, as in a stream), then the fuzzed record twice (so warm
// caches are compared too). Normalizers shared across calls made what a call
// did depend on every input before it and on when the GC emptied their
// scratch pool: a failure found that way need not reproduce from its corpus
// file, and inputs whose coverage only differed by that history were sent
// for minimization (see TestMain).
func FuzzEscapedReaderProcess(f *testing.F) {
	f.Add([]byte(escTestEvent), true)
	f.Add([]byte(`{"verb":"get","stage":"ResponseComplete","user":{"username":"system:node:n1"},"objectRef":{"resource":"nodes"},"sourceIPs":["10.0.0.1"],"requestReceivedTimestamp":"2025-01-01T00:00:00Z"}`), true)
	f.Add([]byte(`{"verb":"create","stage":"ResponseComplete","user":{"username":"alice@contoso.com","groups":["g"]},"objectRef":{"resource":"pods","name":"x"},"sourceIPs":["10.0.0.1"],"requestReceivedTimestamp":"2025-01-01T00:00:00Z","annotations":{"authorization.k8s.io/reason":"RBAC: allowed by \"x\""}}`), true)
	f.Add([]byte(`{\"verb\":\"list\",\"sourceIPs\":[\"1.2.3.4\",\"5.6.7.8\"],\"user\":{\"username\":\"u\",\"groups\":[\"g\",1]}}`), false)
	cfg := DefaultConfig()
	cfg.ApprovedRegistries = []string{"prodacr.azurecr.io"}
	pair := func(t testing.TB) (fast, general *Normalizer) {
		fast, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		general, err = New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		general.generalOnly = true
		return fast, general
	}
	pair(f)
	body := func(log []byte) []byte {
		return []byte(`{"records":[{"category":"kube-audit","time":"2025-04-20T16:00:00Z","properties":{"log":` + string(log) + `,"pod":"p"},"resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C"}]}`)
	}
	warm := Input{Body: body(jsonString(escTestEvent)), Format: FormatEventHubs, SourceKind: "eventhubs", Position: "p"}
	f.Fuzz(func(t *testing.T, b []byte, encode bool) {
		fast, general := pair(t)
		log := append(append([]byte{'"'}, b...), '"')
		if encode {
			log = jsonString(string(b))
		}
		for _, n := range []*Normalizer{fast, general} {
			if _, err := n.Process(context.Background(), warm); err != nil {
				t.Fatal(err)
			}
		}
		in := body(log)
		for range 2 {
			if got, want := processDump(t, fast, in), processDump(t, general, in); got != want {
				t.Fatalf("escaped reader changes the result of %s:\n got %s\nwant %s", in, got, want)
			}
		}
	})
}
