package normalize

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
)

// RawAKSLogString marks an AKS resource-log record whose properties.log
// holds the audit event as a JSON string.
const RawAKSLogString = "json-string-in-properties.log"

// k8sUser is audit.k8s.io UserInfo.
type k8sUser struct {
	username string
	uid      string
	groups   []string
	extra    map[string]string
	// groupsRaw, uidRaw and extraRaw are values not yet made into
	// strings (see auditEvent.materialize).
	groupsRaw, uidRaw, extraRaw rawVal
}

// materialize makes groups, uid and extra from their raw values.
func (u *k8sUser) materialize(sc *strCache) {
	if u.groupsRaw.set() {
		u.groups = u.groupsRaw.stringList(sc)
		u.groupsRaw = rawVal{}
	}
	if u.uidRaw.set() {
		u.uid = u.uidRaw.str()
		u.uidRaw = rawVal{}
	}
	if u.extraRaw.set() {
		u.addExtra(u.extraRaw)
		u.extraRaw = rawVal{}
	}
}

// addExtra adds the members of an extra object, as the escaped reader
// holds it, to u.extra. Anything but an object adds nothing.
func (u *k8sUser) addExtra(v rawVal) {
	if !v.escaped || v.b[0] != '{' {
		return
	}
	ex := newTrustedObjIter(v.json())
	for ek, ev, ok := ex.next(); ok; ek, ev, ok = ex.next() {
		vals, _ := stringList(ev)
		if u.extra == nil {
			u.extra = make(map[string]string, 2)
		}
		u.extra[string(ek)] = strings.Join(vals, ",")
	}
}

// rawVal is a member value that has been validated but not yet made into
// a string. It is one of: JSON value bytes (esc as scanString reported
// for a string); the content of a string without escapes (plain), as the
// escaped reader (auditesc.go) hands out; or a value still escaped inside
// a JSON string (escaped), which json decodes.
type rawVal struct {
	b                   []byte
	esc, plain, escaped bool
}

func (r rawVal) set() bool { return r.b != nil }

// json returns the value as JSON bytes.
func (r rawVal) json() []byte {
	switch {
	case r.plain:
		return append(append(append(make([]byte, 0, len(r.b)+2), '"'), r.b...), '"')
	case r.escaped:
		return unescape(make([]byte, 0, len(r.b)), r.b)
	}
	return r.b
}

// stringList is sc.stringList of the value. An escaped array is read in
// place instead of being decoded first.
func (r rawVal) stringList(sc *strCache) []string {
	if r.escaped && r.b[0] == '[' {
		if l, ok := sc.escList(r.b); ok {
			return l
		}
	}
	l, _ := sc.stringList(r.json())
	return l
}

// plainBytes returns the value's string content when it needs no
// decoding: then string(content) is what scalar and str make of it.
func (r rawVal) plainBytes() ([]byte, bool) {
	switch {
	case r.plain:
		return r.b, true
	case r.escaped || !isString(r.b):
		return nil, false
	}
	c := r.b[1 : len(r.b)-1]
	if bytes.IndexByte(c, '\\') >= 0 {
		return nil, false
	}
	return c, true
}

// str is str() of the value.
func (r rawVal) str() string {
	switch {
	case r.plain:
		return string(r.b)
	case r.escaped:
		return str(r.json())
	}
	return str(r.b)
}

// scalar is scalar() of the value.
func (r rawVal) scalar() string {
	switch {
	case r.plain:
		return string(r.b)
	case r.escaped:
		return str(r.json())
	}
	return scalar(r.b, r.esc)
}

// auditEvent is the part of an audit.k8s.io/v1 (or v1beta1) Event that
// Custody keeps. requestObject and responseObject stay raw and are only
// looked into for the forensic tags.
type auditEvent struct {
	apiVersion      string
	level           string
	auditID         string
	stage           string
	requestURI      string
	verb            string
	user            k8sUser
	impersonated    k8sUser
	hasImpersonated bool
	sourceIPs       []string
	userAgent       string
	// objectRef
	resource, namespace, name, apiGroup, objAPIVersion, subresource string
	// responseStatus
	code                      int32
	status, reason, message   string
	requestObject, respObject []byte
	requestReceived, stageTS  []byte
	timestamp                 []byte
	decision, authzReason     string
	annotations               map[string]string
	// The members below hold values parseAudit has validated but not yet
	// made into strings: most AKS audit records are system reads the
	// noise policy drops, and deciding that needs none of them. k8sEvent
	// calls materialize once the event is kept.
	auditIDRaw, requestURIRaw, nameRaw, sourceIPsRaw rawVal
	// The escaped reader also leaves these: strings it would otherwise
	// share through the caches (see escReader.cached), and the
	// annotations other than the authorization decision, as the object.
	apiVersionRaw, levelRaw, userAgentRaw, namespaceRaw, apiGroupRaw, objAPIVersionRaw rawVal
	statusRaw, reasonRaw, messageRaw, authzReasonRaw, annotationsRaw                   rawVal
	// The request and response objects, decoded only for a kept event:
	// a read's response can be large.
	requestObjectRaw, respObjectRaw rawVal
}

