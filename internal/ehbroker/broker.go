// Package ehbroker is an Azure Event Hubs test broker: an AMQP 1.0 server on
// loopback that the real azeventhubs SDK (ConsumerClient, ProducerClient,
// PartitionClient) talks to through the emulator connection string
// (plain AMQP, SASL ANONYMOUS). Custody's tests and its end-to-end benchmark
// use it so the Event Hubs source is exercised over the real wire protocol,
// with connection drops on demand, rather than against a mock.
//
// It implements what the SDK needs of the service:
//
//   - SASL ANONYMOUS and the AMQP 1.0 connection, session and link state
//     machines (OASIS AMQP 1.0, parts 2 and 5), with session windows and
//     link credit honoured in both directions;
//   - $cbs put-token (claims-based security): SAS tokens are accepted as
//     the emulator does; Entra ID tokens (type jwt) are checked by
//     Config.Tokens (issuer, audience https://eventhubs.azure.net, expiry)
//     and answered 401 when they fail;
//   - with Config.TLS, a second listener speaking AMQPS (TLS, as Azure
//     does) with a certificate from a test CA generated at Start; there a
//     link to the hub is refused (amqp:unauthorized-access) unless the
//     connection put a valid token whose audience covers it;
//   - $management READ of com.microsoft:eventhub and com.microsoft:partition;
//   - receiver links on <hub>/ConsumerGroups/<cg>/Partitions/<id> honouring
//     the apache.org:selector-filter:string filter on x-opt-offset,
//     x-opt-sequence-number and x-opt-enqueued-time;
//   - sender links on <hub> and <hub>/Partitions/<id> accepting single
//     messages and batch messages (message format 0x80013700);
//   - receiver epochs (com.microsoft:epoch, the SDK's OwnerLevel): a
//     receiver with an equal or higher epoch takes the partition over and
//     the old link is detached with amqp:link:stolen, as the Processor's
//     load balancing expects.
//
// Tests publish with Publish, break the network with DropConnections and
// Refuse, and watch the consumer with Delivered and Stats. Events are kept
// in memory per partition; Config.Retention bounds them.
// See https://learn.microsoft.com/azure/event-hubs/event-hubs-amqp-troubleshoot
// and the AMQP 1.0 specification (https://docs.oasis-open.org/amqp/core/v1.0/).
package ehbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Broker.
type Config struct {
	// EventHub is the one event hub the broker serves. Required.
	EventHub string
	// Partitions is the number of partitions, with ids "0".."n-1".
	// Zero means 4.
	Partitions int
	// MaxMessageSize is advertised on every attach, in bytes; the SDK sizes
	// producer batches by it. Zero means 1 MiB.
	MaxMessageSize uint64
	// Retention is how many events each partition keeps; older events are
	// dropped and begin_sequence_number moves on. Zero means no limit.
	Retention int
	// Clock returns the enqueued time of new events. Nil means time.Now.
	Clock func() time.Time
	// Logger receives connection-level diagnostics. Nil discards them.
	Logger *slog.Logger
	// TLS makes the broker also serve AMQPS on a second loopback port
	// (TLSAddr) with a server certificate signed by a test CA generated at
	// Start (RootCAs). Connections there must put a valid token to $cbs
	// before they attach to the hub, as on Azure.
	TLS bool
	// TLSHosts are host names or IPs the TLS certificate is valid for
	// besides localhost, 127.0.0.1 and ::1, such as the namespace name a
	// client verifies when it dials the broker through a custom endpoint.
	TLSHosts []string
	// Tokens verifies the Entra ID access tokens (type "jwt") put to $cbs.
	// Nil refuses every jwt token. SAS tokens are accepted unchecked.
	Tokens TokenVerifier
}

// EventHubsResource is the Entra ID resource (token audience) of Event
// Hubs; the SDK asks for the scope EventHubsResource + "//.default".
const EventHubsResource = "https://eventhubs.azure.net"

// TokenVerifier checks an Entra ID access token presented for resource and
// returns when it expires. Errors must not contain the token.
type TokenVerifier interface {
	VerifyToken(token, resource string) (time.Time, error)
}

// TokenStats counts $cbs put-token requests since Start.
type TokenStats struct {
	// JWTAccepted and JWTRefused count Entra ID tokens by outcome.
	JWTAccepted, JWTRefused int
	// SASAccepted counts shared access signature tokens.
	SASAccepted int
	// Unauthorized counts link attaches refused on the TLS listener for
	// want of a token covering the link.
	Unauthorized int
}

