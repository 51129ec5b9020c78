package export

import "github.com/custody-audit/custody/storage"

// DecodeJSONRow exposes the jsonl row decoder to the black-box tests,
// which forge rows the way someone holding the spec would.
func DecodeJSONRow(line []byte) (storage.Row, error) {
	var r storage.Row
	err := decodeJSONRow(line, &r, columnIndex())
	return r, err
}