// materialize makes the strings parseAudit and the escaped reader left
// as raw values. esc (may be nil) is the escaped reader's cache of doubly
// escaped strings. It is idempotent.
func (a *auditEvent) materialize(sc, esc *strCache) {
	if sc != nil {
		r := escReader{sc: sc, esc: esc}
		for _, f := range [...]struct {
			raw *rawVal
			s   *string
		}{
			{&a.apiVersionRaw, &a.apiVersion}, {&a.levelRaw, &a.level}, {&a.userAgentRaw, &a.userAgent},
			{&a.namespaceRaw, &a.namespace}, {&a.apiGroupRaw, &a.apiGroup}, {&a.objAPIVersionRaw, &a.objAPIVersion},
			{&a.statusRaw, &a.status}, {&a.reasonRaw, &a.reason}, {&a.authzReasonRaw, &a.authzReason},
		} {
			take(f.raw, f.s, r.cached)
		}
		if a.annotationsRaw.set() {
			a.addAnnotations(a.annotationsRaw, sc, esc)
			a.annotationsRaw = rawVal{}
		}
	}
	take(&a.messageRaw, &a.message, rawVal.str)
	take(&a.requestObjectRaw, &a.requestObject, rawVal.json)
	take(&a.respObjectRaw, &a.respObject, rawVal.json)
	take(&a.auditIDRaw, &a.auditID, rawVal.scalar)
	take(&a.requestURIRaw, &a.requestURI, rawVal.scalar)
	take(&a.nameRaw, &a.name, rawVal.str)
	take(&a.sourceIPsRaw, &a.sourceIPs, func(v rawVal) []string { return v.stringList(sc) })
	a.user.materialize(sc)
	a.impersonated.materialize(sc)
}

// take makes a raw value left by the reader into its field with conv, once:
// the raw value is cleared, so a second materialize leaves the field as it is.
func take[T any](raw *rawVal, dst *T, conv func(rawVal) T) {
	if raw.set() {
		*dst = conv(*raw)
		*raw = rawVal{}
	}
}

// parseUser reads a UserInfo object, validating it.
func parseUser(v []byte) (k8sUser, error) { return readUser(v, false, nil) }

// subIter iterates a nested object. trusted means the caller has validated
// v already (parseAudit validates each member before reading it), so the
// object is not checked a second time.
func subIter(v []byte, depth int, trusted bool) objIter {
	if trusted {
		return newTrustedObjIter(v)
	}
	return newObjIter(v, depth)
}

func readUser(v []byte, trusted bool, sc *strCache) (k8sUser, error) {
	it := subIter(v, 1, trusted)
	return readUserIter(&it, trusted, sc)
}

// readUserIter reads a UserInfo object from it. Nested values are read
// without checking them again: either the whole object was validated
// (trusted) or it.next validated each member value.
func readUserIter(it *objIter, trusted bool, sc *strCache) (k8sUser, error) {
	var u k8sUser
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case "username":
			u.username = sc.str(val)
		case "uid":
			u.uid = str(val)
		case "groups":
			u.groupsRaw = rawVal{b: val}
		case "extra":
			if isObject(val) {
				ex := newTrustedObjIter(val)
				for ek, ev, ok := ex.next(); ok; ek, ev, ok = ex.next() {
					vals, _ := stringList(ev)
					if u.extra == nil {
						u.extra = make(map[string]string, 2)
					}
					u.extra[string(ek)] = strings.Join(vals, ",")
				}
			}
		}
	}
	return u, it.err
}

// auditString is a string member of an audit event: its value and whether
// it holds escapes, so the content is not searched again.
func auditString(v []byte, vs int) (end int, esc bool, err error) {
	if vs < len(v) && v[vs] == '"' {
		esc, end, err = scanString(v, vs)
		return end, esc, err
	}
	end, err = skipValue(v, vs, 1)
	return end, false, err
}

// scalar is str(v) for a value whose escape flag is known.
func scalar(v []byte, esc bool) string {
	if isString(v) && !esc {
		return string(v[1 : len(v)-1])
	}
	return str(v)
}

