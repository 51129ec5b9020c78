package normalize

import (
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
)

// Entra ID token claims as the Activity Log writes them.
const (
	claimUPN       = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
	claimName      = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimEmail     = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
	claimObjectID  = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimTenantID  = "http://schemas.microsoft.com/identity/claims/tenantid"
	claimUniqueNme = "unique_name"
)

// armIdentity holds what Custody takes from identity.claims and
// identity.authorization.
type armIdentity struct {
	upn, name, email, uniqueName, oid, tid, appID, idtyp, ipaddr, groups, mirid string
	displayName                                                                 string
	authAction, authScope                                                       string
	principalID, principalType, role                                            string
}

// parseClaims reads Entra ID token claims; sc (may be nil) shares repeated
// strings.
func parseClaims(v []byte, id *armIdentity, sc *strCache) {
	v = dynamic(v)
	if !isObject(v) {
		return
	}
	it := newObjIter(v, 1)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case claimUPN:
			id.upn = strings.TrimSpace(sc.str(val))
		case claimName:
			id.name = strings.TrimSpace(sc.str(val))
		case claimEmail:
			id.email = strings.TrimSpace(sc.str(val))
		case claimUniqueNme:
			id.uniqueName = strings.TrimSpace(sc.str(val))
		case claimObjectID, "oid":
			id.oid = sc.str(val)
		case claimTenantID, "tid":
			id.tid = sc.str(val)
		case "appid", "azp":
			if id.appID == "" || string(k) == "appid" {
				id.appID = sc.str(val)
			}
		case "idtyp":
			id.idtyp = sc.str(val)
		case "ipaddr":
			id.ipaddr = sc.str(val)
		case "groups":
			id.groups = sc.str(val)
		case "xms_mirid":
			id.mirid = sc.str(val)
		case "name":
			id.displayName = sc.str(val)
		}
	}
}

// parseAuthorization reads identity.authorization; sc as in parseClaims.
func parseAuthorization(v []byte, id *armIdentity, sc *strCache) {
	v = dynamic(v)
	if !isObject(v) {
		return
	}
	it := newObjIter(v, 1)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case "action":
			id.authAction = sc.str(val)
		case "scope":
			id.authScope = sc.str(val)
		case "evidence":
			ev := newObjIter(val, 2)
			for ek, evv, ok := ev.next(); ok; ek, evv, ok = ev.next() {
				switch string(ek) {
				case "principalId":
					id.principalID = sc.str(evv)
				case "principalType":
					id.principalType = sc.str(evv)
				case "role":
					id.role = sc.str(evv)
				}
			}
		}
	}
}

// collectIdentity reads identity (object with claims/authorization, a
// bare string, or {}) and the REST-form top-level claims/authorization.
func collectIdentity(r *azRecord, sc *strCache) armIdentity {
	var id armIdentity
	if isObject(r.identity) {
		it := newObjIter(r.identity, 1)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			switch string(k) {
			case "claims":
				parseClaims(v, &id, sc)
			case "authorization":
				parseAuthorization(v, &id, sc)
			}
		}
	}
	if len(r.claims) > 0 {
		parseClaims(r.claims, &id, sc)
	}
	if len(r.authorization) > 0 {
		parseAuthorization(r.authorization, &id, sc)
	}
	return id
}

// applyARMIdentity fills e.Actor (and tenant, IP fallbacks) from an ARM
// record's identity; sc (may be nil) shares repeated strings.
func applyARMIdentity(e *event.Event, r *azRecord, sc *strCache) armIdentity {
	id := collectIdentity(r, sc)
	a := &e.Actor
	a.Name = firstNonEmpty(id.upn, id.name, id.email, id.uniqueName, r.caller)
	if isString(r.identity) && a.Name == "" {
		a.Name = str(r.identity)
	}
	a.ObjectID = firstNonEmpty(id.oid, id.principalID)
	a.AppID = id.appID
	if id.groups != "" {
		a.Groups = strings.Split(id.groups, ",")
	}
	switch {
	case id.mirid != "":
		a.Type = event.ActorManagedIdentity
		setAttr(e, "actor.managed_identity_resource_id", strings.ToLower(id.mirid))
	case id.idtyp == "user" || id.upn != "" || strings.EqualFold(id.principalType, "User"):
		a.Type = event.ActorUser
	case id.idtyp == "app" || strings.EqualFold(id.principalType, "ServicePrincipal"):
		a.Type = event.ActorServicePrincipal
	case strings.Contains(a.Name, "@"):
		a.Type = event.ActorUser
	case a.Name != "" && looksLikeGUID(a.Name):
		a.Type = event.ActorServicePrincipal
	case a.Name == "" && a.ObjectID == "" && a.AppID == "":
		a.Type = event.ActorUnknown
	default:
		a.Type = event.ActorUnknown
	}
	if a.Name == "" {
		a.Name = firstNonEmpty(id.displayName, a.AppID, a.ObjectID)
	}
	if e.TenantID == "" {
		e.TenantID = id.tid
	}
	if !e.SourceIP.IsValid() {
		setIP(e, id.ipaddr)
	}
	setAttr(e, "actor.display_name", id.displayName)
	setAttr(e, "authorization.action", id.authAction)
	setAttr(e, "authorization.scope", id.authScope)
	setAttr(e, "authorization.role", id.role)
	setAttr(e, "authorization.principal_type", id.principalType)
	return id
}

