package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v3"
	"go.yaml.in/yaml/v3"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

// Global flag names.
const (
	flagConfig        = "config"
	flagStore         = "store"
	flagEngineBinary  = "engine-binary"
	flagClickHouse    = "clickhouse"
	flagDatabase      = "database"
	flagCluster       = "cluster"
	flagSigningKey    = "signing-key"
	flagVerifyKey     = "verify-key"
	flagCheckpointDir = "checkpoint-dir"
	flagLogLevel      = "log-level"
	flagMaxRecord     = "max-record-bytes"
)

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfig, Usage: "YAML config file (daemon settings; flags and CUSTODY_* variables override it)", Sources: cli.EnvVars("CUSTODY_CONFIG")},
		&cli.StringFlag{Name: flagStore, Value: "./custody-data", Usage: "embedded store directory (chDB)", Sources: cli.EnvVars("CUSTODY_STORE")},
		&cli.StringFlag{Name: flagEngineBinary, Usage: "official clickhouse `EXECUTABLE` (a path, or a name on PATH) to run the embedded store's engine from, as clickhouse local, instead of libchdb (the default)", Sources: cli.EnvVars("CUSTODY_ENGINE_BINARY")},
		&cli.StringFlag{Name: flagClickHouse, Usage: "ClickHouse server DSN instead of the embedded store: clickhouse://user:pass@host1:9440,host2:9440/?secure=true", Sources: cli.EnvVars("CUSTODY_CLICKHOUSE")},
		&cli.StringFlag{Name: flagDatabase, Value: "custody", Usage: "database holding the trail", Sources: cli.EnvVars("CUSTODY_DATABASE")},
		&cli.StringFlag{Name: flagCluster, Usage: "ClickHouse cluster name: replicated tables behind Distributed ones (servers only)", Sources: cli.EnvVars("CUSTODY_CLUSTER")},
		&cli.StringFlag{Name: flagSigningKey, Value: "./custody.key", Usage: "checkpoint signing key (from custody keygen)", Sources: cli.EnvVars("CUSTODY_SIGNING_KEY")},
		&cli.StringFlag{Name: flagVerifyKey, Value: "./custody.pub", Usage: "checkpoint verification key (from custody keygen)", Sources: cli.EnvVars("CUSTODY_VERIFY_KEY")},
		&cli.StringFlag{Name: flagCheckpointDir, Value: "./custody-checkpoints", Usage: "directory receiving signed checkpoints; keep it outside the store", Sources: cli.EnvVars("CUSTODY_CHECKPOINT_DIR")},
		&cli.StringFlag{Name: flagMaxRecord, Value: "64MiB", Usage: "longest record (line or body) read whole by backfill and normalize; a longer one is quarantined with its first bytes and its SHA-256 (bytes, or with KiB, MiB, GiB)", Sources: cli.EnvVars("CUSTODY_MAX_RECORD_BYTES")},
		&cli.StringFlag{Name: flagLogLevel, Value: "info", Usage: "log level {debug|info|warn|error}", Sources: cli.EnvVars("CUSTODY_LOG_LEVEL")},
	}
}

func newApp() *cli.Command {
	open := func(ctx context.Context, cmd *cli.Command) (engine.Engine, func(), error) {
		s, err := openStore(ctx, cmd, readOnly)
		if err != nil {
			return nil, nil, err
		}
		return s.Engine(), func() { _ = s.Engine().Close(context.Background()) }, nil
	}
	return &cli.Command{
		Name:  "custody",
		Usage: "audit-log collector and tamper-evident evidence store for Azure ACI, ACR and AKS",
		Description: `Custody reads the admin-access logs of Azure Container Instances, Container
Registry and Kubernetes Service (Event Hubs, Log Analytics, storage archives),
normalizes them into one event model, and keeps them in a hash-chained,
signed ClickHouse trail that anyone with the public key can verify.

   $ custody keygen && custody init
   $ custody backfill ./PT1H.json
   $ custody timeline --actor alice@contoso.com
   $ custody verify`,
		EnableShellCompletion: true,
		Flags:                 globalFlags(),
		Before:                loadConfig,
		Commands: []*cli.Command{
			initCommand(),
			keygenCommand(),
			statusCommand(),
			verifyCommand(),
			sqlCommand(),
			normalizeCommand(),
			queryCommand(open),
			timelineCommand(open),
			appendCommand(),
			runCommand(),
			backfillCommand(),
			exportCommand(),
			verifyExportCommand(),
			retentionCommand(),
			holdCommand(),
			configCommand(),
			serveCommand(),
		},
	}
}

