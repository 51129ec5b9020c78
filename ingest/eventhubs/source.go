// Package eventhubs is the Event Hubs source: it reads the diagnostic
// records Azure streams to an event hub (AKS, ACR, ACI resource logs and
// the Activity Log) with the azeventhubs SDK and hands them to the pipeline
// as ingest.Messages, one stream per partition.
//
// Positions live in the store, not in a checkpoint store: New takes, per
// stream, the last sequence number stored and every partition resumes right
// after it, so one collector reads each event exactly once. Several
// collectors share a hub by static partition assignment (Config.Partitions)
// or through the SDK's Processor with a Blob checkpoint store (balance
// processor, see processor.go). Within a process the source never skips or repeats an event: it tracks
// the last sequence number handed out per partition, reopens partitions
// from there after connection failures, drops anything the SDK redelivers
// below it, and rewinds to the last acknowledged one when a batch is
// nacked.
//
// Authentication is a connection string (SAS) or a Microsoft Entra ID
// credential from azidentity, whose access token the SDK puts to the
// service's $cbs node over AMQPS; a refused credential or token surfaces
// as ErrAuthentication. The tests run every credential kind for real
// against internal/entrafake (the token authority) and the TLS listener of
// internal/ehbroker, which verifies the tokens.
//
// See https://learn.microsoft.com/azure/event-hubs/event-hubs-features and
// the SDK, https://pkg.go.dev/github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2.
package eventhubs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"

	"github.com/custody-audit/custody/ingest"
)

// Format is the ingest.Message format hint for Event Hubs bodies.
const Format = "eventhubs"

// ErrAuthentication marks a Connect error caused by authentication: the
// credential could not get a token (wrong secret, unknown federated token,
// no managed identity, no CLI login), or Event Hubs refused the token or
// the SAS (401, amqp:unauthorized-access). Retrying will not help until
// the configuration or the role assignment changes.
var ErrAuthentication = errors.New("authentication failed")

// authError wraps err with ErrAuthentication when it is an authentication
// failure.
func authError(err error) error {
	var (
		ehErr   *azeventhubs.Error
		amqpErr *amqp.Error
		credErr *azidentity.AuthenticationFailedError
		rpcErr  interface{ RPCCode() int }
	)
	switch {
	case errors.Is(err, ErrAuthentication):
		return err
	case errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeUnauthorizedAccess,
		errors.As(err, &amqpErr) && amqpErr.Condition == amqp.ErrCondUnauthorizedAccess,
		errors.As(err, &credErr),
		errors.As(err, &rpcErr) && rpcErr.RPCCode() == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return err
}

// Source reads one event hub. It implements ingest.Source and is safe for
// concurrent use, though the pipeline calls ReadBatch from one goroutine.
type Source struct {
	cfg    Config
	log    *slog.Logger
	redact redactor
	fqdn   string
	hub    string
	start  startSpec
	stored map[string]int64 // stream -> last stored sequence number
	roots  *x509.CertPool   // nil: the system roots
	now    func() time.Time // stamps Received and paces checkpoints

	stats stats

	mu        sync.Mutex
	connected bool
	client    *azeventhubs.ConsumerClient
	parts     map[string]*partitionState
	out       chan *delivery
	stopped   chan struct{} // closed by Close: wakes ReadBatch
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Stats are the source's counters since New, for metrics.
type Stats struct {
	// Reopens counts partition clients reopened after an error.
	Reopens int64
	// Redeliveries counts batches nacked and read again.
	Redeliveries int64
	// DuplicatesDropped counts events the SDK delivered again (after it
	// recovered a link) that the source dropped.
	DuplicatesDropped int64
	// Expired counts events that left the hub's retention before they were
	// read (sequence gaps).
	Expired int64
	// CheckpointErrors counts failed checkpoint writes (balance processor).
	CheckpointErrors int64
}

type stats struct {
	reopens, redeliveries, duplicates, expired, checkpointErrors atomic.Int64
}

// Stats returns the counters.
func (s *Source) Stats() Stats {
	return Stats{
		Reopens:           s.stats.reopens.Load(),
		Redeliveries:      s.stats.redeliveries.Load(),
		DuplicatesDropped: s.stats.duplicates.Load(),
		Expired:           s.stats.expired.Load(),
		CheckpointErrors:  s.stats.checkpointErrors.Load(),
	}
}

// partitionState is the source's bookkeeping for one partition. Fields
// below mu are guarded by Source.mu.
type partitionState struct {
	id      string
	stream  string
	restart chan struct{} // poked when a nack rewinds the partition

	gen     uint64 // bumped by every rewind; older batches are void
	reading bool   // a reader runs (with balance processor: owned)
	// With balance processor: the current claim's client, the newest
	// acknowledged batch not yet checkpointed, and the last checkpoint time.
	owner       *azeventhubs.ProcessorPartitionClient
	pendingCP   *delivery
	lastCP      time.Time
	acked       position // everything up to here is durable
	delivered   position // everything up to here was handed out
	outstanding []*delivery
}

// position is "after sequence number after"; !valid means the configured
// first-run start position.
type position struct {
	after int64
	valid bool
}

// delivery is one batch from one partition.
type delivery struct {
	part *partitionState
	gen  uint64
	last int64
	msgs []ingest.Message
	done bool
	// With balance processor: where to checkpoint once acknowledged.
	owner     *azeventhubs.ProcessorPartitionClient
	lastEvent *azeventhubs.ReceivedEventData
}

// eventReceiver is what the receive loop needs of a partition client: the
// plain PartitionClient (static balance) and the Processor's partition
// client both have it.
type eventReceiver interface {
	ReceiveEvents(ctx context.Context, count int, options *azeventhubs.ReceiveEventsOptions) ([]*azeventhubs.ReceivedEventData, error)
}

// Option adjusts a Source.
type Option func(*Source)

// WithTLSRootCAs makes the source trust the certificate authorities in
// roots, instead of the system's, for the AMQP connection and for the
// Entra ID token requests: for a private CA, and for tests against local
// peers. Nil keeps the system roots.
func WithTLSRootCAs(roots *x509.CertPool) Option {
	return func(s *Source) { s.roots = roots }
}

// WithClock makes the source read the time from now (received times,
// checkpoint pacing) instead of time.Now. Nil keeps time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Source) {
		if now != nil {
			s.now = now
		}
	}
}

