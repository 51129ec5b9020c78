package normalize

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/custody-audit/custody/event"
)

// OCSF class and category identifiers used by OCSF (schema 1.3.0).
const (
	OCSFVersion             = "1.3.0"
	OCSFClassAPIActivity    = 6003 // Application Activity / API Activity
	OCSFClassAuthentication = 3002 // Identity & Access Management / Authentication
	ocsfCategoryApplication = 6
	ocsfCategoryIAM         = 3
	ocsfActivityCreate      = 1
	ocsfActivityRead        = 2
	ocsfActivityUpdate      = 3
	ocsfActivityDelete      = 4
	ocsfActivityOther       = 99
	ocsfAuthActivityLogon   = 1
	ocsfStatusSuccess       = 1
	ocsfStatusFailure       = 2
	ocsfStatusUnknown       = 0
	ocsfSeverityInformation = 1
	ocsfSeverityMedium      = 3
	ocsfUserTypeUser        = 1
	ocsfUserTypeSystem      = 3
	ocsfUserTypeOther       = 99
	ocsfUserTypeUnknown     = 0
	ocsfProductVendor       = "Microsoft"
	ocsfLogonTypeNetwork    = 3
)

// An OCSF event is Authentication (3002) for login-class events (ACR
// logins, AKS guard) and API Activity (6003) for everything else. The
// original record is carried in raw_data; Custody-specific fields without
// an OCSF home are kept under unmapped, where an attribute of the same
// name replaces a Custody field. The JSON is what json.Marshal writes for
// the document as a tree of maps (keys sorted, HTML characters escaped,
// a nil list as null): MarshalOCSFReference in the tests, held to
// AppendOCSF by the golden and fuzz tests. AppendOCSF writes it directly,
// in key order: `custody normalize --ocsf` and the export bundle's ocsf
// format (writing and verifying) share it.

// ErrOCSFRecordKey means an event's attributes take the key an OCSF
// record member was asked under.
var ErrOCSFRecordKey = errors.New("an attribute takes the OCSF record key")

// AppendOCSF appends e as an OCSF event (one JSON object, no newline).
func AppendOCSF(dst []byte, e *event.Event) []byte {
	var w OCSFWriter
	dst, _ = w.Append(dst, e, "", nil)
	return dst
}

// OCSFWriter writes OCSF events reusing its scratch space. The zero value
// is ready; not safe for concurrent use.
type OCSFWriter struct {
	keys    []string
	scratch []byte
}