// armOutcome maps resultType (Event Hubs form) or status (REST and Log
// Analytics form) to an outcome. Start and Accept mean the operation is
// still running.
func armOutcome(resultType, status string) event.Outcome {
	var buf [16]byte
	switch string(lowerBytes(buf[:], firstNonEmpty(resultType, status))) {
	case "success", "succeeded":
		return event.OutcomeSuccess
	case "failure", "failed":
		return event.OutcomeFailure
	}
	return event.OutcomeUnknown
}

// armStatus gives the Activity Log status one spelling: the Event Hubs
// form writes Start/Accept/Success/Failure, the REST and Log Analytics
// forms Started/Accepted/Succeeded/Failed. sc (may be nil) shares the
// lower-cased value.
func armStatus(s string, sc *strCache) string {
	var buf [16]byte
	switch string(lowerBytes(buf[:], s)) {
	case "started":
		return "start"
	case "accepted":
		return "accept"
	case "succeeded":
		return "success"
	case "failed":
		return "failure"
	default:
		return lowerString(s, sc)
	}
}

// armClass classifies an ARM operation and returns forensic tags.
func armClass(op string) (event.ActionClass, []string) {
	l := strings.ToLower(op)
	last := l[strings.LastIndexByte(l, '/')+1:]
	if last == "action" {
		// Microsoft.X/y/start/action: the verb is the segment before
		trimmed := strings.TrimSuffix(l, "/action")
		last = trimmed[strings.LastIndexByte(trimmed, '/')+1:]
	}
	var tags []string
	has := func(s string) bool { return strings.Contains(l, s) }
	switch {
	case has("/diagnosticsettings/"):
		tags = append(tags, event.TagLoggingChange)
		if last == "read" {
			return event.ClassRead, tags
		}
		return event.ClassConfigChange, tags
	case has("listclusteradmincredential"):
		return event.ClassCredentialAccess, append(tags, event.TagCredentialListing, event.TagAdminCredential)
	case has("listclusterusercredential"), has("listclustermonitoringusercredential"), has("accessprofiles/listcredential"):
		return event.ClassCredentialAccess, append(tags, event.TagCredentialListing)
	case has("microsoft.containerregistry/registries/listcredentials"):
		return event.ClassCredentialAccess, append(tags, event.TagCredentialListing, event.TagAdminCredential)
	case has("regeneratecredential"):
		return event.ClassCredentialAccess, append(tags, event.TagAdminCredential)
	case has("/generatecredentials"), has("/listkeys"), has("/listaccountsas"), has("/listcredentials"), has("/listsecrets"):
		return event.ClassCredentialAccess, append(tags, event.TagCredentialListing)
	case has("/runcommand"):
		return event.ClassExec, append(tags, event.TagRunCommand)
	case has("/containers/exec/"), has("/containers/attach/"):
		return event.ClassExec, append(tags, event.TagExecIntoContainer)
	case has("microsoft.authorization/"), has("/tokens/"), has("/scopemaps/"), has("/trustedaccessrolebindings/"):
		if last == "read" {
			return event.ClassRead, tags
		}
		return event.ClassPermissionChange, tags
	case has("/webhooks/"), has("/resetaadprofile"), has("/resetserviceprincipalprofile"), has("/maintenanceconfigurations/"):
		if last == "read" {
			return event.ClassRead, tags
		}
		return event.ClassConfigChange, tags
	}
	switch last {
	case "write", "start", "stop", "restart", "importimage":
		return event.ClassWrite, tags
	case "delete":
		return event.ClassDelete, tags
	case "read":
		return event.ClassRead, tags
	}
	return event.ClassOther, tags
}

