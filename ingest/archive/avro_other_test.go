package archive_test

import (
	"bytes"

	"github.com/hamba/avro/v2/ocf"
)

// newOtherAvro writes a valid Avro file whose schema is not Capture's.
func newOtherAvro(buf *bytes.Buffer) ([]byte, error) {
	enc, err := ocf.NewEncoder(`{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}`, buf)
	if err != nil {
		return nil, err
	}
	if err := enc.Encode(struct {
		X int64 `avro:"x"`
	}{42}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