// parseAudit decodes and validates one audit event object. It returns the
// offset just past the object. sc (may be nil) shares repeated strings.
// Every byte is read once: members the decoder keeps are validated while
// they are decoded, nested objects through iterators over the same buffer
// (so error offsets are those of the event), the rest by skipValue.
func parseAudit(v []byte, sc *strCache) (auditEvent, int, error) {
	var a auditEvent
	it := newObjIter(v, 0)
	for {
		k, vs, ok := it.nextKey()
		if !ok {
			break
		}
		var ve int
		var err error
		switch string(k) {
		case "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "userAgent",
			"requestReceivedTimestamp", "stageTimestamp", "timestamp":
			var esc bool
			if ve, esc, err = auditString(v, vs); err != nil {
				it.fail(err)
				break
			}
			val := v[vs:ve]
			switch string(k) {
			case "apiVersion":
				a.apiVersion = sc.strEsc(val, esc)
			case "level":
				a.level = sc.strEsc(val, esc)
			case "auditID":
				a.auditIDRaw = rawVal{b: val, esc: esc}
			case "stage":
				a.stage = sc.strEsc(val, esc)
			case "requestURI":
				a.requestURIRaw = rawVal{b: val, esc: esc}
			case "verb":
				a.verb = sc.strEsc(val, esc)
			case "userAgent":
				a.userAgent = sc.strEsc(val, esc)
			case "requestReceivedTimestamp":
				a.requestReceived = timeBytes(val, esc)
			case "stageTimestamp":
				a.stageTS = timeBytes(val, esc)
			case "timestamp":
				a.timestamp = timeBytes(val, esc)
			}
		case "user", "impersonatedUser", "objectRef", "responseStatus", "annotations":
			if vs >= len(v) || v[vs] != '{' {
				if ve, err = skipValue(v, vs, 1); err != nil {
					it.fail(err)
					break
				}
				if string(k) == "user" && it.finish(ve) {
					// As readUser on a validated non-object.
					return a, it.end(), synErr(0, "expected object")
				}
				break
			}
			sub := newObjIterAt(v, vs, 1)
			switch string(k) {
			case "user":
				a.user, _ = readUserIter(&sub, false, sc)
			case "impersonatedUser":
				u, _ := readUserIter(&sub, false, sc)
				a.impersonated, a.hasImpersonated = u, u.username != ""
			case "objectRef":
				a.objectRefIter(&sub, sc)
			case "responseStatus":
				a.statusIter(&sub, sc)
			case "annotations":
				a.annotationsIter(&sub, sc)
			}
			if sub.err != nil {
				it.fail(sub.err)
				break
			}
			ve = sub.end()
		case "sourceIPs", "requestObject", "responseObject":
			if ve, err = skipValue(v, vs, 1); err != nil {
				it.fail(err)
				break
			}
			val := v[vs:ve]
			switch string(k) {
			case "sourceIPs":
				a.sourceIPsRaw = rawVal{b: val}
			case "requestObject":
				a.requestObject = val
			case "responseObject":
				a.respObject = val
			}
		default:
			if ve, err = skipValue(v, vs, 1); err != nil {
				it.fail(err)
			}
		}
		if it.err != nil || !it.finish(ve) {
			break
		}
	}
	return a, it.end(), it.err
}

// timeBytes returns the decoded content of a timestamp value, as str
// would, without making a string of it.
func timeBytes(v []byte, esc bool) []byte {
	if !isString(v) {
		return []byte(str(v))
	}
	if esc {
		s, _ := strBytes(v)
		return s
	}
	return v[1 : len(v)-1]
}

// parseObjectRef, parseStatus and parseAnnotations read a nested object;
// trusted as in subIter.
func (a *auditEvent) parseObjectRef(v []byte, trusted bool, sc *strCache) {
	it := subIter(v, 1, trusted)
	a.objectRefIter(&it, sc)
}

func (a *auditEvent) objectRefIter(it *objIter, sc *strCache) {
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case "resource":
			a.resource = sc.str(val)
		case "namespace":
			a.namespace = sc.str(val)
		case "name":
			a.nameRaw = rawVal{b: val}
		case "apiGroup":
			a.apiGroup = sc.str(val)
		case "apiVersion":
			a.objAPIVersion = sc.str(val)
		case "subresource":
			a.subresource = sc.str(val)
		}
	}
}

func (a *auditEvent) parseStatus(v []byte, trusted bool, sc *strCache) {
	it := subIter(v, 1, trusted)
	a.statusIter(&it, sc)
}

func (a *auditEvent) statusIter(it *objIter, sc *strCache) {
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case "code":
			if n, ok := intValue(val); ok && n >= 0 && n < 1<<31 {
				a.code = int32(n)
			}
		case "status":
			a.status = sc.str(val)
		case "reason":
			a.reason = sc.str(val)
		case "message":
			a.message = str(val)
		}
	}
}

func (a *auditEvent) parseAnnotations(v []byte, trusted bool, sc *strCache) {
	it := subIter(v, 1, trusted)
	a.annotationsIter(&it, sc)
}