// activity handles an Activity Log record (Event Hubs/storage form, REST
// form, or an AzureActivity row mapped to azRecord).
func (p *processor) activity(rec []byte, pos string, r *azRecord, srcFormat, rawFormat string) {
	e := event.Event{
		Service:        event.ServiceARM,
		Category:       r.category,
		SourceFormat:   srcFormat,
		SourcePosition: pos,
		Raw:            rec,
		RawFormat:      rawFormat,
		TenantID:       r.tenantID,
		SubscriptionID: lowerString(r.subscriptionID, p.strs),
		ResourceGroup:  lowerString(r.resourceGroup, p.strs),
		CorrelationID:  r.correlationID,
	}
	p.resource(&e, r.resourceID)
	if s := serviceOf(e.Provider); s != event.ServiceARM {
		setAttr(&e, "resource_service", string(s))
	}
	t, ok := r.parsedTime()
	if !ok {
		p.res.quarantine(rec, p.format, pos, "activity log record without a valid time: "+quoteShort(r.timeText()))
		return
	}
	e.Time = t
	o := p.armOp(r.operationName)
	op := o.canon
	if op == "" {
		p.res.quarantine(rec, p.format, pos, "activity log record without operationName")
		return
	}
	e.Action = o.action
	e.ActionClass = o.class
	if len(o.tags) > 0 {
		e.Tags = append(make([]string, 0, len(o.tags)+1), o.tags...)
	}
	setIP(&e, r.callerIP)
	var props activityProps
	if len(r.properties) > 0 {
		props = parseActivityProps(r.properties, p.strs)
	}
	if !e.SourceIP.IsValid() && len(r.httpRequest) > 0 {
		setIP(&e, str(lookup(dynamic(r.httpRequest), "clientIpAddress")))
	}
	applyARMIdentity(&e, r, p.strs)
	status := firstNonEmpty(r.resultType, r.status)
	e.Outcome = armOutcome(r.resultType, r.status)
	e.StatusCode = statusCodeText(props.statusCode)
	e.Reason = firstNonEmpty(r.resultSignature, r.subStatus, r.resultDescription)
	if e.Outcome == event.OutcomeFailure && (e.StatusCode == 403 || e.StatusCode == 401 ||
		lowerContains("authorizationfailed", r.resultSignature, r.subStatus, props.statusMessage) ||
		lowerContains("forbidden", r.resultSignature, r.subStatus)) {
		e.Tags = append(e.Tags, event.TagDenied)
	}
	e.RequestID = props.serviceRequestID
	if e.RequestID == "" {
		e.RequestID = clientRequestID(r.httpRequest)
	}
	if e.Provider == "Microsoft.ContainerInstance" && e.ResourceType != "" {
		e.Target.ContainerGroup = containerGroupOf(e.ResourceID)
		if strings.HasPrefix(e.ResourceType, "containerGroups/containers") {
			e.Target.Container = e.ResourceName
		}
	}
	if len(props.requestBody) > 0 {
		p.inspectARMRequestBody(&e, props.requestBody)
	}
	// The id must match across delivery paths, but the Event Hubs and
	// storage forms carry neither eventDataId nor operationId while Log
	// Analytics rows carry both. Correlation id, operation, normalized
	// status and the second of the event appear on every path, so they
	// make the id; eventDataId is kept as an attribute.
	switch {
	case r.correlationID != "" && status != "":
		// hashID over lower(correlation id), lower(operation),
		// armStatus(status) and the time to the second in RFC 3339, each
		// followed by a 0 byte: the preimage is built on the stack.
		var buf [256]byte
		pre := append(appendLower(buf[:0], r.correlationID), 0)
		pre = append(append(pre, o.lower...), 0)
		pre = append(append(pre, armStatus(status, p.strs)...), 0)
		pre = append(e.Time.Truncate(time.Second).AppendFormat(pre, time.RFC3339), 0)
		e.ID = hashID("arm:", pre)
		setAttr(&e, "id_source", "activity_correlation_operation_status_time")
	case r.eventDataID != "":
		e.ID = r.eventDataID
		setAttr(&e, "id_source", "activity_event_data_id")
	case r.operationID != "" && status != "":
		e.ID = r.operationID + "/" + armStatus(status, p.strs)
		setAttr(&e, "id_source", "activity_operation_id_status")
	default:
		setAttr(&e, "id_source", "content_hash")
	}
	setAttr(&e, "event_data_id", r.eventDataID)
	setAttr(&e, "operation_id", r.operationID)
	setAttr(&e, "result_type", r.resultType)
	setAttr(&e, "status", r.status)
	setAttr(&e, "level", r.level)
	setAttr(&e, "location", r.location)
	setAttr(&e, "duration_ms", r.durationMs)
	setAttr(&e, "status_message", props.statusMessage)
	setAttr(&e, "entity", props.entity)
	p.emit(&e)
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "\"" + s + "\""
}

