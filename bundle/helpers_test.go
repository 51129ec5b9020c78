package bundle

import "github.com/custody-audit/custody/storage/trail"

// DecodeJSONRow exposes the jsonl row decoder to the black-box tests,
// which forge rows the way someone holding the spec would.
func DecodeJSONRow(line []byte) (trail.Row, error) {
	var r trail.Row
	err := decodeJSONRow(line, &r, columnIndex())
	return r, err
}
