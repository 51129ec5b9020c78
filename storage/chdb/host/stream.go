package host

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"unsafe"

	chdbgo "github.com/chdb-io/chdb-go/chdb"
	chdbpurego "github.com/chdb-io/chdb-go/chdb-purego"
	"github.com/ebitengine/purego"
)

// session is the chDB session of the store, plus the one libchdb
// function the host calls itself.
//
// chdb-go frees a streamed result by cancelling it, then destroying it.
// Once the engine has ended a stream (its last chunk, or an error) it has
// retired the query's state, and cancelling the stream then reads freed
// memory: most of the time nothing shows, now and then the host aborts
// inside chdb_stream_cancel_query ("pthread_mutex_lock: Assertion
// `mutex->__data.__owner == 0' failed") and hangs. The host therefore
// destroys an ended stream without cancelling it (the engine's own note on
// cancel says destroying is what releases the handle); only a stream
// still running is cancelled.
type session struct {
	*chdbgo.Session
	destroyResult func(unsafe.Pointer)
}

// newSession opens the chDB session for conn (a data directory or a
// file: URI).
func newSession(conn string) (*session, error) {
	lib, err := purego.Dlopen(libraryPath(), purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("load libchdb: %w", err)
	}
	s := &session{}
	purego.RegisterLibFunc(&s.destroyResult, lib, "chdb_destroy_query_result")
	if s.Session, err = chdbgo.NewSession(conn); err != nil {
		return nil, err
	}
	return s, nil
}

// libraryPath finds libchdb the way chdb-go does, so that dlopen hands
// back the library already loaded.
func libraryPath() string {
	if p := os.Getenv("CHDB_LIB_PATH"); p != "" {
		return p
	}
	if p, err := exec.LookPath("libchdb.so"); err == nil {
		return p
	}
	return "/usr/local/lib/libchdb.so"
}

// stream starts query with its result streamed in format.
func (s *session) stream(query, format string) (*stream, error) {
	st, err := s.QueryStream(query, format)
	if err != nil {
		return nil, err
	}
	raw, err := streamHandle(st)
	if err != nil {
		st.Free()
		return nil, err
	}
	return &stream{s: s, st: st, raw: raw}, nil
}

// streamHandle returns the engine's handle of a chdb-go stream (its
// unexported field stream), which chdb-go does not give out.
func streamHandle(st chdbpurego.ChdbStreamResult) (unsafe.Pointer, error) {
	v := reflect.ValueOf(st)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("stream"); f.IsValid() && f.Kind() == reflect.Pointer {
			return f.UnsafePointer(), nil
		}
	}
	return nil, errors.New("chdb-go stream result has no engine handle field (chdb-go changed: see storage/chdb/host/stream.go)")
}

// stream reads a streamed result chunk by chunk.
type stream struct {
	s   *session
	st  chdbpurego.ChdbStreamResult
	raw unsafe.Pointer
	// cur is the chunk next returned last, freed by the call after it.
	cur chdbpurego.ChdbResult
	// ended is set once the engine has ended the stream; err is the
	// query's failure, if that is how it ended.
	ended bool
	err   error
	freed bool
}

// next returns the next chunk's bytes, valid until the following call,
// or nil at the end of the result or when the query failed (err).
func (r *stream) next() []byte {
	if r.ended {
		return nil
	}
	r.cur = r.st.GetNext() // frees the previous chunk
	if r.cur == nil {
		r.ended, r.err = true, r.st.Error()
		return nil
	}
	if err := r.cur.Error(); err != nil {
		r.ended, r.err = true, err
		return nil
	}
	b := r.cur.Buf()
	if len(b) == 0 {
		r.ended, r.err = true, r.st.Error()
		return nil
	}
	return b
}

// free releases the stream: destroyed when ended, cancelled first when
// not (see session).
func (r *stream) free() {
	if r.freed {
		return
	}
	r.freed = true
	if !r.ended {
		r.st.Free()
		return
	}
	if r.raw != nil {
		r.s.destroyResult(r.raw)
	}
	if r.cur != nil {
		r.cur.Free()
	}
}
