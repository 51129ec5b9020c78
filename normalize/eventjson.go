package normalize

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/event"
)

// EventJSONVersion is the version of the JSON form written by
// MarshalEventJSON, carried in its "v" key.
const EventJSONVersion = 1

// The stable JSON form of event.Event (version 1): snake_case keys in a
// fixed order, times in RFC 3339 UTC with up to microsecond precision,
// empty optional fields omitted, attributes sorted by key. The raw record
// is embedded as a JSON string ("raw") when it is valid UTF-8, which every
// JSON record is, and as standard base64 ("raw_base64") otherwise, so the
// bytes always round-trip exactly. Strings are escaped as encoding/json
// escapes them without HTML escaping (control characters, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029), so the output is byte for byte what
// encoding/json made of the tagged struct this form was first defined by
// (kept in eventjson_reference_test.go; golden and fuzz tests hold the
// two together).
//
//	{"v":1,"id":…,"time":…,"received_time":…,"service":…,"category":…,
//	 "source_kind":…,"source_format":…,"source_position":…,"tenant_id":…,
//	 "subscription_id":…,"resource_group":…,"provider":…,"resource_type":…,
//	 "resource_name":…,"resource_id":…,"actor":{"name":…,"object_id":…,
//	 "type":…,"app_id":…,"groups":[…],"impersonated_by":…},"source_ip":…,
//	 "user_agent":…,"action":…,"action_class":…,"target":{"api_group":…,
//	 "resource":…,"subresource":…,"namespace":…,"name":…,"repository":…,
//	 "tag":…,"digest":…,"container_group":…,"container":…,"image":…},
//	 "outcome":…,"status_code":…,"reason":…,"correlation_id":…,
//	 "request_id":…,"tags":[…],"attributes":{…},"raw_format":…,
//	 "raw":…|"raw_base64":…}
//
// v, id, time, service, source_format, actor (with type), action,
// action_class, outcome and raw_format are always present.

const timeLayout = "2006-01-02T15:04:05.999999Z07:00"

// MarshalEventJSON writes e in the stable JSON form, without a trailing
// newline. The golden files and the `custody normalize` command use it.
func MarshalEventJSON(e event.Event) ([]byte, error) {
	return AppendEventJSON(nil, &e), nil
}