func (a *auditEvent) annotationsIter(it *objIter, sc *strCache) {
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		switch string(k) {
		case "authorization.k8s.io/decision":
			a.decision = sc.str(val)
		case "authorization.k8s.io/reason":
			a.authzReason = sc.str(val)
		default:
			if a.annotations == nil {
				a.annotations = make(map[string]string, 2)
			}
			a.annotations[string(k)] = sc.str(val)
		}
	}
}

// aksAudit handles an AKS kube-audit / kube-audit-admin record.
// audit is the event the validating parse read, or nil.
func (p *processor) aksAudit(rec []byte, rp recPos, r *azRecord, audit *auditEvent) {
	logv := r.propLog
	rawFormat := RawJSON
	var inner []byte
	var a *auditEvent
	switch {
	case isString(logv) && audit != nil:
		// Read already, by the escaped reader.
		rawFormat = RawAKSLogString
		a = audit
	case isObject(logv):
		inner = logv
	case isString(logv):
		rawFormat = RawAKSLogString
		s := r.propLogDecoded
		if !r.hasLogDecoded {
			s, _ = strBytes(logv)
		}
		inner = s[skipSpace(s, 0):]
		inner = inner[:len(inner)-trailingSpace(inner)]
	default:
		p.res.quarantine(rec, p.format, rp.String(), "kube-audit record without properties.log")
		return
	}
	if a == nil {
		pos := rp.String()
		if !isObject(inner) {
			p.res.quarantine(rec, p.format, pos, "kube-audit properties.log is not a JSON audit event")
			return
		}
		parsed, end, err := parseAudit(inner, p.strs)
		switch {
		case err != nil:
			p.res.quarantine(rec, p.format, pos, "kube-audit properties.log holds invalid JSON: "+err.Error())
			return
		case end != len(inner):
			p.res.quarantine(rec, p.format, pos, "kube-audit properties.log holds invalid JSON: trailing data after the audit event")
			return
		}
		a = &parsed
	}
	// The policies first: most records are dropped, and nothing of
	// the event (not even its position) is built for them.
	t, ok := p.k8sPolicy(a, r.timeBytes(), rec, rp)
	if !ok {
		return
	}
	e := event.Event{
		Category:     r.category,
		SourceFormat: SourceResourceLog,
		Raw:          rec,
		RawFormat:    rawFormat,
		TenantID:     r.tenantID,
	}
	if r.resourceIDV != nil { // an AKS audit event needs no operationName
		r.resourceID, r.resourceIDV = p.strs.str(r.resourceIDV), nil
	}
	p.resource(&e, r.resourceID)
	p.k8sFill(&e, a, t, rp)
	setAttr(&e, "aks.pod", p.strs.str(r.propPod))
	setAttr(&e, "aks.container_id", p.strs.str(r.propContainerID))
	p.emit(&e)
}

func trailingSpace(b []byte) int {
	n := 0
	for n < len(b) && isSpace(b[len(b)-1-n]) {
		n++
	}
	return n
}

// k8sPlain handles a plain audit.k8s.io Event (no Azure envelope).
func (p *processor) k8sPlain(v []byte, pos string) {
	a, _, err := parseAudit(v, p.strs)
	if err != nil {
		p.res.quarantine(v, p.format, pos, "invalid Kubernetes audit event: "+err.Error())
		return
	}
	a.materialize(p.strs, nil)
	if a.auditID == "" && a.verb == "" && a.stage == "" {
		p.res.quarantine(v, p.format, pos, "not a Kubernetes audit event: no auditID, verb or stage")
		return
	}
	e := event.Event{
		Service:        event.ServiceAKS,
		Category:       "k8s-audit",
		SourceFormat:   SourceK8sAudit,
		SourcePosition: pos,
		Raw:            v,
		RawFormat:      RawK8sAuditJSON,
	}
	if !p.k8sEvent(&e, &a, nil, recPos{base: pos, index: -1}) {
		return
	}
	p.emit(&e)
}

// connectSubresources are the interactive streaming subresources.
func isConnect(sub string) bool {
	return sub == "exec" || sub == "attach" || sub == "portforward"
}

// k8sEvent fills e from an audit event and applies the stage and noise
// policies. envelopeTime is the decoded time of the record around the
// event, the last fallback; rp is the record's position, which becomes
// e.SourcePosition. It returns false when the event was dropped (and
// counted) or quarantined (no valid time).
func (p *processor) k8sEvent(e *event.Event, a *auditEvent, envelopeTime []byte, rp recPos) bool {
	t, ok := p.k8sPolicy(a, envelopeTime, e.Raw, rp)
	if !ok {
		return false
	}
	p.k8sFill(e, a, t, rp)
	return true
}

