package bundle

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// jsonEncoder writes rows as JSON objects with the columns in table
// order. It is hand-written (rather than encoding/json over a struct) so
// that the text is fixed by the spec and export runs at disk speed.
type jsonEncoder struct {
	b64 []string
}

// appendRow appends r as one JSON object (no newline).
func (e *jsonEncoder) appendRow(dst []byte, r *trail.Row) []byte {
	e.b64 = e.b64[:0]
	dst = append(dst, '{')
	for i := range columns {
		c := &columns[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, c.name...)
		dst = append(dst, '"', ':')
		switch c.kind {
		case kString:
			s := *c.str(r)
			if needsB64(s, false) {
				e.b64 = append(e.b64, c.name)
				dst = appendJSONString(dst, base64.StdEncoding.EncodeToString([]byte(s)))
			} else {
				dst = appendJSONString(dst, s)
			}
		case kSeq:
			dst = strconv.AppendUint(dst, r.Seq, 10)
		case kInt64:
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case kInt32:
			dst = strconv.AppendInt(dst, int64(r.Event.StatusCode), 10)
		case kTime:
			t := r.Event.Time
			if c.name == "received_time" {
				t = r.Event.ReceivedTime
			}
			dst = append(dst, '"')
			dst = t.UTC().AppendFormat(dst, timeLayout)
			dst = append(dst, '"')
		case kIP:
			dst = appendJSONString(dst, ipString(r.Event.SourceIP))
		case kList:
			l := r.Event.Tags
			if c.name == "actor_groups" {
				l = r.Event.Actor.Groups
			}
			dst = e.appendList(dst, l)
		case kMap:
			dst = e.appendMap(dst, r.Event.Attributes)
		case kBytes:
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, r.Event.Raw)
			dst = append(dst, '"')
		case kHash:
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			dst = append(dst, '"')
			dst = hex.AppendEncode(dst, h[:])
			dst = append(dst, '"')
		}
	}
	if len(e.b64) > 0 {
		dst = append(dst, `,"`+b64Column+`":`...)
		dst = e.appendList(dst, e.b64)
	}
	return append(dst, '}')
}

