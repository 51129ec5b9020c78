package bundle

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/storage/trail"
)

// colKind is how a column's value is written in the text formats.
type colKind uint8

const (
	kString colKind = iota // text; base64 when not valid UTF-8 (see b64Column)
	kSeq                   // uint64, decimal
	kInt64                 // int64, decimal
	kInt32                 // int32, decimal
	kTime                  // RFC 3339, UTC, exactly 6 fractional digits
	kIP                    // canonical address text, "" when unknown
	kList                  // JSON array of strings
	kMap                   // JSON object of strings, keys sorted
	kBytes                 // standard base64 with padding
	kHash                  // 64 lower-case hex digits
)

// isText reports whether a column's Parquet values are text: strings,
// addresses, list elements, map keys and values.
func (k colKind) isText() bool { return k == kString || k == kIP || k == kList || k == kMap }

// column is one exported field. The list below is the events table's
// column order, which is also the order of the fields in the event hash
// (storage/docs/format/event-v1.md).
type column struct {
	name string
	kind colKind
	// str points at the field of a kString column.
	str func(*trail.Row) *string
}

// b64Column names, in the text formats, the string columns that were
// written as base64 because their bytes are not valid UTF-8 (or, in CSV,
// hold a carriage return, which CSV readers fold).
const b64Column = "b64"

// timeLayout writes DateTime64(6) values: always six fractional digits,
// always UTC.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func strCol(name string, f func(*trail.Row) *string) column {
	return column{name: name, kind: kString, str: f}
}

// columns lists every stored field of an event row.
var columns = []column{
	strCol("chain", func(r *trail.Row) *string { return &r.Chain }),
	{name: "seq", kind: kSeq},
	{name: "source_offset", kind: kInt64},
	strCol("event_id", func(r *trail.Row) *string { return &r.Event.ID }),
	{name: "event_time", kind: kTime},
	{name: "received_time", kind: kTime},
	strCol("service", func(r *trail.Row) *string { return (*string)(&r.Event.Service) }),
	strCol("category", func(r *trail.Row) *string { return &r.Event.Category }),
	strCol("source_kind", func(r *trail.Row) *string { return &r.Event.SourceKind }),
	strCol("source_format", func(r *trail.Row) *string { return &r.Event.SourceFormat }),
	strCol("source_position", func(r *trail.Row) *string { return &r.Event.SourcePosition }),
	strCol("tenant_id", func(r *trail.Row) *string { return &r.Event.TenantID }),
	strCol("subscription_id", func(r *trail.Row) *string { return &r.Event.SubscriptionID }),
	strCol("resource_group", func(r *trail.Row) *string { return &r.Event.ResourceGroup }),
	strCol("provider", func(r *trail.Row) *string { return &r.Event.Provider }),
	strCol("resource_type", func(r *trail.Row) *string { return &r.Event.ResourceType }),
	strCol("resource_name", func(r *trail.Row) *string { return &r.Event.ResourceName }),
	strCol("resource_id", func(r *trail.Row) *string { return &r.Event.ResourceID }),
	strCol("actor_name", func(r *trail.Row) *string { return &r.Event.Actor.Name }),
	strCol("actor_object_id", func(r *trail.Row) *string { return &r.Event.Actor.ObjectID }),
	strCol("actor_type", func(r *trail.Row) *string { return (*string)(&r.Event.Actor.Type) }),
	strCol("actor_app_id", func(r *trail.Row) *string { return &r.Event.Actor.AppID }),
	{name: "actor_groups", kind: kList},
	strCol("impersonated_by", func(r *trail.Row) *string { return &r.Event.Actor.ImpersonatedBy }),
	{name: "source_ip", kind: kIP},
	strCol("user_agent", func(r *trail.Row) *string { return &r.Event.UserAgent }),
	strCol("action", func(r *trail.Row) *string { return &r.Event.Action }),
	strCol("action_class", func(r *trail.Row) *string { return (*string)(&r.Event.ActionClass) }),
	strCol("target_api_group", func(r *trail.Row) *string { return &r.Event.Target.APIGroup }),
	strCol("target_resource", func(r *trail.Row) *string { return &r.Event.Target.Resource }),
	strCol("target_subresource", func(r *trail.Row) *string { return &r.Event.Target.Subresource }),
	strCol("target_namespace", func(r *trail.Row) *string { return &r.Event.Target.Namespace }),
	strCol("target_name", func(r *trail.Row) *string { return &r.Event.Target.Name }),
	strCol("target_repository", func(r *trail.Row) *string { return &r.Event.Target.Repository }),
	strCol("target_tag", func(r *trail.Row) *string { return &r.Event.Target.Tag }),
	strCol("target_digest", func(r *trail.Row) *string { return &r.Event.Target.Digest }),
	strCol("target_container_group", func(r *trail.Row) *string { return &r.Event.Target.ContainerGroup }),
	strCol("target_container", func(r *trail.Row) *string { return &r.Event.Target.Container }),
	strCol("target_image", func(r *trail.Row) *string { return &r.Event.Target.Image }),
	strCol("outcome", func(r *trail.Row) *string { return (*string)(&r.Event.Outcome) }),
	{name: "status_code", kind: kInt32},
	strCol("reason", func(r *trail.Row) *string { return &r.Event.Reason }),
	strCol("correlation_id", func(r *trail.Row) *string { return &r.Event.CorrelationID }),
	strCol("request_id", func(r *trail.Row) *string { return &r.Event.RequestID }),
	{name: "tags", kind: kList},
	{name: "attributes", kind: kMap},
	{name: "raw", kind: kBytes},
	strCol("raw_format", func(r *trail.Row) *string { return &r.Event.RawFormat }),
	{name: "prev_hash", kind: kHash},
	{name: "hash", kind: kHash},
}

