package storage

import (
	"fmt"
	"regexp"
	"strings"
)

// The store's roles (migration 0004_roles.sql). Every Custody command
// connects as a user holding one of them.
const (
	// RoleWriter appends to the trail: INSERT on events, quarantine,
	// source_positions, checkpoints and custody_log, SELECT on the store.
	RoleWriter = "custody_writer"
	// RoleReader reads the store's tables and nothing else.
	RoleReader = "custody_reader"
	// RoleRetention drops partitions of events and quarantine and writes
	// purge records, legal holds and the custody log.
	RoleRetention = "custody_retention"
)

// Role is one of the store's roles with its grants, each a privilege
// clause as it follows GRANT ("SELECT ON custody.*"): GRANT plus the
// clause is the form a ClickHouse users configuration takes in
// <roles><NAME><grants><query>.
type Role struct {
	Name   string
	Grants []string
}

var grantStatement = regexp.MustCompile(`^GRANT\s+(?:ON CLUSTER \w+\s+)?(.+?)\s+TO\s+(\w+)$`)

// Roles returns the roles migration 0004 creates and their grants (with
// those later migrations add),
// rendered for opts without ON CLUSTER (a users configuration is per
// server). The embedded store's generated users configuration defines
// them from this, so both backends grant exactly the same privileges.
func Roles(opts SchemaOptions) ([]Role, error) {
	ms, err := Migrations(opts)
	if err != nil {
		return nil, err
	}
	var out []Role
	index := map[string]int{}
	for _, m := range ms {
		for _, s := range m.Statements {
			if !accessStatement.MatchString(s) {
				continue
			}
			s = strings.Join(strings.Fields(s), " ")
			if name, ok := strings.CutPrefix(s, "CREATE ROLE IF NOT EXISTS "); ok {
				name, _, _ = strings.Cut(name, " ")
				index[name] = len(out)
				out = append(out, Role{Name: name})
				continue
			}
			g := grantStatement.FindStringSubmatch(s)
			if g == nil {
				return nil, fmt.Errorf("migration %04d: unexpected statement %q", m.Version, s)
			}
			i, ok := index[g[2]]
			if !ok {
				return nil, fmt.Errorf("migration %04d: grant to unknown role %s", m.Version, g[2])
			}
			out[i].Grants = append(out[i].Grants, g[1])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the migrations define no roles")
	}
	return out, nil
}

// accessStatement matches the statements that create roles and grant
// privileges.
var accessStatement = regexp.MustCompile(`(?is)^\s*(CREATE\s+ROLE|GRANT)\s`)

// accessSkip says why an access statement that failed with err is skipped
// rather than stopping the migration, or "" when it is not.
func accessSkip(stmt string, err error) string {
	if !accessStatement.MatchString(stmt) {
		return ""
	}
	switch {
	case engineError(err, 514, "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND"), engineError(err, 495, "ACCESS_STORAGE_READONLY"):
		return "roles come from the server's users configuration (on the embedded store it holds these grants)"
	case engineError(err, 511, "UNKNOWN_ROLE"):
		return "the roles do not exist here (their creation was skipped, see migration 0004)"
	case engineError(err, 497, "ACCESS_DENIED"):
		return "the user running the migration may not manage access: an admin creates the roles (README.md, Least privilege)"
	}
	return ""
}

// readerSystemTables are the system tables the reader role may read
// beyond those every ClickHouse user sees (status sums system.parts).
var readerSystemTables = map[string]bool{"parts": true, "tables": true, "columns": true, "databases": true}

// readerPrivileges are the privileges the reader role may hold.
var readerPrivileges = map[string]bool{
	"SELECT": true, "SHOW": true, "SHOW DATABASES": true, "SHOW TABLES": true, "SHOW COLUMNS": true,
}

// ExcessGrants checks the effective grants of a user (the lines of SHOW
// GRANTS FINAL: its own grants and its roles', merged) against the
// reader role and returns every privilege beyond it, as "PRIVILEGE ON
// object" (or the whole line for a form it does not know). A user is no
// more than a reader when the result is empty: SELECT and SHOW on the
// store's database and SELECT on a few system tables of metadata,
// nothing WITH GRANT OPTION. REVOKE lines only take privileges away.
func ExcessGrants(lines []string, opts SchemaOptions) []string {
	db := opts.database()
	var excess []string
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "REVOKE ") {
			continue
		}
		body, ok := strings.CutPrefix(line, "GRANT ")
		to := strings.LastIndex(body, " TO ")
		if !ok || to < 0 || strings.HasSuffix(line, " OPTION") {
			excess = append(excess, line)
			continue
		}
		var privs []string
		for _, el := range splitTopLevel(body[:to]) {
			priv, obj, hasObj := strings.Cut(el, " ON ")
			privs = append(privs, priv)
			if !hasObj {
				continue
			}
			for _, p := range privs {
				if !readerGrant(p, obj, db) {
					excess = append(excess, p+" ON "+obj)
				}
			}
			privs = nil
		}
		if len(privs) > 0 { // a role granted, not a privilege
			excess = append(excess, line)
		}
	}
	return excess
}

// readerGrant says whether privilege priv on obj is within the reader role.
func readerGrant(priv, obj, db string) bool {
	if i := strings.IndexByte(priv, '('); i >= 0 { // SELECT(col, ...)
		priv = priv[:i]
	}
	if !readerPrivileges[strings.TrimSpace(priv)] {
		return false
	}
	d, t, ok := strings.Cut(strings.ReplaceAll(obj, "`", ""), ".")
	switch {
	case !ok:
		return false
	case d == db:
		return true
	case d == "system":
		return readerSystemTables[t]
	}
	return false
}

// splitTopLevel splits a grant's element list at the commas outside
// parentheses and backquotes.
func splitTopLevel(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '`':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// The users each kind of command connects as on the embedded store (and,
// by the README's DDL, on servers), one role each.
const (
	// UserCollector holds RoleWriter: custody run, backfill, append,
	// verify and export.
	UserCollector = "custody_collector"
	// UserInvestigator holds RoleReader: custody sql, query, timeline,
	// status, retention plan, hold list.
	UserInvestigator = "custody_investigator"
	// UserPurger holds RoleRetention: custody retention apply, hold add
	// and release.
	UserPurger = "custody_purger"
)

// Account is a user and the one role it holds.
type Account struct {
	User, Role string
}

// Accounts returns the store's users and their roles.
func Accounts() []Account {
	return []Account{{UserCollector, RoleWriter}, {UserInvestigator, RoleReader}, {UserPurger, RoleRetention}}
}

// engineError says whether err is the ClickHouse error with this code and
// name, as either engine reports it: the embedded host passes the
// engine's text ("... (ACCESS_DENIED)"), clickhouse-go writes "code: 497,
// message: ...".
func engineError(err error, code int, name string) bool {
	msg := err.Error()
	return strings.Contains(msg, "("+name+")") || strings.Contains(msg, fmt.Sprintf("code: %d,", code))
}
