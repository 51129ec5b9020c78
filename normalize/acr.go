package normalize

import (
	"strings"

	"github.com/custody-audit/custody/event"
)

// acrFields are the ACR-specific fields: properties.* in the resource-log
// form, columns of ContainerRegistry*Events in Log Analytics.
type acrFields struct {
	loginServer, repository, tag, digest, mediaType, artifactType, size, userAgent, tenantID, region string
}

func parseACRProps(v []byte, sc *strCache) acrFields {
	var f acrFields
	v = dynamic(v)
	if !isObject(v) {
		return f
	}
	var buf [32]byte
	it := newObjIter(v, 1)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(lowerASCII(buf[:], k)) {
		case "loginserver":
			f.loginServer = sc.str(val)
		case "repository":
			f.repository = sc.str(val)
		case "tag":
			f.tag = sc.str(val)
		case "digest":
			f.digest = sc.str(val)
		case "mediatype":
			f.mediaType = sc.str(val)
		case "artifacttype":
			f.artifactType = sc.str(val)
		case "size":
			f.size = sc.str(val)
		case "useragent":
			f.userAgent = sc.str(val)
		case "tenantid":
			f.tenantID = sc.str(val)
		}
	}
	return f
}

// nilText clears the literal "<nil>" ACR writes for absent values.
func nilText(s string) string {
	if s == "<nil>" || s == "null" {
		return ""
	}
	return s
}

// acr handles ContainerRegistryLoginEvents and
// ContainerRegistryRepositoryEvents records. f is nil for the resource-log
// form (fields come from r.properties).
func (p *processor) acr(rec []byte, pos string, r *azRecord, f *acrFields, srcFormat, rawFormat string) {
	if f == nil {
		pf := parseACRProps(r.properties, p.strs)
		f = &pf
	}
	e := event.Event{
		Service:        event.ServiceACR,
		Category:       r.category,
		SourceFormat:   srcFormat,
		SourcePosition: pos,
		Raw:            rec,
		RawFormat:      rawFormat,
		TenantID:       r.tenantID,
		CorrelationID:  r.correlationID,
	}
	p.resource(&e, r.resourceID)
	t, ok := r.parsedTime()
	if !ok {
		p.res.quarantine(rec, p.format, pos, "ACR record without a valid time: "+quoteShort(r.timeText()))
		return
	}
	e.Time = t
	op := lowerString(strings.TrimSpace(r.operationName), p.strs)
	if op == "" {
		if strings.EqualFold(r.category, "ContainerRegistryLoginEvents") {
			op = "login"
		} else {
			p.res.quarantine(rec, p.format, pos, "ACR repository event without operationName")
			return
		}
	}
	var abuf [64]byte
	e.Action = p.strs.intern(append(append(abuf[:0], "acr:"...), op...))
	switch op {
	case "login", "logout":
		e.ActionClass = event.ClassLogin
	case "pull":
		e.ActionClass = event.ClassRead
	case "push":
		e.ActionClass = event.ClassWrite
	case "delete", "untag":
		e.ActionClass = event.ClassDelete
	default:
		e.ActionClass = event.ClassOther
	}

	// Identity: a UPN, an object id, a repository-scoped token name, or the
	// registry name itself when the admin user signed in.
	name := nilText(strings.TrimSpace(p.strs.str(r.identity)))
	if name == "" && isObject(r.identity) {
		applyARMIdentity(&e, r, p.strs)
	} else {
		e.Actor.Name = name
		switch {
		case name == "":
			e.Actor.Type = event.ActorUnknown
		case strings.EqualFold(name, "anonymous") || strings.EqualFold(name, "<anonymous>"):
			e.Actor.Type = event.ActorAnonymous
			e.Tags = append(e.Tags, event.TagAnonymous)
		case strings.Contains(name, "@"):
			e.Actor.Type = event.ActorUser
		case looksLikeGUID(name):
			e.Actor.Type = event.ActorServicePrincipal
			e.Actor.ObjectID = name
		case e.ResourceName != "" && strings.EqualFold(name, e.ResourceName):
			e.Actor.Type = event.ActorUser
			e.Tags = append(e.Tags, event.TagAdminCredential)
		default:
			e.Actor.Type = event.ActorUnknown
		}
	}
	setIP(&e, r.callerIP)
	e.UserAgent = f.userAgent
	if e.TenantID == "" {
		e.TenantID = f.tenantID
	}

	// Outcome: resultType "HttpStatusCode" with the code in
	// resultDescription, or a word.
	code := statusCodeText(r.resultDescription)
	if code == 0 {
		code = statusCodeText(r.resultType)
	}
	e.StatusCode = code
	switch {
	case code >= 400:
		e.Outcome = event.OutcomeFailure
	case code >= 100:
		e.Outcome = event.OutcomeSuccess
	default:
		e.Outcome = armOutcome(r.resultType, "")
	}
	if code == 401 || code == 403 {
		e.Tags = append(e.Tags, event.TagDenied)
	}
	if code == 0 {
		e.Reason = r.resultDescription
	}

	e.Target.Repository = nilText(f.repository)
	tag, digest := nilText(f.tag), nilText(f.digest)
	if strings.HasPrefix(tag, "sha256:") && digest == "" {
		// a pull by digest reports the digest in the tag field
		digest, tag = tag, ""
	}
	e.Target.Tag, e.Target.Digest = tag, digest
	loginServer := lowerString(f.loginServer, p.strs)
	if e.Target.Repository != "" && f.loginServer != "" {
		var buf [160]byte
		ref := append(append(append(buf[:0], loginServer...), '/'), e.Target.Repository...)
		switch {
		case e.Target.Digest != "":
			ref = append(append(ref, '@'), e.Target.Digest...)
		case e.Target.Tag != "":
			ref = append(append(ref, ':'), e.Target.Tag...)
		}
		e.Target.Image = string(ref)
	}

	switch {
	case r.correlationID != "":
		e.ID = r.correlationID + "/" + op
		setAttr(&e, "id_source", "acr_correlation_id_operation")
	default:
		setAttr(&e, "id_source", "content_hash")
	}
	setAttr(&e, "acr.login_server", loginServer)
	setAttr(&e, "acr.media_type", nilText(f.mediaType))
	setAttr(&e, "acr.artifact_type", nilText(f.artifactType))
	setAttr(&e, "acr.size", nilText(f.size))
	setAttr(&e, "result_type", r.resultType)
	setAttr(&e, "result_description", r.resultDescription)
	setAttr(&e, "duration_ms", r.durationMs)
	setAttr(&e, "location", firstNonEmpty(r.location, f.region))
	p.emit(&e)
}