// k8sPolicy applies the stage and noise policies to an audit event and
// finds its time: the part of k8sEvent that needs nothing built, so a
// caller can build the event only once it is kept. It returns false when
// the event was dropped (and counted) or quarantined (raw, no valid time).
func (p *processor) k8sPolicy(a *auditEvent, envelopeTime, raw []byte, rp recPos) (time.Time, bool) {
	n := p.n
	// Stage policy.
	if a.stage != "" && !n.keepStage[a.stage] {
		switch {
		case a.stage == "ResponseStarted" && n.cfg.KeepConnectResponseStarted && isConnect(a.subresource):
		case a.stage == "RequestReceived":
			p.res.drop(DropStageReceived)
			return time.Time{}, false
		case a.stage == "ResponseStarted":
			p.res.drop(DropStageStarted)
			return time.Time{}, false
		case knownStages[a.stage]:
			p.res.drop("k8s_stage_" + strings.ToLower(a.stage))
			return time.Time{}, false
		default:
			// Not a stage Kubernetes writes: the record is malformed, and
			// its value must not become a drop reason (a metric label).
			p.res.quarantine(raw, p.format, rp.String(), "Kubernetes audit event with an unknown stage (want RequestReceived, ResponseStarted, ResponseComplete or Panic): "+quoteShort(a.stage))
			return time.Time{}, false
		}
	}

	// Noise policy, decided before anything is built for the event: most
	// records are dropped here. A record can be dropped only once it has a
	// valid time (else it is quarantined below); the usual strict
	// requestReceivedTimestamp is checked without making its time.
	sysRead := p.isSystemRead(a)
	if sysRead {
		if _, ok := rfc3339Fields(a.requestReceived); ok {
			p.systemReads++ // counted in res.Dropped by process
			return time.Time{}, false
		}
	}

	var t time.Time
	if tt, ok := parseTimeBytes(a.requestReceived); ok {
		t = tt
	} else if tt, ok := parseTimeBytes(a.stageTS); ok {
		t = tt
	} else if tt, ok := parseTimeBytes(a.timestamp); ok {
		t = tt
	} else if tt, ok := parseTimeBytes(envelopeTime); ok {
		t = tt
	} else {
		// An event that cannot be placed in time cannot be placed on a
		// timeline either: keep it raw, with the reason.
		p.res.quarantine(raw, p.format, rp.String(), "Kubernetes audit event without a valid time (requestReceivedTimestamp, stageTimestamp, timestamp or the record's time): "+quoteShort(string(a.requestReceived)))
		return time.Time{}, false
	}

	if sysRead {
		p.systemReads++ // counted in res.Dropped by process
		return time.Time{}, false
	}
	return t, true
}

