// Package normalize turns every record shape Azure delivers for ACI, ACR,
// AKS and the Activity Log into one event.Event that answers who did what
// to which resource, from where, when, with what result, and keeps the
// original bytes.
//
// Inputs (see Input.Format):
//
//   - Resource logs as diagnostic settings deliver them: an Event Hubs body
//     {"records":[...]}, storage-archive PT1H.json lines (JSON Lines), and
//     old-style archive blobs with a records array. Categories: AKS
//     kube-audit, kube-audit-admin, guard and the non-admin AKS categories;
//     ACR ContainerRegistryLoginEvents and ContainerRegistryRepositoryEvents;
//     Activity Log Administrative (and legacy Write, Action, Delete).
//   - Plain Kubernetes audit events (audit.k8s.io/v1 and v1beta1), one JSON
//     object per line or pretty-printed objects back to back.
//   - Log Analytics rows: the query API response {"tables":[...]}, its
//     $batch form, or one row per message as a {"Column": value} object.
//
// Nothing disappears silently: a record that cannot be normalized is
// returned in Result.Quarantined with its raw bytes and a precise reason,
// and every record left out on purpose (noise policy, non-admin category,
// duplicate audit stage) is counted by reason in Result.Dropped.
//
// The decoders read JSON with a small validating byte-slice reader
// (jsonscan.go) instead of encoding/json: the hot path is an AKS audit event
// nested as a JSON string inside a resource-log record, and decoding it
// without building maps or copying the outer record is what lets one core
// keep up with a busy cluster. That event is read straight from the escaped
// string, in the pass that validates it (auditesc.go), and the strings of
// an event the noise policy drops are never made.
package normalize

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custody-audit/custody/event"
)

// Input formats accepted in Input.Format.
const (
	FormatAuto         = "auto"
	FormatEventHubs    = "eventhubs"
	FormatArchive      = "archive"
	FormatLogAnalytics = "loganalytics"
	FormatK8sAudit     = "k8s-audit"
)

// Source formats written to event.Event.SourceFormat.
const (
	SourceResourceLog = "resource-log"
	SourceActivityLog = "activity-log"
	SourceK8sAudit    = "k8s-audit"
	SourceLARow       = "la-row"
)

// Raw formats written to event.Event.RawFormat.
const (
	RawJSON           = "json"             // Raw is one JSON record exactly as delivered
	RawLARowJSON      = "la-row-json"      // Raw is a Log Analytics row object {"Column": value}
	RawLARowAssembled = "la-row-assembled" // Raw is a row object assembled from a query response: column names in order, each value byte for byte
	RawK8sAuditJSON   = "k8s-audit-json"   // Raw is one plain Kubernetes audit event
)

// Dropped reasons used as keys of Result.Dropped.
const (
	DropSystemRead       = "system_read"                // noise policy: read by a system principal
	DropNonAdminCategory = "non_admin_category"         // AKS kube-apiserver, kube-scheduler, ... (suffixed with ":<category>")
	DropContainerLog     = "container_log"              // ACI ContainerInstanceLog rows (application output, not admin activity)
	DropStageReceived    = "k8s_stage_request_received" // stage policy
	DropStageStarted     = "k8s_stage_response_started" // stage policy (non-connect long-running requests)
	DropDuplicateStage   = "k8s_duplicate_stage"        // a second stage of the same audit id in one message
	DropEmptyMessage     = "empty_message"              // the message body held only whitespace
)

// Input is one raw message as a source delivered it.
type Input struct {
	// Body is the message bytes. Events' Raw fields are sub-slices of Body,
	// so the caller must not modify Body after Process.
	Body []byte
	// Format is "" or "auto", "eventhubs", "archive", "loganalytics" or
	// "k8s-audit".
	Format string
	// SourceKind is eventhubs, loganalytics, blob or file.
	SourceKind string
	// Position is the source position, copied to Event.SourcePosition and
	// suffixed with /<record index> when one message holds many records.
	Position string
	// Received is when Custody read the message.
	Received time.Time
	// Attributes carries source metadata; "table" names the Log Analytics
	// table of a row when known.
	Attributes map[string]string
}