// New validates cfg and prepares a source. stored maps a stream name
// ("eventhubs/<namespace>/<hub>/<consumer group>/<partition>", see
// Source.Stream) to the last sequence number the store holds for it;
// partitions without an entry start at cfg.StartPosition.
func New(cfg Config, stored map[string]int64, logger *slog.Logger, opts ...Option) (*Source, error) {
	red := redactor(cfg.secrets())
	if err := cfg.Validate(); err != nil {
		return nil, red.err(fmt.Errorf("eventhubs config: %w", err))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	start, _ := parseStart(cfg.StartPosition)
	s := &Source{
		cfg:    cfg,
		redact: red,
		fqdn:   cfg.Namespace,
		hub:    cfg.EventHub,
		start:  start,
		stored: make(map[string]int64, len(stored)),
		now:    time.Now,
	}
	if cfg.Credential == CredentialConnectionString {
		p, _ := parseConnString(cfg.ConnectionString)
		s.fqdn = p.endpointHost
		if s.hub == "" {
			s.hub = p.entityPath
		}
	}
	for k, v := range stored {
		s.stored[k] = v
	}
	for _, o := range opts {
		o(s)
	}
	s.log = logger.With("source", "eventhubs", "namespace", s.fqdn, "event_hub", s.hub, "consumer_group", cfg.ConsumerGroup)
	return s, nil
}

// Stream is the ingest stream name of a partition.
func (s *Source) Stream(partitionID string) string {
	return "eventhubs/" + s.fqdn + "/" + s.hub + "/" + s.cfg.ConsumerGroup + "/" + partitionID
}

// newClient builds the consumer client for the configured credential.
func (s *Source) newClient() (*azeventhubs.ConsumerClient, error) {
	// No retries inside the SDK: a ReceiveEvents call is bounded by
	// MaxWait, so SDK retries would be cut short and restarted on every
	// call, hammering a failing service without backoff and hiding the
	// failure. The source retries instead, with its own backoff.
	opts := &azeventhubs.ConsumerClientOptions{
		RetryOptions: azeventhubs.RetryOptions{
			MaxRetries:    -1,
			RetryDelay:    s.cfg.RetryDelay,
			MaxRetryDelay: s.cfg.MaxRetryDelay,
		},
		CustomEndpoint: s.cfg.CustomEndpoint,
	}
	if s.roots != nil {
		opts.TLSConfig = &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
	}
	if s.cfg.Credential == CredentialConnectionString {
		hub := s.cfg.EventHub
		if p, _ := parseConnString(s.cfg.ConnectionString); p.entityPath != "" {
			hub = "" // the SDK refuses both
		}
		return azeventhubs.NewConsumerClientFromConnectionString(s.cfg.ConnectionString, hub, s.cfg.ConsumerGroup, opts)
	}
	cred, err := s.credential()
	if err != nil {
		return nil, err
	}
	return azeventhubs.NewConsumerClient(s.cfg.Namespace, s.cfg.EventHub, s.cfg.ConsumerGroup, cred, opts)
}

// credential builds the source's Entra ID credential, trusting the
// source's TLS roots for the token requests.
func (s *Source) credential() (azcore.TokenCredential, error) {
	var opts azcore.ClientOptions
	if s.roots != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
		opts.Transport = &http.Client{Transport: t}
	}
	cred, err := newCredential(s.cfg, opts)
	if err != nil {
		return nil, err
	}
	return authCredential{cred}, nil
}

