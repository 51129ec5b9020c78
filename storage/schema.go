package storage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// SchemaOptions say where and how the schema is created.
type SchemaOptions struct {
	// Database holds every Custody table. Default "custody".
	Database string
	// Cluster, when set, creates ReplicatedMergeTree tables ON CLUSTER
	// with Distributed tables in front of them (sharded by chain, so one
	// chain lives on one shard and keeps its order).
	Cluster string
	// Unreplicated, with Cluster, makes the tables behind the Distributed
	// ones plain MergeTree tables and creates everything on the connected
	// server only, without ON CLUSTER (which, like ReplicatedMergeTree,
	// needs ClickHouse Keeper): Migrate then runs once on every server of
	// the cluster, each a shard of one replica. The two-shard test runs
	// this form, as no Keeper runs here. It is not a CLI option: retention
	// drops partitions ON CLUSTER, which such a cluster cannot run.
	Unreplicated bool
	// Now is the clock that stamps applied migrations and their custody
	// log entries; nil means time.Now.
	Now func() time.Time
}

func (o SchemaOptions) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// onCluster is the ON CLUSTER clause DDL takes: on a replicated cluster
// only.
func (o SchemaOptions) onCluster() string {
	if o.Cluster == "" || o.Unreplicated {
		return ""
	}
	return "ON CLUSTER " + o.Cluster
}

// mergeTree is the engine of table: ReplicatedMergeTree on a replicated
// cluster, MergeTree elsewhere.
func (o SchemaOptions) mergeTree(table string) string {
	if o.Cluster == "" || o.Unreplicated {
		return "MergeTree"
	}
	return fmt.Sprintf("ReplicatedMergeTree('/clickhouse/tables/{shard}/%s/%s', '{replica}')", o.database(), table)
}

func (o SchemaOptions) database() string {
	if o.Database == "" {
		return "custody"
	}
	return o.Database
}

// Migration is one versioned schema step, embedded in the binary.
type Migration struct {
	Version    int
	Name       string
	Statements []string // rendered for the target
	Checksum   string   // of the file text
}