// Quarantined is a record that could not be normalized, kept raw.
type Quarantined struct {
	Raw      []byte
	Reason   string
	Format   string
	Position string
}

// OversizeReason is the quarantine reason of a record longer than a
// reader's limit (the max_record_bytes setting of `custody backfill` and
// `custody normalize`): full is the record's length, limit the limit (its
// first limit bytes are kept), sum the SHA-256 of the whole record, so the
// original can still be matched to what was kept.
func OversizeReason(full, limit int64, sum [32]byte) string {
	return fmt.Sprintf("record of %d bytes is over the max_record_bytes limit of %d bytes (raise --max-record-bytes to keep it whole): only its first %d bytes are kept; SHA-256 of the whole record: %x",
		full, limit, limit, sum)
}

// Result is what Process made of one Input.
type Result struct {
	Events      []event.Event
	Quarantined []Quarantined
	// Dropped counts records left out on purpose, by reason (see the Drop*
	// constants). Nothing disappears silently.
	Dropped map[string]int
}

func (r *Result) drop(reason string) {
	if r.Dropped == nil {
		r.Dropped = make(map[string]int, 2)
	}
	r.Dropped[reason]++
}

func (r *Result) quarantine(raw []byte, format, pos, reason string) {
	r.Quarantined = append(r.Quarantined, Quarantined{Raw: raw, Reason: reason, Format: format, Position: pos})
}

// Errors returned by Config.Validate and New.
var (
	ErrInvalidConfig = errors.New("invalid normalize config")
)

// Config is the normalizer's policy. The zero value keeps everything; use
// DefaultConfig for the documented default policy.
type Config struct {
	// DropSystemReads drops read requests (ReadVerbs) made by principals
	// matching SystemPrincipals, unless the request touched secrets or
	// tokens, was denied, or was exec/attach/portforward. Each drop is
	// counted under DropSystemRead. Default true.
	DropSystemReads bool
	// SystemPrincipals are Kubernetes usernames whose reads are noise. An
	// entry ending in '*' matches by prefix; others match exactly. Default:
	// system:node:*, system:serviceaccount:kube-system:*, system:kube-*,
	// system:apiserver, system:volume-scheduler, aksService.
	SystemPrincipals []string
	// ReadVerbs are the Kubernetes verbs treated as reads by the noise
	// policy. Default get, list, watch.
	ReadVerbs []string
	// KeepNonAdminCategories keeps AKS non-admin categories (kube-apiserver,
	// kube-controller-manager, kube-scheduler, cluster-autoscaler,
	// cloud-controller-manager, csi-*) as events of class other instead of
	// counting them as dropped. Default false.
	KeepNonAdminCategories bool
	// KeepContainerLogs keeps ACI container output rows
	// (ContainerInstanceLog_CL, ContainerInstanceLog) as events instead of
	// counting them as dropped. Default false.
	KeepContainerLogs bool
	// KeepStages lists the Kubernetes audit stages kept as events. Default
	// ResponseComplete and Panic: the stages that carry the outcome. A
	// ResponseStarted stage is also kept for exec, attach and portforward
	// when KeepConnectResponseStarted is set. Stages not kept are counted.
	KeepStages []string
	// KeepConnectResponseStarted keeps the ResponseStarted stage of
	// exec/attach/portforward requests: for an interactive session the
	// ResponseComplete stage is only written when the session ends, hours
	// later or never if the API server restarts, so the start is the first
	// evidence. Both stages carry the same Event.ID (the audit id); stores
	// treat ID as the idempotency key. Default true.
	KeepConnectResponseStarted bool
	// ApprovedRegistries are registry hosts (e.g. "myacr.azurecr.io",
	// "mcr.microsoft.com") images may come from. When non-empty, a pod or
	// workload created or updated with an image from any other registry is
	// tagged event.TagUnapprovedRegistry. An entry starting with "*." matches
	// any subdomain. Empty disables the check. Default empty.
	ApprovedRegistries []string
}

