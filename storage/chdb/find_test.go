package chdb

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMissingLibraryNamesTheInstallCommand(t *testing.T) {
	dir := t.TempDir()
	_, err := firstLibrary([]string{"", filepath.Join(dir, "nope.so")})
	if !errors.Is(err, ErrLibraryMissing) || !strings.Contains(err.Error(), "install-libchdb.sh") {
		t.Fatalf("want ErrLibraryMissing naming the install script, got %v", err)
	}
	lib := filepath.Join(dir, "libchdb.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := firstLibrary([]string{filepath.Join(dir, "nope.so"), lib})
	if err != nil || got != lib {
		t.Fatalf("firstLibrary = %q, %v", got, err)
	}
}
