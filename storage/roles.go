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

// roleMigration is the migration that creates the roles.
const roleMigration = 4

var grantStatement = regexp.MustCompile(`^GRANT\s+(?:ON CLUSTER \w+\s+)?(.+?)\s+TO\s+(\w+)$`)

// Roles returns the roles migration 0004 creates and their grants,
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
		if m.Version != roleMigration {
			continue
		}
		for _, s := range m.Statements {
			s = strings.Join(strings.Fields(s), " ")
			if name, ok := strings.CutPrefix(s, "CREATE ROLE IF NOT EXISTS "); ok {
				name, _, _ = strings.Cut(name, " ")
				index[name] = len(out)
				out = append(out, Role{Name: name})
				continue
			}
			g := grantStatement.FindStringSubmatch(s)
			if g == nil {
				return nil, fmt.Errorf("migration %04d: unexpected statement %q", roleMigration, s)
			}
			i, ok := index[g[2]]
			if !ok {
				return nil, fmt.Errorf("migration %04d: grant to unknown role %s", roleMigration, g[2])
			}
			out[i].Grants = append(out[i].Grants, g[1])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("migration %04d defines no roles", roleMigration)
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
	msg := err.Error()
	switch {
	case strings.Contains(msg, "ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND"), strings.Contains(msg, "ACCESS_STORAGE_READONLY"):
		return "roles come from the server's users configuration (on the embedded store it holds these grants)"
	case strings.Contains(msg, "ACCESS_DENIED"):
		return "the user running the migration may not manage access: an admin creates the roles (README.md, Least privilege)"
	}
	return ""
}