// authCredential marks every failure to get a token (other than the
// caller giving up) as ErrAuthentication, whichever credential kind failed
// and however the SDK passes the error on.
type authCredential struct{ azcore.TokenCredential }

func (c authCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.TokenCredential.GetToken(ctx, opts)
	if err != nil && ctx.Err() == nil {
		return tok, fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return tok, err
}

// NewCredential builds the Entra ID credential cfg.Credential names, with
// cfg.AuthorityHost and cfg.DisableInstanceDiscovery applied.
func NewCredential(cfg Config) (azcore.TokenCredential, error) {
	return newCredential(cfg, azcore.ClientOptions{})
}

// newCredential is NewCredential with base client options (the HTTP
// transport) for the token requests.
func newCredential(cfg Config, opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	if cfg.AuthorityHost != "" {
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost}
	}
	switch cfg.Credential {
	case CredentialWorkloadIdentity:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, ClientID: cfg.ClientID, TenantID: cfg.TenantID, TokenFilePath: cfg.TokenFile,
			DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		})
	case CredentialManagedIdentity:
		o := azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			o.ID = azidentity.ClientID(cfg.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(&o)
	case CredentialClientSecret:
		return azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cfg.DisableInstanceDiscovery})
	case CredentialAzureCLI:
		return azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: cfg.TenantID})
	default:
		return nil, fmt.Errorf("credential: %q is not an Entra ID credential kind", string(cfg.Credential))
	}
}

// Connect opens the client, reads the hub's partitions and starts one
// reader per assigned partition. Idempotent.
func (s *Source) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected {
		return nil
	}
	client, err := s.newClient()
	if err != nil {
		return s.redact.err(fmt.Errorf("eventhubs client: %w", err))
	}
	props, err := client.GetEventHubProperties(ctx, nil)
	if err != nil {
		_ = client.Close(ctx)
		return s.redact.err(fmt.Errorf("read event hub properties: %w", authError(err)))
	}
	ids := props.PartitionIDs
	if len(s.cfg.Partitions) > 0 {
		for _, p := range s.cfg.Partitions {
			if !slices.Contains(props.PartitionIDs, p) {
				_ = client.Close(ctx)
				return fmt.Errorf("partitions: %q is not a partition of %s (it has %v)", p, s.hub, props.PartitionIDs)
			}
		}
		ids = s.cfg.Partitions
	}
	if s.parts == nil {
		s.parts = make(map[string]*partitionState, len(ids))
	}
	for _, p := range s.parts {
		// Reconnecting after Close: resume from what was acknowledged.
		p.gen++
		p.delivered = p.acked
		p.outstanding = nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	out := make(chan *delivery, len(props.PartitionIDs))
	if s.cfg.Balance == BalanceProcessor {
		store, err := s.newCheckpointStore()
		if err != nil {
			cancel()
			_ = client.Close(ctx)
			return s.redact.err(fmt.Errorf("checkpoint store: %w", err))
		}
		s.wg.Add(1)
		go s.runProcessor(runCtx, client, store, props.PartitionIDs, out)
	} else {
		for _, id := range ids {
			p := s.partitionLocked(id)
			if !p.acked.valid && s.start.latest {
				// Pin "latest" to a sequence number now, so a reconnect
				// before the first event cannot skip what arrived meanwhile.
				pp, err := client.GetPartitionProperties(ctx, id, nil)
				if err != nil {
					cancel()
					_ = client.Close(ctx)
					return s.redact.err(fmt.Errorf("read partition %s properties: %w", id, authError(err)))
				}
				p.acked = position{after: pp.LastEnqueuedSequenceNumber, valid: true}
				p.delivered = p.acked
			}
		}
		for _, id := range ids {
			s.wg.Add(1)
			s.parts[id].reading = true
			go s.readPartition(runCtx, client, s.parts[id], out)
		}
	}
	s.client = client
	s.cancel = cancel
	s.out = out
	s.stopped = make(chan struct{})
	s.connected = true
	s.log.Info("event hubs source connected", "partitions", ids)
	return nil
}