// DefaultConfig returns the documented default policy.
func DefaultConfig() Config {
	return Config{
		DropSystemReads: true,
		SystemPrincipals: []string{
			"system:node:*",
			"system:serviceaccount:kube-system:*",
			"system:kube-*",
			"system:apiserver",
			"system:volume-scheduler",
			"aksService",
		},
		ReadVerbs:                  []string{"get", "list", "watch"},
		KeepStages:                 []string{"ResponseComplete", "Panic"},
		KeepConnectResponseStarted: true,
	}
}

var knownStages = map[string]bool{"RequestReceived": true, "ResponseStarted": true, "ResponseComplete": true, "Panic": true}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	for _, p := range c.SystemPrincipals {
		if p == "" || p == "*" {
			return fmt.Errorf("%w: system principal %q would match every user", ErrInvalidConfig, p)
		}
		if strings.Contains(strings.TrimSuffix(p, "*"), "*") {
			return fmt.Errorf("%w: system principal %q: '*' is only allowed at the end", ErrInvalidConfig, p)
		}
	}
	for _, v := range c.ReadVerbs {
		if v == "" || strings.ToLower(v) != v {
			return fmt.Errorf("%w: read verb %q must be a lower-case Kubernetes verb", ErrInvalidConfig, v)
		}
	}
	for _, s := range c.KeepStages {
		if !knownStages[s] {
			return fmt.Errorf("%w: unknown audit stage %q (want RequestReceived, ResponseStarted, ResponseComplete or Panic)", ErrInvalidConfig, s)
		}
	}
	for _, r := range c.ApprovedRegistries {
		if r == "" || strings.ContainsAny(r, "/ ") || strings.Contains(strings.TrimPrefix(r, "*."), "*") {
			return fmt.Errorf("%w: approved registry %q must be a host name, optionally starting with \"*.\"", ErrInvalidConfig, r)
		}
	}
	return nil
}

// Normalizer turns raw messages into events. It holds only immutable
// policy and is safe for concurrent use.
type Normalizer struct {
	cfg         Config
	sysExact    map[string]bool
	sysPrefixes []string
	readVerbs   map[string]bool
	keepStage   map[string]bool
	registries  []string
	// generalOnly turns off the escaped reader (auditesc.go), so tests
	// can compare it with the general path.
	generalOnly bool
	// scratch holds *scratch values. Each Process call takes one for its
	// own use and returns it, so its buffers are reused and strings that
	// repeat across messages (the cluster's resource id, verbs, user
	// names) are shared too.
	scratch sync.Pool
}

// scratch is the reusable working memory of a Process call.
type scratch struct {
	strs strCache
	// escStrs is strs for strings read escaped inside a JSON string (the
	// AKS audit event's RBAC reason, with its quoted role names): keyed by
	// the escaped bytes, so a repeat costs no decoding.
	escStrs strCache
	// arm holds the resource ids parsed lately; ids repeat across records
	// and messages.
	arm    [armCacheSize]armCacheEntry
	armIdx int
	// vd is the working memory of the validating record parse.
	vd azValidator
	// ops holds the ARM operations read lately, by slot (see armOp).
	ops [opCacheSize]armOpEntry
	// events collects a message's events; Process hands back an exact-size
	// copy, so a busy message costs one allocation instead of a series of
	// slice growths.
	events []event.Event
}

// maxScratchEvents bounds the events buffer a scratch keeps between calls.
const maxScratchEvents = 1024

// New validates cfg and returns a Normalizer.
func New(cfg Config) (*Normalizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Normalizer{
		cfg:       cfg,
		sysExact:  make(map[string]bool),
		readVerbs: make(map[string]bool),
		keepStage: make(map[string]bool),
	}
	for _, p := range cfg.SystemPrincipals {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			n.sysPrefixes = append(n.sysPrefixes, pre)
		} else {
			n.sysExact[p] = true
		}
	}
	for _, v := range cfg.ReadVerbs {
		n.readVerbs[v] = true
	}
	for _, s := range cfg.KeepStages {
		n.keepStage[s] = true
	}
	for _, r := range cfg.ApprovedRegistries {
		n.registries = append(n.registries, strings.ToLower(r))
	}
	return n, nil
}

