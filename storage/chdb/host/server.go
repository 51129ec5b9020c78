package host

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/custody-audit/custody/storage/chdb"
)

// ServerOptions configure a server host.
type ServerOptions struct {
	// Dir is the store directory; the engine's data lives in Dir/clickhouse
	// and its generated config in Dir/engine.
	Dir string
	// Library is libchdb.so, whose clickhouse-local runs in this process;
	// unused when Binary is set.
	Library string
	// Binary is an official clickhouse executable: when set, the engine
	// is `Binary local ARGS` in a child process (same arguments, config
	// and statements) instead of libchdb's clickhouse-local in this one.
	Binary string
	// StartTimeout bounds the wait for the listener; 0 means two minutes
	// (a big store loads its parts first).
	StartTimeout time.Duration
	// Diagnostics receives one line once the server accepts connections,
	// saying where it listens and which engine serves (in the store's
	// engine.log, what ran it when); nil writes none.
	Diagnostics io.Writer
	// Terminal is the master side of the terminal the engine has on its
	// standard input (see Stdio); nil runs it without one, where a failed
	// login ends the process. Listen closes it to end the engine.
	Terminal *os.File
}

// serveStatements are what clickhouse-local runs: start the native-protocol
// listener, then block at idle CPU (one row a block, a sleep per row)
// until the host cancels the query. A sleep cannot be interrupted: the
// engine sees the cancellation only when the row's sleep ends, so its
// length is how long every stop waits (up to a second with 1 s, which
// every custody command paid, 0.5 s on average); a tenth of a second
// bounds that wait at idle CPU still (ten wake-ups a second, ~0.2 ms of
// CPU each). Their number is the quota of the passwordless default
// account (see usersXML).
var serveStatements = []string{
	"SYSTEM START LISTEN TCP",
	"SELECT sleepEachRow(0.1) FROM system.numbers FORMAT Null SETTINGS max_block_size = 1",
}

