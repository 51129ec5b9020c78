package normalize

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestSpecialMask checks the SWAR masks against a byte-by-byte scan: the
// lowest flagged byte is the first '"', '\\' (or, for specialMask, control
// character) of the word, and no byte is flagged when there is none.
// Words are drawn from the bytes around the ones looked for, where a
// borrow or a wrong operator would show.
func TestSpecialMask(t *testing.T) {
	alphabet := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '#', '[', '\\', ']', 'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	rng := rand.New(rand.NewPCG(13, 13))
	for n := 0; n < 200000; n++ {
		var b [8]byte
		for k := range b {
			b[k] = alphabet[rng.IntN(len(alphabet))]
		}
		w := binary.LittleEndian.Uint64(b[:])
		for _, tc := range []struct {
			name    string
			mask    func(uint64) uint64
			special func(byte) bool
		}{
			{"specialMask", specialMask, func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }},
			{"quoteMask", quoteMask, func(c byte) bool { return c == '"' || c == '\\' }},
		} {
			want := 8
			for k, c := range b {
				if tc.special(c) {
					want = k
					break
				}
			}
			got := 8
			if m := tc.mask(w); m != 0 {
				got = bits.TrailingZeros64(m) >> 3
			}
			if got != want {
				t.Fatalf("%s(% x): first flagged byte %d, want %d", tc.name, b, got, want)
			}
		}
	}
}

// TestLowerASCII holds the eight-bytes-a-step lowerASCII to a byte-by-byte
// lowering of ASCII letters, on keys of every length and the bytes around
// 'A', 'Z' and 0x80 (where a borrow or a carry would show).
func TestLowerASCII(t *testing.T) {
	alphabet := []byte{'@', 'A', 'B', 'Y', 'Z', '[', '`', 'a', 'z', '{', '0', 0x7f, 0x80, 0xc1, 0xda, 0xff}
	rng := rand.New(rand.NewPCG(14, 14))
	var buf [40]byte
	for n := 0; n < 100000; n++ {
		k := make([]byte, rng.IntN(50))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		want := make([]byte, len(k))
		for i, c := range k {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			want[i] = c
		}
		if got := lowerASCII(buf[:], k); string(got) != string(want) {
			t.Fatalf("lowerASCII(% x) = % x, want % x", k, got, want)
		}
	}
}
