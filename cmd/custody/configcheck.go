package main

import (
	"context"
	"errors"
	"fmt"
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
			Action: checkConfig,
		}},
	}
}

func checkConfig(_ context.Context, cmd *cli.Command) error {
	path := cmd.String(flagConfig)
	if path == "" {
		return usageError{errors.New("config check needs --config FILE")}
	}
	rc, err := loadRunConfig(path)
	if err != nil {
		return usageError{err}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String(flagLogLevel))); err != nil {
		return usageError{fmt.Errorf("config %s: log_level: %w", path, err)}
	}
	if _, err := maxRecordBytes(cmd); err != nil {
		return usageError{fmt.Errorf("config %s: %w", path, err)}
	}
	unknown, err := unknownTopLevelKeys(path)
	if err != nil {
		return usageError{err}
	}
	w := cmd.Root().Writer
	fmt.Fprintf(w, "config %s: OK\n", path)
	if cmd.String(flagClickHouse) != "" {
		// The DSN may hold a password: say only where it came from.
		from := "the config file"
		if os.Getenv("CUSTODY_CLICKHOUSE") != "" {
			from = "CUSTODY_CLICKHOUSE"
		}
		fmt.Fprintf(w, "store: ClickHouse servers (DSN from %s), database %s\n", from, cmd.String(flagDatabase))
	} else {
		engine := ""
		if b := cmd.String(flagEngineBinary); b != "" {
			engine = " (engine: " + b + " local)"
		}
		fmt.Fprintf(w, "store: embedded, %s%s\n", cmd.String(flagStore), engine)
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
