package loganalytics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// DefaultTables returns the Azure Monitor tables that carry admin activity
// on AKS, ACR and ACI (resource-specific and legacy forms).
func DefaultTables() []string {
	return []string{
		"AKSAudit",
		"AKSAuditAdmin",
		"AKSControlPlane",
		"AzureDiagnostics",
		"ContainerRegistryLoginEvents",
		"ContainerRegistryRepositoryEvents",
		"AzureActivity",
		"ContainerEvent_CL",
		"ContainerInstanceLog_CL",
		"ContainerEvent",
		"ContainerInstanceLog",
	}
}

// WindowFilter is the line every query template must keep: it restricts
// the table to one ingestion-time window, (From, To]. The source fills
// From and To with RFC 3339 timestamps at microsecond precision.
const WindowFilter = "| where ingestion_time() > datetime({{.From}}) and ingestion_time() <= datetime({{.To}})"

// DefaultQuery is the template used for a table that has no entry in
// Config.Queries: every row of the table in the window.
const DefaultQuery = "{{.Table}}\n" + WindowFilter

// defaultQueries returns the shipped per-table templates. AzureDiagnostics
// is narrowed to the AKS audit and guard (Entra authentication) categories
// (it holds every legacy resource log of the workspace) and AzureActivity to the container services and
// Microsoft.Insights (diagnostic-setting changes, i.e. tampering with the
// log pipeline itself).
func defaultQueries() map[string]string {
	tables := DefaultTables()
	q := make(map[string]string, len(tables))
	for _, t := range tables {
		q[t] = t + "\n" + WindowFilter
	}
	q["AzureDiagnostics"] = "AzureDiagnostics\n" + WindowFilter + "\n" +
		`| where Category in~ ("kube-audit", "kube-audit-admin", "guard")`
	q["AzureActivity"] = "AzureActivity\n" + WindowFilter + "\n" +
		`| where ResourceProviderValue in~ ("Microsoft.ContainerService", "Microsoft.ContainerRegistry", "Microsoft.ContainerInstance", "Microsoft.Insights")`
	return q
}

// Cloud names accepted in Config.Cloud.
const (
	CloudPublic     = "public"
	CloudChina      = "china"
	CloudGovernment = "government"
)

// CredentialKind selects how the source authenticates to Microsoft Entra ID.
type CredentialKind string

// Credential kinds (all from azidentity).
const (
	// CredentialWorkloadIdentity uses a federated service account token
	// (AKS workload identity): TenantID, ClientID and TokenFile, each
	// defaulting to the AZURE_* variables the webhook injects.
	CredentialWorkloadIdentity CredentialKind = "workload-identity"
	// CredentialManagedIdentity uses the platform's managed identity;
	// ClientID selects a user-assigned identity.
	CredentialManagedIdentity CredentialKind = "managed-identity"
	// CredentialClientSecret uses an app registration's secret: TenantID,
	// ClientID, ClientSecret.
	CredentialClientSecret CredentialKind = "client-secret"
	// CredentialAzureCLI uses the token of a logged-in `az` CLI.
	CredentialAzureCLI CredentialKind = "azure-cli"
)

// Secret is a string that never prints: fmt, slog, JSON and YAML output
// show "[REDACTED]" (or nothing when empty). Read the value with Reveal.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String implements fmt.Stringer.
func (s Secret) String() string { return s.mask() }

// GoString implements fmt.GoStringer (%#v).
func (s Secret) GoString() string { return `"` + s.mask() + `"` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.mask() + `"`), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.mask(), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

