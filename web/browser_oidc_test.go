package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserSignIn signs in with Entra ID (the local authority) in a real
// Chromium: the page redirects to the authority and back, names the user,
// and signs out with the header's button, which ends the authority's
// session too.
func TestBrowserSignIn(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing: make test installs it (apt-get install -y chromium)")
		}
		t.Skip("chromium is not installed (make test installs it)")
	}
	w := newOIDCWorld(t)
	p := w.serve(t, OIDCOptions{}, nil)
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		// Both peers present httptest's self-signed certificates.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-component-update", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 800))
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(p.url+"/integrity"), chromedp.WaitVisible(chromedp.CSS(`#who form button`))); err != nil {
		t.Fatal(err)
	}
	if who := must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#who`)))); !strings.Contains(who, "Dana Dev") {
		t.Errorf("header names %q, want Dana Dev", who)
	}
	if loc := must[string](t)(chromedp.Run(ctx, chromedp.Location())); loc != p.url+"/integrity" {
		t.Errorf("after sign-in the browser is at %s", loc)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		_ = os.MkdirAll(screenshotDir, 0o755)
		_ = os.WriteFile(filepath.Join(screenshotDir, "signed-in.png"), png, 0o644)
	}
	// The sign-out button posts a form and the browser follows the server's
	// redirect: wait for that navigation's document, not for a heading (the
	// page being left has one too, so waiting for it raced the navigation).
	res, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#who form button`)))
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != p.url+"/auth/signed-out" || res.Status != 200 {
		t.Errorf("sign-out ended at %s with %d, want %s/auth/signed-out with 200", res.URL, res.Status, p.url)
	}
	if h := must[string](t)(chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main h1`)))); h != "Signed out" {
		t.Errorf("after sign-out the page says %q", h)
	}
	// The form's redirect to the authority's end_session_endpoint was
	// followed (the Content-Security-Policy's form-action allows it), so
	// the Entra ID session ended too.
	if n := w.auth.SignOuts(); n != 1 {
		t.Errorf("the authority ended %d sessions, want 1", n)
	}
}
