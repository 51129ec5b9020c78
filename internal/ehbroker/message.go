package ehbroker

import (
	"errors"
	"fmt"
	"strings"
)

// Message sections (AMQP 1.0 part 3, section 3.2).
const (
	secHeader                = 0x70
	secDeliveryAnnotations   = 0x71
	secProperties            = 0x73
	secApplicationProperties = 0x74
	secAMQPValue             = 0x77
)

// section is one decoded section with its raw bytes.
type section struct {
	code  uint64
	value any
	raw   []byte
}

// splitSections decodes a bare message into its sections.
func splitSections(msg []byte) ([]section, error) {
	var out []section
	d := decoder{b: msg}
	for d.i < len(d.b) {
		start := d.i
		v, err := d.value()
		if err != nil {
			return nil, fmt.Errorf("decode message section: %w", err)
		}
		desc, ok := v.(described)
		if !ok || desc.sym != "" {
			return nil, errors.New("decode message: section is not a described type")
		}
		out = append(out, section{code: desc.code, value: desc.value, raw: d.b[start:d.i]})
	}
	if len(out) == 0 {
		return nil, errors.New("decode message: empty")
	}
	return out, nil
}

// parsedEvent is a published message ready to be stored.
type parsedEvent struct {
	rest        []byte // properties, application-properties, body, footer
	body        []byte // first data section
	key         string
	annotations amqpMap
}

// parseEvent splits a published message into what the broker stores:
// header and delivery annotations are dropped, message annotations are
// merged with the system properties at enqueue time.
func parseEvent(msg []byte) (parsedEvent, error) {
	secs, err := splitSections(msg)
	if err != nil {
		return parsedEvent{}, err
	}
	var ev parsedEvent
	for _, s := range secs {
		switch s.code {
		case secHeader, secDeliveryAnnotations:
		case secMessageAnnotations:
			m, _ := s.value.(amqpMap)
			ev.annotations = m
			if k, ok := m.get("x-opt-partition-key"); ok {
				ev.key, _ = k.(string)
			}
		default:
			if s.code == secData && ev.body == nil {
				b, _ := s.value.([]byte)
				ev.body = append([]byte{}, b...)
			}
			ev.rest = append(ev.rest, s.raw...)
		}
	}
	return ev, nil
}

// ingest stores one delivery from a producer: a single message, or a batch
// whose data sections each hold a message. A batch lands whole in one
// partition: dest when the link named one, else by partition key, else
// round-robin.
func (b *Broker) ingest(dest *partition, format uint32, msg []byte) error {
	var evs []parsedEvent
	key := ""
	if format == batchMessageFormat {
		secs, err := splitSections(msg)
		if err != nil {
			return fmt.Errorf("batch envelope: %w", err)
		}
		for _, s := range secs {
			switch s.code {
			case secMessageAnnotations:
				m, _ := s.value.(amqpMap)
				if k, ok := m.get("x-opt-partition-key"); ok {
					key, _ = k.(string)
				}
			case secData:
				inner, _ := s.value.([]byte)
				ev, err := parseEvent(inner)
				if err != nil {
					return fmt.Errorf("batch event %d: %w", len(evs), err)
				}
				evs = append(evs, ev)
			}
		}
		if len(evs) == 0 {
			return errors.New("batch without events")
		}
	} else {
		ev, err := parseEvent(msg)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
		key = ev.key
	}
	if dest == nil {
		dest = b.pickPartition(key)
	}
	dest.append(b, len(evs), func(i int) ([]byte, []byte, string, amqpMap) {
		k := evs[i].key
		if k == "" {
			k = key
		}
		return evs[i].rest, evs[i].body, k, evs[i].annotations
	})
	return nil
}

// handleRPC answers a $cbs or $management request and queues the reply on
// the session's link whose target is the request's reply-to address.
func (c *conn) handleRPC(s *session, l *link, msg []byte) error {
	secs, err := splitSections(msg)
	if err != nil {
		return err
	}
	var msgID any
	var replyTo string
	var props amqpMap
	var value any
	for _, sec := range secs {
		switch sec.code {
		case secProperties:
			if f, ok := sec.value.([]any); ok {
				if len(f) > 0 {
					msgID = f[0]
				}
				if len(f) > 4 {
					replyTo, _ = f[4].(string)
				}
			}
		case secApplicationProperties:
			props, _ = sec.value.(amqpMap)
		case secAMQPValue:
			value = sec.value
		}
	}
	str := func(k string) string {
		v, _ := props.get(k)
		s, _ := v.(string)
		return s
	}
	var (
		status int32
		desc   string
	)
	refusal := ""
	if l.node == "$management" && c.secure {
		refusal = c.checkSecurityToken(str("security_token"))
	}
	switch {
	case l.node == "$cbs" && str("operation") == "put-token":
		status, desc = c.putToken(str("type"), str("name"), value, str("expiration"))
		value = nil
	case refusal != "":
		status, desc, value = 401, "Unauthorized: "+refusal, nil
	default:
		status, desc, value = c.b.answer(l.node, str("operation"), str("type"), str("name"), str("partition"))
	}

	e := encoder{}
	e.buf = append(e.buf, tcDescribed, tcSmallUlong, secProperties)
	if err := e.list([]any{nil, nil, nil, nil, nil, msgID}); err != nil {
		return err
	}
	e.buf = append(e.buf, tcDescribed, tcSmallUlong, secApplicationProperties)
	if err := e.value(amqpMap{{"status-code", status}, {"status-description", desc}}); err != nil {
		return err
	}
	e.buf = append(e.buf, tcDescribed, tcSmallUlong, secAMQPValue)
	if err := e.value(value); err != nil {
		return err
	}

	var out *link
	for _, o := range s.links {
		if o.weSend && o.part == nil && o.targetAddr == replyTo {
			out = o
			break
		}
	}
	if out == nil {
		for _, o := range s.links {
			if o.weSend && o.part == nil && o.sourceAddr == l.node {
				out = o
				break
			}
		}
	}
	if out == nil {
		return fmt.Errorf("no reply link for %q in this session", replyTo)
	}
	out.queue = append(out.queue, e.buf)
	out.poke()
	return nil
}

// answer computes the reply to an RPC request: status code, description
// and body value.
func (b *Broker) answer(node, op, typ, name, partitionID string) (int32, string, any) {
	if node == "$cbs" {
		if op != "put-token" {
			return 400, "unsupported $cbs operation " + op, nil
		}
		return 202, "Accepted", nil
	}
	if op != "READ" {
		return 400, "unsupported $management operation " + op, nil
	}
	if !strings.EqualFold(name, b.cfg.EventHub) {
		return 404, fmt.Sprintf("event hub %q not found", name), nil
	}
	switch typ {
	case "com.microsoft:eventhub":
		ids := b.PartitionIDs()
		arr := amqpArray{code: tcStr32, elems: make([]any, len(ids))}
		for i, id := range ids {
			arr.elems[i] = id
		}
		return 200, "OK", amqpMap{
			{"name", b.cfg.EventHub},
			{"type", "com.microsoft:eventhub"},
			{"created_at", b.created},
			{"partition_count", int32(len(ids))},
			{"partition_ids", arr},
			{"georeplication_factor", int32(1)},
		}
	case "com.microsoft:partition":
		p, ok := b.partition(partitionID)
		if !ok {
			return 404, fmt.Sprintf("partition %q not found", partitionID), nil
		}
		return 200, "OK", p.properties(b.cfg.EventHub)
	default:
		return 400, "unsupported $management type " + typ, nil
	}
}
