package bundle

import "github.com/custody-audit/custody/storage"

// DecodeJSONRow exposes the jsonl row decoder to the black-box tests,
// which forge rows the way someone holding the spec would.
func DecodeJSONRow(line []byte) (storage.Row, error) {
	var r storage.Row
	err := decodeJSONRow(line, &r, columnIndex())
	return r, err
}

// WithRowBuffer sets how many bytes of rows an export holds in memory
// before spilling, so that tests can make small exports spill.
func WithRowBuffer(o Options, n int) Options {
	o.rowBuffer = n
	return o
}
