package eventhubs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// CredentialKind names how the source authenticates to Event Hubs.
type CredentialKind string

// Credential kinds. All but the connection string use Microsoft Entra ID
// through azidentity.
const (
	// CredentialConnectionString authenticates with the SAS key in
	// Config.ConnectionString (or the emulator connection string).
	CredentialConnectionString CredentialKind = "connection-string"
	// CredentialWorkloadIdentity uses AKS workload identity (a federated
	// token file); TenantID, ClientID and TokenFile override the
	// AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE
	// environment variables the webhook injects.
	CredentialWorkloadIdentity CredentialKind = "workload-identity"
	// CredentialManagedIdentity uses the system-assigned managed identity,
	// or the user-assigned one named by ClientID.
	CredentialManagedIdentity CredentialKind = "managed-identity"
	// CredentialClientSecret uses a service principal's client secret.
	CredentialClientSecret CredentialKind = "client-secret"
	// CredentialAzureCLI uses the account signed in to the Azure CLI.
	CredentialAzureCLI CredentialKind = "azure-cli"
)

// Partition balancing between collectors.
const (
	// BalanceStatic reads the partitions listed in Config.Partitions (all
	// when empty); several collectors split the hub by listing disjoint
	// sets.
	BalanceStatic = "static"
	// BalanceProcessor lets the SDK's Processor share partitions among the
	// collectors of one consumer group, keeping ownership and checkpoints
	// in an Azure Blob container (Config.Checkpoints).
	BalanceProcessor = "processor"
)

// CheckpointConfig locates the Blob container the Processor keeps partition
// ownership and checkpoints in. Give exactly one of ConnectionString (with
// Container) or ContainerURL.
type CheckpointConfig struct {
	// ConnectionString is a storage account connection string. Secret:
	// never logged or returned in errors.
	ConnectionString string `yaml:"connection_string"`
	// Container is the container name, with ConnectionString.
	Container string `yaml:"container"`
	// ContainerURL is the container's URL. With a SAS query it is used as
	// is (the query is a secret); without one, the source's Entra ID
	// credential signs the requests.
	ContainerURL string `yaml:"container_url"`
}

// First-run start positions (besides an RFC 3339 time).
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// redacted replaces secrets wherever a Config is printed.
const redacted = "[REDACTED]"