// partitionLocked returns the state of a partition, creating it from the
// stored position on first use. Callers hold mu.
func (s *Source) partitionLocked(id string) *partitionState {
	if p, ok := s.parts[id]; ok {
		return p
	}
	p := &partitionState{id: id, stream: s.Stream(id), restart: make(chan struct{}, 1)}
	if seq, ok := s.stored[p.stream]; ok {
		p.acked = position{after: seq, valid: true}
	}
	p.delivered = p.acked
	s.parts[id] = p
	return p
}

// startPosition is where to (re)open a partition.
func (s *Source) startPosition(pos position) azeventhubs.StartPosition {
	switch {
	case pos.valid:
		after := pos.after
		return azeventhubs.StartPosition{SequenceNumber: &after}
	case s.start.latest:
		latest := true
		return azeventhubs.StartPosition{Latest: &latest}
	case !s.start.at.IsZero():
		at := s.start.at
		return azeventhubs.StartPosition{EnqueuedTime: &at}
	default:
		earliest := true
		return azeventhubs.StartPosition{Earliest: &earliest}
	}
}

// readPartition runs one partition until ctx ends: open a partition client
// at the last handed-out position, receive, hand over, and reopen with
// backoff on failure or rewind.
func (s *Source) readPartition(ctx context.Context, client *azeventhubs.ConsumerClient, p *partitionState, out chan<- *delivery) {
	defer s.wg.Done()
	defer s.setReading(p, false)
	log := s.log.With("partition", p.id)
	backoff := s.cfg.RetryDelay
	for ctx.Err() == nil {
		s.mu.Lock()
		gen, from := p.gen, p.delivered
		s.mu.Unlock()
		select { // a rewind requested before this open is already applied
		case <-p.restart:
		default:
		}
		pc, err := client.NewPartitionClient(p.id, &azeventhubs.PartitionClientOptions{
			StartPosition: s.startPosition(from),
			Prefetch:      s.cfg.Prefetch,
		})
		progressed := false
		if err == nil {
			progressed, err = s.receive(ctx, pc, nil, p, gen, out)
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_ = pc.Close(closeCtx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = s.cfg.RetryDelay
		}
		if err == nil { // rewound: reopen at once
			continue
		}
		s.stats.reopens.Add(1)
		log.Warn("event hubs partition failed, reopening", "err", s.redact.text(err.Error()), "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxRetryDelay)
	}
}

func (s *Source) setReading(p *partitionState, on bool) {
	s.mu.Lock()
	p.reading = on
	s.mu.Unlock()
}

// errRewound ends a receive loop because a nack moved the partition back.
var errRewound = errors.New("partition rewound")

// receive pulls batches from one partition client until an error (returned)
// or a rewind (nil). owner is the Processor's partition client to
// checkpoint through, or nil. progressed reports that the client worked at
// least once (events, or a wait that ended without an error).
func (s *Source) receive(ctx context.Context, pc eventReceiver, owner *azeventhubs.ProcessorPartitionClient, p *partitionState, gen uint64, out chan<- *delivery) (progressed bool, err error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
		evs, err := pc.ReceiveEvents(rctx, s.cfg.MaxBatchSize, nil)
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return progressed, ctx.Err()
		}
		if len(evs) > 0 || (err != nil && timedOut) {
			progressed = true
		}
		if len(evs) > 0 {
			d, err := s.batch(p, gen, evs)
			if errors.Is(err, errRewound) {
				return progressed, nil
			}
			if d != nil {
				d.owner = owner
				select {
				case out <- d:
				case <-p.restart:
					return progressed, nil
				case <-ctx.Done():
					return progressed, ctx.Err()
				}
				s.mu.Lock()
				if p.gen == gen {
					p.delivered = position{after: d.last, valid: true}
				}
				s.mu.Unlock()
			}
		}
		select {
		case <-p.restart:
			return progressed, nil
		default:
		}
		if err != nil && !timedOut {
			return progressed, err
		}
	}
}