// DefaultConfig returns a Config for hub with four partitions.
func DefaultConfig(hub string) Config {
	return Config{EventHub: hub, Partitions: 4, MaxMessageSize: 1 << 20}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.EventHub == "":
		return errors.New("EventHub: must not be empty")
	case c.Partitions < 0 || c.Partitions > 1024:
		return fmt.Errorf("Partitions: %d out of range [0, 1024]", c.Partitions)
	case c.Retention < 0:
		return fmt.Errorf("Retention: %d must not be negative", c.Retention)
	}
	return nil
}

// Sentinel errors.
var (
	// ErrUnknownPartition is returned for a partition id the hub lacks.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrClosed is returned once the broker is closed.
	ErrClosed = errors.New("broker closed")
)

// Event is one stored event, as the broker assigned it.
type Event struct {
	Partition      string
	SequenceNumber int64
	Offset         int64
	EnqueuedTime   time.Time
	PartitionKey   string
	// Body is the first data section of the event (what the SDK exposes
	// as ReceivedEventData.Body).
	Body []byte
}

// storedEvent is an event plus its encoded delivery form, in two parts
// sent back to back: head is the message-annotations section carrying the
// system properties followed by the publisher's other sections (or, for
// Publish, the header of one data section), and tail is Publish's body,
// referenced rather than copied.
type storedEvent struct {
	Event
	head, tail []byte
}

// partition is one ordered, append-only event log.
type partition struct {
	id string

	mu         sync.Mutex
	events     []*storedEvent // events[0] has sequence number first
	first      int64          // sequence number of events[0]
	next       int64          // sequence number the next event gets
	nextOffset int64          // offset the next event gets
	notify     chan struct{}  // closed and replaced when events arrive
}

// Broker is a running Event Hubs test broker. It is safe for concurrent use.
type Broker struct {
	cfg     Config
	ln      net.Listener
	tlsLn   net.Listener // nil without Config.TLS
	pki     *testPKI
	log     *slog.Logger
	created time.Time
	parts   []*partition
	rr      uint64 // round-robin cursor for events without a partition key

	delivered atomic.Int64 // events sent to consumers

	mu       sync.Mutex
	accepted int
	refused  int
	tokens   TokenStats
	conns    map[*conn]struct{}
	// consumers maps "<consumer group>/<partition>" to its receiver links,
	// for epoch (owner level) exclusivity.
	consumers map[string]map[*link]*conn
	refusing  bool
	closed    bool
	wg        sync.WaitGroup
}

// Start listens on 127.0.0.1 on a random port and serves until Close.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ehbroker config: %w", err)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 4
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ehbroker listen: %w", err)
	}
	b := &Broker{
		cfg:       cfg,
		ln:        ln,
		log:       logger,
		created:   cfg.Clock().UTC().Truncate(time.Millisecond),
		conns:     map[*conn]struct{}{},
		consumers: map[string]map[*link]*conn{},
	}
	if cfg.TLS {
		pki, err := newTestPKI(cfg.TLSHosts, time.Now())
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("ehbroker tls: %w", err)
		}
		tln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("ehbroker listen tls: %w", err)
		}
		b.pki, b.tlsLn = pki, tln
	}
	for i := range cfg.Partitions {
		b.parts = append(b.parts, &partition{id: strconv.Itoa(i), notify: make(chan struct{})})
	}
	b.wg.Add(1)
	go b.accept(b.ln, false)
	if b.tlsLn != nil {
		b.wg.Add(1)
		go b.accept(b.tlsLn, true)
	}
	return b, nil
}

// Addr is the listening address (127.0.0.1:port).
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// TLSAddr is the AMQPS listening address (127.0.0.1:port), or "" without
// Config.TLS. Clients reach it through the SDK's CustomEndpoint option and
// trust RootCAs.
func (b *Broker) TLSAddr() string {
	if b.tlsLn == nil {
		return ""
	}
	return b.tlsLn.Addr().String()
}

// RootCAs holds the test CA that signed the TLS listener's certificate, or
// is nil without Config.TLS.
func (b *Broker) RootCAs() *x509.CertPool {
	if b.pki == nil {
		return nil
	}
	return b.pki.roots
}

// TokenStats returns the $cbs put-token counters.
func (b *Broker) TokenStats() TokenStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens
}

// PartitionIDs lists the partition ids in order.
func (b *Broker) PartitionIDs() []string {
	ids := make([]string, len(b.parts))
	for i, p := range b.parts {
		ids[i] = p.id
	}
	return ids
}

// ConnectionString is the emulator connection string for the hub. The key
// is a fixed dummy: the broker accepts any token.
func (b *Broker) ConnectionString() string {
	return "Endpoint=sb://" + b.Addr() + ";SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;EntityPath=" + b.cfg.EventHub
}

