package bundle_test

import (
	"context"
	"testing"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/vectors"
)

// TestBundleVectors verifies the committed bundle vectors
// (testdata/vectors/bundle-*.json, written by today's export) offline: the
// good bundle of each format passes, and every corruption is reported
// with the finding kind the vector declares.
func TestBundleVectors(t *testing.T) {
	dir := vectors.Dir(chdbtest.RepoRoot(t))
	for _, format := range bundle.Formats() {
		t.Run(format, func(t *testing.T) {
			var b vectors.Bundle
			if err := vectors.Load(dir, vectors.BundleFile(format), &b); err != nil {
				t.Fatal(err)
			}
			if b.Format != format || len(b.Corrupt) == 0 {
				t.Fatalf("vector of format %q with %d corruptions", b.Format, len(b.Corrupt))
			}
			_, verifier, err := b.Key.Pair()
			if err != nil {
				t.Fatal(err)
			}
			err = vectors.CheckBundle(context.Background(), &b, func(ctx context.Context, dir string) ([]string, error) {
				rep, err := bundle.Verify(ctx, dir, bundle.VerifyOptions{Verifier: verifier})
				if err != nil {
					return nil, err
				}
				var found []string
				for _, f := range rep.Findings {
					found = append(found, string(f.Kind)+": "+f.String())
				}
				return found, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
