package chdb

import "slices"

// appendSortedKeys appends m's keys to dst in sorted order: Map values are
// written key-sorted so equal maps encode equally.
func appendSortedKeys(dst []string, m map[string]string) []string {
	start := len(dst)
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst[start:])
	return dst
}
