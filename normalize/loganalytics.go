package normalize

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/custody-audit/custody/event"
)

// laRow is one Log Analytics row: column names and raw JSON values.
// Dynamic columns arrive either as JSON or as strings holding JSON, and
// numbers sometimes as strings; the accessors accept both.
type laRow struct {
	cols []string
	vals [][]byte
}

// get returns the value of column name (exact match first, then
// case-insensitive).
func (r *laRow) get(name string) []byte {
	for i, c := range r.cols {
		if c == name {
			return r.vals[i]
		}
	}
	for i, c := range r.cols {
		if strings.EqualFold(c, name) {
			return r.vals[i]
		}
	}
	return nil
}

// s returns the first non-empty column of names as a string.
func (r *laRow) s(names ...string) string {
	for _, n := range names {
		if v := str(r.get(n)); v != "" {
			return v
		}
	}
	return ""
}

// laTables handles a query API response's tables array.
func (p *processor) laTables(tables []byte, pos string) {
	it := newArrIter(tables, 1)
	ti := 0
	for tbl, ok := it.next(); ok; tbl, ok = it.next() {
		p.laTable(tbl, joinPos(pos, strconv.Itoa(ti)))
		ti++
	}
	if it.err != nil {
		p.res.quarantine(tables, p.format, pos, "invalid tables array: "+it.err.Error())
	}
}

// laBatch handles a $batch response: responses[].body.tables.
func (p *processor) laBatch(responses []byte, pos string) {
	it := newArrIter(responses, 1)
	k := 0
	for resp, ok := it.next(); ok; resp, ok = it.next() {
		rpos := joinPos(pos, strconv.Itoa(k))
		k++
		if id := str(lookup(resp, "id")); id != "" {
			rpos = joinPos(pos, id)
		}
		tables := lookup(resp, "body", "tables")
		if !isArray(tables) {
			if st, _ := intValue(lookup(resp, "status")); st >= 400 {
				p.res.quarantine(resp, p.format, rpos, "Log Analytics batch response with status "+strconv.FormatInt(st, 10))
			}
			continue
		}
		p.laTables(tables, rpos)
	}
	if it.err != nil {
		p.res.quarantine(responses, p.format, pos, "invalid responses array: "+it.err.Error())
	}
}

// laTable handles one {"name","columns","rows"} table.
func (p *processor) laTable(tbl []byte, pos string) {
	var name string
	var cols []string
	var rows []byte
	it := newObjIter(tbl, 2)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch string(k) {
		case "name", "TableName":
			name = str(v)
		case "columns", "Columns":
			ci := newArrIter(v, 3)
			for c, ok := ci.next(); ok; c, ok = ci.next() {
				cols = append(cols, firstNonEmpty(str(lookup(c, "name")), str(lookup(c, "ColumnName"))))
			}
		case "rows", "Rows":
			rows = v
		}
	}
	if it.err != nil || len(cols) == 0 {
		reason := "Log Analytics table without columns"
		if it.err != nil {
			reason = "invalid Log Analytics table: " + it.err.Error()
		}
		p.res.quarantine(tbl, p.format, pos, reason)
		return
	}
	table := p.in.Attributes["table"]
	if table == "" && name != "PrimaryResult" {
		table = name
	}
	ri := newArrIter(rows, 3)
	k := 0
	for row, ok := ri.next(); ok; row, ok = ri.next() {
		rpos := joinPos(pos, strconv.Itoa(k))
		k++
		if !isArray(row) {
			p.res.quarantine(row, p.format, rpos, "Log Analytics row is not an array")
			continue
		}
		r := laRow{cols: cols}
		vi := newArrIter(row, 4)
		for v, ok := vi.next(); ok; v, ok = vi.next() {
			r.vals = append(r.vals, v)
		}
		if len(r.vals) != len(cols) {
			p.res.quarantine(row, p.format, rpos, "Log Analytics row has "+strconv.Itoa(len(r.vals))+" values for "+strconv.Itoa(len(cols))+" columns")
			continue
		}
		p.laRow(assembleRow(&r), rpos, &r, table, RawLARowAssembled)
	}
	if ri.err != nil {
		p.res.quarantine(rows, p.format, pos, "invalid rows array: "+ri.err.Error())
	}
}