// Config configures the Event Hubs source. The zero value is not valid;
// start from DefaultConfig.
type Config struct {
	// Namespace is the fully qualified namespace, for example
	// "contoso.servicebus.windows.net". Required for Entra ID credentials;
	// with a connection string it is taken from the string's Endpoint.
	Namespace string `yaml:"namespace"`
	// ConnectionString is an Event Hubs (or emulator) connection string.
	// Secret: never logged or returned in errors. Required when Credential
	// is connection-string.
	ConnectionString string `yaml:"connection_string"`
	// EventHub is the event hub name. Required unless the connection
	// string carries EntityPath.
	EventHub string `yaml:"event_hub"`
	// ConsumerGroup to read as. Default "$Default". Give each collector
	// fleet its own group.
	ConsumerGroup string `yaml:"consumer_group"`
	// Credential selects the authentication. Default connection-string.
	Credential CredentialKind `yaml:"credential"`
	// TenantID is the Entra tenant for client-secret, workload-identity
	// and azure-cli; empty uses the environment's default.
	TenantID string `yaml:"tenant_id"`
	// ClientID is the application (client) id for client-secret and
	// workload-identity, or the user-assigned managed identity's client id.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the service principal secret for client-secret.
	// Secret: never logged or returned in errors.
	ClientSecret string `yaml:"client_secret"`
	// TokenFile is the federated token file for workload-identity; empty
	// uses AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string `yaml:"token_file"`
	// AuthorityHost is the Entra ID authority as an https URL, for
	// sovereign or private clouds (e.g. "https://login.microsoftonline.us/").
	// Empty uses AZURE_AUTHORITY_HOST, else the public cloud. Only with
	// client-secret, workload-identity and managed-identity.
	AuthorityHost string `yaml:"authority_host"`
	// DisableInstanceDiscovery skips the authority validation request that
	// client-secret and workload-identity make to the public cloud; set it
	// for an authority unknown to the public cloud (Azure Stack, private).
	DisableInstanceDiscovery bool `yaml:"disable_instance_discovery"`
	// CustomEndpoint is a host:port to dial instead of the namespace (a TCP
	// proxy or an Application Gateway). TLS still verifies, and tokens are
	// still requested for, the namespace. Empty dials the namespace.
	CustomEndpoint string `yaml:"custom_endpoint"`
	// StartPosition is where a partition with no stored position starts:
	// "earliest", "latest" or an RFC 3339 time (events enqueued after it).
	// Default "earliest". Partitions with a stored position always resume
	// right after it.
	StartPosition string `yaml:"start_position"`
	// Prefetch is how many events the SDK buffers per partition ahead of
	// ReadBatch, 1..5000; memory is bounded by Prefetch × partitions ×
	// event size. Default 300.
	Prefetch int32 `yaml:"prefetch"`
	// MaxBatchSize is the most messages one ReadBatch returns. Default 200
	// (about 4,000 records of diagnostic-settings bodies): larger batches
	// buy no throughput and cost collector and engine memory.
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxWait is how long a partition waits to fill a batch before handing
	// over what it has. Default 1s.
	MaxWait time.Duration `yaml:"max_wait"`
	// Partitions lists the partition ids this collector reads (static
	// assignment between several collectors). Empty means all. Only with
	// balance static.
	Partitions []string `yaml:"partitions"`
	// Balance is how collectors sharing the consumer group split the
	// partitions: "static" (default) or "processor".
	Balance string `yaml:"balance"`
	// Checkpoints is the Blob container for balance processor.
	Checkpoints CheckpointConfig `yaml:"checkpoints"`
	// LoadBalancingInterval is how often the Processor renews and
	// rebalances ownership. Default 10s.
	LoadBalancingInterval time.Duration `yaml:"load_balancing_interval"`
	// OwnershipExpiration is how long a collector's ownership lasts without
	// renewal before others may claim its partitions. Default 60s.
	OwnershipExpiration time.Duration `yaml:"ownership_expiration"`
	// CheckpointInterval is the least time between two checkpoint writes
	// per partition (balance processor); 0 checkpoints every acknowledged
	// batch. A checkpoint only saves the next owner re-reading what the
	// store already holds. Default 5s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// RetryDelay is the first delay before reopening a failed partition or
	// connection; it doubles up to MaxRetryDelay. Default 1s.
	RetryDelay time.Duration `yaml:"retry_delay"`
	// MaxRetryDelay caps the reconnect backoff. Default 30s.
	MaxRetryDelay time.Duration `yaml:"max_retry_delay"`
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		ConsumerGroup: "$Default",
		Credential:    CredentialConnectionString,
		StartPosition: StartEarliest,
		Prefetch:      300,
		MaxBatchSize:  200,
		MaxWait:       time.Second,
		RetryDelay:    time.Second,
		MaxRetryDelay: 30 * time.Second,
		Balance:       BalanceStatic,

		LoadBalancingInterval: 10 * time.Second,
		OwnershipExpiration:   time.Minute,
		CheckpointInterval:    5 * time.Second,
	}
}