// batch turns received events into a delivery, dropping any at or below
// the last handed-out sequence number (the SDK redelivers after it
// recovers a link). It returns a nil delivery when nothing is new.
func (s *Source) batch(p *partitionState, gen uint64, evs []*azeventhubs.ReceivedEventData) (*delivery, error) {
	s.mu.Lock()
	if p.gen != gen {
		s.mu.Unlock()
		return nil, errRewound
	}
	from := p.delivered
	s.mu.Unlock()
	now := s.now().UTC()
	d := &delivery{part: p, gen: gen, msgs: make([]ingest.Message, 0, len(evs))}
	prev := from
	for _, ev := range evs {
		if prev.valid && ev.SequenceNumber <= prev.after {
			s.stats.duplicates.Add(1)
			continue
		}
		if prev.valid && ev.SequenceNumber != prev.after+1 && s.cfg.Balance == BalanceStatic {
			s.stats.expired.Add(ev.SequenceNumber - prev.after - 1)
			s.log.Warn("event hubs sequence gap: events expired from the hub before they were read",
				"partition", p.id, "after", prev.after, "next", ev.SequenceNumber, "missing", ev.SequenceNumber-prev.after-1)
		}
		prev = position{after: ev.SequenceNumber, valid: true}
		d.msgs = append(d.msgs, s.message(p, ev, now))
		d.lastEvent = ev
	}
	if len(d.msgs) == 0 {
		return nil, nil
	}
	d.last = prev.after
	return d, nil
}

// message converts one event.
func (s *Source) message(p *partitionState, ev *azeventhubs.ReceivedEventData, now time.Time) ingest.Message {
	m := ingest.Message{
		Stream:   p.stream,
		Offset:   ev.SequenceNumber,
		Position: "partition " + p.id + " sequence " + strconv.FormatInt(ev.SequenceNumber, 10) + " offset " + ev.Offset,
		Format:   Format,
		Body:     ev.Body,
		Received: now,
	}
	if m.Body == nil && ev.RawAMQPMessage != nil {
		m.Body = bodyOf(ev.RawAMQPMessage.Body)
	}
	if ev.EnqueuedTime != nil {
		m.Enqueued = ev.EnqueuedTime.UTC()
	}
	if ev.PartitionKey != nil || ev.ContentType != nil {
		m.Attributes = map[string]string{}
		if ev.PartitionKey != nil {
			m.Attributes["partition_key"] = *ev.PartitionKey
		}
		if ev.ContentType != nil {
			m.Attributes["content_type"] = *ev.ContentType
		}
	}
	return m
}

// bodyOf recovers the bytes of a body that is not a single data section.
func bodyOf(b azeventhubs.AMQPAnnotatedMessageBody) []byte {
	if len(b.Data) > 0 {
		var out []byte
		for _, d := range b.Data {
			out = append(out, d...)
		}
		return out
	}
	switch v := b.Value.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// ReadBatch returns the next batch of one partition, blocking until one is
// ready or ctx ends. The batch's AckFunc must be called: nil once the
// batch is durable, an error to have the partition redelivered from the
// last acknowledged event.
func (s *Source) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	s.mu.Lock()
	out, stopped, connected := s.out, s.stopped, s.connected
	s.mu.Unlock()
	if !connected {
		return nil, nil, ingest.ErrNotConnected
	}
	for {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-stopped:
			return nil, nil, ingest.ErrNotConnected
		case d := <-out:
			s.mu.Lock()
			if d.gen != d.part.gen {
				s.mu.Unlock()
				continue // handed out before a rewind: void
			}
			d.part.outstanding = append(d.part.outstanding, d)
			s.mu.Unlock()
			return d.msgs, func(ctx context.Context, err error) error { return s.ack(ctx, d, err) }, nil
		}
	}
}

// ack records a batch's fate. Acknowledgements may arrive out of order;
// the acknowledged position only moves over a contiguous prefix.
func (s *Source) ack(ctx context.Context, d *delivery, err error) error {
	s.checkpoint(ctx, s.ackLocked(d, err))
	return nil
}

