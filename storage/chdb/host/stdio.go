package host

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Stdio moves the host's own standard input and output out of
// clickhouse-local's way and returns them, with the master side of the
// terminal it gives the engine instead (see ServerOptions.Terminal).
//
// clickhouse-local run without a terminal on its standard input installs
// an error handler that terminates the process on any exception a
// connection handler lets escape, and a failed login is one: anyone who
// could reach the loopback port could stop the store's engine by trying a
// wrong password. With a terminal on standard input (and --interactive)
// it keeps the default handler, which drops the connection and carries
// on. Its own output, meant for that terminal, goes to /dev/null; its
// errors stay on standard error.
func Stdio() (in, out, terminal *os.File, err error) {
	inFD, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("keep standard input: %w", err)
	}
	outFD, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		unix.Close(inFD)
		return nil, nil, nil, fmt.Errorf("keep standard output: %w", err)
	}
	in, out = os.NewFile(uintptr(inFD), "stdin"), os.NewFile(uintptr(outFD), "stdout")
	fail := func(err error) (*os.File, *os.File, *os.File, error) {
		in.Close()
		out.Close()
		if terminal != nil {
			terminal.Close()
		}
		return nil, nil, nil, err
	}
	terminal, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fail(fmt.Errorf("open a terminal for the engine: %w", err))
	}
	mfd := int(terminal.Fd())
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail(fmt.Errorf("unlock the engine's terminal: %w", err))
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		return fail(fmt.Errorf("name the engine's terminal: %w", err))
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fail(fmt.Errorf("open the engine's terminal: %w", err))
	}
	defer slave.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", os.DevNull, err))
	}
	defer null.Close()
	if err := unix.Dup3(int(slave.Fd()), 0, 0); err != nil {
		return fail(fmt.Errorf("give the engine a terminal: %w", err))
	}
	if err := unix.Dup3(int(null.Fd()), 1, 0); err != nil {
		return fail(fmt.Errorf("silence the engine's terminal output: %w", err))
	}
	return in, out, terminal, nil
}
