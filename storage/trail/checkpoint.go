package trail

import (
	"errors"
	"fmt"
	"strings"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed tree head of one chain: the RFC 6962 Merkle root
// over the chain's first Size leaves. Its text is the transparency-dev
// checkpoint body (origin, size, base64 root; see
// storage/docs/format/checkpoint.md) signed as a Go signed note.
type Checkpoint struct {
	Chain string
	Size  uint64
	Root  Hash
	// Note is the signed note text as stored and written to the
	// checkpoint directory.
	Note []byte
}

// originPrefix marks a checkpoint origin as a custody chain's.
const originPrefix = "custody/"

// CheckpointOrigin names a chain in a checkpoint. Chains are one line of
// printable text already; the prefix marks whose log it is.
func CheckpointOrigin(chain string) string { return originPrefix + chain }

// ErrBadSignature means a checkpoint's signature does not verify.
var ErrBadSignature = errors.New("checkpoint signature does not verify")

// OpenCheckpoint verifies a signed checkpoint note and parses it.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	var cp log.Checkpoint
	rest, err := cp.Unmarshal([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("parse checkpoint: %w", err)
	}
	_ = rest // extension lines are allowed and ignored
	if !strings.HasPrefix(cp.Origin, originPrefix) {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q is not a custody chain", cp.Origin)
	}
	if len(cp.Hash) != 32 {
		return Checkpoint{}, fmt.Errorf("checkpoint root of %d bytes", len(cp.Hash))
	}
	out := Checkpoint{Chain: strings.TrimPrefix(cp.Origin, originPrefix), Size: cp.Size, Note: msg}
	copy(out.Root[:], cp.Hash)
	return out, nil
}