// Append appends e as an OCSF event. With recordKey set, unmapped also
// holds recordKey with record as its value, written as it is (compact
// JSON as json.Marshal would write it; empty leaves the member's value
// out, for a caller comparing the rest of a line); an attribute named
// recordKey is then ErrOCSFRecordKey.
func (w *OCSFWriter) Append(dst []byte, e *event.Event, recordKey string, record []byte) ([]byte, error) {
	login := e.ActionClass == event.ClassLogin
	act, actName := ocsfAuthActivityLogon, "Logon"
	if !login {
		act, actName = ocsfAPIActivity(e.ActionClass, e.Action)
	}
	dst = append(dst, '{')
	dst = ocsfNum(dst, "activity_id", int64(act))
	dst = append(dst, ',')
	dst = ocsfStr(dst, "activity_name", actName)
	dst = append(dst, ',')
	dst = ocsfKey(dst, "actor")
	dst = append(dst, '{')
	if e.Actor.AppID != "" {
		dst = ocsfStr(dst, "app_uid", e.Actor.AppID)
		dst = append(dst, ',')
	}
	if e.Actor.ImpersonatedBy != "" {
		dst = ocsfStr(dst, "invoked_by", e.Actor.ImpersonatedBy)
		dst = append(dst, ',')
	}
	dst = ocsfKey(dst, "user")
	dst = ocsfUser(dst, e)
	dst = append(dst, '}', ',')
	if !login {
		dst = ocsfKey(dst, "api")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "operation", e.Action)
		dst = append(dst, ',')
		if e.RequestID != "" {
			dst = ocsfKey(dst, "request")
			dst = append(dst, '{')
			dst = ocsfStr(dst, "uid", e.RequestID)
			dst = append(dst, '}', ',')
		}
		dst = ocsfKey(dst, "service")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "name", string(e.Service))
		dst = append(dst, '}', '}', ',')
	}
	if login {
		dst = ocsfStr(dst, "category_name", "Identity & Access Management")
		dst = append(dst, ',')
		dst = ocsfNum(dst, "category_uid", ocsfCategoryIAM)
		dst = append(dst, ',')
		dst = ocsfStr(dst, "class_name", "Authentication")
		dst = append(dst, ',')
		dst = ocsfNum(dst, "class_uid", OCSFClassAuthentication)
	} else {
		dst = ocsfStr(dst, "category_name", "Application Activity")
		dst = append(dst, ',')
		dst = ocsfNum(dst, "category_uid", ocsfCategoryApplication)
		dst = append(dst, ',')
		dst = ocsfStr(dst, "class_name", "API Activity")
		dst = append(dst, ',')
		dst = ocsfNum(dst, "class_uid", OCSFClassAPIActivity)
	}
	dst = append(dst, ',')
	dst = ocsfKey(dst, "cloud")
	dst = append(dst, '{')
	if e.SubscriptionID != "" {
		dst = ocsfKey(dst, "account")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "type", "Azure Subscription")
		dst = append(dst, ',')
		dst = ocsfStr(dst, "uid", e.SubscriptionID)
		dst = append(dst, '}', ',')
	}
	if e.TenantID != "" {
		dst = ocsfKey(dst, "org")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "uid", e.TenantID)
		dst = append(dst, '}', ',')
	}
	dst = ocsfStr(dst, "provider", "Azure")
	dst = append(dst, '}', ',')
	if login {
		dst = ocsfKey(dst, "dst_endpoint")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "name", e.ResourceName)
		dst = append(dst, ',')
		dst = ocsfStr(dst, "uid", e.ResourceID)
		dst = append(dst, '}', ',')
	}
	if e.UserAgent != "" {
		dst = ocsfKey(dst, "http_request")
		dst = append(dst, '{')
		dst = ocsfStr(dst, "user_agent", e.UserAgent)
		dst = append(dst, '}', ',')
	}
	if login {
		dst = ocsfKey(dst, "is_mfa")
		dst = append(dst, "false,"...)
		dst = ocsfNum(dst, "logon_type_id", ocsfLogonTypeNetwork)
		dst = append(dst, ',')
	}
	dst = ocsfStr(dst, "message", e.Action)
	dst = append(dst, ',')
	dst = ocsfMetadata(dst, e)
	dst = append(dst, ',')
	dst = ocsfKey(dst, "raw_data")
	dst = AppendJSONString(dst, e.Raw, EscapeHTML)
	dst = append(dst, ',')
	if !login {
		dst = w.resources(dst, e)
		dst = append(dst, ',')
	}
	severity := ocsfSeverityInformation
	if len(e.Tags) > 0 {
		severity = ocsfSeverityMedium
	}
	dst = ocsfNum(dst, "severity_id", int64(severity))
	dst = append(dst, ',')
	dst = ocsfKey(dst, "src_endpoint")
	dst = append(dst, '{')
	if e.SourceIP.IsValid() {
		dst = ocsfKey(dst, "ip")
		w.scratch = e.SourceIP.AppendTo(w.scratch[:0])
		dst = AppendJSONString(dst, w.scratch, EscapeHTML)
	}
	dst = append(dst, '}', ',')
	status, statusName := ocsfStatusUnknown, "Unknown"
	switch e.Outcome {
	case event.OutcomeSuccess:
		status, statusName = ocsfStatusSuccess, "Success"
	case event.OutcomeFailure:
		status, statusName = ocsfStatusFailure, "Failure"
	}
	dst = ocsfStr(dst, "status", statusName)
	dst = append(dst, ',')
	if e.StatusCode != 0 {
		dst = ocsfKey(dst, "status_code")
		w.scratch = strconv.AppendInt(w.scratch[:0], int64(e.StatusCode), 10)
		dst = AppendJSONString(dst, w.scratch, EscapeHTML)
		dst = append(dst, ',')
	}
	if e.Reason != "" {
		dst = ocsfStr(dst, "status_detail", e.Reason)
		dst = append(dst, ',')
	}
	dst = ocsfNum(dst, "status_id", int64(status))
	dst = append(dst, ',')
	dst = ocsfNum(dst, "time", e.Time.UnixMilli())
	dst = append(dst, ',')
	dst = ocsfNum(dst, "type_uid", int64(ocsfClass(login)*100+act))
	dst = append(dst, ',')
	dst, err := w.unmapped(dst, e, recordKey, record)
	if err != nil {
		return nil, err
	}
	if login {
		dst = append(dst, ',')
		dst = ocsfKey(dst, "user")
		dst = ocsfUser(dst, e)
	}
	return append(dst, '}'), nil
}