// Validate reports the first invalid field, by its YAML name.
func (c Config) Validate() error {
	switch c.Credential {
	case CredentialConnectionString:
		if c.ConnectionString == "" {
			return errors.New("connection_string: required with credential connection-string")
		}
		props, err := parseConnString(c.ConnectionString)
		if err != nil {
			return fmt.Errorf("connection_string: %w", err)
		}
		if c.EventHub == "" && props.entityPath == "" {
			return errors.New("event_hub: required (the connection string has no EntityPath)")
		}
		if c.EventHub != "" && props.entityPath != "" && c.EventHub != props.entityPath {
			return fmt.Errorf("event_hub: %q differs from the connection string's EntityPath %q", c.EventHub, props.entityPath)
		}
	case CredentialWorkloadIdentity, CredentialManagedIdentity, CredentialClientSecret, CredentialAzureCLI:
		if c.Namespace == "" {
			return fmt.Errorf("namespace: required with credential %s", c.Credential)
		}
		if strings.ContainsAny(c.Namespace, "/;= ") {
			// The value is not echoed: it may be a pasted connection string.
			return errors.New("namespace: not a host name (want <name>.servicebus.windows.net)")
		}
		if c.EventHub == "" {
			return errors.New("event_hub: required")
		}
		if c.ConnectionString != "" {
			return fmt.Errorf("connection_string: must be empty with credential %s", c.Credential)
		}
		if c.AuthorityHost != "" {
			if c.Credential == CredentialAzureCLI {
				return errors.New("authority_host: not used with credential azure-cli (the CLI's login decides)")
			}
			if u, err := url.Parse(c.AuthorityHost); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" {
				return errors.New("authority_host: not an https URL")
			}
		}
		if c.Credential == CredentialClientSecret {
			switch {
			case c.TenantID == "":
				return errors.New("tenant_id: required with credential client-secret")
			case c.ClientID == "":
				return errors.New("client_id: required with credential client-secret")
			case c.ClientSecret == "":
				return errors.New("client_secret: required with credential client-secret")
			}
		}
	default:
		return fmt.Errorf("credential: %q is not one of connection-string, workload-identity, managed-identity, client-secret, azure-cli", string(c.Credential))
	}
	if c.Credential == CredentialConnectionString && c.AuthorityHost != "" {
		return errors.New("authority_host: only used with an Entra ID credential")
	}
	if c.Credential == CredentialConnectionString && c.DisableInstanceDiscovery {
		return errors.New("disable_instance_discovery: only used with an Entra ID credential")
	}
	if c.CustomEndpoint != "" {
		if _, port, err := net.SplitHostPort(c.CustomEndpoint); err != nil || port == "" || strings.ContainsAny(c.CustomEndpoint, "/;= ") {
			return errors.New("custom_endpoint: not a host:port")
		}
	}
	if c.ClientSecret != "" && c.Credential != CredentialClientSecret {
		return fmt.Errorf("client_secret: only used with credential client-secret, not %s", c.Credential)
	}
	if c.ConsumerGroup == "" {
		return errors.New("consumer_group: must not be empty")
	}
	if _, err := parseStart(c.StartPosition); err != nil {
		return fmt.Errorf("start_position: %w", err)
	}
	switch {
	case c.Prefetch < 1 || c.Prefetch > 5000:
		return fmt.Errorf("prefetch: %d out of range [1, 5000]", c.Prefetch)
	case c.MaxBatchSize < 1 || c.MaxBatchSize > 5000:
		return fmt.Errorf("max_batch_size: %d out of range [1, 5000]", c.MaxBatchSize)
	case c.MaxWait <= 0:
		return fmt.Errorf("max_wait: %s must be positive", c.MaxWait)
	case c.RetryDelay <= 0:
		return fmt.Errorf("retry_delay: %s must be positive", c.RetryDelay)
	case c.MaxRetryDelay < c.RetryDelay:
		return fmt.Errorf("max_retry_delay: %s must be at least retry_delay %s", c.MaxRetryDelay, c.RetryDelay)
	}
	switch c.Balance {
	case BalanceStatic:
		if c.Checkpoints != (CheckpointConfig{}) {
			return errors.New("checkpoints: only used with balance processor")
		}
	case BalanceProcessor:
		if len(c.Partitions) > 0 {
			return errors.New("partitions: must be empty with balance processor (the processor assigns them)")
		}
		if err := c.Checkpoints.validate(c.Credential); err != nil {
			return err
		}
		if c.LoadBalancingInterval <= 0 {
			return fmt.Errorf("load_balancing_interval: %s must be positive", c.LoadBalancingInterval)
		}
		if c.OwnershipExpiration <= c.LoadBalancingInterval {
			return fmt.Errorf("ownership_expiration: %s must exceed load_balancing_interval %s", c.OwnershipExpiration, c.LoadBalancingInterval)
		}
		if c.CheckpointInterval < 0 {
			return fmt.Errorf("checkpoint_interval: %s must not be negative", c.CheckpointInterval)
		}
	default:
		return fmt.Errorf("balance: %q is not static or processor", c.Balance)
	}
	for i, p := range c.Partitions {
		if p == "" {
			return fmt.Errorf("partitions[%d]: must not be empty", i)
		}
		if slices.Contains(c.Partitions[:i], p) {
			return fmt.Errorf("partitions[%d]: %q listed twice", i, p)
		}
	}
	return nil
}