// Listen runs a private ClickHouse server for one store: clickhouse-local
// (from libchdb, or an official clickhouse binary: ServerOptions.Binary)
// with a generated config, listening on a free loopback port.
// It reads a chdb.HostSpec line from in, answers one chdb.HostReady line on
// out once the server accepts connections, and stops the server when in
// is closed. A server that stops by itself ends Listen with an error.
func Listen(opts ServerOptions, in io.Reader, out io.Writer) error {
	ready := func(h chdb.HostReady) error {
		b, err := json.Marshal(h)
		if err != nil {
			return err
		}
		_, err = out.Write(append(b, '\n'))
		return err
	}
	fail := func(err error) error {
		_ = ready(chdb.HostReady{Error: err.Error()})
		return err
	}
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fail(fmt.Errorf("read server spec: %w", err))
	}
	var spec chdb.HostSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fail(fmt.Errorf("read server spec: %w", err))
	}
	if err := spec.Access.Validate(); err != nil {
		return fail(fmt.Errorf("server access policy: %w", err))
	}
	if err := chdb.ValidateClusters(spec.Clusters); err != nil {
		return fail(fmt.Errorf("server clusters: %w", err))
	}
	if err := chdb.ValidatePasswords(spec.Access, spec.Passwords); err != nil {
		return fail(fmt.Errorf("server passwords: %w", err))
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return fail(fmt.Errorf("resolve store directory: %w", err))
	}
	engDir := filepath.Join(dir, chdb.EngineDir)
	if err := os.MkdirAll(engDir, 0o700); err != nil {
		return fail(fmt.Errorf("create engine directory: %w", err))
	}
	if err := os.Chmod(engDir, 0o700); err != nil {
		return fail(fmt.Errorf("restrict engine directory: %w", err))
	}
	endpointPath := filepath.Join(engDir, chdb.EndpointFile)
	_ = os.Remove(endpointPath) // a crashed run's

	passwords := map[string]string{chdb.AdminUser: newPassword()}
	for _, a := range spec.Access.Accounts {
		passwords[a.Name] = newPassword()
	}
	for user, pw := range spec.Passwords {
		passwords[user] = pw
	}
	usersPath := filepath.Join(engDir, "users.xml")
	if err := chdb.WriteFileAtomic(usersPath, usersXML(spec.Access, passwords), 0o600); err != nil {
		return fail(fmt.Errorf("write engine users: %w", err))
	}
	if err := chdb.WriteJSONAtomic(filepath.Join(engDir, chdb.CredentialsFile), chdb.NewCredentials(passwords), 0o600); err != nil {
		return fail(fmt.Errorf("write engine credentials: %w", err))
	}
	port := spec.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	configPath := filepath.Join(engDir, "config.xml")
	if err := chdb.WriteFileAtomic(configPath, configXML(port, usersPath, spec.Clusters), 0o600); err != nil {
		return fail(fmt.Errorf("write engine config: %w", err))
	}

	if opts.Terminal != nil {
		defer opts.Terminal.Close()
	}
	eng, err := startEngine(opts, localArgs(dir, configPath, opts.Terminal != nil))
	if err != nil {
		return fail(err)
	}
	// When Listen returns the engine has stopped; one left running (a
	// failed start or stop) is killed rather than left serving the store.
	defer eng.kill()
	stopped := eng.stopped

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	version, err := waitListening(addr, passwords[chdb.AdminUser], stopped, timeout)
	if err != nil {
		return fail(err)
	}
	ep := chdb.NewEndpoint(addr, version, os.Getpid())
	ep.EnginePID = eng.pid
	if err := chdb.WriteJSONAtomic(endpointPath, ep, 0o600); err != nil {
		return fail(fmt.Errorf("write engine endpoint: %w", err))
	}
	defer os.Remove(endpointPath)
	if err := ready(chdb.HostReady{Addr: addr, ServerVersion: version}); err != nil {
		return err
	}
	if opts.Diagnostics != nil {
		by := "libchdb " + opts.Library
		if opts.Binary != "" {
			by = opts.Binary + " local"
		}
		fmt.Fprintf(opts.Diagnostics, "%s custody-chdb (pid %d): ClickHouse %s serving %s on %s, run by %s (pid %d)\n",
			time.Now().UTC().Format(time.RFC3339), os.Getpid(), version, dir, addr, by, eng.pid)
	}

	inClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(inClosed)
	}()
	select {
	case err := <-stopped:
		if err == nil {
			err = errors.New("serving statement returned")
		}
		return fmt.Errorf("engine server stopped by itself: %w", err)
	case <-inClosed:
	}
	_ = os.Remove(endpointPath)
	// Cancel the serving statement (the one query of the user with no
	// name, clickhouse-local's own session); with no terminal to read more
	// from, clickhouse-local then shuts down as after any query, flushing
	// and closing its tables. The connection is a new one: the server
	// closes connections idle for longer than idle_connection_timeout (an
	// hour), so one kept from the start would be gone after a long run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := ch.Dial(ctx, ch.Options{Address: addr, User: chdb.AdminUser, Password: passwords[chdb.AdminUser], ClientName: "custody-chdb"})
	if err != nil {
		return fmt.Errorf("stop engine server: connect: %w", err)
	}
	kill := conn.Do(ctx, ch.Query{
		Body:   "KILL QUERY WHERE user = '' AND query = " + chdb.QuoteString(serveStatements[len(serveStatements)-1]) + " ASYNC",
		Result: (&proto.Results{}).Auto(),
	})
	conn.Close()
	if kill != nil {
		return fmt.Errorf("stop engine server: %w", kill)
	}
	// What follows the serving statement is the interactive prompt: tell
	// it to quit, again until it does (entering its raw mode discards
	// whatever was typed before, so the first "exit" after that is the one
	// read: the tick is how long the prompt may wait for it). Quitting may
	// end the process right there.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stopped: // cancelled, as asked
			return nil
		case <-tick.C:
			if opts.Terminal != nil {
				_, _ = opts.Terminal.Write([]byte("exit\n"))
			}
		case <-ctx.Done():
			return errors.New("stop engine server: it did not stop within a minute")
		}
	}
}

