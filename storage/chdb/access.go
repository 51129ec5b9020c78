package chdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/custody-audit/custody/storage/engine"
)

// The files a running embedded server keeps in its store directory, under
// EngineDir (mode 0700):
//
//	config.xml        the clickhouse-local server config (port, user directory)
//	users.xml         users, roles and quotas; passwords only as SHA-256 (0600)
//	credentials.json  every account's password for this run, see Credentials (0600)
//	endpoint.json     where the server listens, see Endpoint
//
// Passwords are generated afresh at every start: nothing that outlives the
// server can log in to the next one.
const (
	EngineDir       = "engine"
	CredentialsFile = "credentials.json"
	EndpointFile    = "endpoint.json"
	// AdminUser is the account with every privilege (migrations, the
	// store's own maintenance).
	AdminUser = "custody_admin"
	// formatVersion versions credentials.json and endpoint.json.
	formatVersion = 1
)

// Access is the access policy of an embedded server: the roles it defines
// and the accounts that log in with them, beside AdminUser. clickhouse-local
// keeps users and roles only in its users.xml (it has no writable user
// directory, so CREATE USER and CREATE ROLE fail there), so the policy is
// written into the generated users.xml at every start.
type Access struct {
	Roles    []Role    `json:"roles,omitempty"`
	Accounts []Account `json:"accounts,omitempty"`
}

// Role is a named set of privileges.
type Role struct {
	// Name is the role's name (an identifier).
	Name string `json:"name"`
	// Grants are privilege clauses as they follow GRANT, e.g.
	// "SELECT ON custody.*" or "INSERT, SELECT ON custody.events".
	Grants []string `json:"grants,omitempty"`
}

// Account is a user that logs in over the loopback listener with a
// password generated at each start (see Credentials).
type Account struct {
	// Name is the ClickHouse user name (an identifier).
	Name string `json:"name"`
	// Roles are granted to the account (and are its default roles).
	Roles []string `json:"roles,omitempty"`
	// Grants are privilege clauses granted directly, as in Role.
	Grants []string `json:"grants,omitempty"`
}

// Validate checks names and grant clauses.
func (a Access) Validate() error {
	seen := map[string]bool{AdminUser: true, "default": true}
	for _, r := range a.Roles {
		if !engine.IsIdentifier(r.Name) {
			return fmt.Errorf("role name %q is not an identifier", r.Name)
		}
		if err := checkGrants(r.Grants); err != nil {
			return fmt.Errorf("role %s: %w", r.Name, err)
		}
	}
	for _, u := range a.Accounts {
		if !engine.IsIdentifier(u.Name) {
			return fmt.Errorf("account name %q is not an identifier", u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("account %s is defined twice or is reserved", u.Name)
		}
		seen[u.Name] = true
		for _, r := range u.Roles {
			if !engine.IsIdentifier(r) {
				return fmt.Errorf("account %s: role name %q is not an identifier", u.Name, r)
			}
		}
		if err := checkGrants(u.Grants); err != nil {
			return fmt.Errorf("account %s: %w", u.Name, err)
		}
	}
	return nil
}

func checkGrants(grants []string) error {
	for _, g := range grants {
		if strings.ContainsAny(g, ";\n\r") || strings.TrimSpace(g) == "" {
			return fmt.Errorf("grant %q must be one privilege clause", g)
		}
	}
	return nil
}

// Credentials are the passwords of one run of an embedded server, by
// user name. The file holding them is 0600 in a 0700 directory; they never
// appear on a command line, in a log or in an error.
type Credentials struct {
	Version   int               `json:"version"`
	Passwords map[string]string `json:"passwords"`
}

// Endpoint says where a running embedded server listens.
type Endpoint struct {
	Version int `json:"version"`
	// Addr is the native-protocol (TCP) address, on loopback.
	Addr string `json:"addr"`
	// ServerVersion is ClickHouse's version.
	ServerVersion string `json:"server_version"`
	// HostPID is the custody-chdb process running the engine.
	HostPID int `json:"host_pid"`
	// EnginePID is the process running ClickHouse: HostPID itself with
	// libchdb, its child `clickhouse local` with an official binary.
	// Absent (0) in endpoints written before it was added.
	EnginePID int `json:"engine_pid,omitempty"`
}

// ErrNotRunning means no embedded server runs for a store.
var ErrNotRunning = errors.New("no embedded server is running for this store")

// ReadCredentials reads the credentials of the server running for store dir.
func ReadCredentials(dir string) (Credentials, error) {
	var c Credentials
	if err := readJSON(filepath.Join(dir, EngineDir, CredentialsFile), &c); err != nil {
		return c, fmt.Errorf("read engine credentials: %w", err)
	}
	if c.Version != formatVersion {
		return c, fmt.Errorf("read engine credentials: unknown format version %d", c.Version)
	}
	return c, nil
}

// ReadEndpoint reads where the server for store dir listens.
func ReadEndpoint(dir string) (Endpoint, error) {
	var e Endpoint
	err := readJSON(filepath.Join(dir, EngineDir, EndpointFile), &e)
	if errors.Is(err, os.ErrNotExist) {
		return e, ErrNotRunning
	}
	if err != nil {
		return e, fmt.Errorf("read engine endpoint: %w", err)
	}
	if e.Version != formatVersion {
		return e, fmt.Errorf("read engine endpoint: unknown format version %d", e.Version)
	}
	return e, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// WriteFileAtomic writes b to path with perm: a temporary file, synced,
// then renamed over path.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteJSONAtomic writes v as JSON with WriteFileAtomic.
func WriteJSONAtomic(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), perm)
}

