package clickhouse_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/custody-audit/custody/storage/chdb"
)

// envChild makes the test binary run clickhouse-local instead of the
// tests: chDB keeps one engine per process, and every configuration under
// test needs an engine of its own.
const envChild = "CUSTODY_KIT_CLICKHOUSE_LOCAL"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		if err := clickhouseLocal(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
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

// clickhouseLocal runs clickhouse-local from libchdb (its
// query_stable_v2 entry point, which takes clickhouse-local's command
// line) and writes the query output to stdout.
func clickhouseLocal(args []string) error {
	lib, err := chdb.FindLibrary("")
	if err != nil {
		return err
	}
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("load %s: %w", lib, err)
	}
	var query func(argc int, argv unsafe.Pointer) unsafe.Pointer
	purego.RegisterLibFunc(&query, h, "query_stable_v2")
	runtime.LockOSThread()
	args = append([]string{"clickhouse"}, args...)
	var pin runtime.Pinner
	defer pin.Unpin()
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		b := append([]byte(a), 0)
		argv[i] = &b[0]
		pin.Pin(argv[i])
	}
	pin.Pin(&argv[0])
	res := (*localResultV2)(query(len(args), unsafe.Pointer(&argv[0])))
	if res == nil {
		return errors.New("clickhouse-local returned no result")
	}
	if res.errorMessage != nil {
		return errors.New(cString(res.errorMessage))
	}
	if res.buf != nil {
		_, err = os.Stdout.Write(unsafe.Slice(res.buf, res.len))
	}
	return err
}

func cString(p *byte) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// runLocal runs clickhouse-local with config and the queries in a child
// process with env added, and returns its output; the error carries the
// engine's message.
func runLocal(config, queries string, env []string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(self, "--config-file", config, "--multiquery", "--query", queries)
	cmd.Env = append(append(os.Environ(), envChild+"=1"), env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	// clickhouse-local from libchdb reports some failures (a user that
	// cannot log in, a configuration it refuses) on stderr only.
	if err == nil && strings.Contains(stderr.String(), "DB::Exception") {
		err = errors.New("engine error")
	}
	if err != nil {
		return out.String(), fmt.Errorf("clickhouse-local: %w: %s", err, exceptions(stderr.String()))
	}
	return out.String(), nil
}

// exceptions returns the engine's exception lines of its stderr (the
// rest is its log), or the last lines when it has none.
func exceptions(stderr string) string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "DB::Exception") {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		out = lines[max(0, len(lines)-5):]
	}
	return strings.Join(out, "\n")
}
