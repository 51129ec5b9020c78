package host

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"github.com/ebitengine/purego"
)

// library is libchdb's one entry point the server host calls:
// query_stable_v2(argc, argv), clickhouse-local's main taking its
// command-line arguments, which returns once the query ends. The host
// loads the library itself (purego) rather than through chdb-go, which
// loads it in its package init and declares this function with a []string
// argv, passed as Go string headers rather than char pointers.
type library struct {
	query func(argc int, argv unsafe.Pointer) unsafe.Pointer
	free  func(res unsafe.Pointer)
}

// localResultV2 mirrors chDB's struct local_result_v2 (chdb.h).
type localResultV2 struct {
	buf          *byte
	len          uintptr
	vec          unsafe.Pointer
	elapsed      float64
	rowsRead     uint64
	bytesRead    uint64
	errorMessage *byte
}

func loadLibrary(path string) (*library, error) {
	if path == "" {
		return nil, errors.New("load libchdb: no library path (custody sets CHDB_LIB_PATH)")
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("load libchdb %s: %w", path, err)
	}
	l := &library{}
	purego.RegisterLibFunc(&l.query, h, "query_stable_v2")
	purego.RegisterLibFunc(&l.free, h, "free_result_v2")
	return l, nil
}

// Local runs clickhouse-local from the libchdb at libPath with args
// (args[0] is the program name) and returns what its queries wrote. It is
// for a process of its own: chDB keeps one engine per process.
func Local(libPath string, args []string) ([]byte, error) {
	l, err := loadLibrary(libPath)
	if err != nil {
		return nil, err
	}
	return l.run(args)
}

// run calls clickhouse-local with args (args[0] is the program name) on a
// locked OS thread and returns its output and its error, if any.
func (l *library) run(args []string) ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pin runtime.Pinner
	defer pin.Unpin()
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		b := append([]byte(a), 0)
		argv[i] = &b[0]
		pin.Pin(argv[i])
	}
	pin.Pin(&argv[0])
	res := (*localResultV2)(l.query(len(args), unsafe.Pointer(&argv[0])))
	if res == nil {
		return nil, nil
	}
	defer l.free(unsafe.Pointer(res))
	if res.errorMessage != nil {
		if msg := cString(res.errorMessage); msg != "" {
			return nil, errors.New(msg)
		}
	}
	if res.buf == nil {
		return nil, nil
	}
	return slices.Clone(unsafe.Slice(res.buf, res.len)), nil
}

func cString(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