// checkpoint writes cp's position to the checkpoint store, if cp is set.
// Positions live in the store; the checkpoint only tells the next owner of
// the partition where to start, so a failure is logged and counted, and
// the store's positions still prevent duplicates.
func (s *Source) checkpoint(ctx context.Context, cp *delivery) {
	if cp == nil {
		return
	}
	if err := cp.owner.UpdateCheckpoint(ctx, cp.lastEvent, nil); err != nil {
		s.stats.checkpointErrors.Add(1)
		s.log.Warn("event hubs checkpoint failed", "partition", cp.part.id, "sequence", cp.last,
			"err", s.redact.text(err.Error()))
	}
}

// ackLocked records the fate of d and returns the delivery to checkpoint
// at now: with balance processor, when the acknowledged position moved,
// the claim that read it still holds the partition, and CheckpointInterval
// has passed since the last checkpoint (else it is kept as pending).
func (s *Source) ackLocked(d *delivery, err error) *delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := d.part
	if d.gen != p.gen || d.done {
		return nil // already rewound past it
	}
	d.done = true
	if err != nil {
		p.gen++
		p.delivered = p.acked
		p.outstanding = nil
		select {
		case p.restart <- struct{}{}:
		default:
		}
		s.stats.redeliveries.Add(1)
		s.log.Warn("event hubs batch not stored, redelivering", "partition", p.id,
			"from_after", p.acked.after, "err", s.redact.text(err.Error()))
		return nil
	}
	var cp *delivery
	n := 0
	for n < len(p.outstanding) && p.outstanding[n].done {
		p.acked = position{after: p.outstanding[n].last, valid: true}
		if o := p.outstanding[n].owner; o != nil && o == p.owner {
			cp = p.outstanding[n]
		}
		n++
	}
	p.outstanding = p.outstanding[n:]
	if cp == nil {
		return nil
	}
	if now := s.now(); now.Sub(p.lastCP) >= s.cfg.CheckpointInterval {
		p.lastCP, p.pendingCP = now, nil
		return cp
	}
	p.pendingCP = cp
	return nil
}

// Positions reports, per stream, the last acknowledged sequence number of
// the partitions that have one.
func (s *Source) Positions() []ingest.StreamPosition {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ingest.StreamPosition
	for _, p := range s.parts {
		if p.acked.valid {
			out = append(out, ingest.StreamPosition{Stream: p.stream, Offset: p.acked.after})
		}
	}
	slices.SortFunc(out, func(a, b ingest.StreamPosition) int {
		if a.Stream < b.Stream {
			return -1
		}
		if a.Stream > b.Stream {
			return 1
		}
		return 0
	})
	return out
}

// Lag reports, per stream of the partitions being read, how many events the hub
// holds beyond the last acknowledged one. It asks the hub, so it costs one
// management request per partition.
func (s *Source) Lag(ctx context.Context) (map[string]int64, error) {
	s.mu.Lock()
	client, connected := s.client, s.connected
	type part struct {
		id, stream string
		acked      position
	}
	var parts []part
	for _, p := range s.parts {
		if p.reading {
			parts = append(parts, part{p.id, p.stream, p.acked})
		}
	}
	s.mu.Unlock()
	if !connected {
		return nil, ingest.ErrNotConnected
	}
	lag := make(map[string]int64, len(parts))
	for _, p := range parts {
		props, err := client.GetPartitionProperties(ctx, p.id, nil)
		if err != nil {
			return nil, s.redact.err(fmt.Errorf("read partition %s properties: %w", p.id, err))
		}
		switch {
		case props.IsEmpty:
			lag[p.stream] = 0
		case p.acked.valid:
			lag[p.stream] = max(0, props.LastEnqueuedSequenceNumber-max(p.acked.after, props.BeginningSequenceNumber-1))
		default:
			lag[p.stream] = props.LastEnqueuedSequenceNumber - props.BeginningSequenceNumber + 1
		}
	}
	return lag, nil
}

// Close stops the partition readers and closes the client. Batches not yet
// acknowledged are read again after a later Connect.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.connected {
		s.mu.Unlock()
		return nil
	}
	s.connected = false
	s.cancel()
	close(s.stopped)
	client := s.client
	s.mu.Unlock()
	s.wg.Wait()
	err := client.Close(ctx)
	s.log.Info("event hubs source closed")
	if err != nil {
		return s.redact.err(fmt.Errorf("close event hubs client: %w", err))
	}
	return nil
}

var _ ingest.Source = (*Source)(nil)