// accept serves ln until it closes; secure wraps each connection in TLS.
func (b *Broker) accept(ln net.Listener, secure bool) {
	defer b.wg.Done()
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.refusing || b.closed {
			b.refused++
			b.mu.Unlock()
			_ = raw.Close()
			continue
		}
		nc := raw
		if secure {
			nc = tls.Server(raw, &tls.Config{
				Certificates: []tls.Certificate{b.pki.server},
				MinVersion:   tls.VersionTLS12,
			})
		}
		c := newConn(b, nc, raw, secure)
		b.accepted++
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			c.serve()
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
		}()
	}
}

// DropConnections closes every open connection abruptly (TCP close without
// an AMQP close), as a network failure or a service restart would, and
// returns how many it closed. New connections are accepted as before.
func (b *Broker) DropConnections() int {
	b.mu.Lock()
	cs := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.drop()
	}
	return len(cs)
}

// Refuse makes the broker close every new connection as soon as it is
// accepted (on=true), and drops the open ones; on=false serves again.
func (b *Broker) Refuse(on bool) {
	b.mu.Lock()
	b.refusing = on
	b.mu.Unlock()
	if on {
		b.DropConnections()
	}
}

// Stats counts connections since Start: accepted and served, and refused
// while Refuse was on.
func (b *Broker) Stats() (accepted, refused int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted, b.refused
}

// registerConsumer admits a consumer link under the service's epoch rules:
// a receiver with an epoch (owner level) takes the partition from every
// receiver with a lower or equal epoch or none, which are detached with
// amqp:link:stolen; a receiver below an existing epoch is refused. It
// returns the refusal reason, or "" when admitted.
func (b *Broker) registerConsumer(c *conn, l *link) string {
	b.mu.Lock()
	set := b.consumers[l.consumerKey]
	if set == nil {
		set = map[*link]*conn{}
		b.consumers[l.consumerKey] = set
	}
	for other := range set {
		if other.hasEpoch && (!l.hasEpoch || other.epoch > l.epoch) {
			b.mu.Unlock()
			return fmt.Sprintf("a receiver with epoch %d is active on %s", other.epoch, l.consumerKey)
		}
	}
	var victims map[*link]*conn
	if l.hasEpoch && len(set) > 0 {
		victims = set
		set = map[*link]*conn{}
		b.consumers[l.consumerKey] = set
	}
	set[l] = c
	b.mu.Unlock()
	for v, vc := range victims {
		// The victim's connection lock may be held by its own handler, so
		// detach it asynchronously, as the service does.
		go vc.kick(v, fmt.Sprintf("a receiver with epoch %d took %s", l.epoch, l.consumerKey))
	}
	return ""
}

func (b *Broker) unregisterConsumer(l *link) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if set := b.consumers[l.consumerKey]; set != nil {
		delete(set, l)
		if len(set) == 0 {
			delete(b.consumers, l.consumerKey)
		}
	}
}

// Delivered counts the events sent to consumers since Start (redeliveries
// included): how far ahead of its reader a consumer has pulled.
func (b *Broker) Delivered() int64 { return b.delivered.Load() }

// Close stops listening, drops every connection and waits, until ctx ends,
// for their goroutines to finish.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	err := b.ln.Close()
	if b.tlsLn != nil {
		if terr := b.tlsLn.Close(); err == nil {
			err = terr
		}
	}
	b.DropConnections()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close broker: %w", ctx.Err())
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close listener: %w", err)
	}
	return nil
}

func (b *Broker) partition(id string) (*partition, bool) {
	n, err := strconv.Atoi(id)
	if err != nil || n < 0 || n >= len(b.parts) || strconv.Itoa(n) != id {
		return nil, false
	}
	return b.parts[n], true
}

// Publish appends bodies to a partition as single-data-section events and
// returns the sequence number of the first one. The broker keeps the
// bodies without copying them: the caller must not modify them afterwards.
func (b *Broker) Publish(partitionID string, bodies ...[]byte) (int64, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	p, ok := b.partition(partitionID)
	if !ok {
		return 0, fmt.Errorf("publish to %q: %w", partitionID, ErrUnknownPartition)
	}
	return p.append(b, len(bodies), func(i int) (rest []byte, body []byte, key string, annotations amqpMap) {
		return nil, bodies[i], "", nil
	}), nil
}

// Events returns a copy of the retained events of a partition from
// sequence number from on.
func (b *Broker) Events(partitionID string, from int64) ([]Event, error) {
	p, ok := b.partition(partitionID)
	if !ok {
		return nil, fmt.Errorf("events of %q: %w", partitionID, ErrUnknownPartition)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	start := max(from-p.first, 0)
	var out []Event
	for _, ev := range p.events[min(start, int64(len(p.events))):] {
		out = append(out, ev.Event)
	}
	return out, nil
}

// pickPartition maps a partition key to a partition (FNV-1a), or spreads
// keyless events round-robin.
func (b *Broker) pickPartition(key string) *partition {
	if key != "" {
		h := fnv.New32a()
		h.Write([]byte(key))
		return b.parts[int(h.Sum32()%uint32(len(b.parts)))]
	}
	b.mu.Lock()
	b.rr++
	n := b.rr
	b.mu.Unlock()
	return b.parts[int(n%uint64(len(b.parts)))]
}

// append stores n events built by mk, assigning sequence numbers, offsets
// and the enqueued time, and wakes the links waiting on the partition.
// mk returns the encoded sections that follow the message annotations (nil:
// a single data section holding body), the body, the partition key and any
// user message annotations to keep.
func (p *partition) append(b *Broker, n int, mk func(i int) (rest, body []byte, key string, annotations amqpMap)) int64 {
	type built struct {
		rest, body []byte
		key        string
		ann        amqpMap
	}
	in := make([]built, n)
	for i := range n {
		in[i].rest, in[i].body, in[i].key, in[i].ann = mk(i)
	}
	now := b.cfg.Clock().UTC().Truncate(time.Millisecond)

	p.mu.Lock()
	defer p.mu.Unlock()
	firstSeq := p.next
	for _, ev := range in {
		se := &storedEvent{Event: Event{
			Partition:      p.id,
			SequenceNumber: p.next,
			Offset:         p.nextOffset,
			EnqueuedTime:   now,
			PartitionKey:   ev.key,
			Body:           ev.body,
		}}
		se.head = encodeDelivery(se.Event, ev.ann, ev.rest)
		if ev.rest == nil {
			se.tail = ev.body
		}
		p.events = append(p.events, se)
		p.next++
		p.nextOffset += int64(len(se.head) + len(se.tail))
	}
	if r := b.cfg.Retention; r > 0 && len(p.events) > r {
		drop := len(p.events) - r
		clear(p.events[:drop])
		p.events = p.events[drop:]
		p.first += int64(drop)
		if cap(p.events) > 4*r {
			p.events = append(make([]*storedEvent, 0, 2*r), p.events...)
		}
	}
	if n > 0 {
		close(p.notify)
		p.notify = make(chan struct{})
	}
	return firstSeq
}

// encodeDelivery builds the message as delivered to consumers: a
// message-annotations section with the system properties (and the
// publisher's own annotations), then the publisher's other sections; with
// rest nil, the header of a data section holding ev.Body, which the caller
// sends right after.
func encodeDelivery(ev Event, user amqpMap, rest []byte) []byte {
	ann := amqpMap{
		{symbol("x-opt-sequence-number"), ev.SequenceNumber},
		{symbol("x-opt-offset"), strconv.FormatInt(ev.Offset, 10)},
		{symbol("x-opt-enqueued-time"), ev.EnqueuedTime},
	}
	if ev.PartitionKey != "" {
		ann = append(ann, pair{symbol("x-opt-partition-key"), ev.PartitionKey})
	}
	for _, kv := range user {
		if k, ok := kv.k.(symbol); ok && (k == "x-opt-sequence-number" || k == "x-opt-offset" ||
			k == "x-opt-enqueued-time" || k == "x-opt-partition-key") {
			continue
		}
		ann = append(ann, kv)
	}
	var scratch [256]byte
	e := encoder{buf: scratch[:0]}
	e.buf = append(e.buf, tcDescribed, tcSmallUlong, secMessageAnnotations)
	if err := e.value(ann); err != nil {
		// User annotations come from a decoded message, so they re-encode;
		// fall back to the system properties alone if one does not.
		e.buf = append(e.buf[:0], tcDescribed, tcSmallUlong, secMessageAnnotations)
		_ = e.value(ann[:3])
	}
	if rest == nil {
		e.buf = append(e.buf, tcDescribed, tcSmallUlong, secData)
		if len(ev.Body) < 256 {
			e.buf = append(e.buf, tcVbin8, byte(len(ev.Body)))
		} else {
			e.u8(tcVbin32)
			e.u32(uint32(len(ev.Body)))
		}
	}
	out := make([]byte, 0, len(e.buf)+len(rest))
	out = append(out, e.buf...)
	return append(out, rest...)
}

// readFrom returns up to n events starting at sequence number seq (moved
// forward to the oldest retained event), the sequence number after the
// last one returned, and the channel closed when more events arrive.
func (p *partition) readFrom(seq int64, n int, out []*storedEvent) ([]*storedEvent, int64, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < p.first {
		seq = p.first
	}
	i := seq - p.first
	for ; i < int64(len(p.events)) && len(out) < n; i++ {
		out = append(out, p.events[i])
	}
	return out, p.first + i, p.notify
}
