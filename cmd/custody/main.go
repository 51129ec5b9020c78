// Command custody is the audit-log collector and forensic evidence store
// for Azure container services. main stays thin: each command lives in its
// own file with an options struct and a run function tests call directly.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile, err := startCPUProfile(os.Getenv("CUSTODY_CPUPROFILE"))
	if err == nil {
		err = newApp().Run(ctx, os.Args)
		if perr := stopProfile(); err == nil {
			err = perr
		}
	}
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// startCPUProfile writes a Go CPU profile of the whole command to path
// (CUSTODY_CPUPROFILE, for benchmarks: `go tool pprof bin/custody PATH`);
// empty path profiles nothing. A "%p" in path is replaced by the process
// id, so the commands a benchmark runs one after another (run, then
// verify) each keep their own profile. The returned function ends the
// profile.
func startCPUProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile (CUSTODY_CPUPROFILE): %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile (CUSTODY_CPUPROFILE): %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("write CPU profile (CUSTODY_CPUPROFILE): %w", err)
		}
		return writeHeapProfile(path + ".allocs")
	}, nil
}

// writeHeapProfile writes the allocation profile next to the CPU profile:
// what the command allocated in total (go tool pprof -sample_index=alloc_space).
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("write allocation profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write allocation profile: %w", err)
	}
	return nil
}

// exitCode maps an error to the process exit code and prints it: 0 ok,
// 1 failure (verification failed, command error), 2 usage error.
func exitCode(err error, w *os.File) int {
	if err == nil {
		return 0
	}
	var code = 1
	if ue, ok := err.(usageError); ok {
		code = 2
		err = ue.err
	}
	if _, silent := err.(silentError); !silent {
		fmt.Fprintln(w, "custody:", err)
	}
	return code
}

// usageError is a mistake in flags or arguments (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// silentError exits 1 after the command already reported the failure.
type silentError struct{}

func (silentError) Error() string { return "failed" }