var placeholder = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}`)

// Migrations returns the schema steps rendered for opts, in order.
func Migrations(opts SchemaOptions) ([]Migration, error) {
	if err := checkIdentifier("database", opts.database()); err != nil {
		return nil, err
	}
	if opts.Cluster != "" {
		if err := checkIdentifier("cluster", opts.Cluster); err != nil {
			return nil, err
		}
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	var out []Migration
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		num, label, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_label.sql", name)
		}
		text, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		sum := sha256.Sum256(text)
		m := Migration{Version: version, Name: label, Checksum: hex.EncodeToString(sum[:])}
		for _, stmt := range splitStatements(string(text)) {
			rendered, tables := render(stmt, opts)
			m.Statements = append(m.Statements, rendered)
			if opts.Cluster != "" {
				for _, t := range tables {
					m.Statements = append(m.Statements, fmt.Sprintf(
						"CREATE TABLE IF NOT EXISTS %[1]s.%[2]s%[5]s AS %[1]s.%[2]s_local ENGINE = Distributed(%[3]s, %[1]s, %[2]s_local, %[4]s)",
						opts.database(), t, opts.Cluster, shardKey(t), strings.TrimRight(" "+opts.onCluster(), " ")))
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// shardKey keeps each chain on one shard; tables without a chain spread
// by time.
func shardKey(table string) string {
	switch table {
	case "events", "quarantine", "checkpoints":
		return "cityHash64(chain)"
	case "source_positions":
		return "cityHash64(stream)"
	default:
		return "rand()"
	}
}

// render fills the placeholders and reports the tables created with a
// merge tree engine (which get Distributed tables on a cluster).
func render(stmt string, opts SchemaOptions) (string, []string) {
	var tables []string
	out := placeholder.ReplaceAllStringFunc(stmt, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		switch sub[1] {
		case "db":
			return opts.database()
		case "local":
			if opts.Cluster != "" {
				return "_local"
			}
			return ""
		case "on_cluster":
			return opts.onCluster()
		case "insert":
			grant := "INSERT ON " + opts.database() + "." + sub[2]
			if opts.Cluster != "" {
				grant += ", " + grant + "_local"
			}
			return grant
		case "merge_tree":
			tables = append(tables, sub[2])
			return opts.mergeTree(sub[2])
		}
		return m
	})
	return out, tables
}

// splitStatements drops comment lines, then splits a migration file on
// semicolons that end a line.
func splitStatements(text string) []string {
	var body []string
	for _, line := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		body = append(body, line)
	}
	var out []string
	for _, chunk := range strings.Split(strings.Join(body, "\n")+"\n", ";\n") {
		if s := strings.TrimSpace(chunk); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkIdentifier(what, s string) error {
	ok := s != ""
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9')) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s name %q must be a plain identifier", what, s)
	}
	return nil
}

// Migrate creates or upgrades the schema: every embedded migration not yet
// recorded in schema_migrations is applied in order and recorded, and the
// change is written to the custody log. It returns the versions applied.
func Migrate(ctx context.Context, eng engine.Engine, opts SchemaOptions, actor string) ([]int, error) {
	db := opts.database()
	ms, err := Migrations(opts)
	if err != nil {
		return nil, err
	}
	onCluster := ""
	if c := opts.onCluster(); c != "" {
		onCluster = " " + c
	}
	// schema_migrations is tiny and written only by Migrate; on a cluster
	// each shard keeps its own (replicated among the shard's replicas).
	stmts := []string{
		fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s%s", db, onCluster),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations%s (version UInt32, name String, checksum String, applied_at DateTime64(6, 'UTC')) ENGINE = %s ORDER BY version",
			db, onCluster, opts.mergeTree("schema_migrations")),
	}
	for _, s := range stmts {
		if err := eng.Exec(ctx, s, nil); err != nil {
			return nil, fmt.Errorf("create schema bookkeeping: %w", err)
		}
	}
	applied := map[int]string{}
	rows, err := eng.Query(ctx, "SELECT version, checksum FROM "+db+".schema_migrations", nil)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read applied migrations: %w", err)
		}
		applied[int(v)] = sum
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	var done []int
	for _, m := range ms {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum {
				return nil, fmt.Errorf("migration %04d_%s was changed after it was applied (checksum %s, applied %s): add a new migration instead", m.Version, m.Name, m.Checksum[:12], sum[:12])
			}
			continue
		}
		detail := fmt.Sprintf("applied %04d_%s", m.Version, m.Name)
		var accessSkipped []string // once one access statement is skipped, the rest are too
		for i, s := range m.Statements {
			if accessSkipped != nil && accessStatement.MatchString(s) {
				accessSkipped = append(accessSkipped, strconv.Itoa(i+1))
				continue
			}
			skipped, err := execMigrationStatement(ctx, eng, s)
			if err != nil {
				return done, fmt.Errorf("apply migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
			switch {
			case skipped != "" && accessStatement.MatchString(s):
				detail += fmt.Sprintf("; roles and grants skipped, %s", skipped)
				accessSkipped = []string{strconv.Itoa(i + 1)}
			case skipped != "":
				detail += fmt.Sprintf("; statement %d skipped, %s: %s", i+1, skipped, s)
			}
		}
		if accessSkipped != nil {
			detail += fmt.Sprintf(" (statements %s)", strings.Join(accessSkipped, ", "))
		}
		at := opts.now()
		now := engine.Params{"v": strconv.Itoa(m.Version), "n": m.Name, "c": m.Checksum, "at": formatTime(at)}
		if err := eng.Exec(ctx, "INSERT INTO "+db+".schema_migrations VALUES ({v:UInt32}, {n:String}, {c:String}, {at:DateTime64(6)})", now); err != nil {
			return done, fmt.Errorf("record migration %04d: %w", m.Version, err)
		}
		done = append(done, m.Version)
		if err := writeCustodyLog(ctx, eng, db, actor, at, "schema.migrate", detail, "ok"); err != nil {
			return done, err
		}
	}
	return done, nil
}

// modifySetting matches a statement that only tunes a table setting.
var modifySetting = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+\S+(\s+ON\s+CLUSTER\s+\S+)?\s+MODIFY\s+SETTING\s`)

// execMigrationStatement runs one migration statement. Two kinds of
// statement are skipped, and skipped says why, rather than stopping the
// migration:
//   - one that only tunes a table setting (ALTER TABLE ... MODIFY SETTING)
//     on a server that does not know the setting: tuning that newer
//     ClickHouse versions offer must not stop a store on an older server
//     from opening, and the table works the same without it;
//   - one that creates a role or grants to it where the server keeps its
//     roles in configuration (the embedded store) or the migrating user
//     may not manage access (an admin creates them; see accessSkip).
//
// Any other failure is an error.
func execMigrationStatement(ctx context.Context, eng engine.Engine, stmt string) (skipped string, err error) {
	err = eng.Exec(ctx, stmt, nil)
	if err == nil {
		return "", nil
	}
	if modifySetting.MatchString(stmt) && engineError(err, 115, "UNKNOWN_SETTING") {
		return "a setting this server does not know", nil
	}
	if why := accessSkip(stmt, err); why != "" {
		return why, nil
	}
	return "", err
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }
