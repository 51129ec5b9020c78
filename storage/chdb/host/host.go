// Package host runs the chDB engine for one store inside the custody-chdb
// process and answers the host protocol (see storage/chdb) on stdin/stdout.
//
// It is the only package that imports chdb-go. chdb-go loads libchdb in its
// package init and panics when the library is missing, so linking it into
// the custody binary would make every command, even --help, depend on a
// 570 MB library. Running it in its own process also means a crash inside
// the C++ engine cannot corrupt the collector's memory, and chDB's
// one-session-per-process rule becomes one store per host process.
package host

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/custody-audit/custody/storage/chdb"
)

// Options configure a host.
type Options struct {
	// Dir is the store directory; the engine's data lives in Dir/clickhouse.
	Dir string
	// ReadOnly opens the engine with readonly=2: reads and session
	// settings only, every write is refused by ClickHouse itself.
	ReadOnly bool
}

// Serve opens the store, takes its exclusive lock and answers requests
// until in is closed.
func Serve(opts Options, in io.Reader, out io.Writer) error {
	w := bufio.NewWriterSize(out, 1<<20)
	fail := func(err error) error {
		_ = w.WriteByte('E')
		_ = chdb.WriteField(w, []byte(err.Error()))
		_ = w.Flush()
		return err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return fail(fmt.Errorf("create store directory: %w", err))
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return fail(err)
	}
	defer lock.Close()

	data := filepath.Join(opts.Dir, "clickhouse")
	conn := data
	if opts.ReadOnly {
		conn = "file:" + data + "?readonly=2"
	}
	s, err := newSession(conn)
	if err != nil {
		return fail(fmt.Errorf("open chDB session in %s: %w", data, err))
	}
	defer s.Close()
	version, err := s.Query("SELECT version()", "TSV")
	if err != nil {
		return fail(fmt.Errorf("start chDB engine: %w", err))
	}
	_ = w.WriteByte('R')
	_ = chdb.WriteField(w, []byte(strings.TrimSpace(version.String())))
	version.Free()
	if err := w.Flush(); err != nil {
		return err
	}

	r := bufio.NewReaderSize(in, 1<<20)
	for {
		req, err := chdb.ReadRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if err := serveOne(s, req, w, opts.ReadOnly); err != nil {
			return err
		}
	}
}

// serveOne answers one request. Engine errors go back to the client; only
// a broken pipe ends the host.
func serveOne(s *session, req chdb.Request, w *bufio.Writer, readOnly bool) error {
	reply := func(err error) error {
		if err != nil {
			_ = w.WriteByte('E')
			_ = chdb.WriteField(w, []byte(err.Error()))
		} else {
			_ = w.WriteByte('Z')
		}
		return w.Flush()
	}
	if err := bindParams(s, req.Params); err != nil {
		return reply(err)
	}
	if readOnly {
		if err := refuseOutfile(s, req.Query); err != nil {
			return reply(err)
		}
	}
	switch req.Op {
	case 'X':
		res, err := s.Query(req.Query, "TSV")
		if err == nil && res != nil {
			res.Free()
		}
		return reply(err)
	case 'Q':
		return serveText(s, req.Query, w, reply)
	case 'B':
		return serveBinary(s, req.Query, w, reply)
	default:
		return reply(fmt.Errorf("unknown request op %q", req.Op))
	}
}

// notStreamable tells whether a QueryStream error means the statement
// (DESCRIBE, EXPLAIN, SHOW) cannot stream and is to be answered whole.
func notStreamable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Streaming query is not supported")
}

// writeFrame writes one frame of op with body b.
func writeFrame(w *bufio.Writer, op byte, b []byte) error {
	if err := w.WriteByte(op); err != nil {
		return err
	}
	return chdb.WriteField(w, b)
}

