package chdbtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// CPUTimes is the CPU time (user + system) used so far by this process
// and by its live child processes, the engine hosts among them.
// Benchmarks on a shared two-core machine report CPU per event beside
// events per second: wall-clock rates move with whatever else runs, CPU
// per event much less.
func CPUTimes() (self, children time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	pid := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state ppid ... with
		// utime and stime the 12th and 13th (clock ticks, 100 per second).
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 13 || string(f[1]) != pid {
			continue
		}
		ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
		st, _ := strconv.ParseInt(string(f[12]), 10, 64)
		children += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return self, children
}
