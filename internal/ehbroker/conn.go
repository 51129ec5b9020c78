package ehbroker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"time"
)

// Connection-level limits the broker advertises.
const (
	localMaxFrameSize  = 64 << 10 // bytes; go-amqp's default as well
	localChannelMax    = 65535
	localIncomingWnd   = 5000 // transfer frames per session before a flow
	linkCreditGrant    = 1000 // credit granted to a client's sender link
	maxTransfersPerRun = 512  // transfers written per sender wake-up
	writeTimeout       = 30 * time.Second
	maxHeartbeat       = 15 * time.Second
	minHeartbeat       = 50 * time.Millisecond
	defaultPeerFrame   = math.MaxUint32
)

// conn is one client connection. A single mutex guards all connection,
// session and link state and the socket writes: frames from one
// connection are handled one at a time, as the peer sends them.
type conn struct {
	b   *Broker
	nc  net.Conn // the AMQP byte stream (TLS on the secure listener)
	raw net.Conn // the TCP connection under nc, closed by drop
	log *slog.Logger
	// secure marks a connection of the TLS listener, where links to the
	// hub need a put token covering them.
	secure bool

	done     chan struct{}
	dropOnce sync.Once

	mu           sync.Mutex
	closed       bool
	wbuf         []byte
	lastWrite    time.Time
	peerMaxFrame uint32
	heartbeatInt time.Duration // half the peer's idle timeout, at most 15s
	sessions     map[uint16]*session
	// claims maps the entity path of each audience a valid token was put
	// for ("" for the whole namespace) to the token's expiry.
	claims map[string]time.Time
}

// session is one AMQP session; the broker answers on the channel number the
// client chose.
type session struct {
	ch uint16

	nextOutgoingID   uint32 // transfer-id of the next transfer we send
	peerNextIncoming uint32 // from the peer's last flow
	peerIncomingWnd  uint32 // from the peer's last flow
	nextIncomingID   uint32 // transfer-id we expect next from the peer
	receivedSinceFlw uint32

	links map[uint32]*link // by handle (we reuse the peer's handle number)
	// detaching holds handles the broker detached; the peer's detach that
	// answers is not answered again.
	detaching map[uint32]bool
}

