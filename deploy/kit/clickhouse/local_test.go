package clickhouse_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/chdb/host"
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

// clickhouseLocal runs clickhouse-local from libchdb (the engine host's
// entry point, which takes clickhouse-local's command line) and writes the
// query output to stdout.
func clickhouseLocal(args []string) error {
	lib, err := chdb.FindLibrary("")
	if err != nil {
		return err
	}
	out, err := host.Local(lib, append([]string{"clickhouse"}, args...))
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
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
