package web

import (
	"archive/zip"
	"context"
	"encoding/base64"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/storage/engine"
)

// screenshotDir receives a screenshot of each view (gitignored).
const screenshotDir = "screenshots"

// TestBrowser drives the page in a real headless Chromium on the demo
// incident: one store, one browser, a subtest per view.
func TestBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing: make test installs it (apt-get install -y chromium)")
		}
		t.Skip("chromium is not installed (make test installs it)")
	}
	f := newFixture(t, Options{Collector: CollectorFunc(func(context.Context) []SourceStatus {
		return []SourceStatus{{Name: "eventhubs", Kind: "eventhubs", Running: true, Messages: 1204, Stored: 1187, Quarantined: 2, Dropped: 15, Lag: map[string]int64{"0": 3, "1": 0}}}
	})})
	ts := httptest.NewServer(f.srv)
	defer ts.Close()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	downloads := t.TempDir()

	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	done := make(chan string, 4)
	if err := chromedp.ListenBrowser(ctx, func(ev any) {
		if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
			done <- e.GUID
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Every page error would show in the console; CSP violations too.
	var mu sync.Mutex
	var consoleErrors []string
	err = chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				consoleErrors = append(consoleErrors, "console: "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			consoleErrors = append(consoleErrors, e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			// a refused download or fetch of a missing page is not the
			// page's fault; a CSP violation or script error is.
			if e.Entry.Level == cdplog.EntryLevelError && e.Entry.Source != cdplog.EntrySourceNetwork {
				consoleErrors = append(consoleErrors, e.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	text := func(t *testing.T, sel string) string {
		t.Helper()
		return must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))))
	}
	attr := func(t *testing.T, sel, name string) string {
		t.Helper()
		r, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatal(err)
		}
		return r.Value
	}
	strs := func(t *testing.T, js string) []string { t.Helper(); return evalJS[[]string](t, ctx, js) }
	shot := func(t *testing.T, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitDownload := func(t *testing.T) string {
		t.Helper()
		select {
		case guid := <-done:
			return filepath.Join(downloads, guid)
		case <-time.After(60 * time.Second):
			t.Fatal("no download")
		}
		return ""
	}
	window := "from=" + url.QueryEscape(incidentFrom) + "&to=" + url.QueryEscape(incidentTo)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }

	t.Run("search", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/search?"+window+"&ip="+attackerIP), chromedp.WaitVisible(css(`#results table`)))
		var want uint64
		if err := engine.Each(context.Background(), f.eng, "SELECT count() FROM custody.events WHERE source_ip = {ip:String}", engine.Params{"ip": attackerIP},
			func(r engine.Rows) error { return r.Scan(&want) }); err != nil {
			t.Fatal(err)
		}
		if rows := evalJS[int](t, ctx, `document.querySelectorAll('#results tbody tr').length`); rows != int(want) || want < 14 {
			t.Errorf("search for the attacker's address shows %d rows, want %d", rows, want)
		}
		shot(t, "search")
	})

	t.Run("the attacker's timeline shows every step", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/timeline?actor="+url.QueryEscape(phished)), chromedp.WaitVisible(css(`svg.timeline a.mark-link`)),
			chromedp.WaitVisible(css(`#gaps[data-done]`)))
		actions := strs(t, `[...document.querySelectorAll('svg.timeline a.mark-link')].map(a => a.dataset.action)`)
		gaps := strs(t, `[...document.querySelectorAll('svg.timeline rect.gap')].map(r => r.dataset.kind)`)
		for _, step := range []string{
			"arm:Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action", // the admin kubeconfig
			"k8s:pods/exec:create", // exec into the payments pod
			"k8s:secrets:get",      // reads the secrets
			"acr:push",             // pushes the backdoored image
			"arm:Microsoft.ContainerInstance/containerGroups/write", // the miner's container group
			"arm:Microsoft.Insights/diagnosticSettings/delete",      // switches the audit archive off
		} {
			if !slices.Contains(actions, step) {
				t.Errorf("the timeline lacks %s; it shows %v", step, actions)
			}
		}
		if len(actions) != 19 {
			t.Errorf("the timeline shows %d marks, want dana's 19 events", len(actions))
		}
		if !slices.Contains(gaps, "logging_disabled") {
			t.Errorf("the timeline shows no gap for the deleted diagnostic setting: %v", gaps)
		}
		shot(t, "timeline")
		// The cluster-admin binding was made with the admin certificate.
		run(t, chromedp.Navigate(ts.URL+"/timeline?actor=masterclient"), chromedp.WaitVisible(css(`svg.timeline a.mark-link`)))
		if actions := strs(t, `[...document.querySelectorAll('svg.timeline a.mark-link')].map(a => a.dataset.action)`); !slices.Contains(actions, "k8s:clusterrolebindings:create") {
			t.Errorf("masterclient's timeline lacks the cluster-admin binding: %v", actions)
		}
		// Drag across part of the chart: the view zooms to that span.
		run(t, chromedp.Navigate(ts.URL+"/timeline?actor="+url.QueryEscape(phished)), chromedp.WaitVisible(css(`svg.timeline a.mark-link`)))
		box := evalJS[[]float64](t, ctx, `(() => { const r = document.querySelector('svg.timeline').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		y := box[1] + box[3]*0.1
		x1, x2 := box[0]+box[2]*0.55, box[0]+box[2]*0.8
		run(t, chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x1, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (x1+x2)/2, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x2, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x2, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
			chromedp.Sleep(300*time.Millisecond), chromedp.WaitVisible(css(`svg.timeline`)))
		loc := must[string](t)(chromedp.Run(ctx, chromedp.Location()))
		if !strings.Contains(loc, "from=") || !strings.Contains(loc, "to=") {
			t.Errorf("dragging did not zoom: %s", loc)
		}
		shot(t, "timeline-zoomed")
	})

	t.Run("the exec event shows its raw record and a verified proof", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/search?"+window+"&action="+url.QueryEscape("k8s:pods/exec:create")+"&ip="+attackerIP),
			chromedp.WaitVisible(css(`#results tbody a`)),
			chromedp.Click(css(`#results tbody a`)),
			chromedp.WaitVisible(css(`#proof-status[data-ok]`)))
		status := text(t, `#proof-status`)
		if ok := attr(t, `#proof-status`, "data-ok"); ok != "true" {
			t.Errorf("proof not verified in the browser: %s", status)
		}
		if sig := attr(t, `#proof-status`, "data-signature"); sig != "true" {
			t.Errorf("checkpoint signature not verified in the browser (data-signature %q): %s", sig, status)
		}
		// The record as stored, byte for byte.
		raw := evalJS[string](t, ctx, `document.getElementById('raw').textContent`)
		var stored string
		err := engine.Each(context.Background(), f.eng, "SELECT base64Encode(raw) FROM custody.events WHERE action = 'k8s:pods/exec:create' AND source_ip = {ip:String}",
			engine.Params{"ip": attackerIP}, func(r engine.Rows) error { return r.Scan(&stored) })
		if err != nil {
			t.Fatal(err)
		}
		want, _ := base64.StdEncoding.DecodeString(stored)
		if raw != string(want) || !strings.Contains(raw, "exec") {
			t.Errorf("raw record shown:\n%s\nstored:\n%s", raw, want)
		}
		shot(t, "event")
		// The page's own check fails on any corruption of what the server
		// sent: each case flips one thing and runs proof.js's checkEvent.
		got := evalJS[map[string]any](t, ctx, `(async () => {
			const m = await import('/assets/proof.js');
			const ev = await (await fetch(location.href.replace('/event?', '/api/event?'))).json();
			const flip = h => (h[0] === '0' ? '1' : '0') + h.slice(1);
			const run = async f => { const e = structuredClone(ev); f(e); try { const r = await m.checkEvent(e); return r.ok && r.signature === true ? 'ok' : 'failed'; } catch { return 'failed'; } };
			return {
				intact: await run(() => {}),
				proofHash: await run(e => { e.proof.hashes[0] = flip(e.proof.hashes[0]); }),
				rowHash: await run(e => { e.hash = flip(e.hash); }),
				leafIndex: await run(e => { e.proof.leaf_index += 1; }),
				shortProof: await run(e => { e.proof.hashes.pop(); }),
				longProof: await run(e => { e.proof.hashes.push(e.proof.hashes[0]); }),
				treeSize: await run(e => { e.proof.tree_size += 1; }),
				noteRoot: await run(e => { const l = e.checkpoint.note.split('\n'); l[2] = btoa(String.fromCharCode(...new Uint8Array(32))); e.checkpoint.note = l.join('\n'); }),
				noteSignature: await run(e => { e.checkpoint.note = e.checkpoint.note.replace(/\u2014 (\S+) (\S)/, (m0, n, c) => '\u2014 ' + n + ' ' + (c === 'A' ? 'B' : 'A')); }),
				otherKey: await run(e => { e.verify_key = 'other+00000000+AWhlbGxvaGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsb2hlbGxv'; }),
			};
		})()`, chromedp.EvalAwaitPromise)
		for k, v := range got {
			if want := map[bool]string{true: "ok", false: "failed"}[k == "intact"]; v != want {
				t.Errorf("proof.js on %s: %v, want %s", k, v, want)
			}
		}
		if len(got) != 10 {
			t.Errorf("proof.js cases: %v", got)
		}
		run(t, chromedp.Click(css(`button[aria-pressed]`)))
		if pretty := evalJS[string](t, ctx, `document.getElementById('raw').textContent`); !strings.Contains(pretty, "\n  \"") {
			t.Errorf("pretty-printed record is not indented: %.200s", pretty)
		}
	})

	t.Run("a canned query with parameters returns its rows", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/queries"),
			chromedp.WaitVisible(css(`a[href="/queries?name=unapproved-images"]`)),
			chromedp.Click(css(`a[href="/queries?name=unapproved-images"]`)),
			chromedp.WaitVisible(css(`input[name="p.allowed_registries"]`)),
			chromedp.SetValue(css(`input[name="from"]`), incidentFrom),
			chromedp.SetValue(css(`input[name="to"]`), incidentTo),
			chromedp.SetValue(css(`input[name="p.allowed_registries"]`), "contosopayments.azurecr.io,contosodev.azurecr.io,mcr.microsoft.com"),
			chromedp.Click(css(`form button[type="submit"]`)),
			chromedp.WaitVisible(css(`#results tbody tr`)))
		rows := text(t, `#results tbody`)
		if !strings.Contains(rows, "docker.io/evil/miner:5.2") || !strings.Contains(rows, phished) {
			t.Errorf("unapproved-images rows: %s", rows)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll('#results tbody tr').length`); n != 1 {
			t.Errorf("unapproved-images returned %d rows, want 1", n)
		}
		shot(t, "queries")
		run(t, chromedp.Click(css(`#results button`)))
		csv, err := os.ReadFile(waitDownload(t))
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(string(csv)), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "docker.io/evil/miner:5.2") {
			t.Errorf("CSV download:\n%s", csv)
		}
	})

	t.Run("an export downloads and verifies", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/export"),
			chromedp.WaitVisible(css(`input[name="from"]`)),
			chromedp.SetValue(css(`input[name="from"]`), incidentFrom),
			chromedp.SetValue(css(`input[name="to"]`), incidentTo),
			chromedp.Click(css(`form button[type="submit"]`)))
		zipPath := waitDownload(t)
		run(t, chromedp.WaitVisible(css(`#export-status[data-done]`)))
		shot(t, "export")
		dir := unzip(t, zipPath)
		rep, err := bundle.Verify(context.Background(), dir, bundle.VerifyOptions{Verifier: f.verifier})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Rows != incidentRows {
			t.Errorf("verify-export of the download: ok %v, %d rows (want %d): %v", rep.OK(), rep.Rows, incidentRows, rep.Findings)
		}
	})

	t.Run("collector", func(t *testing.T) {
		run(t, chromedp.Navigate(ts.URL+"/collector"), chromedp.WaitVisible(css(`main table`)))
		if got := text(t, `main tbody`); !strings.Contains(got, "eventhubs") || !strings.Contains(got, "0: 3") {
			t.Errorf("collector view: %s", got)
		}
		shot(t, "collector")
	})

	t.Run("a tampered store fails verify on the integrity view", func(t *testing.T) {
		verdict := func() (string, string) {
			run(t, chromedp.Navigate(ts.URL+"/integrity"),
				chromedp.WaitVisible(css(`#start-verify`)),
				chromedp.Click(css(`#start-verify`)),
				chromedp.WaitVisible(css(`#verify-result .verdict`)))
			return text(t, `#verify-result`), attr(t, `#verify-result .verdict`, "data-ok")
		}
		if res, ok := verdict(); ok != "true" {
			t.Fatalf("the intact store fails verify: %s", res)
		}
		// Someone with write access to the store moves the attacker to
		// the office's address.
		if err := f.eng.Exec(context.Background(), "ALTER TABLE custody.events UPDATE source_ip = '198.51.100.10' WHERE action = 'k8s:pods/exec:create' AND source_ip = '203.0.113.77' SETTINGS mutations_sync = 2", nil); err != nil {
			t.Fatal(err)
		}
		res, ok := verdict()
		if ok != "false" || !strings.Contains(res, "modified") {
			t.Errorf("the tampered store: data-ok %q, result %s", ok, res)
		}
		shot(t, "integrity-tampered")
		run(t, chromedp.Navigate(ts.URL+"/integrity"), chromedp.WaitVisible(css(`#last-verify`)))
		if last := text(t, `#last-verify`); !strings.HasPrefix(last, "failed") {
			t.Errorf("last verify shows %q", last)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("errors in the page: %v", consoleErrors)
	}
}

// must returns the value of a chromedp.Run, failing t on its error.
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func unzip(t *testing.T, path string) string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	dir := t.TempDir()
	var bundle string
	for _, zf := range zr.File {
		name := filepath.FromSlash(zf.Name)
		if strings.Contains(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("zip entry %q leaves the bundle", zf.Name)
		}
		bundle = filepath.Join(dir, filepath.Dir(name))
		if err := os.MkdirAll(bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bundle
}