func (n *Normalizer) isSystemPrincipal(user string) bool {
	if n.sysExact[user] {
		return true
	}
	for _, p := range n.sysPrefixes {
		if strings.HasPrefix(user, p) {
			return true
		}
	}
	return false
}

// Process normalizes one message. Bad records go to Result.Quarantined;
// the error is only for a done ctx.
func (n *Normalizer) Process(ctx context.Context, in Input) (Result, error) {
	res, _, _, err := n.process(ctx, in, false)
	return res, err
}

// ProcessBorrowed is Process without the copy of the events: res.Events
// is the normalizer's working memory, valid until release is called
// (release is never nil; call it once, then stop using res.Events). For a
// caller that copies the events onward anyway, such as the collector's
// pipeline building a stream's batch. The events' strings and Raw are
// ordinary values (Raw points into in.Body) and stay valid.
func (n *Normalizer) ProcessBorrowed(ctx context.Context, in Input) (res Result, release func(), err error) {
	res, _, release, err = n.process(ctx, in, true)
	return res, release, err
}

// process is Process that also reports whether the body was exactly one
// valid top-level JSON value (with whitespace around it). With borrow the
// events are the call's working memory, not a copy: call release once
// they are no longer used (release is never nil).
func (n *Normalizer) process(ctx context.Context, in Input, borrow bool) (res Result, single bool, release func(), err error) {
	release = func() {}
	if err := ctx.Err(); err != nil {
		return Result{}, false, release, fmt.Errorf("normalize %s: %w", in.Position, err)
	}
	p := processor{n: n, in: in}
	p.received = in.Received.UTC()
	format := strings.ToLower(strings.TrimSpace(in.Format))
	if format == "" {
		format = FormatAuto
	}
	switch format {
	case FormatAuto, FormatEventHubs, FormatArchive, FormatLogAnalytics, FormatK8sAudit:
	default:
		p.res.quarantine(in.Body, in.Format, in.Position, fmt.Sprintf("unknown input format %q (want auto, eventhubs, archive, loganalytics or k8s-audit)", in.Format))
		return p.res, false, release, nil
	}
	p.format = format
	sc, _ := n.scratch.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	p.strs = &sc.strs
	p.sc = sc
	p.res.Events = sc.events[:0]
	p.walk()
	if p.systemReads > 0 {
		if p.res.Dropped == nil {
			p.res.Dropped = make(map[string]int, 2)
		}
		p.res.Dropped[DropSystemRead] += p.systemReads
	}
	used := p.res.Events
	p.dedupe()
	sc.vd.release()
	if borrow {
		return p.res, p.single, func() { n.recycle(sc, used) }, nil
	}
	if len(p.res.Events) > 0 {
		p.res.Events = append([]event.Event(nil), p.res.Events...)
	} else {
		p.res.Events = nil
	}
	n.recycle(sc, used)
	return p.res, p.single, release, nil
}

// recycle returns a call's working memory to the pool.
func (n *Normalizer) recycle(sc *scratch, used []event.Event) {
	clear(used) // drop the references to this message's data
	if cap(used) <= maxScratchEvents {
		sc.events = used[:0]
	} else {
		sc.events = nil
	}
	n.scratch.Put(sc)
}

// processor carries the state of one Process call.
type processor struct {
	n        *Normalizer
	in       Input
	format   string
	received time.Time
	res      Result
	strs     *strCache // strings repeated across records: &sc.strs
	sc       *scratch  // the working memory this call took from Normalizer.scratch
	single   bool      // the body was exactly one valid top-level value
	// systemReads counts the records dropped as DropSystemRead, added to
	// res.Dropped once walk is done: nearly half of all records, and a
	// map write each would cost more than the count.
	systemReads int
}

// unit is one top-level JSON value of a message.
type unit struct {
	b   []byte
	pos string
}