// waitListening dials addr as the admin until the server answers, the
// serving statement fails, or timeout passes; it returns the server's
// version.
func waitListening(addr, password string, stopped <-chan error, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-stopped:
			if err == nil {
				err = errors.New("serving statement returned")
			}
			return "", fmt.Errorf("start engine server: %w", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := ch.Dial(ctx, ch.Options{Address: addr, User: chdb.AdminUser, Password: password, ClientName: "custody-chdb"})
		if err == nil {
			var v proto.ColStr
			err = conn.Do(ctx, ch.Query{Body: "SELECT version()", Result: proto.Results{{Name: "version()", Data: &v}}})
			cancel()
			conn.Close()
			if err != nil {
				return "", fmt.Errorf("start engine server: query version: %w", err)
			}
			version := ""
			if v.Rows() > 0 {
				version = v.Row(0)
			}
			return version, nil
		}
		cancel()
		if time.Now().After(deadline) {
			return "", fmt.Errorf("start engine server: nothing listens on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newPassword returns 32 random bytes in hex.
func newPassword() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// configXML is the server config: the native protocol on loopback only,
// users from usersPath, and clusters as remote_servers, each with its
// inter-server secret (so a Distributed table's queries run on the other
// shards as the user who sent them, with that user's grants).
func configXML(port int, usersPath string, clusters []chdb.Cluster) []byte {
	var b strings.Builder
	b.WriteString("<clickhouse>\n")
	b.WriteString("  <listen_host>127.0.0.1</listen_host>\n")
	fmt.Fprintf(&b, "  <tcp_port>%d</tcp_port>\n", port)
	b.WriteString("  <user_directories>\n")
	fmt.Fprintf(&b, "    <users_xml><path>%s</path></users_xml>\n", xmlText(usersPath))
	b.WriteString("  </user_directories>\n")
	if len(clusters) > 0 {
		b.WriteString("  <remote_servers>\n")
		for _, c := range clusters {
			fmt.Fprintf(&b, "    <%s>\n      <secret>%s</secret>\n", c.Name, xmlText(c.Secret))
			for _, sh := range c.Shards {
				b.WriteString("      <shard>\n")
				for _, r := range sh.Replicas {
					fmt.Fprintf(&b, "        <replica><host>%s</host><port>%d</port></replica>\n", xmlText(r.Host), r.Port)
				}
				b.WriteString("      </shard>\n")
			}
			fmt.Fprintf(&b, "    </%s>\n", c.Name)
		}
		b.WriteString("  </remote_servers>\n")
	}
	b.WriteString("</clickhouse>\n")
	return []byte(b.String())
}

// usersXML is the users config.
//
// clickhouse-local runs its own statements as the user default, checked
// like a client on loopback with no password, so default must exist,
// passwordless, on loopback: whoever can reach the port can log in as it.
// It holds only what the serving statements need (SYSTEM LISTEN, SELECT on
// system.numbers) and a quota of exactly as many queries as they are, all
// used up by the time the listener accepts anyone: every later query as
// default is refused (QUOTA_EXCEEDED), SYSTEM STOP LISTEN included. What
// ClickHouse still answers without counting against a quota, a constant
// SELECT such as SELECT 1, reads nothing.
//
// The admin has every privilege; every other account gets only its roles
// and grants. All log in from loopback with a SHA-256-hashed password.
func usersXML(access chdb.Access, passwords map[string]string) []byte {
	var b strings.Builder
	b.WriteString("<clickhouse>\n")
	b.WriteString("  <profiles><default/></profiles>\n")
	b.WriteString("  <quotas>\n    <default/>\n")
	fmt.Fprintf(&b, "    <engine_start><interval><duration>31536000</duration><queries>%d</queries></interval></engine_start>\n", len(serveStatements))
	b.WriteString("  </quotas>\n")
	loopback := "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"
	b.WriteString("  <users>\n")
	fmt.Fprintf(&b, "    <default><no_password/>%s<profile>default</profile><quota>engine_start</quota><grants>", loopback)
	b.WriteString("<query>GRANT SYSTEM LISTEN ON *.*</query><query>GRANT SELECT ON system.numbers</query></grants></default>\n")
	fmt.Fprintf(&b, "    <%s><password_sha256_hex>%s</password_sha256_hex>%s<profile>default</profile><quota>default</quota><access_management>1</access_management></%s>\n",
		chdb.AdminUser, sha256Hex(passwords[chdb.AdminUser]), loopback, chdb.AdminUser)
	for _, a := range access.Accounts {
		fmt.Fprintf(&b, "    <%s><password_sha256_hex>%s</password_sha256_hex>%s<profile>default</profile><quota>default</quota><grants>",
			a.Name, sha256Hex(passwords[a.Name]), loopback)
		for _, r := range a.Roles {
			fmt.Fprintf(&b, "<query>GRANT %s</query>", r)
		}
		for _, g := range a.Grants {
			fmt.Fprintf(&b, "<query>GRANT %s</query>", xmlText(g))
		}
		fmt.Fprintf(&b, "</grants></%s>\n", a.Name)
	}
	b.WriteString("  </users>\n")
	if len(access.Roles) > 0 {
		b.WriteString("  <roles>\n")
		for _, r := range access.Roles {
			fmt.Fprintf(&b, "    <%s><grants>", r.Name)
			for _, g := range r.Grants {
				fmt.Fprintf(&b, "<query>GRANT %s</query>", xmlText(g))
			}
			fmt.Fprintf(&b, "</grants></%s>\n", r.Name)
		}
		b.WriteString("  </roles>\n")
	}
	b.WriteString("</clickhouse>\n")
	return []byte(b.String())
}

func xmlText(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	return r.Replace(s)
}
