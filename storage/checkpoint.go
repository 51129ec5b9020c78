package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// Checkpoint is a signed tree head of one chain (see trail.Checkpoint).
type Checkpoint = trail.Checkpoint

// GenerateKey makes an Ed25519 signing key pair in the signed-note
// encoding: skey starts with PRIVATE+KEY+name, vkey is name+hash+key.
func GenerateKey(name string) (skey, vkey string, err error) {
	if name == "" || strings.ContainsAny(name, "+ \n") {
		return "", "", fmt.Errorf("key name %q must be non-empty without '+', spaces or newlines", name)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generate signing key: %w", err)
	}
	return skey, vkey, nil
}

// LoadSigner reads a signing key written by GenerateKey.
func LoadSigner(path string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		// never echo the key material
		return nil, fmt.Errorf("signing key %s is not a signed-note private key", path)
	}
	return s, nil
}

// LoadVerifier reads a verification key written by GenerateKey.
func LoadVerifier(path string) (note.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read verification key: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", path, err)
	}
	return v, nil
}

// signCheckpoint signs the checkpoint body for chain.
func signCheckpoint(signer note.Signer, chain string, size uint64, root Hash) ([]byte, error) {
	body := log.Checkpoint{Origin: checkpointOrigin(chain), Size: size, Hash: root[:]}.Marshal()
	msg, err := note.Sign(&note.Note{Text: string(body)}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint of %s: %w", chain, err)
	}
	return msg, nil
}

// checkpointOrigin names a chain in a checkpoint (trail.CheckpointOrigin).
func checkpointOrigin(chain string) string { return trail.CheckpointOrigin(chain) }

// ErrBadSignature means a checkpoint's signature does not verify.
var ErrBadSignature = trail.ErrBadSignature

// OpenCheckpoint verifies a signed checkpoint note and parses it (see
// trail.OpenCheckpoint).
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	return trail.OpenCheckpoint(msg, v)
}

// checkpointFile is where a chain's latest checkpoint lives in the
// checkpoint directory: the chain name, path-escaped into one file name,
// or for names too long for a file system (archive blob paths run to
// hundreds of bytes) a readable prefix and a hash of the whole name.
// Verification reads the chain from the signed note, not the file name.
func checkpointFile(dir, chain string) string {
	name := url.PathEscape(chain)
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(chain))
		name = name[:120] + "-" + hex.EncodeToString(sum[:12])
	}
	return filepath.Join(dir, name+".checkpoint")
}

// writeCheckpointFile replaces the chain's checkpoint file atomically
// (write a temporary file, fsync, rename, fsync the directory), so a
// crash leaves the old or the new checkpoint, never a torn one, and a
// checkpoint reported written survives a power loss.
func writeCheckpointFile(dir, chain string, msg []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create checkpoint directory: %w", err)
	}
	path := checkpointFile(dir, chain)
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(msg); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install checkpoint: %w", err)
	}
	// the rename is durable only once the directory entry is
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("install checkpoint: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}

// ReadCheckpointDir returns the raw checkpoint notes in dir by file name.
func ReadCheckpointDir(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if dir == "" {
		return out, nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".checkpoint") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read checkpoint %s: %w", e.Name(), err)
		}
		out[e.Name()] = b
	}
	return out, nil
}

// LatestCheckpoints returns every chain's newest stored checkpoint, with
// its signed note (for publishing; see storage/witness).
func (s *Store) LatestCheckpoints(ctx context.Context) ([]Checkpoint, error) {
	var out []Checkpoint
	err := s.queryEach(ctx, "SELECT toString(chain), tree_size, root_hash, note FROM "+s.db+".checkpoints ORDER BY chain, tree_size DESC LIMIT 1 BY chain", nil, func(r engine.Rows) error {
		var cp Checkpoint
		var msg string
		if err := r.Scan(&cp.Chain, &cp.Size, &cp.Root, &msg); err != nil {
			return err
		}
		cp.Note = []byte(msg)
		out = append(out, cp)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read newest checkpoints: %w", err)
	}
	return out, nil
}