// walk splits the body into top-level JSON values (one object, JSON Lines,
// or concatenated pretty-printed objects) and handles each. A syntax error
// quarantines the bytes up to the end of the offending line; the walk
// resumes on the next line, so one bad line in a PT1H.json blob costs only
// that line.
func (p *processor) walk() {
	if p.walkRecords() {
		p.single = true
		return
	}
	b := p.in.Body
	i := 0
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		i = 3
	}
	var units []unit
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			break
		}
		end, err := skipValue(b, i, 0)
		if err != nil {
			// Resume at the next line that starts a new value: in JSON
			// Lines every line does, in pretty-printed concatenated
			// objects only the opening braces sit at column 0.
			stop := len(b)
			if k := bytes.Index(b[i:], []byte("\n{")); k >= 0 {
				stop = i + k + 1
			}

			units = append(units, unit{b: b[i:stop], pos: "!invalid JSON: " + err.Error()})
			i = stop
			continue
		}
		units = append(units, unit{b: b[i:end]})
		i = end
	}
	if len(units) == 0 {
		p.res.drop(DropEmptyMessage)
		return
	}
	p.single = len(units) == 1 && !strings.HasPrefix(units[0].pos, "!")
	for k, u := range units {
		pos := p.in.Position
		if len(units) > 1 {
			pos = joinPos(pos, strconv.Itoa(k))
		}
		if strings.HasPrefix(u.pos, "!") {
			p.res.quarantine(u.b, p.format, pos, u.pos[1:])
			continue
		}
		p.top(u.b, pos)
	}
}

// walkRecords is walk for the common case, an Event Hubs body or archive
// blob that is one {"records":[...]} object. It validates the JSON while
// parsing the records instead of in a pass of its own, and decodes each
// AKS properties.log in the same pass that validates it. It reports false,
// with p.res left empty, when the body is anything else or is not valid
// JSON; walk then takes the general path, which gives the same result for
// valid input and the precise error for invalid input. Records handled
// before an error further on are rolled back, because the general path
// quarantines an invalid body whole.
func (p *processor) walkRecords() bool {
	switch p.format {
	case FormatAuto, FormatEventHubs, FormatArchive:
	default:
		return false
	}
	b := p.in.Body
	i := 0
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		i = 3
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	v := b[i:]
	it := newObjIter(v, 0)
	// The keys before "records" decide the shape exactly as classify
	// does; any key that would make it something else ends the fast path.
	for {
		k, vs, ok := it.nextKey()
		if !ok {
			return false
		}
		switch string(k) {
		case "records":
			if vs < len(v) && v[vs] == '[' {
				end, ok := p.recordsValidating(v[vs:], p.in.Position)
				if !ok || !p.finishTop(&it, v, vs+end) || skipSpace(b, i+it.end()) != len(b) {
					clear(p.res.Events)
					p.res = Result{Events: p.res.Events[:0]}
					p.systemReads = 0
					return false
				}
				return true
			}
		case "tables", "responses", "auditID", "category", "operationName", "resourceId", "kind":
			return false
		}
		ve, err := skipValue(v, vs, 1)
		if err != nil || !it.finish(ve) {
			return false
		}
	}
}

// finishTop validates the rest of the top-level object after the value
// that ended at ve.
func (p *processor) finishTop(it *objIter, v []byte, ve int) bool {
	if !it.finish(ve) {
		return false
	}
	for {
		_, vs, ok := it.nextKey()
		if !ok {
			return it.err == nil
		}
		ve, err := skipValue(v, vs, 1)
		if err != nil || !it.finish(ve) {
			return false
		}
	}
}

// recordsValidating is records for walkRecords: it validates the array
// (at depth 1 of the body) while handling each record, and returns the
// offset just past it. It reports false at the first syntax error or
// non-object record, leaving the general path to report it.
func (p *processor) recordsValidating(arr []byte, pos string) (int, bool) {
	it := newArrIter(arr, 1)
	vd := &p.sc.vd
	vd.depth, vd.strs, vd.escStrs = 2, p.strs, &p.sc.escStrs
	vd.generalOnly = p.n.generalOnly
	k := 0
	var audit auditEvent // see azRecord.parse
	for {
		start, ok := it.nextStart()
		if !ok {
			break
		}
		if start >= len(arr) || arr[start] != '{' {
			return 0, false
		}
		var r azRecord
		end, err := r.parse(arr[start:], vd, &audit)
		if err != nil {
			return 0, false
		}
		a := &audit
		if !r.hasAudit {
			a = nil
		}
		p.azureParsed(arr[start:start+end], recPos{base: pos, index: k}, &r, a)
		k++
		if !it.finish(start + end) {
			return 0, false
		}
	}
	if it.err != nil {
		return 0, false
	}
	return it.i, true
}