// assembleRow writes a positional row as a {"Column": value} object with
// the values byte for byte, so Raw reads on its own.
func assembleRow(r *laRow) []byte {
	n := 2
	for i, c := range r.cols {
		n += len(c) + len(r.vals[i]) + 6
	}
	var b bytes.Buffer
	b.Grow(n)
	b.WriteByte('{')
	for i, c := range r.cols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(c))
		b.WriteByte(':')
		b.Write(r.vals[i])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// laRowObject handles one row delivered as a {"Column": value} object.
func (p *processor) laRowObject(v []byte, pos, table, rawFormat string) {
	var r laRow
	it := newObjIter(v, 1)
	for k, val, ok := it.next(); ok; k, val, ok = it.next() {
		r.cols = append(r.cols, string(k))
		r.vals = append(r.vals, val)
	}
	if it.err != nil {
		p.res.quarantine(v, p.format, pos, "invalid Log Analytics row: "+it.err.Error())
		return
	}
	p.laRow(v, pos, &r, table, rawFormat)
}

// laRow dispatches a row by table.
func (p *processor) laRow(raw []byte, pos string, r *laRow, table, rawFormat string) {
	if t := r.s("Type"); t != "" {
		table = t
	}
	switch strings.ToLower(table) {
	case "aksaudit", "aksauditadmin":
		p.laAKSAudit(raw, pos, r, table, rawFormat)
	case "akscontrolplane":
		p.laControlPlane(raw, pos, r, table, rawFormat, r.s("Message"), r.s("PodName"))
	case "azurediagnostics":
		p.laAzureDiagnostics(raw, pos, r, table, rawFormat)
	case "containerregistryloginevents", "containerregistryrepositoryevents":
		az := laEnvelope(r)
		az.category = firstNonEmpty(az.category, table)
		az.identity = r.get("Identity")
		f := acrFields{
			loginServer: r.s("LoginServer"), repository: r.s("Repository"), tag: r.s("Tag"), digest: r.s("Digest"),
			mediaType: r.s("MediaType"), artifactType: r.s("ArtifactType"), size: r.s("Size"), userAgent: r.s("UserAgent"),
			tenantID: r.s("UserTenantId"), region: r.s("Region"),
		}
		p.acr(raw, pos, &az, &f, SourceLARow, rawFormat)
	case "azureactivity":
		az := laEnvelope(r)
		az.category = r.s("CategoryValue", "Category")
		az.operationName = r.s("OperationNameValue", "OperationName")
		az.status = r.s("ActivityStatusValue", "ActivityStatus")
		az.subStatus = r.s("ActivitySubstatusValue", "ActivitySubstatus")
		az.caller = r.s("Caller")
		az.eventDataID = r.s("EventDataId")
		az.operationID = r.s("OperationId")
		az.subscriptionID = r.s("SubscriptionId")
		az.resourceGroup = r.s("ResourceGroup")
		az.claims = firstDynamic(r.get("Claims_d"), r.get("Claims"))
		az.authorization = firstDynamic(r.get("Authorization_d"), r.get("Authorization"))
		az.httpRequest = dynamic(r.get("HTTPRequest"))
		az.properties = firstDynamic(r.get("Properties_d"), r.get("Properties"))
		if az.resourceID == "" {
			az.resourceID = r.s("ResourceId")
		}
		p.activity(raw, pos, &az, SourceLARow, rawFormat)
	case "containerevent_cl", "containerevent":
		p.laACIEvent(raw, pos, r, table, rawFormat)
	case "containerinstancelog_cl", "containerinstancelog":
		if !p.n.cfg.KeepContainerLogs {
			p.res.drop(DropContainerLog)
			return
		}
		p.laACIEvent(raw, pos, r, table, rawFormat)
	default:
		az := laEnvelope(r)
		az.category = firstNonEmpty(az.category, table)
		p.generic(raw, pos, &az, SourceLARow, rawFormat)
	}
}

func firstDynamic(vs ...[]byte) []byte {
	for _, v := range vs {
		if d := dynamic(v); d != nil {
			return d
		}
	}
	return nil
}

// laEnvelope maps the columns every resource-specific table shares.
// TenantId in Log Analytics is the workspace id, not the Entra tenant, so
// it is not mapped.
func laEnvelope(r *laRow) azRecord {
	return azRecord{
		time:              r.s("TimeGenerated"),
		category:          r.s("Category"),
		operationName:     r.s("OperationName"),
		resourceID:        r.s("_ResourceId", "ResourceId"),
		resultType:        r.s("ResultType"),
		resultSignature:   r.s("ResultSignature"),
		resultDescription: r.s("ResultDescription"),
		callerIP:          r.s("CallerIpAddress"),
		correlationID:     r.s("CorrelationId"),
		level:             r.s("Level"),
		location:          r.s("Location", "Region"),
		durationMs:        r.s("DurationMs"),
	}
}

