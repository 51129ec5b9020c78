package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunServesPage runs the collector with --web (runOptions.Web): the
// page answers from the collector's own store while it collects, with the
// collector view, and stops with it.
func TestRunServesPage(t *testing.T) {
	s := newE2EStore(t)
	br := startE2EBroker(t, 1)
	last := publishAll(t, br, auditBodies("web", 3, 2, 50))
	metrics, page := freeAddr(t), freeAddr(t)
	c := startCollector(t, s, collectorYAML(br.ConnectionString(), metrics, 100), metrics, "--web", page)
	c.waitStored(t, last)
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + page + "/api/collector")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/api/collector: %s\n%s", resp.Status, b)
			}
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector's page did not answer: %v", err)
		}
	}
	if !strings.Contains(body, `"eventhubs"`) {
		t.Errorf("/api/collector does not show the eventhubs source:\n%s", body)
	}
	c.stop(t)
	if _, err := http.Get("http://" + page + "/api/collector"); err == nil {
		t.Error("the page still answers after the collector stopped")
	}
}