// columnIndex maps a column name to its position in columns.
func columnIndex() map[string]int {
	m := make(map[string]int, len(columns))
	for i, c := range columns {
		m[c.name] = i
	}
	return m
}

// normalizeRow gives empty lists and maps one form (empty, never nil), so
// that a row read back from a bundle and the row it was written from
// derive the same OCSF document. The event hash does not distinguish
// them.
func normalizeRow(r *trail.Row) {
	if r.Event.Actor.Groups == nil {
		r.Event.Actor.Groups = []string{}
	}
	if r.Event.Tags == nil {
		r.Event.Tags = []string{}
	}
	if r.Event.Attributes == nil {
		r.Event.Attributes = map[string]string{}
	}
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// parseTime reads a kTime value: RFC 3339 in UTC with microseconds.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", s)
	}
	if t.Nanosecond()%1000 != 0 {
		return time.Time{}, fmt.Errorf("time %q is more precise than microseconds", s)
	}
	return t.UTC(), nil
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// parseIP reads a kIP value; only the canonical text is accepted, since
// that is what the hash covers.
func parseIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.String() != s {
		return netip.Addr{}, fmt.Errorf("%q is not a canonical IP address", s)
	}
	return a, nil
}

func parseHash(s string) (trail.Hash, error) {
	var h trail.Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q is not 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q is not hex", s)
	}
	return h, nil
}

func parseUint(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an unsigned integer", s)
	}
	return v, nil
}

func parseInt(s string, bits int) (int64, error) {
	v, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a %d-bit integer", s, bits)
	}
	return v, nil
}

// applyB64 decodes the string columns a row lists as base64-encoded.
func applyB64(r *trail.Row, names []string, index map[string]int) error {
	for _, n := range names {
		i, ok := index[n]
		if !ok || columns[i].kind != kString {
			return fmt.Errorf("%s lists %q, which is not a text column", b64Column, n)
		}
		p := columns[i].str(r)
		b, err := base64.StdEncoding.DecodeString(*p)
		if err != nil {
			return fmt.Errorf("%s: %q is not base64", n, *p)
		}
		*p = string(b)
	}
	return nil
}

// needsB64 reports whether a string must travel as base64 in a text
// format: JSON cannot carry invalid UTF-8, CSV readers fold "\r\n".
func needsB64(s string, csv bool) bool {
	return !utf8.ValidString(s) || (csv && strings.IndexByte(s, '\r') >= 0)
}