// laAKSAudit maps an AKSAudit / AKSAuditAdmin row to an audit event.
func (p *processor) laAKSAudit(raw []byte, pos string, r *laRow, table, rawFormat string) {
	a := auditEvent{
		level:           r.s("Level"),
		auditID:         r.s("AuditId"),
		stage:           r.s("Stage"),
		requestURI:      r.s("RequestUri"),
		verb:            r.s("Verb"),
		userAgent:       r.s("UserAgent"),
		requestReceived: []byte(r.s("RequestReceivedTime")),
		stageTS:         []byte(r.s("StageReceivedTime")),
	}
	if a.auditID == "" && a.verb == "" {
		p.res.quarantine(raw, p.format, pos, table+" row without AuditId and Verb")
		return
	}
	var err error
	if u := dynamic(r.get("User")); u != nil {
		if a.user, err = parseUser(u); err != nil {
			p.res.quarantine(raw, p.format, pos, table+" row: invalid User column: "+err.Error())
			return
		}
	}
	if u := dynamic(r.get("ImpersonatedUser")); u != nil {
		if iu, err := parseUser(u); err == nil && iu.username != "" {
			a.impersonated, a.hasImpersonated = iu, true
		}
	}
	if ips := r.get("SourceIps"); ips != nil {
		if d := dynamic(ips); d != nil {
			a.sourceIPs, _ = stringList(d)
		} else if s := str(ips); s != "" {
			a.sourceIPs = []string{s}
		}
	}
	if o := dynamic(r.get("ObjectRef")); o != nil {
		a.parseObjectRef(o, false, p.strs)
	}
	if s := dynamic(r.get("ResponseStatus")); s != nil {
		a.parseStatus(s, false, p.strs)
	}
	if an := dynamic(r.get("Annotations")); an != nil {
		a.parseAnnotations(an, false, p.strs)
	}
	a.requestObject = dynamic(r.get("RequestObject"))
	a.respObject = dynamic(r.get("ResponseObject"))
	e := event.Event{
		Category:       table,
		SourceFormat:   SourceLARow,
		SourcePosition: pos,
		Raw:            raw,
		RawFormat:      rawFormat,
	}
	p.resource(&e, r.s("_ResourceId", "ResourceId"))
	if !p.k8sEvent(&e, &a, []byte(r.s("TimeGenerated")), recPos{base: pos, index: -1}) {
		return
	}
	setAttr(&e, "aks.pod", r.s("PodName"))
	p.emit(&e)
}

// laControlPlane handles AKSControlPlane rows and the control-plane
// categories of AzureDiagnostics.
func (p *processor) laControlPlane(raw []byte, pos string, r *laRow, table, rawFormat, msg, pod string) {
	az := laEnvelope(r)
	az.category = firstNonEmpty(az.category, table)
	cat := strings.ToLower(az.category)
	switch {
	case cat == "guard":
		p.guard(raw, pos, &az, msg, pod, SourceLARow, rawFormat)
	case isAKSNonAdmin(cat):
		p.nonAdmin(raw, pos, &az, msg, pod, SourceLARow, rawFormat)
	default:
		p.generic(raw, pos, &az, SourceLARow, rawFormat)
	}
}