// failed answers a query that failed with qerr; its stream, if any, must
// have been freed. chDB can keep output of
// a streamed query that failed (the format's header, written before its
// first block failed) and hand it out as the start of the next query's
// result, so the session is resynchronised before anything else runs; a
// session that cannot be ends the host rather than answer wrongly.
func failed(s *session, qerr error, reply func(error) error) error {
	if err := resync(s); err != nil {
		_ = reply(fmt.Errorf("%w (%w)", qerr, err))
		return err
	}
	return reply(qerr)
}

// resyncProbe is the output of the query resync runs.
const resyncProbe = "custody-resync"

// resync runs a probe query until its result is exactly the probe's:
// leftover output of an earlier query comes out ahead of the first one.
func resync(s *session) error {
	for range 3 {
		res, err := s.Query("SELECT '"+resyncProbe+"'", "TSVRaw")
		if err != nil {
			return fmt.Errorf("resynchronise engine session: %w", err)
		}
		clean := string(res.Buf()) == resyncProbe+"\n"
		res.Free()
		if clean {
			return nil
		}
	}
	return errors.New("resynchronise engine session: output of a failed query keeps coming back")
}

// openStream starts query with its result streamed in format. A
// statement that cannot stream is answered whole (serveWhole) and a query
// that fails to start is answered with its error; r is then nil, and err,
// if any, ends the host.
func openStream(s *session, query, format string, w *bufio.Writer, reply func(error) error) (r *stream, err error) {
	r, err = s.stream(query, format)
	if notStreamable(err) {
		return nil, serveWhole(s, query, w, reply)
	}
	if err != nil {
		return nil, failed(s, err, reply)
	}
	return r, nil
}

// endStream answers a stream read to its end: with the query's failure,
// or as done.
func endStream(s *session, r *stream, reply func(error) error) error {
	if r.err != nil {
		r.free() // a stream still open would hold up the resync
		return failed(s, r.err, reply)
	}
	return reply(nil)
}

// serveText answers a query in TSVWithNames.
func serveText(s *session, query string, w *bufio.Writer, reply func(error) error) error {
	r, err := openStream(s, query, "TSVWithNames", w, reply)
	if r == nil {
		return err
	}
	defer r.free()
	// chDB formats every streamed chunk as a complete TSVWithNames
	// document; only the first chunk's header line is passed on.
	for first := true; ; first = false {
		b := r.next()
		if b == nil {
			break
		}
		if !first {
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
			}
		}
		if err := writeFrame(w, 'D', b); err != nil {
			return err
		}
	}
	return endStream(s, r, reply)
}

// describeHeader returns the TSVWithNames header line of query's result
// (its column names) without running it, from DESCRIBE TABLE (query):
// what an empty result is answered with. ok is false when the engine
// cannot describe the statement; err means the session could not be
// resynchronised after that (see failed) and ends the host.
func describeHeader(s *session, query string) (header []byte, ok bool, err error) {
	res, qerr := s.Query("DESCRIBE TABLE ("+query+")", "TSV")
	if qerr != nil {
		return nil, false, resync(s)
	}
	defer res.Free()
	// each line starts with the column's name, TSV-escaped already
	for _, line := range bytes.Split(bytes.TrimSuffix(res.Buf(), []byte("\n")), []byte("\n")) {
		name, _, _ := bytes.Cut(line, []byte("\t"))
		if len(name) == 0 {
			return nil, false, nil
		}
		if len(header) > 0 {
			header = append(header, '\t')
		}
		header = append(header, name...)
	}
	if len(header) == 0 {
		return nil, false, nil
	}
	return append(header, '\n'), true, nil
}

// serveWhole answers a statement that cannot stream (DESCRIBE, EXPLAIN,
// SHOW) in TSVWithNames, as one chunk.
func serveWhole(s *session, query string, w *bufio.Writer, reply func(error) error) error {
	res, err := s.Query(query, "TSVWithNames")
	if err != nil {
		return failed(s, err, reply)
	}
	if res != nil {
		defer res.Free()
		if b := res.Buf(); len(b) > 0 {
			if err := writeFrame(w, 'D', b); err != nil {
				return err
			}
		}
	}
	return reply(nil)
}

