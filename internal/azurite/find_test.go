package azurite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinaryHonoursEnv(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "azurite-blob")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBinary, bin)
	if got, err := findBinary(); err != nil || got != bin {
		t.Fatalf("findBinary = %q, %v; want %q", got, err, bin)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	t.Setenv(EnvBinary, missing)
	if _, err := findBinary(); err == nil || !strings.Contains(err.Error(), EnvBinary) {
		t.Fatalf("missing %s: err = %v", EnvBinary, err)
	}
}

func TestRepoRootHoldsInstallScript(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, InstallScript)); err != nil {
		t.Fatalf("install script: %v", err)
	}
}
