package storage

import (
	"fmt"
	"strings"
)

// The event hash of docs/format/event-v1.md written as a ClickHouse
// expression, so the engine can recompute every row's hash where the data
// lives, in parallel, without shipping rows out. It is generated from the
// same field list as hashEncoder.EventHash, and TestSQLHashMatchesGo keeps
// the two identical. `custody verify --independent` recomputes in Go
// instead, for those who would rather not trust the engine's arithmetic.
//
// The encoding is built from ClickHouse's RowBinary format, which already
// writes what event-v1 wants for most fields: a String is its uvarint
// (LEB128) length then its bytes (LowCardinality as its String), an
// Array(String) its uvarint count then each string, an
// Array(Tuple(String, String)) its count then key and value, a
// FixedString(32) its 32 bytes. Integers are RowBinary little-endian, so
// they are byte-swapped to event-v1's big-endian first. formatRow over a run
// of such columns costs one pass per row instead of several functions per
// column (the length prefixes alone were most of the old expression's
// cost). The raw record, most of a row's bytes, is appended with concat and
// its own length prefix instead: through formatRow it cost more than all
// the other columns together.

// hashField says how one column enters the hash.
type hashField struct {
	column string
	kind   byte // 's' string, 'b' big string, 'i' int64, 't' time, 'l' list, 'm' map
}

// hashFields lists the hashed columns after the prefix and prev_hash, in
// the order hashEncoder.EventHash writes them.
var hashFields = []hashField{
	{"chain", 's'}, {"seq", 'i'}, {"source_offset", 'i'}, {"event_id", 's'},
	{"event_time", 't'}, {"received_time", 't'},
	{"service", 's'}, {"category", 's'}, {"source_kind", 's'}, {"source_format", 's'}, {"source_position", 's'},
	{"tenant_id", 's'}, {"subscription_id", 's'}, {"resource_group", 's'}, {"provider", 's'}, {"resource_type", 's'},
	{"resource_name", 's'}, {"resource_id", 's'}, {"actor_name", 's'}, {"actor_object_id", 's'}, {"actor_type", 's'},
	{"actor_app_id", 's'}, {"actor_groups", 'l'}, {"impersonated_by", 's'}, {"source_ip", 's'}, {"user_agent", 's'},
	{"action", 's'}, {"action_class", 's'},
	{"target_api_group", 's'}, {"target_resource", 's'}, {"target_subresource", 's'}, {"target_namespace", 's'},
	{"target_name", 's'}, {"target_repository", 's'}, {"target_tag", 's'}, {"target_digest", 's'},
	{"target_container_group", 's'}, {"target_container", 's'}, {"target_image", 's'},
	{"outcome", 's'}, {"status_code", 'i'}, {"reason", 's'}, {"correlation_id", 's'}, {"request_id", 's'},
	{"tags", 'l'}, {"attributes", 'm'}, {"raw", 'b'}, {"raw_format", 's'},
}

// sqlUvarint is the uvarint encoding of a length n (below 2^35) in SQL:
// five 7-bit groups, each with the continuation bit set when a higher
// group follows, cut to the bytes the value needs. Plain arithmetic over
// whole columns, no branches.
func sqlUvarint(n string) string {
	var groups, more []string
	for i := 0; i < 5; i++ {
		g := n
		if i > 0 {
			g = fmt.Sprintf("bitShiftRight(%s, %d)", n, 7*i)
		}
		if i == 4 {
			groups = append(groups, g)
			break
		}
		cont := fmt.Sprintf("(%s >= %d)", n, 1<<(7*(i+1)))
		groups = append(groups, fmt.Sprintf("bitAnd(%s, 127) + 128 * %s", g, cont))
		more = append(more, cont)
	}
	return fmt.Sprintf("substring(char(%s), 1, 1 + %s)", strings.Join(groups, ", "), strings.Join(more, " + "))
}

// EventHashSQL is a ClickHouse expression computing a row's hash (a
// FixedString(32)) from the events columns.
func EventHashSQL() string {
	parts := []string{"char(69, 1)"} // 0x45 'E', version 1
	run := []string{"prev_hash"}
	flush := func() {
		if len(run) > 0 {
			parts = append(parts, "formatRow('RowBinary', "+strings.Join(run, ", ")+")")
			run = nil
		}
	}
	for _, f := range hashFields {
		c := f.column
		switch f.kind {
		case 's', 'l':
			run = append(run, c)
		case 'b':
			flush()
			parts = append(parts, sqlUvarint("length("+c+")"), c)
		case 'i':
			run = append(run, "byteSwap(toInt64("+c+"))")
		case 't':
			run = append(run, "byteSwap(toUnixTimestamp64Micro("+c+"))")
		case 'm':
			// pairs sorted by key (then value: a Map may hold a key twice)
			run = append(run, fmt.Sprintf("arraySort(arrayZip(mapKeys(%s), mapValues(%s)))", c, c))
		}
	}
	flush()
	return "SHA256(concat(" + strings.Join(parts, ", ") + "))"
}