// serveBinary answers a query in Native blocks: the result's header
// once ('H', from the first block), then each chunk's blocks ('D'). When
// a column's type has no binary decoding on the client (chdb.NativeHeader
// says so from the first chunk, before anything is sent), the query is
// answered in text instead, run again; so are statements that cannot
// stream. An empty result streams no block, and so no column names: it
// is answered as an empty text result, the names from describeHeader
// (or, when the statement cannot be described, by running it in text).
func serveBinary(s *session, query string, w *bufio.Writer, reply func(error) error) error {
	r, err := openStream(s, query, "Native", w, reply)
	if r == nil {
		return err
	}
	defer r.free()
	for first := true; ; first = false {
		b := r.next()
		if b == nil {
			if first && r.err == nil {
				r.free()
				h, ok, err := describeHeader(s, query)
				if err != nil {
					return err
				}
				if !ok {
					return serveText(s, query, w, reply)
				}
				if err := writeFrame(w, 'D', h); err != nil {
					return err
				}
				return reply(nil)
			}
			break
		}
		if first {
			header, decodable, err := chdb.NativeHeader(b)
			if err != nil || !decodable {
				// Read the binary result to its end rather than cancel
				// it (cancelling a stream half way can leave the
				// session stuck), then answer the query again in text.
				for r.next() != nil {
				}
				r.free()
				switch {
				case r.err != nil:
					return failed(s, r.err, reply)
				case err != nil:
					return failed(s, fmt.Errorf("engine result: %w", err), reply)
				}
				return serveText(s, query, w, reply)
			}
			if err := writeFrame(w, 'H', header); err != nil {
				return err
			}
		}
		if err := writeFrame(w, 'D', b); err != nil {
			return err
		}
	}
	return endStream(s, r, reply)
}

// bindParams sets each parameter as a session setting param_<name>. The
// value is first escaped the way ClickHouse parses parameter values (the
// TSV escaped form), then quoted as a string literal; names are checked to
// be identifiers. Nothing reaches the query text itself.
func bindParams(s *session, params map[string]string) error {
	if len(params) == 0 {
		return nil
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("SET ")
	for i, k := range names {
		if !chdb.IsIdentifier(k) {
			return fmt.Errorf("query parameter name %q is not an identifier", k)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("param_")
		b.WriteString(k)
		b.WriteString(" = ")
		b.WriteString(chdb.QuoteString(chdb.EscapeTSV(params[k])))
	}
	res, err := s.Query(b.String(), "TSV")
	if err != nil {
		return fmt.Errorf("bind query parameters: %w", err)
	}
	if res != nil {
		res.Free()
	}
	return nil
}

// lockDir takes an exclusive, non-blocking flock on dir/LOCK. The lock
// dies with the process, so a SIGKILLed collector never leaves a stale one.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("store %s is in use by another process (%s): %w", dir, strings.TrimSpace(string(holder)), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	return f, nil
}

// refuseOutfile refuses SELECT ... INTO OUTFILE, the one way a read-only
// ClickHouse session still writes (to the local file system). The query is
// normalised by ClickHouse's own formatter first, so comments or odd
// spacing cannot hide the clause.
func refuseOutfile(s *session, query string) error {
	res, err := s.Query("SELECT formatQuerySingleLine("+chdb.QuoteString(query)+")", "TSVRaw")
	if err != nil {
		return err // a query ClickHouse cannot parse fails here with its own message
	}
	formatted := strings.ToUpper(res.String())
	res.Free()
	if strings.Contains(formatted, " INTO OUTFILE ") {
		return errors.New("read-only store: INTO OUTFILE is refused (it writes files)")
	}
	return nil
}
