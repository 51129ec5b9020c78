package chdb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The host protocol between custody and custody-chdb, over the host's stdin
// and stdout. Every frame is one op byte followed by length-prefixed fields
// (uvarint length, then bytes).
//
//	request  'Q' query params  -> 'D' chunk ... then 'Z' (or 'E' message); TSVWithNames
//	request  'B' query params  -> Native blocks, or TSVWithNames (see native_read.go)
//	request  'X' query params  -> 'Z' (or 'E' message)
//	host at start              -> 'R' version (or 'E' message, then exit)
//
// params is a uvarint count followed by name, value pairs. The host binds
// them as server-side parameters (SET param_<name>) before running query.
const (
	opQuery = 'Q'
	opExec  = 'X'
	opData  = 'D'
	opEnd   = 'Z'
	opError = 'E'
	opReady = 'R'

	// maxFrame bounds one field so a corrupt stream cannot make us
	// allocate without limit.
	maxFrame = 1 << 30
)

// WriteField writes one length-prefixed field.
func WriteField(w *bufio.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ReadField reads one length-prefixed field into buf (reused when large
// enough).
func ReadField(r *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes exceeds limit", n)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// readFrame reads one frame of a reply from the host. A data frame's bytes
// are appended to buf and the result returned; end reports the end of the
// reply: 'Z', or 'E' with err the *QueryError, or any failure to read
// (after which the pipe is out of step and nothing more can be read).
func readFrame(r *bufio.Reader, buf []byte) (data []byte, end bool, err error) {
	op, err := r.ReadByte()
	if err != nil {
		return buf, true, fmt.Errorf("engine host stopped answering: %w", err)
	}
	switch op {
	case opData:
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return buf, true, fmt.Errorf("read engine data: %w", err)
		}
		if n > maxFrame {
			return buf, true, fmt.Errorf("read engine data: frame of %d bytes exceeds limit", n)
		}
		buf = slices.Grow(buf, int(n))
		if _, err := io.ReadFull(r, buf[len(buf):len(buf)+int(n)]); err != nil {
			return buf, true, fmt.Errorf("read engine data: %w", err)
		}
		return buf[:len(buf)+int(n)], false, nil
	case opEnd:
		return buf, true, nil
	case opError:
		msg, err := ReadField(r, nil)
		if err != nil {
			return buf, true, fmt.Errorf("read engine error: %w", err)
		}
		return buf, true, &QueryError{Message: string(bytes.TrimSpace(msg))}
	default:
		return buf, true, fmt.Errorf("engine host sent unknown frame %q", op)
	}
}

// WriteRequest writes a query or exec request.
func WriteRequest(w *bufio.Writer, op byte, query string, params map[string]string) error {
	if err := w.WriteByte(op); err != nil {
		return err
	}
	if err := WriteField(w, []byte(query)); err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(params)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	for k, v := range params {
		if err := WriteField(w, []byte(k)); err != nil {
			return err
		}
		if err := WriteField(w, []byte(v)); err != nil {
			return err
		}
	}
	return w.Flush()
}

// Request is a decoded request.
type Request struct {
	Op     byte
	Query  string
	Params map[string]string
}

// ReadRequest reads one request; io.EOF means the client went away.
func ReadRequest(r *bufio.Reader) (Request, error) {
	op, err := r.ReadByte()
	if err != nil {
		return Request{}, err
	}
	q, err := ReadField(r, nil)
	if err != nil {
		return Request{}, fmt.Errorf("read query: %w", err)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return Request{}, fmt.Errorf("read parameter count: %w", err)
	}
	if n > 10000 {
		return Request{}, fmt.Errorf("%d parameters exceed limit", n)
	}
	params := make(map[string]string, n)
	for i := uint64(0); i < n; i++ {
		k, err := ReadField(r, nil)
		if err != nil {
			return Request{}, fmt.Errorf("read parameter name: %w", err)
		}
		v, err := ReadField(r, nil)
		if err != nil {
			return Request{}, fmt.Errorf("read parameter value: %w", err)
		}
		params[string(k)] = string(v)
	}
	return Request{Op: op, Query: string(q), Params: params}, nil
}
