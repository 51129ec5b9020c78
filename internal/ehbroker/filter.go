package ehbroker

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// selectorFilter is the filter-set key (and symbolic descriptor) of the
// SQL-like selector the SDK sends on a receiver attach.
const selectorFilter = "apache.org:selector-filter:string"

// selectorFilterCode is the numeric descriptor of the same filter.
const selectorFilterCode = 0x0000468C00000004

// startFilter is a parsed selector: one of
//
//	amqp.annotation.x-opt-offset > '123'          ('-1' earliest, '@latest')
//	amqp.annotation.x-opt-sequence-number >= '5'
//	amqp.annotation.x-opt-enqueued-time > '1700000000000'   (Unix ms)
//
// with the value quoted or not, and the operator > or >=.
type startFilter struct {
	field     string // offset, sequence-number or enqueued-time
	inclusive bool
	latest    bool // offset '@latest'
	value     int64
}

// parseSelector parses the selector expression. An empty expression means
// "from the latest", as the service treats a missing filter.
func parseSelector(expr string) (startFilter, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return startFilter{field: "offset", latest: true}, nil
	}
	const prefix = "amqp.annotation.x-opt-"
	lower := strings.ToLower(expr)
	if !strings.HasPrefix(lower, prefix) {
		return startFilter{}, fmt.Errorf("selector %q: want amqp.annotation.x-opt-<field> <op> <value>", expr)
	}
	rest := expr[len(prefix):]
	name, rest, ok := strings.Cut(rest, " ")
	if !ok {
		return startFilter{}, fmt.Errorf("selector %q: missing operator", expr)
	}
	var f startFilter
	f.field = strings.ToLower(name)
	rest = strings.TrimSpace(rest)
	switch {
	case strings.HasPrefix(rest, ">="):
		f.inclusive = true
		rest = rest[2:]
	case strings.HasPrefix(rest, ">"):
		rest = rest[1:]
	default:
		return startFilter{}, fmt.Errorf("selector %q: operator must be > or >=", expr)
	}
	val := strings.Trim(strings.TrimSpace(rest), "'")
	switch f.field {
	case "offset":
		if val == "@latest" {
			f.latest = true
			return f, nil
		}
	case "sequence-number", "enqueued-time":
	default:
		return startFilter{}, fmt.Errorf("selector %q: unsupported field x-opt-%s", expr, name)
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return startFilter{}, fmt.Errorf("selector %q: value %q is not an integer", expr, val)
	}
	f.value = n
	return f, nil
}

// matches reports whether ev satisfies the filter.
func (f startFilter) matches(ev *storedEvent) bool {
	var got int64
	switch f.field {
	case "offset":
		got = ev.Offset
	case "sequence-number":
		got = ev.SequenceNumber
	default:
		got = ev.EnqueuedTime.UnixMilli()
	}
	if f.inclusive {
		return got >= f.value
	}
	return got > f.value
}

// start resolves the filter to the first sequence number to deliver. The
// fields filtered on only grow along a partition, so every later event
// matches too.
func (p *partition) start(f startFilter) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.latest {
		if f.inclusive && p.next > p.first {
			return p.next - 1
		}
		return p.next
	}
	if f.field == "sequence-number" {
		seq := f.value + 1
		if f.inclusive {
			seq = f.value
		}
		return max(seq, p.first)
	}
	// Binary search: the first retained event that matches.
	lo, hi := 0, len(p.events)
	for lo < hi {
		mid := (lo + hi) / 2
		if f.matches(p.events[mid]) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return p.first + int64(lo)
}

// properties answers a $management READ of com.microsoft:partition.
func (p *partition) properties(hub string) amqpMap {
	p.mu.Lock()
	defer p.mu.Unlock()
	lastSeq, lastOff, lastTime := int64(-1), "-1", time.Unix(0, 0).UTC()
	if n := len(p.events); n > 0 {
		last := p.events[n-1]
		lastSeq, lastOff, lastTime = last.SequenceNumber, strconv.FormatInt(last.Offset, 10), last.EnqueuedTime
	}
	return amqpMap{
		{"name", hub},
		{"type", "com.microsoft:partition"},
		{"partition", p.id},
		{"begin_sequence_number", p.first},
		{"last_enqueued_sequence_number", lastSeq},
		{"last_enqueued_offset", lastOff},
		{"last_enqueued_time_utc", lastTime},
		{"is_partition_empty", len(p.events) == 0},
	}
}