func ocsfClass(login bool) int {
	if login {
		return OCSFClassAuthentication
	}
	return OCSFClassAPIActivity
}

func ocsfStr(dst []byte, key, v string) []byte {
	return AppendJSONString(ocsfKey(dst, key), v, EscapeHTML)
}

func ocsfNum(dst []byte, key string, v int64) []byte {
	return strconv.AppendInt(ocsfKey(dst, key), v, 10)
}

// ocsfKey writes one of the document's own keys, plain ASCII letters and
// underscores that JSON writes as they are; attribute keys, which can be
// anything, go through ocsfAttr.
func ocsfKey(dst []byte, key string) []byte {
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

// ocsfAttr writes an attribute's key and value.
func ocsfAttr(dst []byte, key, v string) []byte {
	dst = append(AppendJSONString(dst, key, EscapeHTML), ':')
	return AppendJSONString(dst, v, EscapeHTML)
}

// ocsfUser writes the actor's user object.
func ocsfUser(dst []byte, e *event.Event) []byte {
	a := &e.Actor
	dst = append(dst, '{')
	if len(a.Groups) > 0 {
		dst = ocsfKey(dst, "groups")
		dst = append(dst, '[')
		for i, g := range a.Groups {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			dst = ocsfStr(dst, "name", g)
			dst = append(dst, '}')
		}
		dst = append(dst, ']', ',')
	}
	if a.Name != "" {
		dst = ocsfStr(dst, "name", a.Name)
		dst = append(dst, ',')
	}
	dst = ocsfStr(dst, "type", string(a.Type))
	dst = append(dst, ',')
	dst = ocsfNum(dst, "type_id", int64(ocsfUserType(a.Type)))
	if a.ObjectID != "" {
		dst = append(dst, ',')
		dst = ocsfStr(dst, "uid", a.ObjectID)
	}
	return append(dst, '}')
}

func ocsfMetadata(dst []byte, e *event.Event) []byte {
	dst = ocsfKey(dst, "metadata")
	dst = append(dst, '{')
	if e.CorrelationID != "" {
		dst = ocsfStr(dst, "correlation_uid", e.CorrelationID)
		dst = append(dst, ',')
	}
	dst = ocsfKey(dst, "labels")
	if e.Tags == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, t := range e.Tags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, t, EscapeHTML)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, ',')
	dst = ocsfStr(dst, "log_name", e.Category)
	dst = append(dst, ',')
	dst = ocsfStr(dst, "log_provider", e.SourceKind)
	dst = append(dst, ',')
	if !e.ReceivedTime.IsZero() {
		dst = ocsfNum(dst, "processed_time", e.ReceivedTime.UnixMilli())
		dst = append(dst, ',')
	}
	dst = ocsfKey(dst, "product")
	dst = append(dst, '{')
	dst = ocsfStr(dst, "name", ocsfProductName(e.Service))
	dst = append(dst, ',')
	dst = ocsfStr(dst, "vendor_name", ocsfProductVendor)
	dst = append(dst, '}', ',')
	dst = ocsfStr(dst, "uid", e.ID)
	dst = append(dst, ',')
	dst = ocsfStr(dst, "version", OCSFVersion)
	return append(dst, '}')
}