// k8sFill fills e from an audit event k8sPolicy kept, with its time t.
func (p *processor) k8sFill(e *event.Event, a *auditEvent, t time.Time, rp recPos) {
	e.Time = t
	ownStrings(e, a, rp)
	if ip, ok := singleIPv4(a.sourceIPsRaw.b, a.sourceIPsRaw.escaped); ok {
		// The usual one-address list, read without making strings.
		e.SourceIP = ip
		a.sourceIPsRaw = rawVal{}
	}
	var esc *strCache
	if p.sc != nil {
		esc = &p.sc.escStrs
	}
	a.materialize(p.strs, esc)
	e.Service = event.ServiceAKS
	e.ID = a.auditID
	if e.ID != "" {
		setAttr(e, "id_source", "k8s_audit_id")
	}

	// Actor.
	realUser := a.user
	actor := realUser
	if a.hasImpersonated {
		actor = a.impersonated
		e.Actor.ImpersonatedBy = realUser.username
		e.Tags = append(e.Tags, event.TagImpersonation)
	}
	e.Actor.Name = actor.username
	e.Actor.ObjectID = actor.uid
	if oid := actor.extra["oid"]; oid != "" {
		e.Actor.ObjectID = oid
	}
	e.Actor.Groups = actor.groups
	e.Actor.Type = k8sActorType(actor.username, actor.groups)
	for k, v := range actor.extra {
		if k != "oid" {
			setAttr(e, "k8s.user.extra."+k, v)
		}
	}
	if e.Actor.Type == event.ActorAnonymous {
		e.Tags = append(e.Tags, event.TagAnonymous)
	}
	if len(a.sourceIPs) > 0 {
		setIP(e, a.sourceIPs[0])
		if len(a.sourceIPs) > 1 {
			setAttr(e, "k8s.source_ips", strings.Join(a.sourceIPs, ","))
		}
	}
	e.UserAgent = a.userAgent

	// Action and target.
	e.Target.APIGroup = a.apiGroup
	e.Target.Resource = a.resource
	e.Target.Subresource = a.subresource
	e.Target.Namespace = a.namespace
	e.Target.Name = a.name
	verb := a.verb
	// The action repeats across records: build it in a stack buffer and
	// share the string.
	var abuf [80]byte
	action := append(abuf[:0], "k8s:"...)
	if a.resource != "" {
		action = append(action, a.resource...)
		if a.subresource != "" {
			action = append(append(action, '/'), a.subresource...)
		}
	} else {
		action = append(action, "nonresource"...)
		setAttr(e, "k8s.path", pathOf(a.requestURI))
	}
	action = append(append(action, ':'), verb...)
	e.Action = p.strs.intern(action)
	e.ActionClass = k8sClass(a)

	// Outcome.
	e.StatusCode = a.code
	denied := a.decision == "forbid" || a.code == 401 || a.code == 403
	switch {
	case denied || a.code >= 400 || a.status == "Failure":
		e.Outcome = event.OutcomeFailure
	case a.code > 0 || a.status == "Success":
		e.Outcome = event.OutcomeSuccess
	default:
		e.Outcome = event.OutcomeUnknown
	}
	if a.stage == "Panic" {
		e.Outcome = event.OutcomeFailure
	}
	e.Reason = firstNonEmpty(a.reason, a.message)
	if denied {
		e.Tags = append(e.Tags, event.TagDenied)
	}

	// Forensic tags.
	switch {
	case a.resource == "secrets":
		e.Tags = append(e.Tags, event.TagSecretAccess)
	case a.resource == "serviceaccounts" && a.subresource == "token", a.resource == "tokenrequests":
		e.Tags = append(e.Tags, event.TagTokenAccess)
	}
	switch a.subresource {
	case "exec", "attach", "ephemeralcontainers":
		e.Tags = append(e.Tags, event.TagExecIntoContainer)
	case "portforward":
		e.Tags = append(e.Tags, event.TagPortForward)
	}
	if a.subresource == "exec" || a.subresource == "attach" {
		if q := queryOf(a.requestURI); q != nil {
			e.Target.Container = q.Get("container")
			if cmd := q["command"]; len(cmd) > 0 {
				setAttr(e, "k8s.exec.command", strings.Join(cmd, " "))
			}
		}
	}
	if isMutating(verb) && a.subresource == "" {
		p.inspectObject(e, a)
	}

	setAttr(e, "k8s.stage", a.stage)
	setAttr(e, "k8s.level", a.level)
	setAttr(e, "k8s.request_uri", a.requestURI)
	setAttr(e, "k8s.audit_api_version", a.apiVersion)
	setAttr(e, "k8s.object_api_version", a.objAPIVersion)
	setAttr(e, "k8s.authorization.decision", a.decision)
	setAttr(e, "k8s.authorization.reason", a.authzReason)
	if a.reason != "" && a.message != "" {
		setAttr(e, "k8s.response.message", a.message)
	}
	for k, v := range a.annotations {
		setAttr(e, "k8s.annotation."+k, v)
	}
}

// ownStrings sets e.SourcePosition from rp and makes the audit id,
// request URI and object name that need no decoding (the usual case), all
// in one string: a kept event then costs one allocation for the strings
// that are its own instead of four. materialize makes the others.
func ownStrings(e *event.Event, a *auditEvent, rp recPos) {
	id, idOK := a.auditIDRaw.plainBytes()
	uri, uriOK := a.requestURIRaw.plainBytes()
	name, nameOK := a.nameRaw.plainBytes()
	n := len(id) + len(uri) + len(name)
	var d [20]byte
	var index []byte
	if rp.index >= 0 {
		index = strconv.AppendInt(d[:0], int64(rp.index), 10)
		n += len(rp.base) + 1 + len(index)
	}
	if n == 0 {
		e.SourcePosition = rp.base
		return
	}
	var b strings.Builder
	b.Grow(n)
	if rp.index >= 0 {
		if rp.base != "" {
			b.WriteString(rp.base)
			b.WriteByte('/')
		}
		b.Write(index)
	}
	pe := b.Len()
	b.Write(id)
	ie := b.Len()
	b.Write(uri)
	ue := b.Len()
	b.Write(name)
	s := b.String()
	if rp.index >= 0 {
		e.SourcePosition = s[:pe]
	} else {
		e.SourcePosition = rp.base
	}
	if idOK {
		a.auditID, a.auditIDRaw = s[pe:ie], rawVal{}
	}
	if uriOK {
		a.requestURI, a.requestURIRaw = s[ie:ue], rawVal{}
	}
	if nameOK {
		a.name, a.nameRaw = s[ue:], rawVal{}
	}
}

// isSystemRead is the noise policy: a read by a system principal that
// was not denied, was not exec/attach/portforward, touched no secret or
// token and was not made anonymously or through impersonation. These are
// exactly the events the policy may drop whatever else k8sEvent would
// find in them: the forensic tags that keep an event (secret_access,
// token_access, anonymous, denied) follow from the fields checked here.
func (p *processor) isSystemRead(a *auditEvent) bool {
	n := p.n
	if !n.cfg.DropSystemReads || !n.readVerbs[a.verb] || a.hasImpersonated || isConnect(a.subresource) {
		return false
	}
	if a.decision == "forbid" || a.code == 401 || a.code == 403 {
		return false
	}
	switch {
	case a.resource == "secrets", a.resource == "serviceaccounts" && a.subresource == "token", a.resource == "tokenrequests":
		return false
	case a.user.username == "system:anonymous": // k8sActorType's anonymous
		return false
	}
	return n.isSystemPrincipal(a.user.username)
}