// appendList writes a list of strings. Lists and maps hold text the hash
// covers byte for byte, so an element that is not valid UTF-8 makes the
// whole row unexportable in a JSON format rather than silently altered;
// the normalizer only produces valid UTF-8 there.
func (e *jsonEncoder) appendList(dst []byte, l []string) []byte {
	dst = append(dst, '[')
	for i, s := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

func (e *jsonEncoder) appendMap(dst []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

// listsValid reports whether every list element, map key and map value of
// r is valid UTF-8 (JSON and CSV carry them as JSON text).
func listsValid(r *trail.Row) error {
	for _, s := range r.Event.Actor.Groups {
		if !utf8.ValidString(s) {
			return fmt.Errorf("actor_groups holds bytes that are not UTF-8")
		}
	}
	for _, s := range r.Event.Tags {
		if !utf8.ValidString(s) {
			return fmt.Errorf("tags holds bytes that are not UTF-8")
		}
	}
	for k, v := range r.Event.Attributes {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("attributes holds bytes that are not UTF-8")
		}
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s (valid UTF-8) as a JSON string, as export-v1
// writes it (normalize.EscapeBundle): control characters, quote and
// backslash are escaped, and U+2028/U+2029 too, so a line is also a valid
// JavaScript string.
func appendJSONString[S ~string | ~[]byte](dst []byte, s S) []byte {
	return normalize.AppendJSONString(dst, s, normalize.EscapeBundle)
}

// jsonRecord is a row as the JSON formats carry it.
type jsonRecord struct {
	Chain                string            `json:"chain"`
	Seq                  uint64            `json:"seq"`
	SourceOffset         int64             `json:"source_offset"`
	EventID              string            `json:"event_id"`
	EventTime            string            `json:"event_time"`
	ReceivedTime         string            `json:"received_time"`
	Service              string            `json:"service"`
	Category             string            `json:"category"`
	SourceKind           string            `json:"source_kind"`
	SourceFormat         string            `json:"source_format"`
	SourcePosition       string            `json:"source_position"`
	TenantID             string            `json:"tenant_id"`
	SubscriptionID       string            `json:"subscription_id"`
	ResourceGroup        string            `json:"resource_group"`
	Provider             string            `json:"provider"`
	ResourceType         string            `json:"resource_type"`
	ResourceName         string            `json:"resource_name"`
	ResourceID           string            `json:"resource_id"`
	ActorName            string            `json:"actor_name"`
	ActorObjectID        string            `json:"actor_object_id"`
	ActorType            string            `json:"actor_type"`
	ActorAppID           string            `json:"actor_app_id"`
	ActorGroups          []string          `json:"actor_groups"`
	ImpersonatedBy       string            `json:"impersonated_by"`
	SourceIP             string            `json:"source_ip"`
	UserAgent            string            `json:"user_agent"`
	Action               string            `json:"action"`
	ActionClass          string            `json:"action_class"`
	TargetAPIGroup       string            `json:"target_api_group"`
	TargetResource       string            `json:"target_resource"`
	TargetSubresource    string            `json:"target_subresource"`
	TargetNamespace      string            `json:"target_namespace"`
	TargetName           string            `json:"target_name"`
	TargetRepository     string            `json:"target_repository"`
	TargetTag            string            `json:"target_tag"`
	TargetDigest         string            `json:"target_digest"`
	TargetContainerGroup string            `json:"target_container_group"`
	TargetContainer      string            `json:"target_container"`
	TargetImage          string            `json:"target_image"`
	Outcome              string            `json:"outcome"`
	StatusCode           int32             `json:"status_code"`
	Reason               string            `json:"reason"`
	CorrelationID        string            `json:"correlation_id"`
	RequestID            string            `json:"request_id"`
	Tags                 []string          `json:"tags"`
	Attributes           map[string]string `json:"attributes"`
	Raw                  []byte            `json:"raw"`
	RawFormat            string            `json:"raw_format"`
	PrevHash             string            `json:"prev_hash"`
	Hash                 string            `json:"hash"`
	B64                  []string          `json:"b64"`
}

// decodeJSONRow parses one JSON object into r. Unknown fields are refused:
// a bundle carries exactly the spec's columns.
func decodeJSONRow(line []byte, r *trail.Row, index map[string]int) error {
	var j jsonRecord
	if err := strictJSON(line, &j); err != nil {
		return err
	}
	return j.toRow(r, index)
}

// strictJSON decodes one JSON object into j, refusing unknown fields and
// trailing text.
func strictJSON(line []byte, j *jsonRecord) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(j); err != nil {
		return fmt.Errorf("not a row object: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("text after the row object")
	}
	return nil
}

// lineDecoder decodes jsonl lines quickly: a line that is exactly the
// canonical encoding of the row it decodes to (what export writes) needs
// no further checks; any other line is decoded strictly, and one that
// decodes but is not canonical (reformatted, keys reordered or added) is
// reported, so that every edited line is located even when the row's
// hash still verifies.
type lineDecoder struct {
	hasher trail.Hasher // reused across the lines this decoder checks
	enc    jsonEncoder
	buf    []byte
	line   []byte // an OCSF line derived from a row
	index  map[string]int
}

// errNotCanonical means a line decodes to a row but is not the row's
// canonical encoding.
var errNotCanonical = fmt.Errorf("the line is not the canonical encoding of its row (reformatted, reordered or with extra content)")

func (d *lineDecoder) decode(line []byte, r *trail.Row) error {
	var j jsonRecord
	if err := gojson.Unmarshal(line, &j); err != nil {
		if serr := strictJSON(line, &j); serr != nil {
			return serr
		}
		return fmt.Errorf("not a row object: %w", err)
	}
	if err := j.toRow(r, d.index); err != nil {
		return err
	}
	d.buf = d.enc.appendRow(d.buf[:0], r)
	if bytes.Equal(d.buf, line) {
		return nil
	}
	if err := strictJSON(line, &jsonRecord{}); err != nil {
		return err
	}
	return errNotCanonical
}

func (j *jsonRecord) toRow(r *trail.Row, index map[string]int) error {
	*r = trail.Row{Chain: j.Chain, Seq: j.Seq, Offset: j.SourceOffset}
	e := &r.Event
	e.ID = j.EventID
	var err error
	if e.Time, err = parseTime(j.EventTime); err != nil {
		return fmt.Errorf("event_time: %w", err)
	}
	if e.ReceivedTime, err = parseTime(j.ReceivedTime); err != nil {
		return fmt.Errorf("received_time: %w", err)
	}
	e.Service = event.Service(j.Service)
	e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition = j.Category, j.SourceKind, j.SourceFormat, j.SourcePosition
	e.TenantID, e.SubscriptionID, e.ResourceGroup = j.TenantID, j.SubscriptionID, j.ResourceGroup
	e.Provider, e.ResourceType, e.ResourceName, e.ResourceID = j.Provider, j.ResourceType, j.ResourceName, j.ResourceID
	e.Actor.Name, e.Actor.ObjectID, e.Actor.Type, e.Actor.AppID = j.ActorName, j.ActorObjectID, event.ActorType(j.ActorType), j.ActorAppID
	e.Actor.Groups, e.Actor.ImpersonatedBy = j.ActorGroups, j.ImpersonatedBy
	if e.SourceIP, err = parseIP(j.SourceIP); err != nil {
		return fmt.Errorf("source_ip: %w", err)
	}
	e.UserAgent, e.Action, e.ActionClass = j.UserAgent, j.Action, event.ActionClass(j.ActionClass)
	t := &e.Target
	t.APIGroup, t.Resource, t.Subresource, t.Namespace, t.Name = j.TargetAPIGroup, j.TargetResource, j.TargetSubresource, j.TargetNamespace, j.TargetName
	t.Repository, t.Tag, t.Digest = j.TargetRepository, j.TargetTag, j.TargetDigest
	t.ContainerGroup, t.Container, t.Image = j.TargetContainerGroup, j.TargetContainer, j.TargetImage
	e.Outcome, e.StatusCode, e.Reason = event.Outcome(j.Outcome), j.StatusCode, j.Reason
	e.CorrelationID, e.RequestID = j.CorrelationID, j.RequestID
	e.Tags, e.Attributes, e.Raw, e.RawFormat = j.Tags, j.Attributes, j.Raw, j.RawFormat
	if r.PrevHash, err = parseHash(j.PrevHash); err != nil {
		return fmt.Errorf("prev_hash: %w", err)
	}
	if r.Hash, err = parseHash(j.Hash); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	return applyB64(r, j.B64, index)
}
