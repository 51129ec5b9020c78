// Package event defines the admin-access event: the one model every stage of
// Custody speaks. Ingest hands raw records to normalize, normalize turns each
// into an Event, storage appends Events to a hash-chained trail and queries
// read them back. Keeping the model in its own small package lets each stage
// depend on it without depending on the others.
//
// Every field here is stored and covered by the trail's hash (see
// storage/docs/format/event-v1.md), so adding a field is a format change:
// bump the encoding version rather than changing the meaning of an old one.
package event

import (
	"net/netip"
	"time"
)

// Service is the Azure service an event concerns.
type Service string

// Services Custody collects from.
const (
	ServiceAKS Service = "aks" // Azure Kubernetes Service (control plane audit, guard)
	ServiceACR Service = "acr" // Azure Container Registry
	ServiceACI Service = "aci" // Azure Container Instances
	ServiceARM Service = "arm" // Azure Resource Manager (Activity Log) for any of the above
)

// ActorType says what kind of principal acted.
type ActorType string

// Actor types.
const (
	ActorUser             ActorType = "user"
	ActorServicePrincipal ActorType = "service_principal"
	ActorManagedIdentity  ActorType = "managed_identity"
	ActorServiceAccount   ActorType = "k8s_service_account"
	ActorNode             ActorType = "k8s_node"
	ActorSystem           ActorType = "system"
	ActorAnonymous        ActorType = "anonymous"
	ActorUnknown          ActorType = "unknown"
)

// ActionClass groups actions the way an investigator asks about them.
type ActionClass string

// Action classes.
const (
	ClassRead             ActionClass = "read"
	ClassWrite            ActionClass = "write"
	ClassDelete           ActionClass = "delete"
	ClassExec             ActionClass = "exec"
	ClassLogin            ActionClass = "login"
	ClassCredentialAccess ActionClass = "credential_access"
	ClassPermissionChange ActionClass = "permission_change"
	ClassConfigChange     ActionClass = "config_change"
	ClassOther            ActionClass = "other"
)

// Outcome is whether the action succeeded.
type Outcome string

// Outcomes.
const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure"
	OutcomeUnknown Outcome = "unknown"
)

// Forensic flags carried in Event.Tags. They mark what an investigator looks
// for first; queries filter on them with has(tags, '...').
const (
	TagPrivilegedPod       = "privileged_pod"
	TagHostPath            = "host_path"
	TagHostPID             = "host_pid"
	TagHostNetwork         = "host_network"
	TagHostIPC             = "host_ipc"
	TagClusterAdminBinding = "cluster_admin_binding"
	TagSecretAccess        = "secret_access"
	TagTokenAccess         = "token_access"
	TagAnonymous           = "anonymous"
	TagDenied              = "denied"
	TagImpersonation       = "impersonation"
	TagUnapprovedRegistry  = "unapproved_registry"
	TagCredentialListing   = "credential_listing"
	TagLoggingChange       = "logging_change"
	TagAdminCredential     = "admin_credential"
	TagExecIntoContainer   = "exec"
	TagPortForward         = "port_forward"
	TagRunCommand          = "run_command"
)

// Actor is who acted.
type Actor struct {
	Name     string    // UPN, service principal name, k8s username
	ObjectID string    // Entra object id (oid) or k8s uid
	Type     ActorType //
	AppID    string    // Entra application (client) id, when a token was issued to an app
	Groups   []string  // group names or ids, as the source gives them
	// ImpersonatedBy is the real principal when Name is an impersonated
	// identity (k8s Impersonate-User); empty otherwise.
	ImpersonatedBy string
}

// Target is what was acted on, below the Azure resource.
type Target struct {
	APIGroup       string // k8s API group ("" for core, "rbac.authorization.k8s.io")
	Resource       string // k8s resource (pods, secrets, clusterrolebindings)
	Subresource    string // k8s subresource (exec, attach, portforward, log)
	Namespace      string // k8s namespace
	Name           string // k8s object name
	Repository     string // ACR repository
	Tag            string // ACR tag
	Digest         string // ACR manifest digest (sha256:...)
	ContainerGroup string // ACI container group
	Container      string // ACI container or k8s container
	Image          string // image reference run or pushed, when known
}

// Event is one admin-access event.
type Event struct {
	// ID is stable across delivery paths: the same audit event arriving via
	// Event Hubs and via Log Analytics gets the same ID (k8s auditID, Activity
	// eventDataId, ACR correlation id; a content hash only as a last resort).
	ID           string
	Time         time.Time // when it happened, UTC, microsecond precision
	ReceivedTime time.Time // when Custody read it, UTC

	Service  Service
	Category string // diagnostic category or table (kube-audit, ContainerRegistryLoginEvents, Administrative, AKSAudit)

	SourceKind     string // eventhubs, loganalytics, blob, file
	SourceFormat   string // resource-log, activity-log, k8s-audit, la-row
	SourcePosition string // where in the source: partition/sequence, blob/line, table/row

	TenantID       string
	SubscriptionID string
	ResourceGroup  string
	Provider       string // Microsoft.ContainerService
	ResourceType   string // managedClusters
	ResourceName   string
	ResourceID     string // canonical: lower-cased ARM id

	Actor     Actor
	SourceIP  netip.Addr // zero when unknown
	UserAgent string

	Action      string // namespaced: k8s:pods/exec:create, acr:push, arm:Microsoft.X/y/action
	ActionClass ActionClass
	Target      Target

	Outcome    Outcome
	StatusCode int32 // HTTP status or k8s response code; 0 when unknown
	Reason     string

	CorrelationID string
	RequestID     string

	Tags       []string          // forensic flags, sorted, unique
	Attributes map[string]string // everything else worth keeping, by name

	Raw       []byte // the original record, byte for byte
	RawFormat string // json, json-string-in-properties.log, la-row-json
}

// AtOffset is an event and the offset of the source message it was read
// from: the unit ingest hands to the store. One type for both stages, so a
// batch of tens of thousands of events passes from one to the other
// without being copied.
type AtOffset struct {
	Offset int64
	Event  Event
}
