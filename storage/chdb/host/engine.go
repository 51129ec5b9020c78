package host

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// engineRun is clickhouse-local running: stopped receives how it ended,
// once.
type engineRun struct {
	stopped <-chan error
	// pid is the process running the engine: this one with libchdb, the
	// child with an official binary.
	pid int
	// kill ends an engine in a child process that still runs and waits
	// for it; with libchdb it does nothing (the engine ends with this
	// process).
	kill func()
}

// localArgs are clickhouse-local's arguments (after the program name) for
// serving the store in dir: the same for libchdb's clickhouse-local and
// `clickhouse local`. No secret is among them: passwords live in the
// 0600 files the config names.
func localArgs(dir, configPath string, terminal bool) []string {
	args := []string{
		"--path=" + filepath.Join(dir, "clickhouse"),
		"--config-file=" + configPath,
	}
	if terminal {
		args = append(args, "--interactive", "--progress=off", "--disable_suggestion", "--history_file="+os.DevNull)
	}
	return append(args, "--multiquery", "--query="+strings.Join(serveStatements, "; "))
}

// startEngine starts clickhouse-local with args: in this process from
// opts.Library, or as `opts.Binary local ARGS` in a child process.
func startEngine(opts ServerOptions, args []string) (*engineRun, error) {
	stopped := make(chan error, 1)
	if opts.Binary == "" {
		lib, err := loadLibrary(opts.Library)
		if err != nil {
			return nil, err
		}
		go func() {
			_, err := lib.run(append([]string{"clickhouse"}, args...))
			stopped <- err
		}()
		return &engineRun{stopped: stopped, pid: os.Getpid(), kill: func() {}}, nil
	}
	cmd := exec.Command(opts.Binary, append([]string{"local"}, args...)...)
	// The engine's terminal is this process's standard input (Stdio put it
	// there); its terminal output is discarded as in-process, and its
	// diagnostics go where this process's do (the store's engine.log).
	if opts.Terminal != nil {
		cmd.Stdin = os.Stdin
	}
	cmd.Stderr = os.Stderr
	// The engine ends with this host, and the host with custody: a chain
	// of parent-death signals, so a killed collector leaves no engine
	// serving its store.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start engine %s: %w", opts.Binary, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		stopped <- fmt.Errorf("%s local (pid %d): %w", opts.Binary, cmd.Process.Pid, err)
		close(exited)
	}()
	return &engineRun{stopped: stopped, pid: cmd.Process.Pid, kill: func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}}, nil
}