// laAzureDiagnostics handles legacy AzureDiagnostics rows: kube-audit in
// log_s, control-plane logs, anything else kept as generic.
func (p *processor) laAzureDiagnostics(raw []byte, pos string, r *laRow, table, rawFormat string) {
	cat := strings.ToLower(r.s("Category"))
	if !isAKSAudit(cat) {
		p.laControlPlane(raw, pos, r, table, rawFormat, r.s("log_s", "Message"), r.s("pod_s"))
		return
	}
	inner := dynamic(r.get("log_s"))
	if inner == nil || !isObject(inner) {
		p.res.quarantine(raw, p.format, pos, "AzureDiagnostics "+cat+" row without a JSON audit event in log_s")
		return
	}
	inner = inner[:len(inner)-trailingSpace(inner)]
	a, end, err := parseAudit(inner, p.strs)
	if err != nil || end != len(inner) {
		reason := "trailing data after the audit event"
		if err != nil {
			reason = err.Error()
		}
		p.res.quarantine(raw, p.format, pos, "AzureDiagnostics "+cat+" row: log_s holds invalid JSON: "+reason)
		return
	}
	e := event.Event{
		Category:       r.s("Category"),
		SourceFormat:   SourceLARow,
		SourcePosition: pos,
		Raw:            raw,
		RawFormat:      rawFormat,
	}
	p.resource(&e, r.s("_ResourceId", "ResourceId"))
	if !p.k8sEvent(&e, &a, []byte(r.s("TimeGenerated")), recPos{base: pos, index: -1}) {
		return
	}
	setAttr(&e, "aks.pod", r.s("pod_s"))
	p.emit(&e)
}

// laACIEvent handles ACI ContainerEvent(_CL) rows (container lifecycle:
// pulling, started, killing) and, when kept, ContainerInstanceLog(_CL)
// rows.
func (p *processor) laACIEvent(raw []byte, pos string, r *laRow, table, rawFormat string) {
	e := event.Event{
		Service:        event.ServiceACI,
		Category:       table,
		SourceFormat:   SourceLARow,
		SourcePosition: pos,
		Raw:            raw,
		RawFormat:      rawFormat,
		ActionClass:    event.ClassOther,
		Outcome:        event.OutcomeUnknown,
	}
	p.resource(&e, r.s("_ResourceId", "ResourceId"))
	if e.SubscriptionID == "" {
		e.SubscriptionID = strings.ToLower(r.s("SubscriptionId", "_SubscriptionId"))
	}
	if e.ResourceGroup == "" {
		e.ResourceGroup = strings.ToLower(r.s("ResourceGroup"))
	}
	e.Service = event.ServiceACI
	if t, ok := parseTime(r.s("TimeGenerated")); ok {
		e.Time = t
	}
	e.Target.ContainerGroup = r.s("ContainerGroup_s", "ContainerGroup")
	if e.Target.ContainerGroup == "" {
		e.Target.ContainerGroup = containerGroupOf(e.ResourceID)
	}
	e.Target.Container = r.s("ContainerName_s", "ContainerName")
	e.Target.Image = r.s("ContainerImage_s", "ContainerImage")
	msg := r.s("Message")
	if strings.HasPrefix(strings.ToLower(table), "containerinstancelog") {
		e.Action = "aci:log"
	} else {
		reason := r.s("Reason_s", "Reason")
		e.Action = "aci:event:" + strings.ToLower(firstNonEmpty(reason, "unknown"))
		e.Reason = reason
		if e.Target.Image == "" {
			e.Target.Image = quotedImage(msg)
		}
		if e.Target.Image != "" && !p.n.approvedImage(e.Target.Image) {
			e.Tags = append(e.Tags, event.TagUnapprovedRegistry)
		}
		if strings.Contains(strings.ToLower(reason), "fail") || strings.EqualFold(r.s("Type_s"), "Warning") {
			e.Outcome = event.OutcomeFailure
		}
	}
	setAttr(&e, "message", msg)
	setAttr(&e, "aci.count", r.s("Count_d", "Count"))
	setAttr(&e, "aci.first_timestamp", r.s("FirstTimestamp_t", "FirstTimestamp"))
	setAttr(&e, "aci.last_timestamp", r.s("LastTimestamp_t", "LastTimestamp"))
	setAttr(&e, "aci.os_type", r.s("OSType_s", "OSType"))
	setAttr(&e, "aci.container_id", r.s("ContainerID_s", "ContainerID"))
	setAttr(&e, "aci.container_group_instance_id", r.s("ContainerGroupInstanceID"))
	setAttr(&e, "location", r.s("Location_s", "Location"))
	setAttr(&e, "id_source", "content_hash")
	p.emit(&e)
}

// quotedImage finds the image in an ACI event message such as
// `pulling image "mcr.microsoft.com/azuredocs/aci-helloworld:latest"`.
func quotedImage(msg string) string {
	l := strings.ToLower(msg)
	i := strings.Index(l, "image \"")
	if i < 0 {
		return ""
	}
	rest := msg[i+len("image \""):]
	img, _, ok := strings.Cut(rest, "\"")
	if !ok {
		return ""
	}
	return img
}
