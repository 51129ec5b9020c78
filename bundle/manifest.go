package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Constants of the bundle layout; storage/docs/format/export-v1.md is the
// spec they mirror.
const (
	// BundleFormat names the manifest format.
	BundleFormat = "custody-export"
	// BundleVersion is the manifest version this package writes. Version
	// 2 added the distinct event count and the duplicates file; Verify
	// reads versions 1 and 2.
	BundleVersion = 2
	// oldestBundleVersion is the oldest manifest version Verify reads.
	oldestBundleVersion = 1
	// ManifestFile is the manifest's name inside a bundle.
	ManifestFile = "manifest.json"
	// SignatureFile holds the signed note over the manifest's SHA-256.
	SignatureFile = "manifest.sig"
	// signatureHeader is the first line of the signed note's text; the
	// note's format did not change with the manifest's version 2.
	signatureHeader = "custody-export/v1"
)

// Data formats.
const (
	FormatJSONL   = "jsonl"
	FormatCSV     = "csv"
	FormatParquet = "parquet"
	FormatOCSF    = "ocsf"
)

// Formats lists the data formats export writes.
func Formats() []string { return []string{FormatJSONL, FormatCSV, FormatParquet, FormatOCSF} }

// dataFileName is the data file of a format.
func dataFileName(format string) string {
	switch format {
	case FormatCSV:
		return "events.csv"
	case FormatParquet:
		return "events.parquet"
	case FormatOCSF:
		return "events.ocsf.jsonl"
	default:
		return "events.jsonl"
	}
}

// Manifest describes a bundle: what was selected, every file with its
// SHA-256, and for each chain the exported sequence runs, the signed
// checkpoint covering them and the Merkle range proof binding the rows to
// that checkpoint.
type Manifest struct {
	Format  string `json:"format"`  // BundleFormat
	Version int    `json:"version"` // BundleVersion
	// EventEncoding is the event hash version of every row
	// (trail.EventEncodingVersion).
	EventEncoding int    `json:"event_encoding"`
	CreatedAt     string `json:"created_at"` // RFC 3339, UTC
	CreatedBy     string `json:"created_by"` // the actor, as in the custody log
	// Key names the signing key: "<name>+<key hash hex>", the prefix of the
	// verification key that checks the manifest and the checkpoints.
	Key       string     `json:"key"`
	Store     StoreInfo  `json:"store"`
	Selection Selection  `json:"selection"`
	Data      string     `json:"data_format"` // FormatJSONL, ...
	Files     []FileInfo `json:"files"`
	Rows      uint64     `json:"rows"`
	// Events is the number of distinct event ids among the rows: what the
	// canned queries count (version 2; absent in version 1).
	Events *uint64 `json:"events,omitempty"`
	// Duplicates describes DuplicatesFile, the rows whose event id an
	// earlier row holds (version 2; absent in version 1). Rows is the
	// number of such rows: Rows - Events.
	Duplicates *FileInfo `json:"duplicates,omitempty"`
	Chains     []Chain   `json:"chains"`
}

// StoreInfo says which store the events came from.
type StoreInfo struct {
	Engine   string `json:"engine"`
	Database string `json:"database"`
}

// Selection records what was asked for.
type Selection struct {
	From  string `json:"from"` // inclusive, on event_time
	To    string `json:"to"`   // exclusive
	Chain string `json:"chain,omitempty"`
	Query string `json:"query,omitempty"`
	// Params are the query parameters as given on the command line.
	Params map[string]string `json:"params,omitempty"`
	// Bound are all query parameters as bound, defaults included.
	Bound map[string]string `json:"bound,omitempty"`
}

// FileInfo is one data file of the bundle.
type FileInfo struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"` // hex
	Bytes  int64  `json:"bytes"`
	Rows   uint64 `json:"rows"`
}

// Chain is what the bundle holds of one chain.
type Chain struct {
	Chain string `json:"chain"`
	Rows  uint64 `json:"rows"`
	// Runs are the exported rows as maximal runs of consecutive sequence
	// numbers, ascending.
	Runs []Run `json:"runs"`
	// Checkpoint is the signed note (checkpoint.md) of the first signed
	// checkpoint covering every exported row of the chain.
	Checkpoint string `json:"checkpoint"`
	TreeSize   uint64 `json:"tree_size"` // as in Checkpoint
	Root       string `json:"root"`      // hex, as in Checkpoint
	// Gaps are the Merkle compact ranges of the leaves the bundle does not
	// hold: before the first run, between runs, and after the last run up
	// to TreeSize (len(Runs)+1 entries, each a list of hex node hashes,
	// left to right). See export-v1.md, "Range proof".
	Gaps [][]string `json:"gaps"`
}

// Run is a range of consecutive exported rows of one chain.
type Run struct {
	First uint64 `json:"first"` // sequence number of the first row
	Last  uint64 `json:"last"`  // sequence number of the last row
	// PrevHash is prev_hash of row First (hex), LastHash hash of row Last.
	PrevHash string `json:"prev_hash"`
	LastHash string `json:"last_hash"`
}

// keyID names a signed-note key: "<name>+<hash>", as verifier keys begin.
func keyID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// encodeManifest renders m as the bytes stored in manifest.json.
func encodeManifest(m *Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// signatureText is the text of the note signing a manifest.
func signatureText(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return signatureHeader + "\nsha256 " + hex.EncodeToString(sum[:]) + "\n"
}

// signManifest returns the signed note over the manifest's bytes.
func signManifest(manifest []byte, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: signatureText(manifest)}, s)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	return msg, nil
}

// Errors of manifest checks.
var (
	ErrBadManifestSignature = errors.New("manifest signature does not verify")
	ErrManifestAltered      = errors.New("manifest.json differs from the signed manifest")
)

// checkManifestSignature verifies sig with v and that it signs exactly
// manifest.
func checkManifestSignature(manifest, sig []byte, v note.Verifier) error {
	n, err := note.Open(sig, note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("%w with key %s: %w", ErrBadManifestSignature, keyID(v.Name(), v.KeyHash()), err)
	}
	want := signatureText(manifest)
	if n.Text != want {
		got := strings.TrimPrefix(strings.TrimSpace(n.Text), signatureHeader+"\n")
		return fmt.Errorf("%w: its SHA-256 is %s, the signature covers %s", ErrManifestAltered,
			strings.TrimPrefix(strings.TrimSpace(want[len(signatureHeader)+1:]), "sha256 "), strings.TrimPrefix(got, "sha256 "))
	}
	return nil
}

// decodeManifest parses manifest.json strictly and checks its version.
func decodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.Format != BundleFormat {
		return nil, fmt.Errorf("manifest format %q is not %q", m.Format, BundleFormat)
	}
	if m.Version < oldestBundleVersion || m.Version > BundleVersion {
		return nil, fmt.Errorf("manifest version %d is not supported (this verifier reads versions %d to %d)", m.Version, oldestBundleVersion, BundleVersion)
	}
	return &m, nil
}
