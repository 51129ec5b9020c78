package chdb

import (
	"slices"
	"testing"
)

// TestEngineEnv: the engine host gets Custody's allocator options, with
// the user's own JE_MALLOC_CONF after them (so theirs win) and no second
// JE_MALLOC_CONF entry, which the engine would not read.
func TestEngineEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string
	}{
		{"none set", []string{"PATH=/bin", "HOME=/root"},
			[]string{"PATH=/bin", "HOME=/root", "JE_MALLOC_CONF=" + allocatorConf}},
		{"user's options after ours", []string{"JE_MALLOC_CONF=dirty_decay_ms:0", "PATH=/bin"},
			[]string{"PATH=/bin", "JE_MALLOC_CONF=" + allocatorConf + ",dirty_decay_ms:0"}},
		{"empty user value", []string{"JE_MALLOC_CONF=", "PATH=/bin"},
			[]string{"PATH=/bin", "JE_MALLOC_CONF=" + allocatorConf}},
		{"a name that only starts alike", []string{"JE_MALLOC_CONFX=1"},
			[]string{"JE_MALLOC_CONFX=1", "JE_MALLOC_CONF=" + allocatorConf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := engineEnv(tc.environ); !slices.Equal(got, tc.want) {
				t.Fatalf("engineEnv(%q) = %q, want %q", tc.environ, got, tc.want)
			}
		})
	}
}