// recPos is the position of a record: base, suffixed with /<index> when
// index is not negative. It is made into a string only for a record that
// is kept or quarantined, not for the many the noise policy drops.
type recPos struct {
	base  string
	index int
}

func (rp recPos) String() string {
	if rp.index < 0 {
		return rp.base
	}
	return joinPos(rp.base, strconv.Itoa(rp.index))
}

func joinPos(pos, suffix string) string {
	if pos == "" {
		return suffix
	}
	return pos + "/" + suffix
}

// shape is what a top-level object turned out to be.
type shape int

const (
	shapeUnknown shape = iota
	shapeRecords
	shapeLATables
	shapeLABatch
	shapeK8s
	shapeAzure
	shapeLARow
)

// classify looks at an object's top-level keys. It stops at the first key
// that decides the shape, so a large records array is not walked twice.
func classify(v []byte) (shape, []byte) {
	it := newTrustedObjIter(v)
	weakAzure, weakRow := false, false
	for {
		k, vs, ok := it.nextKey()
		if !ok {
			break
		}
		// The container keys hand back their value unbounded: the
		// array iterator stops at the matching ']'.
		switch string(k) {
		case "records":
			if vs < len(v) && v[vs] == '[' {
				return shapeRecords, v[vs:]
			}
		case "tables":
			if vs < len(v) && v[vs] == '[' {
				return shapeLATables, v[vs:]
			}
		case "responses":
			if vs < len(v) && v[vs] == '[' {
				return shapeLABatch, v[vs:]
			}
		case "auditID":
			return shapeK8s, nil
		case "category", "operationName", "resourceId":
			return shapeAzure, nil
		case "time", "identity", "properties", "callerIpAddress", "resultType", "eventTimestamp":
			weakAzure = true
		case "TimeGenerated", "Type", "_ResourceId", "Category", "OperationName", "OperationNameValue":
			weakRow = true
		case "kind":
			ve := skipTrusted(v, vs)
			if s, _ := strBytes(v[vs:ve]); string(s) == "Event" {
				return shapeK8s, nil
			}
			if !it.finish(ve) {
				break
			}
			continue
		}
		if !it.finish(skipTrusted(v, vs)) {
			break
		}
	}
	switch {
	case it.err != nil:
		return shapeUnknown, nil
	case weakRow:
		return shapeLARow, nil
	case weakAzure:
		return shapeAzure, nil
	}
	return shapeUnknown, nil
}

// top handles one top-level JSON value.
func (p *processor) top(v []byte, pos string) {
	switch {
	case isArray(v):
		p.array(v, pos)
		return
	case !isObject(v):
		p.res.quarantine(v, p.format, pos, "top-level JSON value is not an object")
		return
	}
	sh, inner := classify(v)
	switch p.format {
	case FormatK8sAudit:
		p.k8sPlain(v, pos)
		return
	case FormatLogAnalytics:
		switch sh {
		case shapeLATables:
			p.laTables(inner, pos)
		case shapeLABatch:
			p.laBatch(inner, pos)
		default:
			p.laRowObject(v, pos, p.in.Attributes["table"], RawLARowJSON)
		}
		return
	case FormatEventHubs, FormatArchive:
		switch sh {
		case shapeRecords:
			p.records(inner, pos)
		case shapeK8s:
			p.k8sPlain(v, pos)
		default:
			p.azure(v, pos)
		}
		return
	}
	switch sh {
	case shapeRecords:
		p.records(inner, pos)
	case shapeLATables:
		p.laTables(inner, pos)
	case shapeLABatch:
		p.laBatch(inner, pos)
	case shapeK8s:
		p.k8sPlain(v, pos)
	case shapeAzure:
		p.azure(v, pos)
	case shapeLARow:
		p.laRowObject(v, pos, p.in.Attributes["table"], RawLARowJSON)
	default:
		if p.in.Attributes["table"] != "" {
			p.laRowObject(v, pos, p.in.Attributes["table"], RawLARowJSON)
			return
		}
		p.res.quarantine(v, p.format, pos, "unrecognised record: not a resource-log record, Kubernetes audit event or Log Analytics row (no category, auditID, records or tables key)")
	}
}

