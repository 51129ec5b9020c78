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