// remoteWindow is how many more transfer frames the peer accepts.
func (s *session) remoteWindow() uint32 {
	w := int64(s.peerNextIncoming) + int64(s.peerIncomingWnd) - int64(s.nextOutgoingID)
	switch {
	case w < 0:
		return 0
	case w > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(w)
}

// link is one attached link. weSend is true when the broker is the sender
// (a consumer's receiver link or an RPC reply link).
type link struct {
	s      *session
	handle uint32
	name   string
	weSend bool
	stop   chan struct{}
	wake   chan struct{}

	// Broker as sender.
	part          *partition
	consumerKey   string // "<consumer group>/<partition>" for epoch checks
	epoch         int64
	hasEpoch      bool
	nextSeq       int64
	queue         [][]byte // encoded RPC replies waiting for credit
	targetAddr    string   // the client's address for replies
	sourceAddr    string
	deliveryCount uint32
	creditLimit   uint32 // peer delivery-count + link-credit
	drain         bool
	nextTag       uint64

	// Broker as receiver.
	node          string     // "$cbs", "$management" or "" for events
	dest          *partition // nil: by partition key / round-robin
	rcvCount      uint32     // delivery-count
	rcvCredit     uint32
	inDelivery    bool
	deliveryID    uint32
	deliverySettl bool
	format        uint32
	assembly      []byte
}

func newConn(b *Broker, nc, raw net.Conn, secure bool) *conn {
	return &conn{
		b:            b,
		nc:           nc,
		raw:          raw,
		secure:       secure,
		claims:       map[string]time.Time{},
		log:          b.log.With("remote", nc.RemoteAddr().String(), "tls", secure),
		done:         make(chan struct{}),
		peerMaxFrame: defaultPeerFrame,
		heartbeatInt: maxHeartbeat,
		sessions:     map[uint16]*session{},
	}
}

// drop closes the socket without an AMQP close (and, on the TLS
// listener, without a close_notify alert), as a network failure would.
func (c *conn) drop() {
	c.dropOnce.Do(func() { _ = c.raw.Close() })
}

func (c *conn) serve() {
	defer func() {
		c.mu.Lock()
		c.closed = true
		for _, s := range c.sessions {
			for _, l := range s.links {
				if l.consumerKey != "" {
					c.b.unregisterConsumer(l)
				}
			}
		}
		c.mu.Unlock()
		close(c.done)
		c.drop()
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	if err := c.handshake(r); err != nil {
		if !isClosedErr(err) {
			c.log.Debug("amqp handshake failed", "err", err)
		}
		return
	}
	go c.heartbeat()
	for {
		f, err := readFrame(r, localMaxFrameSize)
		if err != nil {
			if !isClosedErr(err) {
				c.log.Debug("amqp read failed", "err", err)
			}
			return
		}
		if f.code == 0 && f.fields == nil && f.payload == nil {
			continue // heartbeat
		}
		c.mu.Lock()
		stop, err := c.handle(f)
		if err == nil {
			err = c.flush()
		}
		c.mu.Unlock()
		if err != nil {
			c.log.Debug("amqp connection error", "err", err)
			c.closeWithError(err)
			return
		}
		if stop {
			return
		}
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// closeWithError sends a close carrying err, best effort.
func (c *conn) closeWithError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.queue(0, perfClose, nil, amqpError(condInternalError, err.Error())) == nil {
		_ = c.flush()
	}
}

// handshake runs the protocol headers, SASL ANONYMOUS and the open exchange.
func (c *conn) handshake(r *bufio.Reader) error {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	if bytes.Equal(hdr[:], headerSASL) {
		if _, err := c.nc.Write(headerSASL); err != nil {
			return err
		}
		buf, err := appendFrame(nil, frameTypeSASL, 0, saslMechanisms, nil, []symbol{"ANONYMOUS"})
		if err != nil {
			return err
		}
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
		f, err := readFrame(r, 64<<10)
		if err != nil {
			return err
		}
		if f.typ != frameTypeSASL || f.code != saslInit {
			return fmt.Errorf("expected sasl-init, got frame type %d performative 0x%02x", f.typ, f.code)
		}
		code := uint8(0) // ok
		if mech, _ := f.field(0).(symbol); mech != "ANONYMOUS" {
			code = 1 // auth
		}
		buf, err = appendFrame(nil, frameTypeSASL, 0, saslOutcome, nil, code)
		if err != nil {
			return err
		}
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
		if code != 0 {
			return errors.New("unsupported sasl mechanism")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
	}
	if !bytes.Equal(hdr[:], headerAMQP) {
		_, _ = c.nc.Write(headerAMQP)
		return fmt.Errorf("unsupported protocol header % x", hdr)
	}
	if _, err := c.nc.Write(headerAMQP); err != nil {
		return err
	}
	f, err := readFrame(r, localMaxFrameSize)
	if err != nil {
		return err
	}
	if f.code != perfOpen {
		return fmt.Errorf("expected open, got performative 0x%02x", f.code)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if mfs, ok := f.uintField(2); ok && mfs >= 512 {
		c.peerMaxFrame = mfs
	}
	if idle, ok := f.uintField(4); ok && idle > 0 {
		c.heartbeatInt = min(maxHeartbeat, max(minHeartbeat, time.Duration(idle)*time.Millisecond/2))
	}
	if err := c.queue(0, perfOpen, nil, "ehbroker", nil, uint32(localMaxFrameSize), uint16(localChannelMax)); err != nil {
		return err
	}
	return c.flush()
}

// heartbeat keeps the connection alive for clients with an idle timeout
// (go-amqp closes a connection silent for a minute): an empty frame goes
// out whenever nothing else did for half that timeout.
func (c *conn) heartbeat() {
	c.mu.Lock()
	interval := c.heartbeatInt
	c.mu.Unlock()
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.mu.Lock()
			if !c.closed && time.Since(c.lastWrite) >= interval {
				c.wbuf = append(c.wbuf, 0, 0, 0, 8, 2, frameTypeAMQP, 0, 0)
				_ = c.flush()
			}
			c.mu.Unlock()
		}
	}
}

// queue appends a performative frame to the write buffer. Callers hold mu.
func (c *conn) queue(ch uint16, code uint64, payload []byte, fields ...any) error {
	buf, err := appendFrame(c.wbuf, frameTypeAMQP, ch, code, payload, fields...)
	if err != nil {
		return fmt.Errorf("encode performative 0x%02x: %w", code, err)
	}
	c.wbuf = buf
	return nil
}

// flush writes the buffered frames. Callers hold mu. A failed write drops
// the connection; the reader then ends it.
func (c *conn) flush() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(c.wbuf)
	c.lastWrite = time.Now()
	if cap(c.wbuf) > 4<<20 {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		c.drop()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// handle processes one frame. Callers hold mu. stop reports that the
// connection ended cleanly.
func (c *conn) handle(f frame) (stop bool, err error) {
	if f.typ != frameTypeAMQP {
		return false, fmt.Errorf("unexpected frame type %d", f.typ)
	}
	if f.code == perfClose {
		err := c.queue(0, perfClose, nil)
		if err == nil {
			err = c.flush()
		}
		return true, err
	}
	if f.code == perfBegin {
		return false, c.onBegin(f)
	}
	s, ok := c.sessions[f.channel]
	if !ok {
		return false, fmt.Errorf("performative 0x%02x on unknown channel %d", f.code, f.channel)
	}
	switch f.code {
	case perfAttach:
		return false, c.onAttach(s, f)
	case perfFlow:
		return false, c.onFlow(s, f)
	case perfTransfer:
		return false, c.onTransfer(s, f)
	case perfDisposition:
		return false, nil // the broker sends pre-settled deliveries only
	case perfDetach:
		h, _ := f.uintField(0)
		if s.detaching[h] {
			delete(s.detaching, h) // the answer to our detach
			return false, nil
		}
		if l, ok := s.links[h]; ok {
			c.unlink(s, l)
		}
		return false, c.queue(s.ch, perfDetach, nil, h, true)
	case perfEnd:
		for _, l := range s.links {
			c.unlink(s, l)
		}
		delete(c.sessions, s.ch)
		return false, c.queue(s.ch, perfEnd, nil)
	case perfOpen:
		return false, errors.New("duplicate open")
	default:
		return false, fmt.Errorf("unknown performative 0x%02x", f.code)
	}
}

func (c *conn) unlink(s *session, l *link) {
	delete(s.links, l.handle)
	close(l.stop)
	if l.consumerKey != "" {
		c.b.unregisterConsumer(l)
	}
}

// detachWithError ends a link from the broker's side. Callers hold mu.
func (c *conn) detachWithError(s *session, l *link, condition, description string) error {
	c.unlink(s, l)
	s.detaching[l.handle] = true
	return c.queue(s.ch, perfDetach, nil, l.handle, true, amqpError(condition, description))
}

// kick detaches a consumer link that a receiver with a higher or equal
// epoch replaced, as the service does ("link stolen").
func (c *conn) kick(l *link, description string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || l.s.links[l.handle] != l {
		return
	}
	if c.detachWithError(l.s, l, condLinkStolen, description) == nil {
		_ = c.flush()
	}
}

func (c *conn) onBegin(f frame) error {
	if _, dup := c.sessions[f.channel]; dup {
		return fmt.Errorf("begin on channel %d already in use", f.channel)
	}
	nextOut, _ := f.uintField(1)
	inWnd, _ := f.uintField(2)
	s := &session{
		ch:              f.channel,
		peerIncomingWnd: inWnd,
		nextIncomingID:  nextOut,
		links:           map[uint32]*link{},
		detaching:       map[uint32]bool{},
	}
	c.sessions[f.channel] = s
	return c.queue(s.ch, perfBegin, nil, f.channel, uint32(0), uint32(localIncomingWnd), uint32(math.MaxInt32), uint32(math.MaxUint32>>1))
}

// sessionFlowFields are the session part of a flow frame; a link flow
// appends handle, delivery-count and link-credit.
func (c *conn) sessionFlowFields(s *session) []any {
	return []any{s.nextIncomingID, uint32(localIncomingWnd), s.nextOutgoingID, uint32(math.MaxInt32)}
}

// terminusAddress returns the address of a source or target.
func terminusAddress(t any) string {
	d, ok := t.(described)
	if !ok {
		return ""
	}
	l, _ := d.value.([]any)
	if len(l) == 0 {
		return ""
	}
	a, _ := l[0].(string)
	return a
}

// selectorOf returns the selector-filter expression of a source, if any.
func selectorOf(src any) (string, error) {
	d, ok := src.(described)
	if !ok {
		return "", nil
	}
	l, _ := d.value.([]any)
	if len(l) < 8 || l[7] == nil {
		return "", nil
	}
	fs, ok := l[7].(amqpMap)
	if !ok {
		return "", errors.New("source filter is not a map")
	}
	v, ok := fs.get(selectorFilter)
	if !ok {
		return "", nil
	}
	fd, ok := v.(described)
	if !ok || (fd.sym != selectorFilter && fd.code != selectorFilterCode) {
		return "", errors.New("selector filter has an unexpected descriptor")
	}
	expr, ok := fd.value.(string)
	if !ok {
		return "", errors.New("selector filter value is not a string")
	}
	return expr, nil
}

// refuseAttach answers an attach with a null terminus and a detach
// carrying the reason, as the AMQP spec prescribes for a refused link.
func (c *conn) refuseAttach(s *session, f frame, condition, description string) error {
	name, _ := f.field(0).(string)
	h, _ := f.uintField(1)
	peerRole := f.boolField(2)
	if peerRole == roleReceiver {
		if err := c.queue(s.ch, perfAttach, nil, name, h, roleSender, nil, nil, nil, f.field(6), nil, nil, uint32(0)); err != nil {
			return err
		}
	} else {
		if err := c.queue(s.ch, perfAttach, nil, name, h, roleReceiver, nil, nil, f.field(5), nil); err != nil {
			return err
		}
	}
	s.detaching[h] = true
	return c.queue(s.ch, perfDetach, nil, h, true, amqpError(condition, description))
}

func (c *conn) onAttach(s *session, f frame) error {
	name, _ := f.field(0).(string)
	h, ok := f.uintField(1)
	if !ok {
		return errors.New("attach without handle")
	}
	if _, dup := s.links[h]; dup {
		return fmt.Errorf("attach on handle %d already in use", h)
	}
	peerRole := f.boolField(2)
	hub := c.b.cfg.EventHub
	l := &link{s: s, handle: h, name: name, weSend: peerRole == roleReceiver,
		stop: make(chan struct{}), wake: make(chan struct{}, 1)}

	if l.weSend {
		l.sourceAddr = terminusAddress(f.field(5))
		l.targetAddr = terminusAddress(f.field(6))
		if reason := c.authorize(l.sourceAddr); reason != "" {
			return c.refuseAttach(s, f, condUnauthorized, reason)
		}
		switch l.sourceAddr {
		case "$cbs", "$management":
		default:
			partID, err := parseConsumerPath(l.sourceAddr, hub)
			if err != nil {
				return c.refuseAttach(s, f, condNotFound, err.Error())
			}
			p, ok := c.b.partition(partID)
			if !ok {
				return c.refuseAttach(s, f, condNotFound, fmt.Sprintf("partition %q does not exist in event hub %q", partID, hub))
			}
			expr, err := selectorOf(f.field(5))
			if err != nil {
				return c.refuseAttach(s, f, condInvalidField, err.Error())
			}
			flt, err := parseSelector(expr)
			if err != nil {
				return c.refuseAttach(s, f, condInvalidField, err.Error())
			}
			l.part = p
			l.consumerKey = strings.ToLower(consumerGroupOf(l.sourceAddr)) + "/" + partID
			if props, ok := f.field(13).(amqpMap); ok {
				if v, ok := props.get("com.microsoft:epoch"); ok {
					l.epoch, l.hasEpoch = v.(int64)
				}
			}
			if reason := c.b.registerConsumer(c, l); reason != "" {
				return c.refuseAttach(s, f, condNotAllowed, reason)
			}
			l.nextSeq = p.start(flt)
		}
		s.links[h] = l
		// role, snd-settle-mode settled, rcv-settle-mode first, source,
		// target, unsettled, incomplete-unsettled, initial-delivery-count,
		// max-message-size.
		if err := c.queue(s.ch, perfAttach, nil, name, h, roleSender, uint8(1), uint8(0), f.field(5), f.field(6),
			nil, nil, uint32(0), c.b.cfg.MaxMessageSize); err != nil {
			return err
		}
		go c.runSender(l)
		return nil
	}

	target := terminusAddress(f.field(6))
	if reason := c.authorize(target); reason != "" {
		return c.refuseAttach(s, f, condUnauthorized, reason)
	}
	switch {
	case target == "$cbs" || target == "$management":
		l.node = target
	case strings.EqualFold(target, hub):
	default:
		id, ok := strings.CutPrefix(strings.ToLower(target), strings.ToLower(hub)+"/partitions/")
		if !ok {
			return c.refuseAttach(s, f, condNotFound, fmt.Sprintf("entity %q does not exist", target))
		}
		p, ok := c.b.partition(id)
		if !ok {
			return c.refuseAttach(s, f, condNotFound, fmt.Sprintf("partition %q does not exist in event hub %q", id, hub))
		}
		l.dest = p
	}
	l.rcvCount, _ = f.uintField(9)
	l.rcvCredit = linkCreditGrant
	s.links[h] = l
	sndSettle := f.field(3)
	if err := c.queue(s.ch, perfAttach, nil, name, h, roleReceiver, sndSettle, uint8(0), f.field(5), f.field(6),
		nil, nil, nil, c.b.cfg.MaxMessageSize); err != nil {
		return err
	}
	return c.queue(s.ch, perfFlow, nil, append(c.sessionFlowFields(s), h, l.rcvCount, l.rcvCredit)...)
}

// consumerGroupOf returns the consumer group of a consumer entity path.
func consumerGroupOf(addr string) string {
	parts := strings.Split(addr, "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// parseConsumerPath extracts the partition id from
// <hub>/ConsumerGroups/<cg>/Partitions/<id>.
func parseConsumerPath(addr, hub string) (string, error) {
	parts := strings.Split(addr, "/")
	if len(parts) != 5 || !strings.EqualFold(parts[0], hub) || !strings.EqualFold(parts[1], "ConsumerGroups") ||
		parts[2] == "" || !strings.EqualFold(parts[3], "Partitions") {
		return "", fmt.Errorf("entity %q does not exist (want %s/ConsumerGroups/<group>/Partitions/<id>)", addr, hub)
	}
	return parts[4], nil
}

func (c *conn) onFlow(s *session, f frame) error {
	if v, ok := f.uintField(0); ok {
		s.peerNextIncoming = v
	}
	s.peerIncomingWnd, _ = f.uintField(1)
	h, hasHandle := f.uintField(4)
	if !hasHandle {
		for _, l := range s.links {
			if l.weSend {
				l.poke()
			}
		}
		if f.boolField(9) {
			return c.queue(s.ch, perfFlow, nil, c.sessionFlowFields(s)...)
		}
		return nil
	}
	l, ok := s.links[h]
	if !ok {
		return nil // a flow racing a detach
	}
	if l.weSend {
		dc, ok := f.uintField(5)
		if !ok {
			dc = 0 // initial delivery count we advertised
		}
		credit, _ := f.uintField(6)
		l.creditLimit = dc + credit
		l.drain = f.boolField(8)
	}
	for _, o := range s.links {
		if o.weSend {
			o.poke()
		}
	}
	if f.boolField(9) {
		return c.queue(s.ch, perfFlow, nil, append(c.sessionFlowFields(s), h, l.linkDeliveryCount(), l.linkCredit())...)
	}
	return nil
}

func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *link) linkDeliveryCount() uint32 {
	if l.weSend {
		return l.deliveryCount
	}
	return l.rcvCount
}

func (l *link) linkCredit() uint32 {
	if l.weSend {
		return l.credit()
	}
	return l.rcvCredit
}

// credit is how many more deliveries the peer accepts on a sending link.
func (l *link) credit() uint32 {
	d := int32(l.creditLimit - l.deliveryCount)
	if d < 0 {
		return 0
	}
	return uint32(d)
}

func (c *conn) onTransfer(s *session, f frame) error {
	s.nextIncomingID++
	s.receivedSinceFlw++
	if s.receivedSinceFlw >= localIncomingWnd/2 {
		s.receivedSinceFlw = 0
		if err := c.queue(s.ch, perfFlow, nil, c.sessionFlowFields(s)...); err != nil {
			return err
		}
	}
	h, _ := f.uintField(0)
	l, ok := s.links[h]
	if !ok || l.weSend {
		return fmt.Errorf("transfer on handle %d that is not a receiving link", h)
	}
	if !l.inDelivery {
		id, ok := f.uintField(1)
		if !ok {
			return errors.New("transfer without delivery-id")
		}
		if l.rcvCredit == 0 {
			return errors.New("transfer beyond link credit")
		}
		l.inDelivery = true
		l.deliveryID = id
		l.deliverySettl = false
		l.format, _ = f.uintField(3)
		l.assembly = l.assembly[:0]
		l.rcvCount++
		l.rcvCredit--
		if l.rcvCredit <= linkCreditGrant/2 {
			l.rcvCredit = linkCreditGrant
			if err := c.queue(s.ch, perfFlow, nil, append(c.sessionFlowFields(s), h, l.rcvCount, l.rcvCredit)...); err != nil {
				return err
			}
		}
	}
	l.deliverySettl = l.deliverySettl || f.boolField(4)
	if f.boolField(9) { // aborted
		l.inDelivery = false
		return nil
	}
	if uint64(len(l.assembly)+len(f.payload)) > c.b.cfg.MaxMessageSize {
		l.inDelivery = false
		return c.detachWithError(s, l, condMessageSize, fmt.Sprintf("message larger than %d bytes", c.b.cfg.MaxMessageSize))
	}
	l.assembly = append(l.assembly, f.payload...)
	if f.boolField(5) { // more
		return nil
	}
	l.inDelivery = false
	msg := l.assembly
	l.assembly = nil

	var state described
	var err error
	if l.node != "" {
		err = c.handleRPC(s, l, msg)
	} else {
		err = c.b.ingest(l.dest, l.format, msg)
	}
	if err != nil {
		c.log.Debug("delivery rejected", "link", l.name, "err", err)
		state = described{code: descRejected, value: []any{amqpError(condDecodeError, err.Error())}}
	} else {
		state = described{code: descAccepted, value: []any{}}
	}
	if l.deliverySettl {
		return nil
	}
	return c.queue(s.ch, perfDisposition, nil, roleReceiver, l.deliveryID, nil, true, state)
}

// runSender delivers events (or RPC replies) on a link the broker sends on,
// within the link credit and the session window, until the link ends.
func (c *conn) runSender(l *link) {
	var batch []*storedEvent
	for {
		var wait chan struct{}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		select {
		case <-l.stop:
			c.mu.Unlock()
			return
		default:
		}
		sent := 0
		budget := min(l.credit(), l.s.remoteWindow(), maxTransfersPerRun)
		if budget > 0 {
			if l.part != nil {
				var next int64
				batch, next, wait = l.part.readFrom(l.nextSeq, int(budget), batch[:0])
				for _, ev := range batch {
					if !c.queueDelivery(l, ev.head, ev.tail) {
						break
					}
					l.nextSeq = ev.SequenceNumber + 1
					sent++
				}
				if sent == len(batch) {
					l.nextSeq = next
				}
				c.b.delivered.Add(int64(sent))
				clear(batch)
			} else {
				for len(l.queue) > 0 && sent < int(budget) {
					if !c.queueDelivery(l, l.queue[0], nil) {
						break
					}
					l.queue = l.queue[1:]
					sent++
				}
			}
		}
		if sent == 0 && l.drain {
			// Drain: nothing more to send now, so consume the remaining
			// credit and tell the peer (also when it is already zero).
			l.deliveryCount = l.creditLimit
			l.drain = false
			_ = c.queue(l.s.ch, perfFlow, nil, append(c.sessionFlowFields(l.s), l.handle, l.deliveryCount, uint32(0), nil, true)...)
		}
		err := c.flush()
		c.mu.Unlock()
		if err != nil {
			return
		}
		if sent > 0 {
			continue
		}
		select {
		case <-wait:
		case <-l.wake:
		case <-l.stop:
			return
		case <-c.done:
			return
		}
	}
}

// queueDelivery appends the transfer frame(s) of one pre-settled delivery
// whose message is head followed by tail. It reports false, writing
// nothing, when the session window cannot take all of its frames.
func (c *conn) queueDelivery(l *link, head, tail []byte) bool {
	// Transfer performative as a list8 of: handle, delivery-id,
	// delivery-tag (8 bytes), message-format 0, settled true, more.
	const perfLen = 3 + 3 + 5 + 5 + 10 + 1 + 1 + 1
	size := len(head) + len(tail)
	chunk := int(min(c.peerMaxFrame, 1<<30)) - frameHeaderSize - perfLen
	frames := max(1, (size+chunk-1)/chunk)
	if uint32(frames) > l.s.remoteWindow() {
		return false
	}
	if frames > 1 && len(tail) > 0 {
		head = append(append(make([]byte, 0, size), head...), tail...)
		tail = nil
	}
	id := l.s.nextOutgoingID
	tag := l.nextTag
	l.nextTag++
	for i := range frames {
		part := head
		if frames > 1 {
			part = head[i*chunk : min(size, (i+1)*chunk)]
		}
		more := byte(tcFalse)
		if i < frames-1 {
			more = tcTrue
		}
		b := c.wbuf
		b = binary.BigEndian.AppendUint32(b, uint32(frameHeaderSize+perfLen+len(part)+len(tail)))
		b = append(b, 2, frameTypeAMQP, byte(l.s.ch>>8), byte(l.s.ch))
		b = append(b, tcDescribed, tcSmallUlong, perfTransfer, tcList8, perfLen-5, 6, tcUint)
		b = binary.BigEndian.AppendUint32(b, l.handle)
		b = append(b, tcUint)
		b = binary.BigEndian.AppendUint32(b, id)
		b = append(b, tcVbin8, 8)
		b = binary.BigEndian.AppendUint64(b, tag)
		b = append(b, tcUint0, tcTrue, more)
		b = append(b, part...)
		b = append(b, tail...)
		c.wbuf = b
		l.s.nextOutgoingID++
	}
	l.deliveryCount++
	return true
}
