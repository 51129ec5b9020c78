package bundle

import (
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// parquetRecord is a row as the Parquet format carries it: strings as
// BYTE_ARRAY (any bytes, so no base64), times as INT64 TIMESTAMP(MICROS,
// UTC), lists as LIST, attributes as MAP, raw as BYTE_ARRAY and hashes as
// FIXED_LEN_BYTE_ARRAY(32).
type parquetRecord struct {
	Chain                string            `parquet:"chain"`
	Seq                  uint64            `parquet:"seq"`
	SourceOffset         int64             `parquet:"source_offset"`
	EventID              string            `parquet:"event_id"`
	EventTime            int64             `parquet:"event_time,timestamp(microsecond)"`
	ReceivedTime         int64             `parquet:"received_time,timestamp(microsecond)"`
	Service              string            `parquet:"service"`
	Category             string            `parquet:"category"`
	SourceKind           string            `parquet:"source_kind"`
	SourceFormat         string            `parquet:"source_format"`
	SourcePosition       string            `parquet:"source_position"`
	TenantID             string            `parquet:"tenant_id"`
	SubscriptionID       string            `parquet:"subscription_id"`
	ResourceGroup        string            `parquet:"resource_group"`
	Provider             string            `parquet:"provider"`
	ResourceType         string            `parquet:"resource_type"`
	ResourceName         string            `parquet:"resource_name"`
	ResourceID           string            `parquet:"resource_id"`
	ActorName            string            `parquet:"actor_name"`
	ActorObjectID        string            `parquet:"actor_object_id"`
	ActorType            string            `parquet:"actor_type"`
	ActorAppID           string            `parquet:"actor_app_id"`
	ActorGroups          []string          `parquet:"actor_groups,list"`
	ImpersonatedBy       string            `parquet:"impersonated_by"`
	SourceIP             string            `parquet:"source_ip"`
	UserAgent            string            `parquet:"user_agent"`
	Action               string            `parquet:"action"`
	ActionClass          string            `parquet:"action_class"`
	TargetAPIGroup       string            `parquet:"target_api_group"`
	TargetResource       string            `parquet:"target_resource"`
	TargetSubresource    string            `parquet:"target_subresource"`
	TargetNamespace      string            `parquet:"target_namespace"`
	TargetName           string            `parquet:"target_name"`
	TargetRepository     string            `parquet:"target_repository"`
	TargetTag            string            `parquet:"target_tag"`
	TargetDigest         string            `parquet:"target_digest"`
	TargetContainerGroup string            `parquet:"target_container_group"`
	TargetContainer      string            `parquet:"target_container"`
	TargetImage          string            `parquet:"target_image"`
	Outcome              string            `parquet:"outcome"`
	StatusCode           int32             `parquet:"status_code"`
	Reason               string            `parquet:"reason"`
	CorrelationID        string            `parquet:"correlation_id"`
	RequestID            string            `parquet:"request_id"`
	Tags                 []string          `parquet:"tags,list"`
	Attributes           map[string]string `parquet:"attributes"`
	Raw                  []byte            `parquet:"raw"`
	RawFormat            string            `parquet:"raw_format"`
	PrevHash             [32]byte          `parquet:"prev_hash"`
	Hash                 [32]byte          `parquet:"hash"`
}

func toParquet(r *trail.Row, p *parquetRecord) {
	e := &r.Event
	t := &e.Target
	*p = parquetRecord{
		Chain: r.Chain, Seq: r.Seq, SourceOffset: r.Offset, EventID: e.ID,
		EventTime: e.Time.UnixMicro(), ReceivedTime: e.ReceivedTime.UnixMicro(),
		Service: string(e.Service), Category: e.Category, SourceKind: e.SourceKind, SourceFormat: e.SourceFormat, SourcePosition: e.SourcePosition,
		TenantID: e.TenantID, SubscriptionID: e.SubscriptionID, ResourceGroup: e.ResourceGroup,
		Provider: e.Provider, ResourceType: e.ResourceType, ResourceName: e.ResourceName, ResourceID: e.ResourceID,
		ActorName: e.Actor.Name, ActorObjectID: e.Actor.ObjectID, ActorType: string(e.Actor.Type), ActorAppID: e.Actor.AppID,
		ActorGroups: e.Actor.Groups, ImpersonatedBy: e.Actor.ImpersonatedBy, SourceIP: ipString(e.SourceIP),
		UserAgent: e.UserAgent, Action: e.Action, ActionClass: string(e.ActionClass),
		TargetAPIGroup: t.APIGroup, TargetResource: t.Resource, TargetSubresource: t.Subresource, TargetNamespace: t.Namespace, TargetName: t.Name,
		TargetRepository: t.Repository, TargetTag: t.Tag, TargetDigest: t.Digest,
		TargetContainerGroup: t.ContainerGroup, TargetContainer: t.Container, TargetImage: t.Image,
		Outcome: string(e.Outcome), StatusCode: e.StatusCode, Reason: e.Reason, CorrelationID: e.CorrelationID, RequestID: e.RequestID,
		Tags: e.Tags, Attributes: e.Attributes, Raw: e.Raw, RawFormat: e.RawFormat, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

func (p *parquetRecord) toRow(r *trail.Row) error {
	*r = trail.Row{Chain: p.Chain, Seq: p.Seq, Offset: p.SourceOffset, PrevHash: p.PrevHash, Hash: p.Hash}
	e := &r.Event
	e.ID = p.EventID
	e.Time, e.ReceivedTime = time.UnixMicro(p.EventTime).UTC(), time.UnixMicro(p.ReceivedTime).UTC()
	e.Service, e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition = event.Service(p.Service), p.Category, p.SourceKind, p.SourceFormat, p.SourcePosition
	e.TenantID, e.SubscriptionID, e.ResourceGroup = p.TenantID, p.SubscriptionID, p.ResourceGroup
	e.Provider, e.ResourceType, e.ResourceName, e.ResourceID = p.Provider, p.ResourceType, p.ResourceName, p.ResourceID
	e.Actor = event.Actor{Name: p.ActorName, ObjectID: p.ActorObjectID, Type: event.ActorType(p.ActorType), AppID: p.ActorAppID, Groups: p.ActorGroups, ImpersonatedBy: p.ImpersonatedBy}
	ip, err := parseIP(p.SourceIP)
	if err != nil {
		return fmt.Errorf("source_ip: %w", err)
	}
	e.SourceIP = ip
	e.UserAgent, e.Action, e.ActionClass = p.UserAgent, p.Action, event.ActionClass(p.ActionClass)
	e.Target = event.Target{APIGroup: p.TargetAPIGroup, Resource: p.TargetResource, Subresource: p.TargetSubresource, Namespace: p.TargetNamespace, Name: p.TargetName,
		Repository: p.TargetRepository, Tag: p.TargetTag, Digest: p.TargetDigest, ContainerGroup: p.TargetContainerGroup, Container: p.TargetContainer, Image: p.TargetImage}
	e.Outcome, e.StatusCode, e.Reason, e.CorrelationID, e.RequestID = event.Outcome(p.Outcome), p.StatusCode, p.Reason, p.CorrelationID, p.RequestID
	e.Tags, e.Attributes, e.Raw, e.RawFormat = p.Tags, p.Attributes, p.Raw, p.RawFormat
	return nil
}

// parquetRowGroup bounds the rows of one row group, so memory stays flat
// on large exports.
const parquetRowGroup = 64 * 1024

// parquetWriter writes rows through parquet-go, buffering a few rows per
// call.
type parquetWriter struct {
	w   *parquet.GenericWriter[parquetRecord]
	buf []parquetRecord
}

func newParquetWriter(w io.Writer) *parquetWriter {
	return &parquetWriter{
		w: parquet.NewGenericWriter[parquetRecord](w,
			parquet.Compression(&parquet.Zstd),
			parquet.MaxRowsPerRowGroup(parquetRowGroup),
			parquet.CreatedBy("custody", "export-v1", ""),
		),
		buf: make([]parquetRecord, 0, 256),
	}
}

func (pw *parquetWriter) write(r *trail.Row) error {
	pw.buf = append(pw.buf, parquetRecord{})
	toParquet(r, &pw.buf[len(pw.buf)-1])
	if len(pw.buf) == cap(pw.buf) {
		return pw.flushRows()
	}
	return nil
}

func (pw *parquetWriter) flushRows() error {
	if len(pw.buf) == 0 {
		return nil
	}
	if _, err := pw.w.Write(pw.buf); err != nil {
		return fmt.Errorf("write parquet rows: %w", err)
	}
	clear(pw.buf)
	pw.buf = pw.buf[:0]
	return nil
}

func (pw *parquetWriter) close() error {
	if err := pw.flushRows(); err != nil {
		return err
	}
	if err := pw.w.Close(); err != nil {
		return fmt.Errorf("close parquet file: %w", err)
	}
	return nil
}
