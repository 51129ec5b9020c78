package normalize

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/custody-audit/custody/event"
)

// MarshalOCSFReference is the OCSF event as it was first defined: a tree
// of maps given to json.Marshal. AppendOCSF writes the same bytes
// directly; the golden and fuzz tests hold the two together.
func MarshalOCSFReference(e event.Event) ([]byte, error) { return json.Marshal(ocsfReference(e)) }

func itoa(n int) string { return strconv.Itoa(n) }

// ocsfReference maps e to an OCSF event: Authentication (3002) for login-class
// events (ACR logins, AKS guard), API Activity (6003) for everything else.
// The original record is carried in raw_data; Custody-specific fields
// without an OCSF home are kept under unmapped.
func ocsfReference(e event.Event) map[string]any {
	ms := e.Time.UnixMilli()
	status, statusName := ocsfStatusUnknown, "Unknown"
	switch e.Outcome {
	case event.OutcomeSuccess:
		status, statusName = ocsfStatusSuccess, "Success"
	case event.OutcomeFailure:
		status, statusName = ocsfStatusFailure, "Failure"
	}
	severity := ocsfSeverityInformation
	if len(e.Tags) > 0 {
		severity = ocsfSeverityMedium
	}
	user := map[string]any{"type_id": ocsfUserType(e.Actor.Type), "type": string(e.Actor.Type)}
	if e.Actor.Name != "" {
		user["name"] = e.Actor.Name
	}
	if e.Actor.ObjectID != "" {
		user["uid"] = e.Actor.ObjectID
	}
	if len(e.Actor.Groups) > 0 {
		groups := make([]map[string]any, len(e.Actor.Groups))
		for i, g := range e.Actor.Groups {
			groups[i] = map[string]any{"name": g}
		}
		user["groups"] = groups
	}
	actor := map[string]any{"user": user}
	if e.Actor.AppID != "" {
		actor["app_uid"] = e.Actor.AppID
	}
	if e.Actor.ImpersonatedBy != "" {
		actor["invoked_by"] = e.Actor.ImpersonatedBy
	}
	src := map[string]any{}
	if e.SourceIP.IsValid() {
		src["ip"] = e.SourceIP.String()
	}
	metadata := map[string]any{
		"version":      OCSFVersion,
		"uid":          e.ID,
		"product":      map[string]any{"name": ocsfProductName(e.Service), "vendor_name": ocsfProductVendor},
		"log_name":     e.Category,
		"log_provider": e.SourceKind,
		"labels":       e.Tags,
	}
	if e.CorrelationID != "" {
		metadata["correlation_uid"] = e.CorrelationID
	}
	if !e.ReceivedTime.IsZero() {
		metadata["processed_time"] = e.ReceivedTime.UnixMilli()
	}
	cloud := map[string]any{"provider": "Azure"}
	if e.TenantID != "" {
		cloud["org"] = map[string]any{"uid": e.TenantID}
	}
	if e.SubscriptionID != "" {
		cloud["account"] = map[string]any{"uid": e.SubscriptionID, "type": "Azure Subscription"}
	}
	unmapped := map[string]any{
		"custody_action":       e.Action,
		"custody_action_class": string(e.ActionClass),
		"source_format":        e.SourceFormat,
		"source_position":      e.SourcePosition,
	}
	for k, v := range e.Attributes {
		unmapped[k] = v
	}
	out := map[string]any{
		"time":         ms,
		"severity_id":  severity,
		"status_id":    status,
		"status":       statusName,
		"message":      e.Action,
		"metadata":     metadata,
		"cloud":        cloud,
		"actor":        actor,
		"src_endpoint": src,
		"raw_data":     string(e.Raw),
		"unmapped":     unmapped,
	}
	if e.StatusCode != 0 {
		out["status_code"] = itoa(int(e.StatusCode))
	}
	if e.Reason != "" {
		out["status_detail"] = e.Reason
	}
	if e.ActionClass == event.ClassLogin {
		out["class_uid"] = OCSFClassAuthentication
		out["class_name"] = "Authentication"
		out["category_uid"] = ocsfCategoryIAM
		out["category_name"] = "Identity & Access Management"
		out["activity_id"] = ocsfAuthActivityLogon
		out["activity_name"] = "Logon"
		out["type_uid"] = OCSFClassAuthentication*100 + ocsfAuthActivityLogon
		out["user"] = user
		out["logon_type_id"] = ocsfLogonTypeNetwork
		out["is_mfa"] = false
		out["dst_endpoint"] = map[string]any{"name": e.ResourceName, "uid": e.ResourceID}
		if e.UserAgent != "" {
			out["http_request"] = map[string]any{"user_agent": e.UserAgent}
		}
		return out
	}
	act, actName := ocsfAPIActivity(e.ActionClass, e.Action)
	out["class_uid"] = OCSFClassAPIActivity
	out["class_name"] = "API Activity"
	out["category_uid"] = ocsfCategoryApplication
	out["category_name"] = "Application Activity"
	out["activity_id"] = act
	out["activity_name"] = actName
	out["type_uid"] = OCSFClassAPIActivity*100 + act
	api := map[string]any{"operation": e.Action, "service": map[string]any{"name": string(e.Service)}}
	if e.RequestID != "" {
		api["request"] = map[string]any{"uid": e.RequestID}
	}
	out["api"] = api
	if e.UserAgent != "" {
		out["http_request"] = map[string]any{"user_agent": e.UserAgent}
	}
	res := []map[string]any{}
	if e.ResourceID != "" {
		res = append(res, map[string]any{"uid": e.ResourceID, "name": e.ResourceName, "type": strings.TrimPrefix(e.Provider+"/"+e.ResourceType, "/")})
	}
	if t := e.Target; t.Resource != "" || t.Repository != "" || t.ContainerGroup != "" {
		r := map[string]any{}
		switch {
		case t.Resource != "":
			r["type"] = strings.TrimPrefix(t.APIGroup+"/"+t.Resource, "/")
			r["name"] = t.Name
			if t.Namespace != "" {
				r["namespace"] = t.Namespace
			}
		case t.Repository != "":
			r["type"] = "container_repository"
			r["name"] = t.Repository
			r["version"] = firstNonEmpty(t.Tag, t.Digest)
		default:
			r["type"] = "container_group"
			r["name"] = t.ContainerGroup
		}
		if t.Image != "" {
			r["data"] = map[string]any{"image": t.Image}
		}
		res = append(res, r)
	}
	out["resources"] = res
	return out
}