func (cc CheckpointConfig) validate(cred CredentialKind) error {
	switch {
	case cc.ConnectionString != "" && cc.ContainerURL != "":
		return errors.New("checkpoints: give connection_string or container_url, not both")
	case cc.ConnectionString != "":
		if cc.Container == "" {
			return errors.New("checkpoints.container: required with checkpoints.connection_string")
		}
	case cc.ContainerURL != "":
		if cc.Container != "" {
			return errors.New("checkpoints.container: not used with checkpoints.container_url (the URL names the container)")
		}
		u, err := url.Parse(cc.ContainerURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// The URL is not echoed: its query may be a SAS token.
			return errors.New("checkpoints.container_url: not an http(s) URL")
		}
		if u.RawQuery == "" && cred == CredentialConnectionString {
			return errors.New("checkpoints.container_url: needs a SAS query or an Entra ID credential")
		}
	default:
		return errors.New("checkpoints: connection_string or container_url required with balance processor")
	}
	return nil
}

// startSpec is a parsed StartPosition.
type startSpec struct {
	earliest, latest bool
	at               time.Time
}

func parseStart(s string) (startSpec, error) {
	switch strings.ToLower(s) {
	case StartEarliest:
		return startSpec{earliest: true}, nil
	case StartLatest:
		return startSpec{latest: true}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return startSpec{}, fmt.Errorf("%q is not earliest, latest or an RFC 3339 time", s)
	}
	return startSpec{at: t}, nil
}

// connStringProps is what the source needs from a connection string.
type connStringProps struct {
	endpointHost string
	entityPath   string
	secrets      []string // key and signature values
}

// parseConnString reads a connection string without echoing any of it in
// errors (it holds the key).
func parseConnString(cs string) (connStringProps, error) {
	var p connStringProps
	for part := range strings.SplitSeq(cs, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return connStringProps{}, errors.New("malformed connection string: a segment lacks '='")
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "endpoint":
			host := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(v), "sb://"), "amqps://")
			p.endpointHost = strings.TrimSuffix(host, "/")
		case "entitypath":
			p.entityPath = strings.TrimSpace(v)
		case "sharedaccesskey", "sharedaccesssignature":
			if v != "" {
				p.secrets = append(p.secrets, v)
			}
		}
	}
	if p.endpointHost == "" {
		return connStringProps{}, errors.New("malformed connection string: no Endpoint")
	}
	return p, nil
}

