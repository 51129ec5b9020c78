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

// hashField says how one column enters the hash.
type hashField struct {
	column string
	kind   byte // 's' string, 'i' int64, 't' time, 'l' list, 'm' map
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
	{"tags", 'l'}, {"attributes", 'm'}, {"raw", 's'}, {"raw_format", 's'},
}

// sqlUvarint is the uvarint encoding of a length (below 2^35) in SQL.
func sqlUvarint(n string) string {
	b := func(shift int, more bool) string {
		v := fmt.Sprintf("intDiv(%s, %d) %% 128", n, 1<<shift)
		if shift == 0 {
			v = n + " % 128"
		}
		if more {
			return v + " + 128"
		}
		return fmt.Sprintf("intDiv(%s, %d)", n, 1<<shift)
	}
	return fmt.Sprintf("multiIf(%[1]s < 128, char(%[1]s), %[1]s < 16384, char(%[2]s, %[3]s), %[1]s < 2097152, char(%[2]s, %[4]s, %[5]s), %[1]s < 268435456, char(%[2]s, %[4]s, %[6]s, %[7]s), char(%[2]s, %[4]s, %[6]s, %[8]s, %[9]s))",
		n, b(0, true), b(7, false), b(7, true), b(14, false), b(14, true), b(21, false), b(21, true), b(28, false))
}

func sqlString(expr string) string {
	return fmt.Sprintf("concat(%s, %s)", sqlUvarint("length("+expr+")"), expr)
}

func sqlInt64(expr string) string {
	return fmt.Sprintf("reverse(reinterpretAsFixedString(toInt64(%s)))", expr)
}

// EventHashSQL is a ClickHouse expression computing a row's hash (a
// FixedString(32)) from the events columns.
func EventHashSQL() string {
	parts := []string{"char(69, 1)", "prev_hash"} // 0x45 'E', version 1
	for _, f := range hashFields {
		c := f.column
		switch f.kind {
		case 's':
			parts = append(parts, sqlString(c))
		case 'i':
			parts = append(parts, sqlInt64(c))
		case 't':
			parts = append(parts, sqlInt64("toUnixTimestamp64Micro("+c+")"))
		case 'l':
			parts = append(parts, fmt.Sprintf("concat(%s, arrayStringConcat(arrayMap(x -> %s, %s)))", sqlUvarint("length("+c+")"), sqlString("toString(x)"), c))
		case 'm':
			parts = append(parts, fmt.Sprintf("concat(%s, arrayStringConcat(arrayMap(kv -> concat(%s, %s), arraySort(arrayZip(mapKeys(%s), mapValues(%s))))))",
				sqlUvarint("length(mapKeys("+c+"))"), sqlString("kv.1"), sqlString("kv.2"), c, c))
		}
	}
	return "SHA256(concat(" + strings.Join(parts, ",\n    ") + "))"
}