// CredentialConfig says how to obtain tokens for the query API.
type CredentialConfig struct {
	// Kind is one of workload-identity, managed-identity, client-secret,
	// azure-cli. Required.
	Kind CredentialKind `yaml:"kind" json:"kind"`
	// TenantID is the Entra tenant (directory) id. Required for
	// client-secret; optional otherwise (workload identity reads
	// AZURE_TENANT_ID, the Azure CLI uses its logged-in tenant).
	TenantID string `yaml:"tenant_id" json:"tenant_id"`
	// ClientID is the application (client) id: required for
	// client-secret; for workload identity it defaults to AZURE_CLIENT_ID;
	// for managed identity it selects a user-assigned identity (empty
	// means system-assigned).
	ClientID string `yaml:"client_id" json:"client_id"`
	// ClientSecret is the app registration secret (client-secret only).
	// Prefer setting it through the environment; it is never logged.
	ClientSecret Secret `yaml:"client_secret" json:"client_secret"`
	// TokenFile is the federated token file for workload identity; empty
	// means AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string `yaml:"token_file" json:"token_file"`
	// AuthorityHost overrides the Entra authority (https URL, e.g. for a
	// sovereign or private cloud). Empty means the cloud's default.
	AuthorityHost string `yaml:"authority_host" json:"authority_host"`
	// DisableInstanceDiscovery skips Entra instance metadata discovery;
	// set only for private clouds whose authority is not known to Entra.
	DisableInstanceDiscovery bool `yaml:"disable_instance_discovery" json:"disable_instance_discovery"`
}

// Config configures the Log Analytics source.
type Config struct {
	// WorkspaceID is the workspace (customer) id GUID from the workspace's
	// Overview blade. Required.
	WorkspaceID string `yaml:"workspace_id" json:"workspace_id"`
	// Cloud is public, china or government; it picks the query endpoint,
	// token audience and authority. Empty means public.
	Cloud string `yaml:"cloud" json:"cloud"`
	// Endpoint overrides the query API base URL (https), e.g. a private
	// link endpoint. Empty means the cloud's endpoint.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Audience overrides the token audience. Empty means the cloud's.
	Audience string `yaml:"audience" json:"audience"`
	// Credential says how to authenticate.
	Credential CredentialConfig `yaml:"credential" json:"credential"`
	// Tables lists the tables to collect, each one stream. Names must be
	// plain KQL identifiers.
	Tables []string `yaml:"tables" json:"tables"`
	// Queries maps a table to its KQL template (Go text/template with
	// .Table, .From and .To). A template must contain WindowFilter's
	// {{.From}} and {{.To}} placeholders in an ingestion_time() filter;
	// the source appends its own ordering and row cap. Tables without an
	// entry use DefaultQuery.
	Queries map[string]string `yaml:"queries" json:"queries"`
	// WindowSize is the largest ingestion-time span one query covers.
	// Must be positive; the source halves it on its own when a result is
	// too large.
	WindowSize time.Duration `yaml:"window_size" json:"window_size"`
	// Overlap is how far before the last delivered position the next
	// query starts again, so rows whose ingestion_time() lies in the past
	// but that became queryable late are still picked up. Rows already
	// delivered are de-duplicated. Zero disables overlap.
	Overlap time.Duration `yaml:"overlap" json:"overlap"`
	// IngestionDelay keeps windows this far behind now: a row needs some
	// time after ingestion_time() to become queryable. Zero queries up to
	// now.
	IngestionDelay time.Duration `yaml:"ingestion_delay" json:"ingestion_delay"`
	// PollInterval is how often a caught-up table is queried again. Must
	// be positive.
	PollInterval time.Duration `yaml:"poll_interval" json:"poll_interval"`
	// StartLookback is where a table with no stored position starts: this
	// long before now. Zero starts at now (only new rows).
	StartLookback time.Duration `yaml:"start_lookback" json:"start_lookback"`
	// MaxRows caps the rows one query may return; a window whose result
	// exceeds it is split. At most the service limit, 500000. It also
	// bounds memory: one table holds at most one window's rows.
	MaxRows int `yaml:"max_rows" json:"max_rows"`
	// MinWindow is the smallest window a split may produce; a window this
	// small that still overflows is an error (raise MaxRows). Must be at
	// least 1µs.
	MinWindow time.Duration `yaml:"min_window" json:"min_window"`
	// BatchSize is the most messages ReadBatch returns at once. Must be
	// positive.
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// ServerTimeout is the server-side query timeout sent in the Prefer
	// header (wait=), between 1s and 10m. Zero leaves the service default
	// (3 minutes).
	ServerTimeout time.Duration `yaml:"server_timeout" json:"server_timeout"`
	// ThrottleRetries is how many times a throttled (429) query is retried
	// after waiting the Retry-After interval before the table backs off
	// for a poll interval. Zero means no immediate retry.
	ThrottleRetries int `yaml:"throttle_retries" json:"throttle_retries"`
	// MaxRetryAfter caps the wait for one Retry-After. Must be positive.
	MaxRetryAfter time.Duration `yaml:"max_retry_after" json:"max_retry_after"`
	// MissingTableRetry is how long a table that does not exist in the
	// workspace (yet) is left alone before it is queried again. Must be
	// positive.
	MissingTableRetry time.Duration `yaml:"missing_table_retry" json:"missing_table_retry"`
}