func isMutating(verb string) bool {
	return verb == "create" || verb == "update" || verb == "patch"
}

func pathOf(uri string) string {
	p, _, _ := strings.Cut(uri, "?")
	return p
}

func queryOf(uri string) url.Values {
	_, q, ok := strings.Cut(uri, "?")
	if !ok {
		return nil
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return nil
	}
	return v
}

// k8sActorType classifies a Kubernetes username.
func k8sActorType(name string, groups []string) event.ActorType {
	switch {
	case name == "":
		return event.ActorUnknown
	case name == "system:anonymous":
		return event.ActorAnonymous
	case strings.HasPrefix(name, "system:serviceaccount:"):
		return event.ActorServiceAccount
	case strings.HasPrefix(name, "system:node:"):
		return event.ActorNode
	case name == "masterclient":
		// AKS's local cluster-admin certificate, the kubeconfig that
		// listClusterAdminCredential hands out: whoever holds it is a
		// person with full control, not a system component.
		return event.ActorUser
	case strings.HasPrefix(name, "system:"), name == "aksService", name == "nodeclient":
		return event.ActorSystem
	case strings.Contains(name, "@"):
		return event.ActorUser
	case looksLikeGUID(name):
		// AKS with Entra ID authenticates service principals and managed
		// identities by object id.
		return event.ActorServicePrincipal
	}
	for _, g := range groups {
		if g == "system:nodes" {
			return event.ActorNode
		}
	}
	return event.ActorUser
}

func looksLikeGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}

var rbacResources = map[string]bool{"roles": true, "clusterroles": true, "rolebindings": true, "clusterrolebindings": true}

// k8sClass classifies an audit event.
func k8sClass(a *auditEvent) event.ActionClass {
	switch a.subresource {
	case "exec", "attach", "portforward", "ephemeralcontainers", "proxy":
		return event.ClassExec
	}
	switch {
	case a.resource == "secrets" && (a.verb == "get" || a.verb == "list" || a.verb == "watch"):
		return event.ClassCredentialAccess
	case a.resource == "serviceaccounts" && a.subresource == "token", a.resource == "tokenrequests",
		a.resource == "certificatesigningrequests" && a.verb == "create":
		return event.ClassCredentialAccess
	case a.resource == "tokenreviews", a.resource == "subjectaccessreviews", a.resource == "selfsubjectaccessreviews",
		a.resource == "selfsubjectrulesreviews", a.resource == "localsubjectaccessreviews":
		return event.ClassOther
	case rbacResources[a.resource] && a.verb != "get" && a.verb != "list" && a.verb != "watch":
		return event.ClassPermissionChange
	case a.verb == "impersonate":
		return event.ClassPermissionChange
	}
	switch a.verb {
	case "get", "list", "watch":
		return event.ClassRead
	case "create", "update", "patch":
		if a.resource == "mutatingwebhookconfigurations" || a.resource == "validatingwebhookconfigurations" ||
			a.resource == "configmaps" && a.namespace == "kube-system" {
			return event.ClassConfigChange
		}
		return event.ClassWrite
	case "delete", "deletecollection":
		return event.ClassDelete
	}
	return event.ClassOther
}

// podSpecPaths is where a pod spec sits in the request object of each
// workload resource.
var podSpecPaths = map[string][]string{
	"pods":                   {"spec"},
	"deployments":            {"spec", "template", "spec"},
	"replicasets":            {"spec", "template", "spec"},
	"statefulsets":           {"spec", "template", "spec"},
	"daemonsets":             {"spec", "template", "spec"},
	"jobs":                   {"spec", "template", "spec"},
	"replicationcontrollers": {"spec", "template", "spec"},
	"cronjobs":               {"spec", "jobTemplate", "spec", "template", "spec"},
}

// inspectObject looks into the request object (present at audit level
// Request and RequestResponse) for privileged pods, host namespaces and
// paths, images from unapproved registries and cluster-admin bindings.
func (p *processor) inspectObject(e *event.Event, a *auditEvent) {
	obj := a.requestObject
	if !isObject(obj) {
		obj = a.respObject
	}
	if !isObject(obj) {
		return
	}
	if path, ok := podSpecPaths[a.resource]; ok {
		spec := lookup(obj, path...)
		if isObject(spec) {
			p.inspectPodSpec(e, spec)
		}
		return
	}
	if a.resource == "clusterrolebindings" || a.resource == "rolebindings" {
		if name, _ := strBytes(lookup(obj, "roleRef", "name")); string(name) == "cluster-admin" {
			e.Tags = append(e.Tags, event.TagClusterAdminBinding)
		}
	}
}

