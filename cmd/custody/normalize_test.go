package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestNormalizeCommandGolden runs `custody normalize` (runNormalize) over
// inputs from normalize/testdata and compares stdout and stderr byte for
// byte with testdata/normalize/<case>.{stdout,stderr}, written from the
// command as it was before it streamed (go test -run
// TestNormalizeCommandGolden -update).
func TestNormalizeCommandGolden(t *testing.T) {
	td := filepath.Join("..", "..", "normalize", "testdata")
	for _, tc := range []struct {
		name  string
		files []string
		opts  normalizeOptions
	}{
		{name: "pt1h-bad-line", files: []string{"cornercases/bad-line-in-pt1h.json"}},
		{name: "mixed-files", files: []string{"eventhubs/aks-admin-mix-documented.json", "archive/pt1h-mixed-documented.json", "k8s-audit/pretty-concatenated-documented.json", "cornercases/truncated-eventhubs-body.json", "cornercases/empty-body.json"}},
		{name: "ocsf", files: []string{"eventhubs/aks-admin-mix-documented.json", "eventhubs/acr-events-documented.json"}, opts: normalizeOptions{OCSF: true}},
		{name: "keep-noise", files: []string{"archive/aks-categories-sumologic.json"}, opts: normalizeOptions{KeepNoise: true}},
		{name: "k8s-audit", files: []string{"k8s-audit/stages-audit2rbac.json"}, opts: normalizeOptions{Format: "k8s-audit"}},
		{name: "loganalytics", files: []string{"loganalytics/aksaudit-response-documented.json"}, opts: normalizeOptions{Format: "loganalytics"}},
		{name: "unicode-bom", files: []string{"cornercases/unicode-and-bom.json", "cornercases/deep-nesting.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			o := tc.opts
			for _, f := range tc.files {
				o.Files = append(o.Files, filepath.Join(td, f))
			}
			o.Stdout, o.Stderr = &out, &errOut
			o.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
			if err := runNormalize(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			// The paths as the command printed them, independent of where
			// the repository is.
			got := map[string][]byte{"stdout": out.Bytes(), "stderr": errOut.Bytes()}
			for kind, b := range got {
				p := filepath.Join("testdata", "normalize", tc.name+"."+kind)
				if *updateGolden {
					if err := os.WriteFile(p, b, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, want) {
					t.Errorf("%s differs from %s:\n%s", kind, p, firstDiff(b, want))
				}
			}
		})
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got  " + gl + "\n want " + wl
		}
	}
	return ""
}
