package normalize

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
)

// azRecord is the common envelope of Azure resource-log and Activity Log
// records (Event Hubs and storage form, plus the REST/portal form of the
// Activity Log). Scalars are decoded; nested objects stay as raw JSON.
type azRecord struct {
	// time is the record's time ("time", else "eventTimestamp"). parse
	// leaves it in timeV and azureParsed decodes it, except for AKS audit
	// records, whose own timestamps come first (see timeBytes).
	time              string
	timeV             []byte
	category          string
	operationName     string
	resourceID        string
	resultType        string
	resultSignature   string
	resultDescription string
	callerIP          string
	correlationID     string
	tenantID          string
	subscriptionID    string
	resourceGroup     string
	level             string
	location          string
	durationMs        string
	eventDataID       string
	operationID       string
	caller            string
	status            string
	subStatus         string
	identity          []byte // object or string
	properties        []byte
	// properties.log, .pod and .containerID of AKS records, captured while
	// the envelope is parsed so the large log string is walked once.
	propLog, propPod, propContainerID []byte
	// propLogDecoded is the decoded content of a string propLog when the
	// validating parse already decoded it (hasLogDecoded); it aliases the
	// processor's scratch buffer and is only valid until the next record.
	propLogDecoded []byte
	hasLogDecoded  bool
	// hasAudit reports that the escaped reader (auditesc.go) read the
	// audit event of a string propLog during the validating parse, into
	// the event the caller of parse provided.
	hasAudit      bool
	claims        []byte // REST form / AzureActivity Claims column
	authorization []byte // REST form / AzureActivity Authorization column
	httpRequest   []byte // REST form / AzureActivity HTTPRequest column
	// operationNameV and resourceIDV are the values of operationName and
	// resourceId as parse found them, made into strings by
	// envelopeStrings: an AKS audit record needs neither to be dropped by
	// the noise policy, nor operationName at all.
	operationNameV, resourceIDV []byte
}

// envelopeStrings makes operationName and resourceID from the values
// parse left, as parse itself once did. sc (may be nil) shares repeated
// strings.
func (r *azRecord) envelopeStrings(sc *strCache) {
	if r.operationNameV != nil {
		r.operationName, r.operationNameV = valueOf(r.operationNameV, sc), nil
	}
	if r.resourceIDV != nil {
		r.resourceID, r.resourceIDV = sc.str(r.resourceIDV), nil
	}
}