// lookup walks nested object keys.
func lookup(v []byte, path ...string) []byte {
	for _, key := range path {
		if !isObject(v) {
			return nil
		}
		it := newObjIter(v, 1)
		var found []byte
		for k, val, ok := it.next(); ok; k, val, ok = it.next() {
			if string(k) == key {
				found = val
			}
		}
		if found == nil {
			return nil
		}
		v = found
	}
	return v
}

func isTrue(v []byte) bool { return string(v) == "true" }

func (p *processor) inspectPodSpec(e *event.Event, spec []byte) {
	it := newObjIter(spec, 2)
	var images []string
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch string(k) {
		case "hostPID":
			if isTrue(v) {
				e.Tags = append(e.Tags, event.TagHostPID)
			}
		case "hostNetwork":
			if isTrue(v) {
				e.Tags = append(e.Tags, event.TagHostNetwork)
			}
		case "hostIPC":
			if isTrue(v) {
				e.Tags = append(e.Tags, event.TagHostIPC)
			}
		case "volumes":
			vs := newArrIter(v, 3)
			for vol, ok := vs.next(); ok; vol, ok = vs.next() {
				if hp := lookup(vol, "hostPath"); isObject(hp) {
					e.Tags = append(e.Tags, event.TagHostPath)
					if path := str(lookup(hp, "path")); path != "" {
						setAttr(e, "k8s.host_path", appendCSV(e.Attributes["k8s.host_path"], path))
					}
				}
			}
		case "containers", "initContainers", "ephemeralContainers":
			cs := newArrIter(v, 3)
			for c, ok := cs.next(); ok; c, ok = cs.next() {
				if img := str(lookup(c, "image")); img != "" {
					images = append(images, img)
				}
				if isTrue(lookup(c, "securityContext", "privileged")) {
					e.Tags = append(e.Tags, event.TagPrivilegedPod)
				}
			}
		}
	}
	if len(images) == 0 {
		return
	}
	if len(images) == 1 {
		e.Target.Image = images[0]
	}
	setAttr(e, "k8s.images", strings.Join(images, ","))
	for _, img := range images {
		if !p.n.approvedImage(img) {
			e.Tags = append(e.Tags, event.TagUnapprovedRegistry)
			break
		}
	}
}

func appendCSV(list, s string) string {
	if list == "" {
		return s
	}
	return list + "," + s
}

// approvedImage reports whether img comes from an approved registry. With
// no allow-list configured every image is approved.
func (n *Normalizer) approvedImage(img string) bool {
	if len(n.registries) == 0 {
		return true
	}
	host := registryHost(img)
	for _, r := range n.registries {
		if host == r {
			return true
		}
		if suf, ok := strings.CutPrefix(r, "*"); ok && strings.HasSuffix(host, suf) {
			return true
		}
	}
	return false
}

// registryHost returns the registry of an image reference the way the
// container runtime resolves it: the first path component if it looks like
// a host (has a dot or colon, or is localhost), else docker.io.
func registryHost(img string) string {
	first, _, ok := strings.Cut(img, "/")
	if !ok {
		return "docker.io"
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return strings.ToLower(first)
	}
	return "docker.io"
}

// statusCodeText maps an HTTP status code to a number from a string that
// may hold either the number or an ARM status name.
func statusCodeText(s string) int32 {
	if s == "" {
		return 0
	}
	if n, ok := decimal(s); ok {
		// As strconv.Atoi would read it; no name is a number.
		if n > 0 && n < 1000 {
			return int32(n)
		}
		return 0
	}
	var buf [24]byte
	return httpStatusNames[string(lowerBytes(buf[:], s))]
}

// decimal reads s when it has the form strconv.Atoi accepts, an optional
// sign and decimal digits, without the error value a failed Atoi
// allocates. n is only meaningful between -1e15 and 1e15; ok reports the
// form, whatever the value.
func decimal(s string) (n int64, ok bool) {
	i := 0
	if s != "" && (s[0] == '+' || s[0] == '-') {
		i = 1
	}
	if i == len(s) {
		return 0, false
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1e15 {
			n = n*10 + int64(c-'0')
		}
	}
	if s[0] == '-' {
		n = -n
	}
	return n, true
}

var httpStatusNames = map[string]int32{
	"ok": 200, "created": 201, "accepted": 202, "nocontent": 204,
	"badrequest": 400, "unauthorized": 401, "forbidden": 403, "notfound": 404,
	"methodnotallowed": 405, "conflict": 409, "preconditionfailed": 412, "toomanyrequests": 429,
	"internalservererror": 500, "badgateway": 502, "serviceunavailable": 503, "gatewaytimeout": 504,
}