// ServiceRowLimit is the query API's row limit per result.
const ServiceRowLimit = 500000

// DefaultConfig returns the shipped configuration: all admin-activity
// tables with their templates spelled out (so operators can see and edit
// them), 15-minute windows, 5 minutes of overlap, a 2-minute ingestion
// delay, a 1-minute poll interval and at most 20,000 rows per query
// (the service allows 500,000, but a smaller window keeps the decoded
// response, which the SDK holds in memory whole, to tens of MB).
// WorkspaceID and Credential are left for the operator; the credential
// kind defaults to managed identity.
func DefaultConfig() Config {
	return Config{
		Cloud:             CloudPublic,
		Tables:            DefaultTables(),
		Queries:           defaultQueries(),
		WindowSize:        15 * time.Minute,
		Overlap:           5 * time.Minute,
		IngestionDelay:    2 * time.Minute,
		PollInterval:      time.Minute,
		StartLookback:     24 * time.Hour,
		MaxRows:           20000,
		MinWindow:         time.Millisecond,
		BatchSize:         1000,
		ServerTimeout:     3 * time.Minute,
		ThrottleRetries:   3,
		MaxRetryAfter:     5 * time.Minute,
		MissingTableRetry: 15 * time.Minute,
		Credential:        CredentialConfig{Kind: CredentialManagedIdentity},
	}
}

var (
	identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	guidRE  = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
)

