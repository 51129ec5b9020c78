package loadgen

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestDeterministicAndValid(t *testing.T) {
	a, b := New(7, DefaultMix()).Body(200), New(7, DefaultMix()).Body(200)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed produced different bodies")
	}
	if bytes.Equal(a, New(8, DefaultMix()).Body(200)) {
		t.Fatal("different seeds produced the same body")
	}
	var body struct{ Records []map[string]any }
	if err := json.Unmarshal(a, &body); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, r := range body.Records {
		counts[r["category"].(string)]++
	}
	if counts["kube-audit"] < 140 || counts["Administrative"] == 0 || counts["ContainerRegistryRepositoryEvents"]+counts["ContainerRegistryLoginEvents"] == 0 {
		t.Fatalf("unexpected mix: %v", counts)
	}
	if avg := len(a) / 200; avg < 900 || avg > 1800 {
		t.Fatalf("average record size %d bytes, want about 1.2 KB", avg)
	}
}