// resources writes the resource and the target (API Activity).
func (w *OCSFWriter) resources(dst []byte, e *event.Event) []byte {
	dst = ocsfKey(dst, "resources")
	dst = append(dst, '[')
	if e.ResourceID != "" {
		dst = append(dst, '{')
		dst = ocsfStr(dst, "name", e.ResourceName)
		dst = append(dst, ',')
		dst = ocsfKey(dst, "type")
		dst = w.joinedType(dst, e.Provider, e.ResourceType)
		dst = append(dst, ',')
		dst = ocsfStr(dst, "uid", e.ResourceID)
		dst = append(dst, '}')
	}
	if t := &e.Target; t.Resource != "" || t.Repository != "" || t.ContainerGroup != "" {
		if e.ResourceID != "" {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if t.Image != "" {
			dst = ocsfKey(dst, "data")
			dst = append(dst, '{')
			dst = ocsfStr(dst, "image", t.Image)
			dst = append(dst, '}', ',')
		}
		switch {
		case t.Resource != "":
			dst = ocsfStr(dst, "name", t.Name)
			dst = append(dst, ',')
			if t.Namespace != "" {
				dst = ocsfStr(dst, "namespace", t.Namespace)
				dst = append(dst, ',')
			}
			dst = ocsfKey(dst, "type")
			dst = w.joinedType(dst, t.APIGroup, t.Resource)
		case t.Repository != "":
			dst = ocsfStr(dst, "name", t.Repository)
			dst = append(dst, ',')
			dst = ocsfStr(dst, "type", "container_repository")
			dst = append(dst, ',')
			dst = ocsfStr(dst, "version", firstNonEmpty(t.Tag, t.Digest))
		default:
			dst = ocsfStr(dst, "name", t.ContainerGroup)
			dst = append(dst, ',')
			dst = ocsfStr(dst, "type", "container_group")
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// joinedType writes strings.TrimPrefix(a+"/"+b, "/") as a JSON string.
func (w *OCSFWriter) joinedType(dst []byte, a, b string) []byte {
	w.scratch = append(append(append(w.scratch[:0], a...), '/'), b...)
	if w.scratch[0] == '/' {
		return AppendJSONString(dst, w.scratch[1:], EscapeHTML)
	}
	return AppendJSONString(dst, w.scratch, EscapeHTML)
}

// unmapped writes the custody fields and the attributes (which replace a
// custody field of the same name), with the record member when recordKey
// is set.
func (w *OCSFWriter) unmapped(dst []byte, e *event.Event, recordKey string, record []byte) ([]byte, error) {
	fixed := [...]struct{ k, v string }{
		{"custody_action", e.Action},
		{"custody_action_class", string(e.ActionClass)},
		{"source_format", e.SourceFormat},
		{"source_position", e.SourcePosition},
	}
	w.keys = w.keys[:0]
	for k := range e.Attributes {
		if recordKey != "" && k == recordKey {
			return nil, ErrOCSFRecordKey
		}
		w.keys = append(w.keys, k)
	}
	if recordKey != "" {
		w.keys = append(w.keys, recordKey)
	}
	slices.Sort(w.keys)
	dst = ocsfKey(dst, "unmapped")
	dst = append(dst, '{')
	i, j := 0, 0
	for n := 0; i < len(fixed) || j < len(w.keys); n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		switch {
		case j == len(w.keys) || i < len(fixed) && fixed[i].k < w.keys[j]:
			dst = ocsfStr(dst, fixed[i].k, fixed[i].v)
			i++
		case recordKey != "" && w.keys[j] == recordKey:
			if i < len(fixed) && fixed[i].k == recordKey {
				i++ // the record replaces the custody field
			}
			dst = append(AppendJSONString(dst, recordKey, EscapeHTML), ':')
			dst = append(dst, record...)
			j++
		default:
			if i < len(fixed) && fixed[i].k == w.keys[j] {
				i++ // the attribute replaces the custody field
			}
			dst = ocsfAttr(dst, w.keys[j], e.Attributes[w.keys[j]])
			j++
		}
	}
	return append(dst, '}'), nil
}

func ocsfProductName(s event.Service) string {
	switch s {
	case event.ServiceAKS:
		return "Azure Kubernetes Service"
	case event.ServiceACR:
		return "Azure Container Registry"
	case event.ServiceACI:
		return "Azure Container Instances"
	}
	return "Azure Resource Manager"
}

func ocsfUserType(t event.ActorType) int {
	switch t {
	case event.ActorUser:
		return ocsfUserTypeUser
	case event.ActorSystem, event.ActorNode:
		return ocsfUserTypeSystem
	case event.ActorUnknown, "":
		return ocsfUserTypeUnknown
	}
	return ocsfUserTypeOther
}

func ocsfAPIActivity(c event.ActionClass, action string) (int, string) {
	switch c {
	case event.ClassRead, event.ClassCredentialAccess:
		return ocsfActivityRead, "Read"
	case event.ClassDelete:
		return ocsfActivityDelete, "Delete"
	case event.ClassWrite, event.ClassPermissionChange, event.ClassConfigChange:
		if strings.HasSuffix(action, ":create") {
			return ocsfActivityCreate, "Create"
		}
		return ocsfActivityUpdate, "Update"
	}
	return ocsfActivityOther, "Other"
}
