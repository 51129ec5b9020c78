package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"
	"go.yaml.in/yaml/v3"
)

// configCommand checks config files without connecting to anything.
func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "check a config file",
		Commands: []*cli.Command{{
			Name:  "check",
			Usage: "validate --config as `custody run` reads it, without connecting to anything",
			Description: `Loads the config file the way the collector does: the global settings (with
flags and CUSTODY_* variables over them), then every source and pipeline
section, strictly (an unknown field in a section is an error). Top-level
keys no command reads are reported as warnings. Nothing is connected to
and no secret is printed. Exit 0 when the collector would start with this
config, 2 if not.

   $ custody --config /etc/custody/custody.yaml config check
   config /etc/custody/custody.yaml: OK
   store: embedded, /var/lib/custody/store
   sources: eventhubs (contoso-audit.servicebus.windows.net/container-audit, workload-identity)
   metrics: :9464`,
			Action: func(ctx context.Context, cmd *cli.Command) error {
				return runConfigCheck(ctx, configCheckOptions{
					Path: cmd.String(flagConfig), LogLevel: cmd.String(flagLogLevel), MaxRecord: cmd.String(flagMaxRecord),
					Servers: cmd.String(flagClickHouse) != "", DSNFromEnv: os.Getenv("CUSTODY_CLICKHOUSE") != "",
					Database: cmd.String(flagDatabase), Store: cmd.String(flagStore), EngineBinary: cmd.String(flagEngineBinary),
					Stdout: cmd.Root().Writer,
				})
			},
		}},
	}
}

// configCheckOptions is the config `custody config check` checks: the
// file, and the global settings as flags, variables and the file left
// them.
type configCheckOptions struct {
	// Path is the config file (--config); required.
	Path string
	// LogLevel and MaxRecord are the global settings' values to check.
	LogLevel, MaxRecord string
	// Servers is true when a ClickHouse DSN is set; DSNFromEnv when it
	// came from CUSTODY_CLICKHOUSE (the DSN itself is never printed).
	Servers, DSNFromEnv bool
	// Database, Store and EngineBinary are reported as the commands will
	// use them.
	Database, Store, EngineBinary string
	Stdout                        io.Writer
}

// runConfigCheck loads the config as `custody run` does and reports what
// the collector would run, without connecting to anything.
func runConfigCheck(_ context.Context, o configCheckOptions) error {
	path := o.Path
	if path == "" {
		return usageError{errors.New("config check needs --config FILE")}
	}
	rc, err := loadRunConfig(path)
	if err != nil {
		return usageError{err}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return usageError{fmt.Errorf("config %s: log_level: %w", path, err)}
	}
	if _, err := parseBytes(o.MaxRecord); err != nil {
		return usageError{fmt.Errorf("config %s: --%s: %w", path, flagMaxRecord, err)}
	}
	unknown, err := unknownTopLevelKeys(path)
	if err != nil {
		return usageError{err}
	}
	w := o.Stdout
	fmt.Fprintf(w, "config %s: OK\n", path)
	if o.Servers {
		// The DSN may hold a password: say only where it came from.
		from := "the config file"
		if o.DSNFromEnv {
			from = "CUSTODY_CLICKHOUSE"
		}
		fmt.Fprintf(w, "store: ClickHouse servers (DSN from %s), database %s\n", from, o.Database)
	} else {
		engine := ""
		if o.EngineBinary != "" {
			engine = " (engine: " + o.EngineBinary + " local)"
		}
		fmt.Fprintf(w, "store: embedded, %s%s\n", o.Store, engine)
	}
	var sources []string
	if c := rc.EventHubs; c != nil {
		where := c.Namespace + "/" + c.EventHub
		if c.Namespace == "" {
			where = "from its connection string"
		}
		sources = append(sources, fmt.Sprintf("eventhubs (%s, %s)", where, c.Credential))
	}
	if c := rc.LogAnalytics; c != nil {
		sources = append(sources, fmt.Sprintf("loganalytics (workspace %s, %s)", c.WorkspaceID, c.Credential.Kind))
	}
	fmt.Fprintf(w, "sources: %s\n", strings.Join(sources, ", "))
	metrics := rc.MetricsAddr
	if metrics == "" {
		metrics = "off"
	}
	fmt.Fprintf(w, "metrics: %s\n", metrics)
	for _, k := range unknown {
		fmt.Fprintf(w, "warning: top-level key %q is read by no command\n", k)
	}
	return nil
}

// unknownTopLevelKeys lists the file's top-level keys that neither the
// global settings, the collector's sections nor another command read.
func unknownTopLevelKeys(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	known := append(yamlKeys(fileConfig{}), yamlKeys(runFile{})...)
	known = append(known, "retention") // custody retention's policy section
	var unknown []string
	for k := range top {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return unknown, nil
}

// yamlKeys lists the yaml keys of a struct's fields.
func yamlKeys(v any) []string {
	t := reflect.TypeOf(v)
	var keys []string
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}