// fileConfig is the YAML config file. Its top-level keys mirror the global
// flags; sections for the daemon (sources, pipeline, metrics) are read by
// the commands that use them.
type fileConfig struct {
	Store         string `yaml:"store"`
	EngineBinary  string `yaml:"engine_binary"`
	ClickHouse    string `yaml:"clickhouse"`
	Database      string `yaml:"database"`
	Cluster       string `yaml:"cluster"`
	SigningKey    string `yaml:"signing_key"`
	VerifyKey     string `yaml:"verify_key"`
	CheckpointDir string `yaml:"checkpoint_dir"`
	LogLevel      string `yaml:"log_level"`
	MaxRecord     string `yaml:"max_record_bytes"`
}

// loadConfig applies the config file's values to every global flag not
// set on the command line or in the environment.
func loadConfig(ctx context.Context, cmd *cli.Command) (context.Context, error) {
	path := cmd.String(flagConfig)
	if path == "" {
		return ctx, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ctx, usageError{fmt.Errorf("read config: %w", err)}
	}
	var fc fileConfig
	if err := yaml.Unmarshal(b, &fc); err != nil {
		return ctx, usageError{fmt.Errorf("config %s: %w", path, err)}
	}
	for name, v := range map[string]string{
		flagStore: fc.Store, flagEngineBinary: fc.EngineBinary, flagClickHouse: fc.ClickHouse, flagDatabase: fc.Database, flagCluster: fc.Cluster,
		flagSigningKey: fc.SigningKey, flagVerifyKey: fc.VerifyKey, flagCheckpointDir: fc.CheckpointDir, flagLogLevel: fc.LogLevel, flagMaxRecord: fc.MaxRecord,
	} {
		if v != "" && !cmd.IsSet(name) {
			if err := cmd.Set(name, v); err != nil {
				return ctx, usageError{fmt.Errorf("config %s: %s: %w", path, name, err)}
			}
		}
	}
	return ctx, nil
}

func logger(cmd *cli.Command) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String(flagLogLevel))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// maxRecordBytes reads --max-record-bytes: a byte count, optionally with
// a KiB, MiB or GiB suffix.
func maxRecordBytes(cmd *cli.Command) (int, error) {
	n, err := parseBytes(cmd.String(flagMaxRecord))
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flagMaxRecord, err)
	}
	return n, nil
}

func parseBytes(s string) (int, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(num, suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, suffix)), m
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<31-1)/mult {
		return 0, fmt.Errorf("%q is not a positive size below 2 GiB (bytes, or with KiB, MiB, GiB)", s)
	}
	return int(n * mult), nil
}

func schemaOptions(cmd *cli.Command) storage.SchemaOptions {
	return storage.SchemaOptions{Database: cmd.String(flagDatabase), Cluster: cmd.String(flagCluster)}
}

// openEngine opens the configured engine: a ClickHouse server when
// --clickhouse is set, otherwise the embedded store, connected as user
// (one of storage.Accounts, or chdb.AdminUser to migrate).
//
// An embedded store that another custody process owns (a collector or a
// backfill running) is reached through that process's engine unless this
// command appends: only one process appends to a store's chains.
func openEngine(ctx context.Context, cmd *cli.Command, mode accessMode, user string) (engine.Engine, error) {
	readOnly := mode == readOnly
	if dsn := cmd.String(flagClickHouse); dsn != "" {
		return clickhouse.Open(ctx, clickhouse.Options{DSN: dsn, ReadOnly: readOnly, Cluster: cmd.String(flagCluster)})
	}
	dir := cmd.String(flagStore)
	if mode != migrating {
		if _, err := os.Stat(filepath.Join(dir, "clickhouse")); err != nil {
			return nil, fmt.Errorf("no store at %s: run `custody init --store %s` first", dir, dir)
		}
	}
	access, err := embeddedAccess(cmd)
	if err != nil {
		return nil, err
	}
	eng, err := chdb.Open(ctx, chdb.Options{Dir: dir, ReadOnly: readOnly, User: user, Access: access, EngineBinary: cmd.String(flagEngineBinary), Logger: logger(cmd)})
	var inUse *chdb.InUseError
	if !errors.As(err, &inUse) {
		return eng, err
	}
	if mode == appending || mode == migrating {
		return nil, fmt.Errorf("%w: one process appends to a store at a time (commands that only read or verify connect to its engine meanwhile)", inUse)
	}
	return chdb.Attach(ctx, dir, user, readOnly)
}