// Validate checks the configuration; errors name the offending field by
// its YAML key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case c.WorkspaceID == "":
		add("workspace_id: required")
	case !guidRE.MatchString(c.WorkspaceID):
		add("workspace_id: %q is not a GUID", c.WorkspaceID)
	}
	switch c.Cloud {
	case "", CloudPublic, CloudChina, CloudGovernment:
	default:
		add("cloud: %q is not one of public, china, government", c.Cloud)
	}
	for _, f := range []struct{ name, v string }{{"endpoint", c.Endpoint}, {"audience", c.Audience}, {"credential.authority_host", c.Credential.AuthorityHost}} {
		if f.v == "" {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add("%s: %q is not an https URL", f.name, f.v)
		}
	}
	switch c.Credential.Kind {
	case CredentialClientSecret:
		if c.Credential.TenantID == "" {
			add("credential.tenant_id: required for client-secret")
		}
		if c.Credential.ClientID == "" {
			add("credential.client_id: required for client-secret")
		}
		if c.Credential.ClientSecret == "" {
			add("credential.client_secret: required for client-secret")
		}
	case CredentialWorkloadIdentity, CredentialManagedIdentity, CredentialAzureCLI:
		if c.Credential.ClientSecret != "" {
			add("credential.client_secret: only used with client-secret, not %s", c.Credential.Kind)
		}
	case "":
		add("credential.kind: required (workload-identity, managed-identity, client-secret, azure-cli)")
	default:
		add("credential.kind: %q is not one of workload-identity, managed-identity, client-secret, azure-cli", c.Credential.Kind)
	}
	if len(c.Tables) == 0 {
		add("tables: at least one table is required")
	}
	seen := map[string]bool{}
	for i, t := range c.Tables {
		if !identRE.MatchString(t) {
			add("tables[%d]: %q is not a table name", i, t)
			continue
		}
		if seen[t] {
			add("tables[%d]: %q is listed twice", i, t)
		}
		seen[t] = true
	}
	for _, t := range sortedKeys(c.Queries) {
		if !identRE.MatchString(t) {
			add("queries.%s: not a table name", t)
			continue
		}
		if _, err := renderQuery(c.Queries[t], t, time.Unix(0, 0), time.Unix(1, 0)); err != nil {
			add("queries.%s: %w", t, err)
		}
	}
	if c.WindowSize <= 0 {
		add("window_size: must be positive, got %s", c.WindowSize)
	}
	if c.Overlap < 0 {
		add("overlap: must not be negative, got %s", c.Overlap)
	}
	if c.IngestionDelay < 0 {
		add("ingestion_delay: must not be negative, got %s", c.IngestionDelay)
	}
	if c.PollInterval <= 0 {
		add("poll_interval: must be positive, got %s", c.PollInterval)
	}
	if c.StartLookback < 0 {
		add("start_lookback: must not be negative, got %s", c.StartLookback)
	}
	if c.MaxRows <= 0 || c.MaxRows > ServiceRowLimit {
		add("max_rows: must be between 1 and %d, got %d", ServiceRowLimit, c.MaxRows)
	}
	if c.MinWindow < time.Microsecond {
		add("min_window: must be at least 1µs, got %s", c.MinWindow)
	} else if c.WindowSize > 0 && c.MinWindow > c.WindowSize {
		add("min_window: %s is larger than window_size %s", c.MinWindow, c.WindowSize)
	}
	if c.BatchSize <= 0 {
		add("batch_size: must be positive, got %d", c.BatchSize)
	}
	if c.ServerTimeout != 0 && (c.ServerTimeout < time.Second || c.ServerTimeout > 10*time.Minute) {
		add("server_timeout: must be between 1s and 10m, got %s", c.ServerTimeout)
	}
	if c.ThrottleRetries < 0 {
		add("throttle_retries: must not be negative, got %d", c.ThrottleRetries)
	}
	if c.MaxRetryAfter <= 0 {
		add("max_retry_after: must be positive, got %s", c.MaxRetryAfter)
	}
	if c.MissingTableRetry <= 0 {
		add("missing_table_retry: must be positive, got %s", c.MissingTableRetry)
	}
	return errors.Join(errs...)
}

// QueryTemplate returns the effective template for table.
func (c Config) QueryTemplate(table string) string {
	if q, ok := c.Queries[table]; ok {
		return q
	}
	return DefaultQuery
}

// window timestamps are written at microsecond precision, the unit of
// Message.Offset.
const kqlTime = "2006-01-02T15:04:05.000000Z"

// renderQuery fills a template for one window (from, to].
func renderQuery(tmpl, table string, from, to time.Time) (string, error) {
	t, err := template.New(table).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse template: %w", err)
	}
	var b strings.Builder
	data := struct{ Table, From, To string }{table, from.UTC().Format(kqlTime), to.UTC().Format(kqlTime)}
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("execute template: %w", err)
	}
	out := b.String()
	if !strings.Contains(out, "ingestion_time() > datetime("+data.From+")") ||
		!strings.Contains(out, "ingestion_time() <= datetime("+data.To+")") {
		return "", fmt.Errorf("template must keep the window filter %q", WindowFilter)
	}
	if strings.Contains(out, "\x00") {
		return "", errors.New("template contains a NUL byte")
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
