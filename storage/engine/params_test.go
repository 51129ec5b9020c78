package engine

import "testing"

func TestStringArrayEscapes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, `[]`},
		{[]string{`a'b`, `c\d`}, `['a''b','c\d']`},
		{[]string{"tab\tnl\n", "é"}, "['tab\tnl\n','é']"},
	} {
		if got := StringArray(tc.in); got != tc.want {
			t.Errorf("StringArray(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestIsIdentifier(t *testing.T) {
	for s, want := range map[string]bool{"events": true, "_x9": true, "9x": false, "": false, "a.b": false, "a-b": false, "é": false} {
		if IsIdentifier(s) != want {
			t.Errorf("IsIdentifier(%q) = %v", s, !want)
		}
	}
}