// lowerASCII lower-cases a short key into buf without allocating (a key
// longer than buf is lowered into a new slice). Only ASCII letters change,
// eight bytes a step.
func lowerASCII(buf []byte, k []byte) []byte {
	if len(k) > len(buf) {
		buf = make([]byte, len(k))
	}
	buf = buf[:len(k)]
	i := 0
	for ; i+8 <= len(k); i += 8 {
		w := binary.LittleEndian.Uint64(k[i:])
		binary.LittleEndian.PutUint64(buf[i:], w|upperMask(w)>>2)
	}
	for ; i < len(k); i++ {
		c := k[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf
}

// upperMask flags the bytes of w that are 'A'-'Z' with their high bit.
// Bytes from 0x80 up are cleared of their high bit first, so no sum
// carries into the next byte, and then left out by the &^ w.
func upperMask(w uint64) uint64 {
	w7 := w &^ msb
	return ((w7 + (0x80-'A')*lsb) &^ (w7 + (0x80-'Z'-1)*lsb)) &^ w & msb
}

// valueOf reads a scalar that the REST form wraps as {"value": ...,
// "localizedValue": ...}. sc (may be nil) shares repeated strings.
func valueOf(v []byte, sc *strCache) string {
	if isObject(v) {
		it := newObjIter(v, 0)
		for k, val, ok := it.next(); ok; k, val, ok = it.next() {
			if string(k) == "value" {
				return str(val)
			}
		}
		return ""
	}
	return sc.str(v)
}

// parseAzRecord decodes the envelope of rec, which skipValue has already
// validated. Keys match case-insensitively: archive lines and legacy
// shippers use "Level", "ResourceId" and the like.
func parseAzRecord(rec []byte) (azRecord, int, error) {
	var r azRecord
	end, err := r.parse(rec, nil, nil)
	return r, end, err
}

// azValidator is the state of a validating record parse (the fast path of
// walk): the depth the record sits at, as skipValue counts it, and the
// buffer properties.log is decoded into.
type azValidator struct {
	depth int
	buf   []byte
	strs  *strCache
	// tmp and escStrs are the escaped reader's scratch space and cache
	// of doubly escaped strings.
	tmp         []byte
	escStrs     *strCache
	generalOnly bool // see Normalizer.generalOnly
}

// maxScratchBuf bounds the buffers an azValidator keeps between messages.
const maxScratchBuf = 64 << 10

// release drops the references to a message's data and buffers grown
// too large, so a scratch kept between messages holds neither.
func (vd *azValidator) release() {
	vd.strs, vd.escStrs = nil, nil
	if cap(vd.buf) > maxScratchBuf {
		vd.buf = nil
	}
	if cap(vd.tmp) > maxScratchBuf {
		vd.tmp = nil
	}
}

// parse decodes the envelope of rec and returns the offset just past it.
// With vd nil, rec must already be validated. With vd set, every byte of the
// record is validated as it is read (any error means the record is not one
// valid JSON object), and a string properties.log is read as an audit
// event into audit (when not nil; see hasAudit) or else decoded into vd.buf
// and kept in propLogDecoded. audit is passed apart from r, and is best a
// local of the caller: the reader's many stores are then stack writes, free
// of the write barriers a heap object costs while the GC runs.
func (r *azRecord) parse(rec []byte, vd *azValidator, audit *auditEvent) (int, error) {
	var buf [40]byte
	var it objIter
	var sc *strCache
	if vd != nil {
		sc = vd.strs
	}
	if vd == nil {
		it = newTrustedObjIter(rec)
	} else {
		if vd.depth >= maxDepth {
			return 0, errTooDeep
		}
		it = newObjIter(rec, vd.depth)
	}
	for {
		key, vs, ok := it.nextKey()
		if !ok {
			break
		}
		k := lowerASCII(buf[:], key)
		if string(k) == "properties" && vs < len(rec) && rec[vs] == '{' {
			end, err := r.parseProperties(rec[vs:], vd, audit)
			if err != nil {
				return vs + end, err
			}
			r.properties = rec[vs : vs+end]
			if !it.finish(vs + end) {
				break
			}
			continue
		}
		var ve int
		if vd == nil {
			ve = skipTrusted(rec, vs)
		} else {
			var err error
			if ve, err = skipValue(rec, vs, vd.depth+1); err != nil {
				return ve, err
			}
		}
		v := rec[vs:ve]
		if !it.finish(ve) {
			break
		}
		switch string(k) {
		case "time", "eventtimestamp":
			if strEmpty(r.timeV) || string(k) == "time" {
				r.timeV = v
			}
		case "category":
			r.category = valueOf(v, sc)
		case "operationname":
			r.operationNameV = v
		case "resourceid":
			r.resourceIDV = v
		case "resulttype":
			r.resultType = sc.str(v)
		case "resultsignature":
			r.resultSignature = sc.str(v)
		case "resultdescription":
			r.resultDescription = str(v)
		case "calleripaddress":
			r.callerIP = str(v)
		case "correlationid":
			r.correlationID = str(v)
		case "tenantid":
			r.tenantID = sc.str(v)
		case "subscriptionid":
			r.subscriptionID = sc.str(v)
		case "resourcegroupname":
			r.resourceGroup = sc.str(v)
		case "level":
			r.level = sc.str(v)
		case "location":
			r.location = sc.str(v)
		case "durationms":
			r.durationMs = str(v)
		case "eventdataid":
			r.eventDataID = str(v)
		case "operationid":
			r.operationID = str(v)
		case "caller":
			r.caller = sc.str(v)
		case "status":
			r.status = valueOf(v, sc)
		case "substatus":
			r.subStatus = valueOf(v, sc)
		case "identity":
			r.identity = v
		case "properties":
			r.properties = v
		case "claims":
			r.claims = v
		case "authorization":
			r.authorization = v
		case "httprequest":
			r.httpRequest = v
		}
	}
	return it.end(), it.err
}

// parseProperties walks the properties object once, keeping the AKS log
// fields, and returns the offset just past it. With val set it validates
// the object (one level below the record) and decodes a string log while
// validating it.
func (r *azRecord) parseProperties(v []byte, val *azValidator, audit *auditEvent) (int, error) {
	if val == nil {
		it := newTrustedObjIter(v)
		for k, e, ok := it.next(); ok; k, e, ok = it.next() {
			switch string(k) {
			case "log":
				r.propLog = e
			case "pod":
				r.propPod = e
			case "containerID":
				r.propContainerID = e
			}
		}
		return it.end(), it.err
	}
	depth := val.depth + 1
	if depth >= maxDepth {
		return 0, errTooDeep
	}
	it := newObjIter(v, depth)
	for {
		k, vs, ok := it.nextKey()
		if !ok {
			break
		}
		var ve int
		var err error
		if string(k) == "log" && vs < len(v) && v[vs] == '"' {
			// Read the audit event in the pass that validates the
			// string; if the escaped reader gives up, decode the string
			// for the general path.
			var read bool
			if audit != nil && !val.generalOnly {
				*audit = auditEvent{}
				ve, read, val.tmp = parseAuditEsc(v, vs, audit, val.strs, val.escStrs, val.tmp)
			}
			r.hasAudit = read
			if read {
				r.propLogDecoded, r.hasLogDecoded = nil, false
			} else {
				val.buf, ve, err = scanUnescape(val.buf[:0], v, vs)
				r.propLogDecoded, r.hasLogDecoded = val.buf, true
			}
		} else {
			ve, err = skipValue(v, vs, depth+1)
		}
		if err != nil {
			return ve, err
		}
		switch string(k) {
		case "log":
			r.propLog = v[vs:ve]
			if v[vs] != '"' {
				r.propLogDecoded, r.hasLogDecoded, r.hasAudit = nil, false, false
			}
		case "pod":
			r.propPod = v[vs:ve]
		case "containerID":
			r.propContainerID = v[vs:ve]
		}
		if !it.finish(ve) {
			break
		}
	}
	return it.end(), it.err
}

// Category groups, by lower-cased category. Switches, not maps: every
// record is classified.

// isAKSAudit reports the AKS audit categories.
func isAKSAudit(cat string) bool { return cat == "kube-audit" || cat == "kube-audit-admin" }

// isAKSNonAdmin reports the AKS control-plane log categories that carry
// component logs, not admin events.
func isAKSNonAdmin(cat string) bool {
	switch cat {
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler", "cluster-autoscaler", "cloud-controller-manager":
		return true
	}
	return strings.HasPrefix(cat, "csi-")
}

// isACRCategory reports the container registry categories.
func isACRCategory(cat string) bool {
	return cat == "containerregistryloginevents" || cat == "containerregistryrepositoryevents"
}

// isActivityCategory reports the Activity Log administrative categories,
// current and legacy.
func isActivityCategory(cat string) bool {
	switch cat {
	case "administrative", "write", "action", "delete":
		return true
	}
	return false
}

// azure handles one resource-log or Activity Log record.
func (p *processor) azure(rec []byte, pos string) {
	r, _, err := parseAzRecord(rec)
	if err != nil {
		p.res.quarantine(rec, p.format, pos, "invalid JSON record: "+err.Error())
		return
	}
	p.azureParsed(rec, recPos{base: pos, index: -1}, &r, nil)
}

// timeBytes is the decoded record time for AKS audit records, read
// without making a string when it holds no escapes.
func (r *azRecord) timeBytes() []byte {
	if r.timeV == nil {
		return []byte(r.time)
	}
	if s, ok := strBytes(r.timeV); ok {
		return s
	}
	return []byte(str(r.timeV))
}

// azureParsed dispatches a parsed record by category. audit is the event
// parse read when rp.hasAudit, else nil.
func (p *processor) azureParsed(rec []byte, rpos recPos, rp *azRecord, audit *auditEvent) {
	r := *rp
	cat := lowerString(r.category, p.strs)
	if isAKSAudit(cat) {
		p.aksAudit(rec, rpos, &r, audit)
		return
	}
	r.envelopeStrings(p.strs)
	if isAKSNonAdmin(cat) && !p.n.cfg.KeepNonAdminCategories {
		p.res.drop(DropNonAdminCategory + ":" + cat)
		return
	}
	pos := rpos.String()
	switch {
	case cat == "guard":
		msg, pod := controlPlaneMessage(r.properties)
		p.guard(rec, pos, &r, msg, pod, SourceResourceLog, RawJSON)
	case isAKSNonAdmin(cat): // kept by Config.KeepNonAdminCategories
		msg, pod := controlPlaneMessage(r.properties)
		p.nonAdmin(rec, pos, &r, msg, pod, SourceResourceLog, RawJSON)
	case isACRCategory(cat):
		p.acr(rec, pos, &r, nil, SourceResourceLog, RawJSON)
	case isActivityCategory(cat) || (cat == "" && (len(r.claims) > 0 || r.eventDataID != "")):
		p.activity(rec, pos, &r, SourceActivityLog, RawJSON)
	default:
		p.generic(rec, pos, &r, SourceResourceLog, RawJSON)
	}
}

// armID is an Azure resource id split into its parts.
type armID struct {
	canonical      string
	subscriptionID string
	resourceGroup  string
	provider       string
	resourceType   string
	name           string
}

// parseARMID splits /subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}[/{type}/{name}...].
// The canonical form is the lower-cased id without a trailing slash.
// Provider and type get their documented casing when known (resource ids
// arrive upper-cased from some paths and lower-cased from others), else
// lower case, so the same resource yields the same strings on every path.
func parseARMID(id string) armID {
	id = strings.TrimSpace(id)
	if id == "" {
		return armID{}
	}
	lower := strings.TrimRight(strings.ToLower(id), "/")
	a := armID{canonical: lower}
	segs := strings.Split(strings.TrimPrefix(lower, "/"), "/")
	var types, names []string
	for i := 0; i+1 < len(segs); i += 2 {
		switch segs[i] {
		case "subscriptions":
			if a.subscriptionID == "" {
				a.subscriptionID = segs[i+1]
			}
			continue
		case "resourcegroups":
			if a.resourceGroup == "" {
				a.resourceGroup = segs[i+1]
			}
			continue
		case "providers":
			a.provider = canonicalSegment(segs[i+1])
			types, names = types[:0], names[:0]
			// after the namespace, segments alternate type/name
			rest := segs[i+2:]
			for j := 0; j < len(rest); j += 2 {
				types = append(types, canonicalSegment(rest[j]))
				if j+1 < len(rest) {
					names = append(names, rest[j+1])
				}
			}
			i = len(segs)
		}
	}
	if len(types) > 0 {
		a.resourceType = strings.Join(types, "/")
	}
	if len(names) > 0 {
		a.name = names[len(names)-1]
	}
	return a
}

// canonicalSegment restores the documented casing of provider namespaces,
// resource types and operation names Custody reasons about.
func canonicalSegment(s string) string {
	if c, ok := segmentCase[strings.ToLower(s)]; ok {
		return c
	}
	return strings.ToLower(s)
}

var segmentCase = func() map[string]string {
	m := make(map[string]string)
	for _, s := range []string{
		"Microsoft.ContainerService", "Microsoft.ContainerRegistry", "Microsoft.ContainerInstance",
		"Microsoft.Insights", "Microsoft.Authorization", "Microsoft.Resources", "Microsoft.OperationalInsights",
		"Microsoft.Network", "Microsoft.Storage", "Microsoft.KeyVault", "Microsoft.EventHub", "Microsoft.Web",
		"Microsoft.Compute", "Microsoft.ManagedIdentity", "Microsoft.Support", "Microsoft.ResourceHealth",
		"managedClusters", "agentPools", "registries", "containerGroups", "containers", "diagnosticSettings",
		"roleAssignments", "roleDefinitions", "webhooks", "tokens", "scopeMaps", "replications", "connectedRegistries",
		"privateEndpointConnections", "maintenanceConfigurations", "trustedAccessRoleBindings", "accessProfiles",
		"listClusterAdminCredential", "listClusterUserCredential", "listClusterMonitoringUserCredential",
		"runCommand", "commandResults", "listCredentials", "regenerateCredential", "importImage", "generateCredentials",
		"listKeys", "listAccountSas", "exec", "attach", "start", "stop", "restart", "write", "delete", "read", "action",
		"resetAADProfile", "resetServicePrincipalProfile", "rotateClusterCertificates", "abort", "upgradeProfiles",
		"logs", "outboundNetworkDependenciesEndpoints", "listBuildSourceUploadUrl", "scheduleRun", "tasks", "runs",
		"diagnosticLogs", "authorizationRules", "namespaces", "userAssignedIdentities", "locks", "policyAssignments",
		"deployments", "resourceGroups", "subscriptions", "networkSecurityGroups", "storageAccounts", "sites",
	} {
		m[strings.ToLower(s)] = s
	}
	return m
}()

// canonicalOperation gives an ARM operation name one spelling on every
// delivery path: known segments in their documented casing, the rest
// lower-cased.
func canonicalOperation(op string) string {
	op = strings.TrimSpace(op)
	if op == "" {
		return ""
	}
	segs := strings.Split(op, "/")
	for i, s := range segs {
		segs[i] = canonicalSegment(s)
	}
	return strings.Join(segs, "/")
}

// armCacheSize is the number of parsed resource ids a scratch keeps.
const armCacheSize = 4

// armCacheEntry is a resource id and its parse.
type armCacheEntry struct {
	id  string
	arm armID
}

// resource parses id, reusing an earlier result when records repeat the
// same resource (every record of an AKS Event Hubs body does, and a few
// resources make up most of a subscription's traffic).
func (p *processor) resource(e *event.Event, id string) {
	if p.sc == nil {
		applyARM(e, parseARMID(id))
		return
	}
	c := &p.sc.arm
	for i := range c {
		if c[i].id == id && c[i].arm.canonical != "" {
			applyARM(e, c[i].arm)
			return
		}
	}
	a := parseARMID(id)
	p.sc.armIdx = (p.sc.armIdx + 1) % armCacheSize
	c[p.sc.armIdx] = armCacheEntry{id: id, arm: a}
	applyARM(e, a)
}

func applyARM(e *event.Event, a armID) {
	e.ResourceID = a.canonical
	if e.SubscriptionID == "" {
		e.SubscriptionID = a.subscriptionID
	}
	if e.ResourceGroup == "" {
		e.ResourceGroup = a.resourceGroup
	}
	e.Provider = a.provider
	e.ResourceType = a.resourceType
	e.ResourceName = a.name
}

// serviceOf maps a provider namespace to a service.
func serviceOf(provider string) event.Service {
	switch provider {
	case "Microsoft.ContainerService":
		return event.ServiceAKS
	case "Microsoft.ContainerRegistry":
		return event.ServiceACR
	case "Microsoft.ContainerInstance":
		return event.ServiceACI
	}
	return event.ServiceARM
}

// parseIP parses an address as sources write it: plain v4/v6, with a port,
// bracketed v6, or with a zone. Unparseable values return the zero Addr.
func parseIP(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if h, _, ok := strings.Cut(s, ","); ok {
		return parseIP(h)
	}
	return netip.Addr{}
}

// singleIPv4 reads a JSON array holding exactly one string that is a
// dotted-quad IPv4 address in the strict form netip.ParseAddr accepts
// (no leading zeros, no spaces, no escapes). Anything else reports false
// and is left to parseIP, which gives the same address for these inputs.
// With escaped set, v is the array as it stands escaped inside a JSON
// string, its quotes written \".
func singleIPv4(v []byte, escaped bool) (netip.Addr, bool) {
	quote := func(i int) int { // the offset past a quote at i, or -1
		switch {
		case !escaped && i < len(v) && v[i] == '"':
			return i + 1
		case escaped && i+1 < len(v) && v[i] == '\\' && v[i+1] == '"':
			return i + 2
		}
		return -1
	}
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '[' {
		return netip.Addr{}, false
	}
	if i = quote(skipSpace(v, i+1)); i < 0 {
		return netip.Addr{}, false
	}
	var ip [4]byte
	for f := 0; f < 4; f++ {
		if f > 0 {
			if i >= len(v) || v[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, n := i, 0
		for i < len(v) && i-start < 3 && v[i] >= '0' && v[i] <= '9' {
			n = n*10 + int(v[i]-'0')
			i++
		}
		if i == start || n > 255 || (v[start] == '0' && i-start > 1) {
			return netip.Addr{}, false
		}
		ip[f] = byte(n)
	}
	if i = quote(i); i < 0 {
		return netip.Addr{}, false
	}
	i = skipSpace(v, i)
	if i >= len(v) || v[i] != ']' || skipSpace(v, i+1) != len(v) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// setIP stores the parsed address, or keeps the unparseable text as an
// attribute so nothing is lost.
func setIP(e *event.Event, s string) {
	if s == "" {
		return
	}
	if a := parseIP(s); a.IsValid() {
		e.SourceIP = a
		return
	}
	setAttr(e, "source_ip_unparsed", s)
}

// generic keeps a record of a category Custody does not model (a newly
// enabled diagnostic category, an Activity Log category such as Policy or
// ResourceHealth) as an event of class other, so nothing from a configured
// source is lost.
func (p *processor) generic(rec []byte, pos string, r *azRecord, srcFormat, rawFormat string) {
	e := event.Event{
		Category:       r.category,
		SourceFormat:   srcFormat,
		SourcePosition: pos,
		Raw:            rec,
		RawFormat:      rawFormat,
		TenantID:       r.tenantID,
		CorrelationID:  r.correlationID,
	}
	p.resource(&e, r.resourceID)
	e.Service = serviceOf(e.Provider)
	if t, ok := r.parsedTime(); ok {
		e.Time = t
	}
	op := canonicalOperation(r.operationName)
	if op != "" {
		e.Action = "arm:" + op
	} else if r.category != "" {
		e.Action = "log:" + r.category
	}
	e.ActionClass = event.ClassOther
	e.Outcome = armOutcome(r.resultType, r.status)
	setIP(&e, r.callerIP)
	if isString(r.identity) {
		e.Actor.Name = str(r.identity)
	} else if len(r.identity) > 0 || len(r.claims) > 0 {
		applyARMIdentity(&e, r, p.strs)
	}
	e.Reason = firstNonEmpty(r.resultDescription, r.resultSignature)
	setAttr(&e, "level", r.level)
	setAttr(&e, "location", r.location)
	setAttr(&e, "result_type", r.resultType)
	setAttr(&e, "id_source", "content_hash")
	p.emit(&e)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// parsedTime is parseTime of the record's time.
func (r *azRecord) parsedTime() (time.Time, bool) {
	if r.timeV == nil {
		return parseTime(r.time)
	}
	return parseTimeBytes(r.timeBytes())
}

// timeText is the record's time as a string, for messages.
func (r *azRecord) timeText() string {
	if r.timeV == nil {
		return r.time
	}
	return str(r.timeV)
}