// controlPlaneMessage extracts the log text and pod of an AKS
// control-plane record's properties.
func controlPlaneMessage(props []byte) (msg, pod string) {
	if isString(props) {
		return str(props), ""
	}
	if !isObject(props) {
		return "", ""
	}
	it := newObjIter(props, 1)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch string(k) {
		case "log":
			msg = str(v)
			if isObject(v) {
				msg = string(v)
			}
		case "pod":
			pod = str(v)
		}
	}
	return msg, pod
}

// guard handles the AKS guard category: the Entra ID authentication and
// authorization webhook's log lines. Its text format is not documented, so
// Custody keeps each line as a login-class event with the text in
// Attributes["message"] and the raw record.
func (p *processor) guard(rec []byte, pos string, r *azRecord, msg, pod, srcFormat, rawFormat string) {
	e := event.Event{
		Service:        event.ServiceAKS,
		Category:       r.category,
		SourceFormat:   srcFormat,
		SourcePosition: pos,
		Raw:            rec,
		RawFormat:      rawFormat,
		TenantID:       r.tenantID,
		Action:         "aks:guard",
		ActionClass:    event.ClassLogin,
	}
	p.resource(&e, r.resourceID)
	if t, ok := r.parsedTime(); ok {
		e.Time = t
	}
	msg = strings.TrimRight(msg, "\n")
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "denied") || strings.Contains(lower, "forbidden") || strings.Contains(lower, "unauthorized") || strings.Contains(lower, "failed"):
		e.Outcome = event.OutcomeFailure
	default:
		e.Outcome = event.OutcomeUnknown
	}
	setAttr(&e, "message", msg)
	setAttr(&e, "aks.pod", pod)
	setAttr(&e, "id_source", "content_hash")
	p.emit(&e)
}

// nonAdmin handles AKS control-plane component logs: counted as dropped by
// policy unless Config.KeepNonAdminCategories.
func (p *processor) nonAdmin(rec []byte, pos string, r *azRecord, msg, pod, srcFormat, rawFormat string) {
	if !p.n.cfg.KeepNonAdminCategories {
		p.res.drop(DropNonAdminCategory + ":" + strings.ToLower(r.category))
		return
	}
	e := event.Event{
		Service:        event.ServiceAKS,
		Category:       r.category,
		SourceFormat:   srcFormat,
		SourcePosition: pos,
		Raw:            rec,
		RawFormat:      rawFormat,
		Action:         "log:" + strings.ToLower(r.category),
		ActionClass:    event.ClassOther,
	}
	p.resource(&e, r.resourceID)
	if t, ok := r.parsedTime(); ok {
		e.Time = t
	}
	setAttr(&e, "message", strings.TrimRight(msg, "\n"))
	setAttr(&e, "aks.pod", pod)
	setAttr(&e, "id_source", "content_hash")
	p.emit(&e)
}
