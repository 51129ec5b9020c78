package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygenModes (issue 11 item 7): keygen writes the signing key 0600
// even over an existing 0644 file (--force used to keep 0644), and a
// signing key other users can read is refused when the store is opened to
// append, with a message saying what to do.
func TestKeygenModes(t *testing.T) {
	dir := t.TempDir()
	skey, vkey := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	for _, p := range []string{skey, vkey} {
		if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := custodyCLI(t, dir, "keygen"); err == nil || !strings.Contains(err.Error(), "refusing to replace") {
		t.Fatalf("keygen over existing keys without --force = %v", err)
	}
	if _, err := custodyCLI(t, dir, "keygen", "--force"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{skey: 0o600, vkey: 0o644} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", filepath.Base(p), got, want)
		}
		if b, _ := os.ReadFile(p); strings.HasPrefix(string(b), "old") {
			t.Errorf("%s not replaced", filepath.Base(p))
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	for mode, refused := range map[os.FileMode]bool{0o600: false, 0o640: false, 0o400: false, 0o644: true, 0o606: true} {
		if err := os.Chmod(skey, mode); err != nil {
			t.Fatal(err)
		}
		err := checkSigningKeyMode(skey)
		if refused != (err != nil) {
			t.Errorf("mode %04o: err = %v, want refused %v", mode, err, refused)
		}
		if err != nil && !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: message %q does not say how to fix it", mode, err)
		}
	}
	// Through the command that appends: refused before the engine is used.
	if err := os.Chmod(skey, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := custodyCLI(t, dir, "backfill", filepath.Join(dir, "nothing.json")); err == nil || !strings.Contains(err.Error(), "other users can read") {
		t.Errorf("backfill with a 0644 signing key = %v, want refused", err)
	}
}