// embeddedAccess is the embedded server's policy: the store's roles
// (migration 0004, rendered for a users configuration) and its accounts.
func embeddedAccess(cmd *cli.Command) (chdb.Access, error) {
	opts := schemaOptions(cmd)
	opts.Cluster = ""
	roles, err := storage.Roles(opts)
	if err != nil {
		return chdb.Access{}, fmt.Errorf("store roles: %w", err)
	}
	var a chdb.Access
	for _, r := range roles {
		a.Roles = append(a.Roles, chdb.Role{Name: r.Name, Grants: r.Grants})
	}
	for _, u := range storage.Accounts() {
		a.Accounts = append(a.Accounts, chdb.Account{Name: u.User, Roles: []string{u.Role}})
	}
	return a, nil
}

// Store access modes.
type accessMode int

const (
	readOnly  accessMode = iota // queries; the engine refuses writes
	readWrite                   // custody log entries (verify, exports)
	appending                   // new events: needs the signing key
	migrating                   // custody init: creates the store
)

// modeUser is the account each mode connects to the embedded store as:
// the least-privileged one that can do the work. readWrite (verify,
// export) runs as the collector's account: the writer role is the only
// one that may record a verification (verify_runs, migration 0008) and
// check parts (CHECK), and it inserts the custody log entry of an export;
// the reader may write nothing, the retention role could delete rows.
var modeUser = map[accessMode]string{
	readOnly:  storage.UserInvestigator,
	readWrite: storage.UserCollector,
	appending: storage.UserCollector,
	migrating: chdb.AdminUser,
}

// openStore opens the engine and the store over it, connected as the
// mode's account.
func openStore(ctx context.Context, cmd *cli.Command, mode accessMode) (*storage.Store, error) {
	return openStoreAs(ctx, cmd, mode, modeUser[mode])
}

// storeOpener is a command option's lazy store: the store opened from the
// global flags in mode, as user (empty: the mode's account), when the run
// function needs it, so run functions take their options whole and tests
// hand them any store.
func storeOpener(cmd *cli.Command, mode accessMode, user string) func(context.Context) (*storage.Store, error) {
	if user == "" {
		user = modeUser[mode]
	}
	return func(ctx context.Context) (*storage.Store, error) { return openStoreAs(ctx, cmd, mode, user) }
}

// openStoreAs is openStore connected as user.
func openStoreAs(ctx context.Context, cmd *cli.Command, mode accessMode, user string) (*storage.Store, error) {
	if mode == appending {
		if err := checkSigningKeyMode(cmd.String(flagSigningKey)); err != nil {
			return nil, err
		}
	}
	eng, err := openEngine(ctx, cmd, mode, user)
	if err != nil {
		return nil, err
	}
	opts := storage.Options{Schema: schemaOptions(cmd), CheckpointDir: cmd.String(flagCheckpointDir), Logger: logger(cmd), Actor: actorName()}
	if dsn := cmd.String(flagClickHouse); dsn != "" && opts.Schema.Cluster != "" {
		// verify checks the parts of every server of the cluster: the
		// same account, TLS and settings, at each server's address.
		opts.DialShard = func(ctx context.Context, host string, port int) (engine.Engine, error) {
			return clickhouse.Open(ctx, clickhouse.Options{DSN: dsn, Host: net.JoinHostPort(host, strconv.Itoa(port)), ReadOnly: mode == readOnly})
		}
	}
	if mode == appending {
		signer, err := storage.LoadSigner(cmd.String(flagSigningKey))
		if err != nil {
			_ = eng.Close(ctx)
			return nil, fmt.Errorf("%w (create one with `custody keygen`)", err)
		}
		opts.Signer = signer
	}
	s, err := storage.Open(ctx, eng, opts)
	if err != nil {
		_ = eng.Close(ctx)
		return nil, err
	}
	return s, nil
}

// actorName is who the custody log says acted.
func actorName() string { return storage.DefaultActor() }

// ingestion is what every path into the store needs: the store (opened to
// append), the normalizer, the sink adapter and the stored positions that
// sources resume from.
type ingestion struct {
	store     *storage.Store
	norm      *normalize.Normalizer
	sink      storeSink
	positions map[string]int64
}

// openIngest opens the store for appending and reads its positions.
func openIngest(ctx context.Context, cmd *cli.Command) (*ingestion, error) {
	st, err := openStore(ctx, cmd, appending)
	if err != nil {
		return nil, err
	}
	in := &ingestion{store: st, sink: storeSink{st}}
	if in.norm, err = normalize.New(normalize.DefaultConfig()); err == nil {
		in.positions, err = st.Positions(ctx)
	}
	if err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

func (in *ingestion) close() { _ = in.store.Engine().Close(context.Background()) }
