package normalize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/event"
)

// MarshalEventJSONReference is the event JSON form through encoding/json
// and struct tags: what MarshalEventJSON wrote before it had an encoder of
// its own, kept as the general path the encoder is held to (golden and
// fuzz tests).
var MarshalEventJSONReference = marshalEventJSONReference

// eventJSON is the stable JSON form of event.Event (version 1):
// snake_case keys in a fixed order, times in RFC 3339 UTC with up to
// microsecond precision, empty optional fields omitted, attributes sorted
// by key. The raw record is embedded as a JSON string ("raw") when it is
// valid UTF-8, which every JSON record is, and as standard base64
// ("raw_base64") otherwise, so the bytes always round-trip exactly.
type eventJSON struct {
	V              int               `json:"v"`
	ID             string            `json:"id"`
	Time           string            `json:"time"`
	ReceivedTime   string            `json:"received_time,omitempty"`
	Service        event.Service     `json:"service"`
	Category       string            `json:"category,omitempty"`
	SourceKind     string            `json:"source_kind,omitempty"`
	SourceFormat   string            `json:"source_format"`
	SourcePosition string            `json:"source_position,omitempty"`
	TenantID       string            `json:"tenant_id,omitempty"`
	SubscriptionID string            `json:"subscription_id,omitempty"`
	ResourceGroup  string            `json:"resource_group,omitempty"`
	Provider       string            `json:"provider,omitempty"`
	ResourceType   string            `json:"resource_type,omitempty"`
	ResourceName   string            `json:"resource_name,omitempty"`
	ResourceID     string            `json:"resource_id,omitempty"`
	Actor          actorJSON         `json:"actor"`
	SourceIP       string            `json:"source_ip,omitempty"`
	UserAgent      string            `json:"user_agent,omitempty"`
	Action         string            `json:"action"`
	ActionClass    event.ActionClass `json:"action_class"`
	Target         *targetJSON       `json:"target,omitempty"`
	Outcome        event.Outcome     `json:"outcome"`
	StatusCode     int32             `json:"status_code,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	CorrelationID  string            `json:"correlation_id,omitempty"`
	RequestID      string            `json:"request_id,omitempty"`
	Tags           []string          `json:"tags,omitempty"`
	Attributes     map[string]string `json:"attributes,omitempty"`
	RawFormat      string            `json:"raw_format"`
	Raw            *string           `json:"raw,omitempty"`
	RawBase64      []byte            `json:"raw_base64,omitempty"`
}

type actorJSON struct {
	Name           string          `json:"name,omitempty"`
	ObjectID       string          `json:"object_id,omitempty"`
	Type           event.ActorType `json:"type"`
	AppID          string          `json:"app_id,omitempty"`
	Groups         []string        `json:"groups,omitempty"`
	ImpersonatedBy string          `json:"impersonated_by,omitempty"`
}

type targetJSON struct {
	APIGroup       string `json:"api_group,omitempty"`
	Resource       string `json:"resource,omitempty"`
	Subresource    string `json:"subresource,omitempty"`
	Namespace      string `json:"namespace,omitempty"`
	Name           string `json:"name,omitempty"`
	Repository     string `json:"repository,omitempty"`
	Tag            string `json:"tag,omitempty"`
	Digest         string `json:"digest,omitempty"`
	ContainerGroup string `json:"container_group,omitempty"`
	Container      string `json:"container,omitempty"`
	Image          string `json:"image,omitempty"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Microsecond).Format(timeLayout)
}

func marshalEventJSONReference(e event.Event) ([]byte, error) {
	j := eventJSON{
		V:              EventJSONVersion,
		ID:             e.ID,
		Time:           formatTime(e.Time),
		ReceivedTime:   formatTime(e.ReceivedTime),
		Service:        e.Service,
		Category:       e.Category,
		SourceKind:     e.SourceKind,
		SourceFormat:   e.SourceFormat,
		SourcePosition: e.SourcePosition,
		TenantID:       e.TenantID,
		SubscriptionID: e.SubscriptionID,
		ResourceGroup:  e.ResourceGroup,
		Provider:       e.Provider,
		ResourceType:   e.ResourceType,
		ResourceName:   e.ResourceName,
		ResourceID:     e.ResourceID,
		Actor: actorJSON{
			Name:           e.Actor.Name,
			ObjectID:       e.Actor.ObjectID,
			Type:           e.Actor.Type,
			AppID:          e.Actor.AppID,
			Groups:         e.Actor.Groups,
			ImpersonatedBy: e.Actor.ImpersonatedBy,
		},
		UserAgent:     e.UserAgent,
		Action:        e.Action,
		ActionClass:   e.ActionClass,
		Outcome:       e.Outcome,
		StatusCode:    e.StatusCode,
		Reason:        e.Reason,
		CorrelationID: e.CorrelationID,
		RequestID:     e.RequestID,
		Tags:          e.Tags,
		Attributes:    e.Attributes,
		RawFormat:     e.RawFormat,
	}
	if e.SourceIP.IsValid() {
		j.SourceIP = e.SourceIP.String()
	}
	if t := (targetJSON(e.Target)); t != (targetJSON{}) {
		j.Target = &t
	}
	if utf8.Valid(e.Raw) {
		s := string(e.Raw)
		j.Raw = &s
	} else {
		j.RawBase64 = e.Raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("marshal event %s: %w", e.ID, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
