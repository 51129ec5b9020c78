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
