package bundle_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestVerifierImportsNoStore holds the package (the format, its codecs and
// the offline verifier an auditor runs) to what an auditor's machine has:
// no store and no engine, directly or through another package. The
// writer's store side is bundle/export.
func TestVerifierImportsNoStore(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/custody-audit/custody/bundle").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/custody-audit/custody/"
	allowed := []string{"event", "normalize", "storage/trail", "bundle"}
	forbidden := []string{"storage", "storage/engine", "storage/clickhouse", "storage/chdb", "queries"}
	var own []string
	for _, p := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(p, module)
		if !ok {
			continue
		}
		own = append(own, rel)
		if slices.Contains(forbidden, rel) || !slices.Contains(allowed, rel) {
			t.Errorf("package bundle depends on %s; it may use only %s of this module", p, strings.Join(allowed, ", "))
		}
	}
	if !slices.Contains(own, "storage/trail") {
		t.Errorf("go list -deps found none of the module's packages the bundle uses (got %v)", own)
	}
}

// TestNoUnsafe holds the bundle's codecs and verifier, and the JSON and
// OCSF encoders they share with normalize, to safe Go: decoded rows own
// their strings (substrings of a copy of the records) instead of viewing
// buffers that are reused.
func TestNoUnsafe(t *testing.T) {
	for _, pkg := range []string{"github.com/custody-audit/custody/bundle", "github.com/custody-audit/custody/bundle/export"} {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		if slices.Contains(strings.Fields(string(out)), "unsafe") {
			t.Errorf("%s imports unsafe", pkg)
		}
	}
}