// AppendEventJSON appends e in the stable JSON form (see MarshalEventJSON)
// to dst, without a trailing newline, and returns the extended buffer.
func AppendEventJSON(dst []byte, e *event.Event) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, EventJSONVersion, 10)
	dst = appendField(dst, `,"id":`, e.ID)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, e.Time)
	if !e.ReceivedTime.IsZero() {
		dst = append(dst, `,"received_time":`...)
		dst = appendTime(dst, e.ReceivedTime)
	}
	dst = appendField(dst, `,"service":`, string(e.Service))
	dst = appendOmitEmpty(dst, `,"category":`, e.Category)
	dst = appendOmitEmpty(dst, `,"source_kind":`, e.SourceKind)
	dst = appendField(dst, `,"source_format":`, e.SourceFormat)
	dst = appendOmitEmpty(dst, `,"source_position":`, e.SourcePosition)
	dst = appendOmitEmpty(dst, `,"tenant_id":`, e.TenantID)
	dst = appendOmitEmpty(dst, `,"subscription_id":`, e.SubscriptionID)
	dst = appendOmitEmpty(dst, `,"resource_group":`, e.ResourceGroup)
	dst = appendOmitEmpty(dst, `,"provider":`, e.Provider)
	dst = appendOmitEmpty(dst, `,"resource_type":`, e.ResourceType)
	dst = appendOmitEmpty(dst, `,"resource_name":`, e.ResourceName)
	dst = appendOmitEmpty(dst, `,"resource_id":`, e.ResourceID)

	a := &e.Actor
	dst = append(dst, `,"actor":{`...)
	if a.Name != "" {
		dst = appendField(dst, `"name":`, a.Name)
		dst = append(dst, ',')
	}
	if a.ObjectID != "" {
		dst = appendField(dst, `"object_id":`, a.ObjectID)
		dst = append(dst, ',')
	}
	dst = appendField(dst, `"type":`, string(a.Type))
	dst = appendOmitEmpty(dst, `,"app_id":`, a.AppID)
	if len(a.Groups) > 0 {
		dst = append(dst, `,"groups":`...)
		dst = appendStrings(dst, a.Groups)
	}
	dst = appendOmitEmpty(dst, `,"impersonated_by":`, a.ImpersonatedBy)
	dst = append(dst, '}')

	if e.SourceIP.IsValid() {
		dst = append(dst, `,"source_ip":`...)
		if e.SourceIP.Zone() == "" {
			dst = append(dst, '"')
			dst = e.SourceIP.AppendTo(dst)
			dst = append(dst, '"')
		} else {
			dst = appendString(dst, e.SourceIP.String())
		}
	}
	dst = appendOmitEmpty(dst, `,"user_agent":`, e.UserAgent)
	dst = appendField(dst, `,"action":`, e.Action)
	dst = appendField(dst, `,"action_class":`, string(e.ActionClass))
	if t := &e.Target; *t != (event.Target{}) {
		dst = append(dst, `,"target":{`...)
		n := len(dst)
		for _, f := range [...]struct{ key, v string }{
			{`"api_group":`, t.APIGroup}, {`"resource":`, t.Resource}, {`"subresource":`, t.Subresource},
			{`"namespace":`, t.Namespace}, {`"name":`, t.Name}, {`"repository":`, t.Repository},
			{`"tag":`, t.Tag}, {`"digest":`, t.Digest}, {`"container_group":`, t.ContainerGroup},
			{`"container":`, t.Container}, {`"image":`, t.Image},
		} {
			if f.v == "" {
				continue
			}
			if len(dst) > n {
				dst = append(dst, ',')
			}
			dst = appendField(dst, f.key, f.v)
		}
		dst = append(dst, '}')
	}
	dst = appendField(dst, `,"outcome":`, string(e.Outcome))
	if e.StatusCode != 0 {
		dst = append(dst, `,"status_code":`...)
		dst = strconv.AppendInt(dst, int64(e.StatusCode), 10)
	}
	dst = appendOmitEmpty(dst, `,"reason":`, e.Reason)
	dst = appendOmitEmpty(dst, `,"correlation_id":`, e.CorrelationID)
	dst = appendOmitEmpty(dst, `,"request_id":`, e.RequestID)
	if len(e.Tags) > 0 {
		dst = append(dst, `,"tags":`...)
		dst = appendStrings(dst, e.Tags)
	}
	if len(e.Attributes) > 0 {
		dst = append(dst, `,"attributes":{`...)
		var small [16]string
		keys := small[:0]
		for k := range e.Attributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, e.Attributes[k])
		}
		dst = append(dst, '}')
	}
	dst = appendField(dst, `,"raw_format":`, e.RawFormat)
	if utf8.Valid(e.Raw) {
		dst = append(dst, `,"raw":`...)
		dst = appendString(dst, e.Raw)
	} else if len(e.Raw) > 0 {
		dst = append(dst, `,"raw_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, e.Raw)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func appendField(dst []byte, key, v string) []byte {
	return appendString(append(dst, key...), v)
}

func appendOmitEmpty(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendField(dst, key, v)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	if !t.IsZero() {
		dst = t.UTC().Truncate(time.Microsecond).AppendFormat(dst, timeLayout)
	}
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// load64 reads s[i:i+8] as a little-endian word.
func load64[S ~string | ~[]byte](s S, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// appendString appends s as a JSON string, escaped exactly as
// encoding/json escapes it with HTML escaping off.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	return AppendJSONString(dst, s, EscapeNoHTML)
}

// quarantineJSON is the JSON form of a Quarantined record.
type quarantineJSON struct {
	Reason    string  `json:"reason"`
	Format    string  `json:"format,omitempty"`
	Position  string  `json:"position,omitempty"`
	Raw       *string `json:"raw,omitempty"`
	RawBase64 []byte  `json:"raw_base64,omitempty"`
}

// MarshalQuarantinedJSON writes q as one JSON object (reason, format,
// position, and raw or raw_base64 as for events).
func MarshalQuarantinedJSON(q Quarantined) ([]byte, error) {
	j := quarantineJSON{Reason: q.Reason, Format: q.Format, Position: q.Position}
	if utf8.Valid(q.Raw) {
		s := string(q.Raw)
		j.Raw = &s
	} else {
		j.RawBase64 = q.Raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("marshal quarantined record: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
