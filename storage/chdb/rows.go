package chdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// Rows streams a TSVWithNames result from the engine host. While a Rows is
// open it holds the engine; Close (or reading to the end) releases it.
type Rows struct {
	e    *Engine
	ctx  context.Context
	cols []string
	// pending holds received but unparsed bytes; lines are split from it.
	pending []byte
	lines   [][]byte
	cur     [][]byte
	scratch [][]byte
	done    bool
	err     error
	freed   bool
}

// fill reads frames until at least one full line is pending or the reply
// ends.
func (r *Rows) fill() error {
	for len(r.lines) == 0 && !r.done {
		// Every line handed out before has been consumed (fill runs only
		// when lines is empty), so the chunk is read straight after the
		// unfinished line; capped at its length, pending grows into a
		// fresh buffer, leaving the array the old lines point into alone.
		var err error
		r.pending, r.done, err = readFrame(r.e.r, r.pending[:len(r.pending):len(r.pending)])
		if err != nil {
			return err
		}
		r.splitLines()
		if r.done && len(r.pending) > 0 {
			r.lines = append(r.lines, r.pending)
			r.pending = nil
		}
		if r.cols == nil && len(r.lines) > 0 {
			for _, f := range bytes.Split(r.lines[0], []byte{'\t'}) {
				r.cols = append(r.cols, string(unescapeTSV(nil, f)))
			}
			r.lines = r.lines[1:]
		}
	}
	return nil
}

// splitLines moves complete lines from pending to lines. TSV escapes
// newlines inside values, so a raw '\n' always ends a row.
func (r *Rows) splitLines() {
	start := 0
	for {
		i := bytes.IndexByte(r.pending[start:], '\n')
		if i < 0 {
			break
		}
		r.lines = append(r.lines, r.pending[start:start+i])
		start += i + 1
	}
	// The lines still reference pending's array; the unfinished rest (if
	// any) is copied into the next chunk's buffer by fill.
	r.pending = r.pending[start:]
}

// Next implements engine.Rows.
func (r *Rows) Next() bool {
	if r.err != nil {
		return false
	}
	if len(r.lines) == 0 {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			r.finish()
			return false
		}
		if err := r.fill(); err != nil {
			r.err = err
			r.finish()
			return false
		}
	}
	if len(r.lines) == 0 {
		r.finish()
		return false
	}
	line := r.lines[0]
	r.lines = r.lines[1:]
	r.cur = splitTabs(r.scratch[:0], line)
	r.scratch = r.cur
	return true
}

func splitTabs(dst [][]byte, line []byte) [][]byte {
	for {
		i := bytes.IndexByte(line, '\t')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// Scan implements engine.Rows.
func (r *Rows) Scan(dest ...any) error {
	if len(dest) != len(r.cur) {
		return fmt.Errorf("scan %d destinations from %d columns", len(dest), len(r.cur))
	}
	var buf []byte
	for i, d := range dest {
		switch d := d.(type) {
		case *[]string:
			v, err := parseArray(r.cur[i])
			if err != nil {
				return fmt.Errorf("scan column %d: %w", i, err)
			}
			*d = v
			continue
		case *map[string]string:
			v, err := parseMap(r.cur[i])
			if err != nil {
				return fmt.Errorf("scan column %d: %w", i, err)
			}
			*d = v
			continue
		}
		buf = unescapeTSV(buf[:0], r.cur[i])
		if err := scanField(buf, d); err != nil {
			name := fmt.Sprint(i)
			if i < len(r.cols) {
				name = r.cols[i]
			}
			return fmt.Errorf("scan column %s: %w", name, err)
		}
	}
	return nil
}

// Columns implements engine.Rows.
func (r *Rows) Columns() []string { return r.cols }

// Err implements engine.Rows.
func (r *Rows) Err() error { return r.err }

// Close implements engine.Rows: the rest of the reply is drained so the
// pipe is ready for the next request.
func (r *Rows) Close() error {
	r.finish()
	var qe *QueryError
	if errors.As(r.err, &qe) {
		return r.err
	}
	return nil
}

func (r *Rows) finish() {
	if r.freed {
		return
	}
	// drain whatever is left of the reply before releasing the pipe
	for !r.done {
		r.lines = r.lines[:0]
		if err := r.fill(); err != nil && r.err == nil {
			r.err = err
		}
	}
	r.freed = true
	r.lines = nil
	r.e.mu.Unlock()
}
