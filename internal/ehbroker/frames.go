package ehbroker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame layer (AMQP 1.0 part 2, section 2.3):
//
//	+---------+------+------+---------+----------------------------+
//	| size:4  | doff | type | channel | performative [payload]     |
//	+---------+------+------+---------+----------------------------+
//
// size counts the whole frame; doff is the header length in 4-byte words
// (2 here); type is 0 for AMQP and 1 for SASL frames. A frame of exactly
// 8 bytes is an empty heartbeat.
const (
	frameHeaderSize = 8
	frameTypeAMQP   = 0x00
	frameTypeSASL   = 0x01
)

// Protocol headers exchanged before any frame.
var (
	headerSASL = []byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
	headerAMQP = []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
)

// Performative and section descriptors.
const (
	perfOpen        = 0x10
	perfBegin       = 0x11
	perfAttach      = 0x12
	perfFlow        = 0x13
	perfTransfer    = 0x14
	perfDisposition = 0x15
	perfDetach      = 0x16
	perfEnd         = 0x17
	perfClose       = 0x18

	saslMechanisms = 0x40
	saslInit       = 0x41
	saslOutcome    = 0x44

	descError    = 0x1d
	descAccepted = 0x24
	descRejected = 0x25
	descSource   = 0x28

	secMessageAnnotations = 0x72
	secData               = 0x75
)

// batchMessageFormat marks an Event Hubs batch: each data section of the
// envelope holds one complete encoded AMQP message.
const batchMessageFormat = 0x80013700

// Link roles as carried in attach and disposition.
const (
	roleSender   = false
	roleReceiver = true
)

// frame is one decoded frame.
type frame struct {
	typ     byte
	channel uint16
	code    uint64 // performative descriptor; 0 for a heartbeat
	fields  []any  // performative fields, missing trailing ones absent
	payload []byte // transfer payload
}

// field returns the i-th performative field or nil.
func (f *frame) field(i int) any {
	if i < len(f.fields) {
		return f.fields[i]
	}
	return nil
}

func (f *frame) uintField(i int) (uint32, bool) {
	v, ok := f.field(i).(uint32)
	return v, ok
}

func (f *frame) boolField(i int) bool {
	v, _ := f.field(i).(bool)
	return v
}

// readFrame reads one frame, refusing frames larger than maxSize.
func readFrame(r io.Reader, maxSize uint32) (frame, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	size := binary.BigEndian.Uint32(hdr[0:4])
	doff := uint32(hdr[4]) * 4
	f := frame{typ: hdr[5], channel: binary.BigEndian.Uint16(hdr[6:8])}
	if size < frameHeaderSize || doff < frameHeaderSize || doff > size {
		return frame{}, fmt.Errorf("malformed frame header (size %d, doff %d)", size, doff)
	}
	if size > maxSize {
		return frame{}, fmt.Errorf("frame of %d bytes exceeds max frame size %d", size, maxSize)
	}
	if size == frameHeaderSize {
		return f, nil
	}
	body := make([]byte, size-frameHeaderSize)
	if _, err := io.ReadFull(r, body); err != nil {
		return frame{}, err
	}
	body = body[doff-frameHeaderSize:]
	d := decoder{b: body}
	v, err := d.value()
	if err != nil {
		return frame{}, fmt.Errorf("decode performative: %w", err)
	}
	desc, ok := v.(described)
	if !ok {
		return frame{}, errors.New("frame body is not a described performative")
	}
	f.code = desc.code
	switch x := desc.value.(type) {
	case []any:
		f.fields = x
	case nil:
	default:
		return frame{}, fmt.Errorf("performative 0x%02x is not a list", desc.code)
	}
	f.payload = body[d.i:]
	return f, nil
}

// appendFrame appends a frame carrying a performative (and payload) to buf.
func appendFrame(buf []byte, typ byte, channel uint16, code uint64, payload []byte, fields ...any) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 2, typ, byte(channel>>8), byte(channel))
	e := encoder{buf: buf}
	if err := e.performative(code, fields...); err != nil {
		return buf[:start], err
	}
	e.buf = append(e.buf, payload...)
	binary.BigEndian.PutUint32(e.buf[start:], uint32(len(e.buf)-start))
	return e.buf, nil
}

// amqpError builds an AMQP error (part 2, section 2.8.14).
func amqpError(condition, description string) described {
	return described{code: descError, value: []any{symbol(condition), description}}
}

// AMQP error conditions the broker uses.
const (
	condNotFound      = "amqp:not-found"
	condNotAllowed    = "amqp:not-allowed"
	condInvalidField  = "amqp:invalid-field"
	condDecodeError   = "amqp:decode-error"
	condInternalError = "amqp:internal-error"
	condMessageSize   = "amqp:link:message-size-exceeded"
	condLinkStolen    = "amqp:link:stolen"
	condUnauthorized  = "amqp:unauthorized-access"
)