type activityProps struct {
	statusCode, statusMessage, serviceRequestID, entity string
	requestBody                                         []byte
}

func parseActivityProps(v []byte, sc *strCache) activityProps {
	var ap activityProps
	v = dynamic(v)
	if !isObject(v) {
		return ap
	}
	var buf [32]byte
	it := newObjIter(v, 1)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(lowerASCII(buf[:], k)) {
		case "statuscode":
			ap.statusCode = sc.str(val)
		case "statusmessage":
			ap.statusMessage = sc.str(val)
		case "servicerequestid":
			ap.serviceRequestID = sc.str(val)
		case "entity":
			ap.entity = sc.str(val)
		case "requestbody":
			ap.requestBody = dynamic(val)
		}
	}
	return ap
}

func clientRequestID(httpRequest []byte) string {
	return str(lookup(dynamic(httpRequest), "clientRequestId"))
}

// containerGroupOf returns the container group name from a lower-cased
// ACI resource id.
func containerGroupOf(id string) string {
	const marker = "/containergroups/"
	i := strings.Index(id, marker)
	if i < 0 {
		return ""
	}
	name, _, _ := strings.Cut(id[i+len(marker):], "/")
	return name
}

// inspectARMRequestBody tags an ACI container group write whose request
// body names images from unapproved registries or runs privileged.
func (p *processor) inspectARMRequestBody(e *event.Event, body []byte) {
	if e.Provider != "Microsoft.ContainerInstance" || !isObject(body) {
		return
	}
	containers := lookup(body, "properties", "containers")
	if !isArray(containers) {
		return
	}
	var images []string
	it := newArrIter(containers, 1)
	for c, ok := it.next(); ok; c, ok = it.next() {
		if img := str(lookup(c, "properties", "image")); img != "" {
			images = append(images, img)
		}
		if isTrue(lookup(c, "properties", "securityContext", "privileged")) {
			e.Tags = append(e.Tags, event.TagPrivilegedPod)
		}
	}
	if len(images) == 1 {
		e.Target.Image = images[0]
	}
	if len(images) > 0 {
		setAttr(e, "aci.images", strings.Join(images, ","))
	}
	for _, img := range images {
		if !p.n.approvedImage(img) {
			e.Tags = append(e.Tags, event.TagUnapprovedRegistry)
			break
		}
	}
}

// opCacheSize is the number of ARM operations a scratch keeps, one per
// slot (a power of two).
const opCacheSize = 64

// armOpEntry is what the Activity Log decoder derives from an
// operationName, kept because a few operations make up most records.
type armOpEntry struct {
	raw    string            // the operationName as the record has it
	canon  string            // canonicalOperation(raw)
	action string            // "arm:" + canon, or "" when canon is
	lower  string            // strings.ToLower(canon)
	class  event.ActionClass // armClass(canon)
	tags   []string          // armClass(canon); copied into each event
}

// armOp returns the entry of operationName, from the scratch's cache when
// it was seen lately.
func (p *processor) armOp(operationName string) *armOpEntry {
	var c *armOpEntry
	if p.sc != nil {
		c = &p.sc.ops[stringSlot(operationName)&(opCacheSize-1)]
		if c.raw == operationName && c.canon != "" {
			return c
		}
	} else {
		c = new(armOpEntry)
	}
	canon := canonicalOperation(operationName)
	*c = armOpEntry{raw: operationName, canon: canon}
	if canon != "" {
		c.action = "arm:" + canon
		c.lower = strings.ToLower(canon)
		c.class, c.tags = armClass(canon)
	}
	return c
}
