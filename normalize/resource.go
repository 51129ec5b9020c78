package normalize

import (
	"net/netip"
	"strings"

	"github.com/custody-audit/custody/event"
)

// azRecord is the common envelope of Azure resource-log and Activity Log
// records (Event Hubs and storage form, plus the REST/portal form of the
// Activity Log). Scalars are decoded; nested objects stay as raw JSON.
type azRecord struct {
	time              string
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
	claims         []byte // REST form / AzureActivity Claims column
	authorization  []byte // REST form / AzureActivity Authorization column
	httpRequest    []byte // REST form / AzureActivity HTTPRequest column
}

// lowerASCII lower-cases a short key into buf without allocating.
func lowerASCII(buf []byte, k []byte) []byte {
	buf = buf[:0]
	for _, c := range k {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
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
	end, err := r.parse(rec, nil)
	return r, end, err
}

// azValidator is the state of a validating record parse (the fast path of
// walk): the depth the record sits at, as skipValue counts it, and the
// buffer properties.log is decoded into.
type azValidator struct {
	depth int
	buf   []byte
	strs  *strCache
}

// parse decodes the envelope of rec and returns the offset just past it.
// With vd nil, rec must already be validated. With vd set, every byte of the
// record is validated as it is read (any error means the record is not one
// valid JSON object), and a string properties.log is decoded into vd.buf
// and kept in propLogDecoded.
func (r *azRecord) parse(rec []byte, vd *azValidator) (int, error) {
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
			end, err := r.parseProperties(rec[vs:], vd)
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
			if r.time == "" || string(k) == "time" {
				r.time = str(v)
			}
		case "category":
			r.category = valueOf(v, sc)
		case "operationname":
			r.operationName = valueOf(v, sc)
		case "resourceid":
			r.resourceID = sc.str(v)
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
func (r *azRecord) parseProperties(v []byte, val *azValidator) (int, error) {
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
			val.buf, ve, err = scanUnescape(val.buf[:0], v, vs)
			r.propLogDecoded, r.hasLogDecoded = val.buf, true
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
				r.propLogDecoded, r.hasLogDecoded = nil, false
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

// Category groups.
var (
	aksAuditCategories = map[string]bool{"kube-audit": true, "kube-audit-admin": true}
	// aksNonAdmin are AKS control-plane log categories that carry component
	// logs, not admin events.
	aksNonAdmin = map[string]bool{
		"kube-apiserver": true, "kube-controller-manager": true, "kube-scheduler": true,
		"cluster-autoscaler": true, "cloud-controller-manager": true,
	}
	activityCategories = map[string]bool{"administrative": true, "write": true, "action": true, "delete": true}
)

func isAKSNonAdmin(cat string) bool {
	return aksNonAdmin[cat] || strings.HasPrefix(cat, "csi-")
}

// azure handles one resource-log or Activity Log record.
func (p *processor) azure(rec []byte, pos string) {
	r, _, err := parseAzRecord(rec)
	if err != nil {
		p.res.quarantine(rec, p.format, pos, "invalid JSON record: "+err.Error())
		return
	}
	p.azureParsed(rec, pos, &r)
}

// azureParsed dispatches a parsed record by category.
func (p *processor) azureParsed(rec []byte, pos string, rp *azRecord) {
	r := *rp
	cat := strings.ToLower(r.category)
	switch {
	case aksAuditCategories[cat]:
		p.aksAudit(rec, pos, &r)
	case cat == "guard":
		msg, pod := controlPlaneMessage(r.properties)
		p.guard(rec, pos, &r, msg, pod, SourceResourceLog, RawJSON)
	case isAKSNonAdmin(cat):
		if !p.n.cfg.KeepNonAdminCategories {
			p.res.drop(DropNonAdminCategory + ":" + cat)
			return
		}
		msg, pod := controlPlaneMessage(r.properties)
		p.nonAdmin(rec, pos, &r, msg, pod, SourceResourceLog, RawJSON)
	case cat == "containerregistryloginevents" || cat == "containerregistryrepositoryevents":
		p.acr(rec, pos, &r, nil, SourceResourceLog, RawJSON)
	case activityCategories[cat] || (cat == "" && (len(r.claims) > 0 || r.eventDataID != "")):
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

// resource parses id, reusing the previous result when a message repeats
// the same resource (every record of an AKS Event Hubs body does).
func (p *processor) resource(e *event.Event, id string) {
	if id != p.lastID || p.lastARM.canonical == "" {
		p.lastID, p.lastARM = id, parseARMID(id)
	}
	applyARM(e, p.lastARM)
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
	if t, ok := parseTime(r.time); ok {
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
		applyARMIdentity(&e, r)
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