// NewCredentials returns credentials for the given passwords.
func NewCredentials(passwords map[string]string) Credentials {
	return Credentials{Version: formatVersion, Passwords: passwords}
}

// NewEndpoint returns an endpoint record.
func NewEndpoint(addr, serverVersion string, hostPID int) Endpoint {
	return Endpoint{Version: formatVersion, Addr: addr, ServerVersion: serverVersion, HostPID: hostPID}
}

// HostSpec is what the launcher sends custody-chdb on its stdin when it
// starts a server, as one JSON line; closing stdin afterwards stops the
// server.
type HostSpec struct {
	Access Access `json:"access"`
	// Port is the loopback port to listen on; 0 picks a free one.
	Port int `json:"port,omitempty"`
	// Clusters are written into the server's remote_servers.
	Clusters []Cluster `json:"clusters,omitempty"`
	// Passwords, by account, replace the generated ones (see
	// ServerOptions.Passwords).
	Passwords map[string]string `json:"passwords,omitempty"`
}

// ValidatePasswords checks passwords given for a server's accounts: each
// names an account of access (or AdminUser) and is at least 16
// characters. No error names a password.
func ValidatePasswords(access Access, passwords map[string]string) error {
	known := map[string]bool{AdminUser: true}
	for _, a := range access.Accounts {
		known[a.Name] = true
	}
	for user, pw := range passwords {
		if !known[user] {
			return fmt.Errorf("password given for %q, which is no account of the server", user)
		}
		if len(pw) < 16 {
			return fmt.Errorf("the password given for %s is shorter than 16 characters", user)
		}
	}
	return nil
}

// Cluster is one entry of a server's remote_servers: a named set of
// shards that Distributed tables spread over and read from.
//
// Its servers authenticate to each other with Secret, ClickHouse's
// inter-server secret: a query or insert a Distributed table sends to
// another shard runs there as the user who sent it to the first server,
// with that user's own grants (an investigator reads, the collector
// inserts), so no account with the union of everyone's privileges and
// no password of a user is kept in the configuration. Every server of
// the cluster must have the same Secret. It is written only into the
// 0600 config.xml in the 0700 engine directory, and reaches the host on
// its stdin, never on a command line.
type Cluster struct {
	// Name is the cluster's name (an identifier), as Distributed tables
	// and cluster() name it.
	Name string `json:"name"`
	// Secret is the inter-server secret, at least 16 characters.
	Secret string `json:"secret"`
	// Shards are the cluster's shards, in shard number order (1, 2, ...).
	Shards []Shard `json:"shards"`
}

// Shard is one shard: its replicas hold the same data.
type Shard struct {
	Replicas []Replica `json:"replicas"`
}

// Replica is one server of a shard, reached over the native protocol.
type Replica struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// ValidateClusters checks cluster names, secrets, hosts and ports.
func ValidateClusters(cs []Cluster) error {
	seen := map[string]bool{}
	for _, c := range cs {
		if !engine.IsIdentifier(c.Name) {
			return fmt.Errorf("cluster name %q is not an identifier", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("cluster %s is defined twice", c.Name)
		}
		seen[c.Name] = true
		if len(c.Secret) < 16 || strings.ContainsAny(c.Secret, "<>&\"'\n\r") {
			// The secret itself is never part of an error.
			return fmt.Errorf("cluster %s: the inter-server secret must be at least 16 characters, without markup or line breaks", c.Name)
		}
		if len(c.Shards) == 0 {
			return fmt.Errorf("cluster %s has no shards", c.Name)
		}
		for i, sh := range c.Shards {
			if len(sh.Replicas) == 0 {
				return fmt.Errorf("cluster %s shard %d has no replicas", c.Name, i+1)
			}
			for _, r := range sh.Replicas {
				if r.Host == "" || strings.ContainsAny(r.Host, "<>&\"' \t\n\r/") {
					return fmt.Errorf("cluster %s shard %d: replica host %q is not a host name or address", c.Name, i+1, r.Host)
				}
				if r.Port <= 0 || r.Port > 65535 {
					return fmt.Errorf("cluster %s shard %d: replica %s port %d is not a TCP port", c.Name, i+1, r.Host, r.Port)
				}
			}
		}
	}
	return nil
}

// HostReady is custody-chdb's one JSON line on stdout once the server
// accepts connections, or Error when it could not start.
type HostReady struct {
	Addr          string `json:"addr,omitempty"`
	ServerVersion string `json:"server_version,omitempty"`
	Error         string `json:"error,omitempty"`
}