// secrets lists every secret value in the config, for redaction.
func (c Config) secrets() []string {
	var s []string
	if c.ConnectionString != "" {
		s = append(s, c.ConnectionString)
		if p, err := parseConnString(c.ConnectionString); err == nil {
			s = append(s, p.secrets...)
		}
	}
	if c.ClientSecret != "" {
		s = append(s, c.ClientSecret)
	}
	if cs := c.Checkpoints.ConnectionString; cs != "" {
		s = append(s, cs)
		for part := range strings.SplitSeq(cs, ";") {
			if k, v, ok := strings.Cut(part, "="); ok && v != "" &&
				(strings.EqualFold(k, "AccountKey") || strings.EqualFold(k, "SharedAccessSignature")) {
				s = append(s, v)
			}
		}
	}
	if _, q, ok := strings.Cut(c.Checkpoints.ContainerURL, "?"); ok && q != "" {
		s = append(s, q)
		if v, err := url.ParseQuery(q); err == nil && v.Get("sig") != "" {
			s = append(s, v.Get("sig"), url.QueryEscape(v.Get("sig")))
		}
	}
	return s
}

// redactedCopy returns c with its secrets replaced.
func (c Config) redactedCopy() Config {
	if c.ConnectionString != "" {
		c.ConnectionString = redacted
	}
	if c.ClientSecret != "" {
		c.ClientSecret = redacted
	}
	if c.Checkpoints.ConnectionString != "" {
		c.Checkpoints.ConnectionString = redacted
	}
	if base, q, ok := strings.Cut(c.Checkpoints.ContainerURL, "?"); ok && q != "" {
		c.Checkpoints.ContainerURL = base + "?" + redacted
	}
	c.Partitions = slices.Clone(c.Partitions)
	return c
}

// configView has Config's fields without its methods, so printing it does
// not recurse into String.
type configView Config

// String prints the config with secrets redacted.
func (c Config) String() string {
	return fmt.Sprintf("%+v", configView(c.redactedCopy()))
}

// GoString prints the config with secrets redacted.
func (c Config) GoString() string {
	return fmt.Sprintf("eventhubs.Config%+v", configView(c.redactedCopy()))
}

// LogValue logs the config with secrets redacted.
func (c Config) LogValue() slog.Value {
	r := c.redactedCopy()
	return slog.GroupValue(
		slog.String("namespace", r.Namespace),
		slog.String("connection_string", r.ConnectionString),
		slog.String("event_hub", r.EventHub),
		slog.String("consumer_group", r.ConsumerGroup),
		slog.String("credential", string(r.Credential)),
		slog.String("tenant_id", r.TenantID),
		slog.String("client_id", r.ClientID),
		slog.String("client_secret", r.ClientSecret),
		slog.String("authority_host", r.AuthorityHost),
		slog.String("custom_endpoint", r.CustomEndpoint),
		slog.String("start_position", r.StartPosition),
		slog.Int("prefetch", int(r.Prefetch)),
		slog.Int("max_batch_size", r.MaxBatchSize),
		slog.Duration("max_wait", r.MaxWait),
		slog.Any("partitions", r.Partitions),
		slog.String("balance", r.Balance),
		slog.String("checkpoints_connection_string", r.Checkpoints.ConnectionString),
		slog.String("checkpoints_container", r.Checkpoints.Container),
		slog.String("checkpoints_container_url", r.Checkpoints.ContainerURL),
	)
}

// redactor scrubs secrets out of error text.
type redactor []string

// redactedError carries an error's text with secrets removed; it does not
// unwrap, so the original text cannot leak through errors.Unwrap, but it
// still matches ErrAuthentication when the original did.
type redactedError struct {
	msg  string
	auth bool
}

func (e *redactedError) Error() string { return e.msg }

// Is reports whether target is ErrAuthentication and the original error
// was an authentication failure.
func (e *redactedError) Is(target error) bool { return e.auth && target == ErrAuthentication }

// err returns err unchanged when it holds no secret, else a scrubbed copy.
func (r redactor) err(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := r.text(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, auth: errors.Is(err, ErrAuthentication)}
}

func (r redactor) text(s string) string {
	for _, secret := range r {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, redacted)
		}
	}
	return s
}
