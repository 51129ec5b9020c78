package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestHandlers runs the API on the incident store: answers that tell the
// incident, and malformed or hostile requests refused with a clear error
// (or, where a value is only data, matched as data and finding nothing).
func TestHandlers(t *testing.T) {
	f := newFixture(t, Options{})
	long := strings.Repeat("a", 5000)
	cases := []struct {
		name, path string
		status     int
		want       string // in the body
	}{
		{"search the attacker's address", "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&ip=" + attackerIP + "&limit=500", 200, `"source_ip":"203.0.113.77"`},
		{"search a CIDR", "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&ip=203.0.113.0/24&class=exec", 200, `"action":"k8s:pods/exec:create"`},
		{"sql in a text filter is data", "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&actor=" + url.QueryEscape("' OR 1=1 --"), 200, `"events":[]`},
		{"sql in the action is data", "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&action=" + url.QueryEscape("x') UNION ALL SELECT * FROM system.users --"), 200, `"events":[]`},
		{"huge value", "/api/search?actor=" + long, 400, "longer than 1024"},
		{"control character", "/api/search?actor=a%00b", 400, "control character"},
		{"bad time", "/api/search?from=yesterday", 400, "not a time"},
		{"time out of range", "/api/search?from=0001-01-01&to=0002-01-01", 400, "outside 1970-2299"},
		{"from after to", "/api/search?from=" + incidentTo + "&to=" + incidentFrom, 400, "is not before"},
		{"unknown parameter", "/api/search?actr=dana", 400, `unknown parameter \"actr\"`},
		{"bad enum", "/api/search?service=aks,evil", 400, `\"evil\" is not one of`},
		{"bad tag", "/api/search?tag=" + url.QueryEscape("';DROP TABLE x"), 400, "is not one of"},
		{"limit too big", "/api/search?limit=100000", 400, "limit"},
		{"limit not a number", "/api/search?limit=1e9", 400, "limit"},
		{"bad cursor", "/api/search?after=" + url.QueryEscape("not~a~cursor"), 400, "not a cursor"},
		{"forged cursor", "/api/search?after=OTk5OTk5OTk5OTk5OTk5OTk5OTk5fjF-eA", 400, "not a cursor"},
		{"bad address", "/api/search?ip=203.0.113.999", 400, "not an IP"},
		{"bad resource", "/api/search?resource=" + url.QueryEscape("/etc/passwd"), 400, "not an Azure resource id"},
		{"timeline needs a subject", "/api/timeline", 400, "exactly one of"},
		{"timeline with both", "/api/timeline?actor=a&resource=b", 400, "exactly one of"},
		{"timeline of the attacker", "/api/timeline?actor=" + phished, 200, `"action":"arm:Microsoft.Insights/diagnosticSettings/delete"`},
		{"gaps of the day", "/api/gaps?from=" + incidentFrom + "&to=" + incidentTo, 200, `"kind":"logging_disabled"`},
		{"gaps need a window", "/api/gaps?from=" + incidentFrom, 400, "give from and to"},
		{"gaps with a bad time", "/api/gaps?from=" + incidentFrom + "&to=" + url.QueryEscape("2025-06-13'; DROP"), 400, "not a time"},
		{"event by bad seq", "/api/event?chain=x&seq=-1", 400, "positive integer"},
		{"event by traversal chain", "/api/event?chain=" + url.QueryEscape("../../../etc/passwd") + "&seq=1", 404, "no such event"},
		{"event without key", "/api/event", 400, "give chain and seq"},
		{"unknown query", "/api/queries/" + url.PathEscape("..%2f..%2fetc"), 404, "no query named"},
		{"query with unknown param", "/api/queries/aks-exec?p.nope=1", 400, "has no parameter"},
		{"query with bad int", "/api/queries/principal-timeline?p.actor=x&p.limit=-5", 400, "limit"},
		{"query with sql in a param", "/api/queries/principal-timeline?from=" + incidentFrom + "&to=" + incidentTo + "&p.actor=" + url.QueryEscape("x' OR '1'='1"), 200, `"rows":[]`},
		{"query missing required", "/api/queries/principal-timeline", 400, "actor"},
		{"query bad format", "/api/queries/aks-exec?format=xml", 400, "format"},
		{"collector off", "/api/collector", 501, "custody run --web"},
		{"verify job unknown", "/api/verify/nope", 404, "no such verify"},
		{"api path unknown", "/api/nope", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := f.get(t, c.path)
			if w.Code != c.status {
				t.Fatalf("GET %s: status %d, want %d; body %.500s", c.path, w.Code, c.status, w.Body)
			}
			if !strings.Contains(w.Body.String(), c.want) {
				t.Errorf("GET %s: body %s\nwant it to contain %s", c.path, w.Body, c.want)
			}
			if strings.Contains(w.Body.String(), "SELECT") || strings.Contains(w.Body.String(), "custody.events") {
				t.Errorf("GET %s: the answer quotes SQL: %s", c.path, w.Body)
			}
		})
	}

	t.Run("keyset pages of one principal, oldest first", func(t *testing.T) {
		base := "/api/search?from=2025-06-01&to=2025-07-01&order=asc&limit=4&actor=" + url.QueryEscape(phished)
		path, last := base, ""
		var got []string
		for path != "" {
			var res struct {
				Events []eventSummary `json:"events"`
				Next   string         `json:"next"`
			}
			decode(t, f.get(t, path), &res)
			for _, e := range res.Events {
				if e.Time < last {
					t.Fatalf("%s before %s", e.Time, last)
				}
				last = e.Time
				got = append(got, e.ID)
			}
			path = ""
			if res.Next != "" {
				path = base + "&after=" + res.Next
			}
		}
		slices.Sort(got)
		if len(got) != 19 || len(slices.Compact(got)) != 19 {
			t.Errorf("%d events (%d distinct), want dana's 19", len(got), len(slices.Compact(got)))
		}
	})

	t.Run("keyset pages cover the day once", func(t *testing.T) {
		seen := map[string]bool{}
		path := "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&limit=50"
		pages := 0
		for path != "" {
			var res struct {
				Events []eventSummary `json:"events"`
				Next   string         `json:"next"`
			}
			decode(t, f.get(t, path), &res)
			for i, e := range res.Events {
				k := e.Chain + "#" + e.ID
				if seen[k] {
					t.Fatalf("page %d repeats %s", pages, k)
				}
				seen[k] = true
				if i > 0 && e.Time > res.Events[i-1].Time {
					t.Fatalf("page %d not newest first at %d", pages, i)
				}
			}
			pages++
			path = ""
			if res.Next != "" {
				path = "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&limit=50&after=" + res.Next
			}
		}
		if len(seen) != incidentRows || pages != 4 {
			t.Errorf("%d events in %d pages, want %d in 4", len(seen), pages, incidentRows)
		}
	})

	t.Run("every row has a proof that verifies", func(t *testing.T) {
		// Every row of the three longest chains (13 and 14 rows: every
		// leaf index in trees that are not powers of two, across
		// checkpoints): the proof builder against transparency-dev's
		// verifier, and the signature.
		var rows []struct {
			chain string
			seq   uint64
		}
		err := engine.Each(context.Background(), f.eng, `SELECT toString(chain), seq FROM custody.events WHERE chain IN
			(SELECT chain FROM custody.events GROUP BY chain ORDER BY count() DESC, chain LIMIT 3) ORDER BY chain, seq`, nil, func(r engine.Rows) error {
			var c string
			var s uint64
			err := r.Scan(&c, &s)
			rows = append(rows, struct {
				chain string
				seq   uint64
			}{c, s})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			var ev struct {
				HashMatches bool `json:"hash_matches"`
				Proof       struct {
					ServerOK bool `json:"server_ok"`
				} `json:"proof"`
				Checkpoint struct {
					SignatureOK bool `json:"signature_ok"`
				} `json:"checkpoint"`
			}
			decode(t, f.get(t, "/api/event?chain="+url.QueryEscape(r.chain)+"&seq="+strconv.FormatUint(r.seq, 10)), &ev)
			if !ev.HashMatches || !ev.Proof.ServerOK || !ev.Checkpoint.SignatureOK {
				t.Errorf("%s seq %d: %+v", r.chain, r.seq, ev)
			}
		}
	})

	t.Run("integrity shows the recorded verify", func(t *testing.T) {
		ctx := context.Background()
		opts := storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.dir}
		started := time.Now()
		rep, err := f.store.Verify(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.RecordVerify(ctx, storage.NewVerifyRun(started, "cli", opts, rep)); err != nil {
			t.Fatal(err)
		}
		var st struct {
			Chains     []chainStatus `json:"chains"`
			LastVerify *lastVerify   `json:"last_verify"`
		}
		decode(t, f.get(t, "/api/integrity"), &st)
		if len(st.Chains) != 27 || st.LastVerify == nil || st.LastVerify.Result != "ok" || st.LastVerify.Source != "verify_runs, cli" || !strings.Contains(st.LastVerify.Detail, "rows=172") {
			t.Errorf("integrity: %d chains, last verify %+v", len(st.Chains), st.LastVerify)
		}
	})

	t.Run("golden answers", func(t *testing.T) {
		// What the page draws for the incident, byte for byte
		// (go test ./web -run TestHandlers/golden -update rewrites them).
		for name, path := range map[string]string{
			"timeline-dana": "/api/timeline?actor=" + phished,
			"gaps-day":      "/api/gaps?from=" + incidentFrom + "&to=" + incidentTo,
			"search-exec":   "/api/search?from=" + incidentFrom + "&to=" + incidentTo + "&class=exec",
		} {
			w := f.get(t, path)
			if w.Code != 200 {
				t.Fatalf("%s: %d %s", path, w.Code, w.Body)
			}
			var v map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			delete(v, "elapsed_ms")
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(got)+"\n" {
				t.Errorf("%s differs from %s (run with -update to accept):\n%s", path, file, got)
			}
		}
	})

	t.Run("security headers", func(t *testing.T) {
		w := f.get(t, "/timeline?actor=x")
		csp := w.Header().Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP allows inline code: %q", csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(w.Body.String(), `<script type="module" src="/assets/app.js">`) {
			t.Errorf("page headers %v body %.200s", w.Header(), w.Body)
		}
	})

	t.Run("no inline script or style in the assets", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("assets", "index.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"<script>", "<style", "style=", "onclick=", "javascript:", "http://", "https://"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("index.html contains %q", bad)
			}
		}
	})

	t.Run("rebinding host refused", func(t *testing.T) {
		req := httptest.NewRequest("GET", "http://evil.example/api/meta", nil)
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		if w.Code != http.StatusMisdirectedRequest {
			t.Errorf("Host evil.example: status %d, want 421", w.Code)
		}
	})

	t.Run("post needs the page's header", func(t *testing.T) {
		req := httptest.NewRequest("POST", "http://127.0.0.1/api/verify", nil)
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden {
			t.Errorf("POST without X-Custody-Request: status %d, want 403", w.Code)
		}
	})

	t.Run("export refuses hostile bodies", func(t *testing.T) {
		for _, c := range []struct{ body, want string }{
			{`{"from":"` + incidentFrom + `","to":"` + incidentTo + `","format":"../../tmp/x"}`, "format: want one of"},
			{`{"from":"` + incidentFrom + `","to":"` + incidentTo + `","format":"jsonl","dir":"/tmp/evil"}`, "body: want"},
			{`{"from":"yesterday","to":"` + incidentTo + `","format":"jsonl"}`, "not a time"},
			{`{"from":"` + incidentTo + `","to":"` + incidentFrom + `","format":"jsonl"}`, "not before"},
			{`{"from":"` + incidentFrom + `","to":"` + incidentTo + `","format":"jsonl","chain":"a\u0000b"}`, "control character"},
			{strings.Repeat(" ", 5000), "body: want"},
		} {
			req := httptest.NewRequest("POST", "http://127.0.0.1/api/export", strings.NewReader(c.body))
			req.Header.Set("X-Custody-Request", "1")
			w := httptest.NewRecorder()
			f.srv.ServeHTTP(w, req)
			if w.Code != 400 || !strings.Contains(w.Body.String(), c.want) {
				t.Errorf("export %.80s: status %d body %s, want 400 and %q", c.body, w.Code, w.Body, c.want)
			}
		}
		// A chain that names a path is only a chain name: the bundle
		// holds nothing and lands nowhere but in the download.
		req := httptest.NewRequest("POST", "http://127.0.0.1/api/export", strings.NewReader(`{"from":"`+incidentFrom+`","to":"`+incidentTo+`","format":"jsonl","chain":"../../../../tmp/custody-web-evil"}`))
		req.Header.Set("X-Custody-Request", "1")
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/zip" {
			t.Errorf("export with a path as chain: status %d body %.300s", w.Code, w.Body)
		}
		if _, err := os.Stat("/tmp/custody-web-evil"); err == nil {
			t.Errorf("the export wrote outside its directory")
		}
	})

	t.Run("tokens", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "tokens")
		if err := os.WriteFile(p, []byte("# responders\ncorrect-horse-battery-staple-42\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ts, err := LoadTokens(p)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Options{Store: f.store, Verifier: f.verifier, Tokens: ts})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			auth   string
			status int
		}{{"", 401}, {"Bearer wrong-token-wrong-token-wrong", 401}, {"Basic Y29ycmVjdA==", 401}, {"Bearer correct-horse-battery-staple-42", 200}} {
			req := httptest.NewRequest("GET", "https://custody.contoso.com/api/meta", nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			if w.Code != c.status {
				t.Errorf("Authorization %q: status %d, want %d", c.auth, w.Code, c.status)
			}
			if strings.Contains(w.Body.String(), "correct-horse") {
				t.Errorf("the answer quotes the token")
			}
		}
		// The page itself carries no secret and loads without a token.
		req := httptest.NewRequest("GET", "https://custody.contoso.com/search", nil)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Errorf("page without token: %d", w.Code)
		}
		if err := os.WriteFile(p, []byte("short\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTokens(p); err == nil || strings.Contains(err.Error(), "short") {
			t.Errorf("short token: err %v (must refuse without quoting it)", err)
		}
	})

	t.Run("listen beyond loopback needs TLS and tokens", func(t *testing.T) {
		if _, err := f.srv.Listen(ListenOptions{Addr: "0.0.0.0:0"}); err != ErrUnsafeListen {
			t.Errorf("0.0.0.0 without TLS: err %v, want ErrUnsafeListen", err)
		}
		ln, err := f.srv.Listen(ListenOptions{Addr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()

		// With TLS and tokens it serves any address: a real TLS client
		// with and without the token.
		dir := t.TempDir()
		cert, key := filepath.Join(dir, "page.crt"), filepath.Join(dir, "page.key")
		writeSelfSigned(t, cert, key)
		tokens := filepath.Join(dir, "tokens")
		if err := os.WriteFile(tokens, []byte("responder-token-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ts, err := LoadTokens(tokens)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Options{Store: f.store, Verifier: f.verifier, Tokens: ts})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Listen(ListenOptions{Addr: "0.0.0.0:0", CertFile: cert}); err == nil {
			t.Error("TLS with a certificate and no key: no error")
		}
		ln, err = srv.Listen(ListenOptions{Addr: "0.0.0.0:0", CertFile: cert, KeyFile: key})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		defer func() { cancel(); <-done }()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test's own self-signed certificate
		for _, c := range []struct {
			token  string
			status int
		}{{"", 401}, {"responder-token-0123456789abcdef", 200}} {
			req, _ := http.NewRequest("GET", "https://127.0.0.1:"+port+"/api/meta", nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.status || res.Header.Get("Strict-Transport-Security") == "" {
				t.Errorf("token %q over TLS: status %d (want %d), HSTS %q", c.token, res.StatusCode, c.status, res.Header.Get("Strict-Transport-Security"))
			}
		}
	})
}

// writeSelfSigned writes a self-signed ECDSA certificate for 127.0.0.1.
func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "custody test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
}
