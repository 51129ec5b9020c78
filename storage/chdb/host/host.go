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

	chdbgo "github.com/chdb-io/chdb-go/chdb"

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
	s, err := chdbgo.NewSession(conn)
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
func serveOne(s *chdbgo.Session, req chdb.Request, w *bufio.Writer, readOnly bool) error {
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
		st, err := s.QueryStream(req.Query, "TSVWithNames")
		if err != nil && strings.Contains(err.Error(), "Streaming query is not supported") {
			// DESCRIBE, EXPLAIN, SHOW: answered whole.
			res, qerr := s.Query(req.Query, "TSVWithNames")
			if qerr != nil {
				return reply(qerr)
			}
			if res != nil {
				if b := res.Buf(); len(b) > 0 {
					if err := w.WriteByte('D'); err != nil {
						return err
					}
					if err := chdb.WriteField(w, b); err != nil {
						return err
					}
				}
				res.Free()
			}
			return reply(nil)
		}
		if err != nil {
			return reply(err)
		}
		defer st.Free()
		// chDB formats every streamed chunk as a complete TSVWithNames
		// document; only the first chunk's header line is passed on.
		first := true
		for {
			chunk := st.GetNext()
			if chunk == nil {
				break
			}
			if err := chunk.Error(); err != nil {
				return reply(err)
			}
			b := chunk.Buf()
			if len(b) == 0 {
				chunk.Free()
				break
			}
			if !first {
				if i := bytes.IndexByte(b, '\n'); i >= 0 {
					b = b[i+1:]
				}
			}
			first = false
			if err := w.WriteByte('D'); err != nil {
				return err
			}
			if err := chdb.WriteField(w, b); err != nil {
				return err
			}
			chunk.Free()
		}
		return reply(st.Error())
	default:
		return reply(fmt.Errorf("unknown request op %q", req.Op))
	}
}

// bindParams sets each parameter as a session setting param_<name>. The
// value is first escaped the way ClickHouse parses parameter values (the
// TSV escaped form), then quoted as a string literal; names are checked to
// be identifiers. Nothing reaches the query text itself.
func bindParams(s *chdbgo.Session, params map[string]string) error {
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
func refuseOutfile(s *chdbgo.Session, query string) error {
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