// array handles a top-level JSON array: each element is a record.
func (p *processor) array(v []byte, pos string) {
	it := newArrIter(v, 0)
	k := 0
	for e, ok := it.next(); ok; e, ok = it.next() {
		p.top(e, joinPos(pos, strconv.Itoa(k)))
		k++
	}
	if it.err != nil {
		p.res.quarantine(v, p.format, pos, "invalid JSON array: "+it.err.Error())
	}
}

// records handles the {"records":[...]} envelope of Event Hubs bodies and
// old-style archive blobs.
func (p *processor) records(arr []byte, pos string) {
	it := newTrustedArrIter(arr)
	k := 0
	for {
		start, ok := it.nextStart()
		if !ok {
			break
		}
		rp := recPos{base: pos, index: k}
		k++
		if start >= len(arr) || arr[start] != '{' {
			end := skipTrusted(arr, start)
			p.res.quarantine(arr[start:end], p.format, rp.String(), "record in records array is not a JSON object")
			if !it.finish(end) {
				break
			}
			continue
		}
		// Parse the record in place: its end is where the envelope
		// parse stops, so the record is not walked twice.
		r, end, err := parseAzRecord(arr[start:])
		rec := arr[start : start+end]
		if err != nil {
			p.res.quarantine(rec, p.format, rp.String(), "invalid JSON record: "+err.Error())
			break
		}
		p.azureParsed(rec, rp, &r, nil)
		if !it.finish(start + end) {
			break
		}
	}
	if it.err != nil {
		p.res.quarantine(arr, p.format, pos, "invalid records array: "+it.err.Error())
	}
}

// emit appends an event after the common finishing touches.
func (p *processor) emit(e *event.Event) {
	e.ReceivedTime = p.received
	e.SourceKind = p.in.SourceKind
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if e.ID == "" {
		e.ID = contentID(e.Raw)
	}
	if e.Outcome == "" {
		e.Outcome = event.OutcomeUnknown
	}
	if e.ActionClass == "" {
		e.ActionClass = event.ClassOther
	}
	if e.Actor.Type == "" {
		e.Actor.Type = event.ActorUnknown
	}
	e.Tags = sortUnique(e.Tags)
	p.res.Events = append(p.res.Events, *e)
}

// dedupe keeps the first event per ID within one message (two stages of
// the same audit id delivered together) and counts the others.
func (p *processor) dedupe() {
	if len(p.res.Events) < 2 {
		return
	}
	// The ids seen are those of the events kept so far, out; a linear scan
	// of them beats building a map for the usual few dozen events.
	var seen map[string]struct{}
	if len(p.res.Events) > 64 {
		seen = make(map[string]struct{}, len(p.res.Events))
	}
	// Events are moved only once one has been left out: an Event is
	// large, and most messages hold no duplicate.
	events := p.res.Events
	n := 0
	for i := range events {
		e := &events[i]
		var dup bool
		if seen != nil {
			_, dup = seen[e.ID]
		} else {
			for j := range n {
				if events[j].ID == e.ID {
					dup = true
					break
				}
			}
		}
		if dup && e.Attributes["id_source"] == "k8s_audit_id" {
			p.res.drop(DropDuplicateStage)
			continue
		}
		if seen != nil {
			seen[e.ID] = struct{}{}
		}
		if n != i {
			events[n] = *e
		}
		n++
	}
	p.res.Events = events[:n]
}

