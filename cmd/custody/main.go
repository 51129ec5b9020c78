// Command custody is the audit-log collector and forensic evidence store
// for Azure container services. main stays thin: each command lives in its
// own file with an options struct and a run function tests call directly.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp().Run(ctx, os.Args)
	stop()
	os.Exit(exitCode(err, os.Stderr))
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