// contentID is the last-resort event id: a hash of the raw record.
func contentID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// hashID is the id derived from identifying fields that every delivery
// path carries (used when a record has no id of its own but the same
// fields appear in the Event Hubs and Log Analytics forms): prefix and
// the hex of the first 16 bytes of SHA-256(preimage), where the preimage
// is each field followed by a 0 byte.
func hashID(prefix string, preimage []byte) string {
	sum := sha256.Sum256(preimage)
	var buf [64]byte
	return string(hex.AppendEncode(append(buf[:0], prefix...), sum[:16]))
}

func sortUnique(tags []string) []string {
	if len(tags) < 2 {
		return tags
	}
	// insertion sort: tag lists are short
	for i := 1; i < len(tags); i++ {
		for j := i; j > 0 && tags[j] < tags[j-1]; j-- {
			tags[j], tags[j-1] = tags[j-1], tags[j]
		}
	}
	out := tags[:1]
	for _, t := range tags[1:] {
		if t != out[len(out)-1] {
			out = append(out, t)
		}
	}
	return out
}

// parseTime reads the timestamp forms Azure and Kubernetes write:
// RFC 3339 with 0-9 fractional digits, with or without a zone (no zone
// means UTC, as in Log Analytics and some archive lines).
func parseTime(s string) (time.Time, bool) {
	if t, ok := parseRFC3339UTC(s); ok {
		return t, true
	}
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "1/2/2006 3:04:05.999999999 PM"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func setAttr(e *event.Event, k, v string) {
	if v == "" {
		return
	}
	if e.Attributes == nil {
		e.Attributes = make(map[string]string, 12)
	}
	e.Attributes[k] = v
}

// parseTimeBytes is parseTime for bytes, without making a string for the
// usual strict RFC 3339 form.
func parseTimeBytes(b []byte) (time.Time, bool) {
	if t, ok := parseRFC3339UTC(b); ok {
		return t, true
	}
	if len(b) == 0 {
		return time.Time{}, false
	}
	return parseTime(string(b))
}

// parseRFC3339UTC reads the strict form every Azure and Kubernetes
// timestamp uses, 2006-01-02T15:04:05[.1-9 digits](Z|±07:00), and returns
// it in UTC. It accepts a subset of what time.Parse accepts with
// time.RFC3339Nano and gives the same instant; anything else reports false
// and is left to parseTime.
func parseRFC3339UTC[T string | []byte](s T) (time.Time, bool) {
	f, ok := rfc3339Fields(s)
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(f.year, time.Month(f.month), f.day, f.hour, f.minute, f.sec, f.nsec, time.UTC)
	if f.offset != 0 {
		t = t.Add(-time.Duration(f.offset) * time.Second)
	}
	return t, true
}

// rfc3339 is a timestamp's fields as rfc3339Fields read them; offset is
// the zone's, in seconds east of UTC.
type rfc3339 struct {
	year, month, day, hour, minute, sec, nsec, offset int
}

// rfc3339Fields reads s as parseRFC3339UTC does, without making the
// time: ok is whether parseRFC3339UTC accepts s.
func rfc3339Fields[T string | []byte](s T) (rfc3339, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return rfc3339{}, false
	}
	ok := true
	num := func(i, n int) int {
		x := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				ok = false
			}
			x = x*10 + int(c-'0')
		}
		return x
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if !ok || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return rfc3339{}, false
	}
	i := 19
	nsec := 0
	if s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			nsec = nsec*10 + int(s[i]-'0')
			i++
		}
		if i == d || i-d > 9 {
			return rfc3339{}, false
		}
		for k := i - d; k < 9; k++ {
			nsec *= 10
		}
	}
	offset := 0
	switch {
	case i == len(s)-1 && s[i] == 'Z':
	case i == len(s)-6 && (s[i] == '+' || s[i] == '-') && s[i+3] == ':':
		hh, mm := num(i+1, 2), num(i+4, 2)
		if !ok || hh > 23 || mm > 59 {
			return rfc3339{}, false
		}
		offset = (hh*60 + mm) * 60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return rfc3339{}, false
	}
	return rfc3339{year, month, day, hour, minute, sec, nsec, offset}, true
}

// daysIn is the number of days of month in year (proleptic Gregorian).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
