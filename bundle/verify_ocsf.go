package bundle

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// Checking an OCSF line's derived fields means deriving them again from
// the row. Through normalize.OCSF and appendOCSFValue that is a tree of
// maps built, sorted and written per line, most of the cost of verifying
// an OCSF bundle. ocsfWriter writes the same bytes straight from the row,
// in the sorted key order appendOCSFValue produces, for the documents
// normalize.OCSF derives. It only ever confirms a line: canonicalOCSF
// accepts a line it matches, and derives the line through normalize.OCSF
// whenever it does not (TestOCSFWriterMatchesNormalize holds the two to
// the same bytes).

// ocsfWriter writes the OCSF line of a row without its record, as
// appendOCSFLine(dst, r, nil) does, reusing its scratch space.
type ocsfWriter struct {
	keys    []string
	scratch []byte
}

// OCSF values normalize.OCSF uses that it does not export.
const (
	ocsfCategoryApplication = 6
	ocsfCategoryIAM         = 3
	ocsfAuthActivityLogon   = 1
	ocsfLogonTypeNetwork    = 3
)

func (w *ocsfWriter) str(dst []byte, key, v string) []byte {
	dst = appendHTMLSafe(dst, key)
	dst = append(dst, ':')
	return appendHTMLSafe(dst, v)
}

func (w *ocsfWriter) num(dst []byte, key string, v int64) []byte {
	dst = appendHTMLSafe(dst, key)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, v, 10)
}

func (w *ocsfWriter) key(dst []byte, key string) []byte {
	dst = appendHTMLSafe(dst, key)
	return append(dst, ':')
}

// appendLine appends the line; false when r's attributes take the record
// key (appendOCSFLine refuses such a row).
func (w *ocsfWriter) appendLine(dst []byte, r *trail.Row) ([]byte, bool) {
	e := &r.Event
	login := e.ActionClass == event.ClassLogin
	act, actName := ocsfAuthActivityLogon, "Logon"
	if !login {
		act, actName = ocsfAPIActivity(e.ActionClass, e.Action)
	}
	dst = append(dst, '{')
	dst = w.num(dst, "activity_id", int64(act))
	dst = append(dst, ',')
	dst = w.str(dst, "activity_name", actName)
	dst = append(dst, ',')
	dst = w.key(dst, "actor")
	dst = append(dst, '{')
	if e.Actor.AppID != "" {
		dst = w.str(dst, "app_uid", e.Actor.AppID)
		dst = append(dst, ',')
	}
	if e.Actor.ImpersonatedBy != "" {
		dst = w.str(dst, "invoked_by", e.Actor.ImpersonatedBy)
		dst = append(dst, ',')
	}
	dst = w.key(dst, "user")
	dst = w.user(dst, e)
	dst = append(dst, '}', ',')
	if !login {
		dst = w.key(dst, "api")
		dst = append(dst, '{')
		dst = w.str(dst, "operation", e.Action)
		dst = append(dst, ',')
		if e.RequestID != "" {
			dst = w.key(dst, "request")
			dst = append(dst, '{')
			dst = w.str(dst, "uid", e.RequestID)
			dst = append(dst, '}', ',')
		}
		dst = w.key(dst, "service")
		dst = append(dst, '{')
		dst = w.str(dst, "name", string(e.Service))
		dst = append(dst, '}', '}', ',')
	}
	if login {
		dst = w.str(dst, "category_name", "Identity & Access Management")
		dst = append(dst, ',')
		dst = w.num(dst, "category_uid", ocsfCategoryIAM)
		dst = append(dst, ',')
		dst = w.str(dst, "class_name", "Authentication")
		dst = append(dst, ',')
		dst = w.num(dst, "class_uid", normalize.OCSFClassAuthentication)
	} else {
		dst = w.str(dst, "category_name", "Application Activity")
		dst = append(dst, ',')
		dst = w.num(dst, "category_uid", ocsfCategoryApplication)
		dst = append(dst, ',')
		dst = w.str(dst, "class_name", "API Activity")
		dst = append(dst, ',')
		dst = w.num(dst, "class_uid", normalize.OCSFClassAPIActivity)
	}
	dst = append(dst, ',')
	dst = w.key(dst, "cloud")
	dst = append(dst, '{')
	if e.SubscriptionID != "" {
		dst = w.key(dst, "account")
		dst = append(dst, '{')
		dst = w.str(dst, "type", "Azure Subscription")
		dst = append(dst, ',')
		dst = w.str(dst, "uid", e.SubscriptionID)
		dst = append(dst, '}', ',')
	}
	if e.TenantID != "" {
		dst = w.key(dst, "org")
		dst = append(dst, '{')
		dst = w.str(dst, "uid", e.TenantID)
		dst = append(dst, '}', ',')
	}
	dst = w.str(dst, "provider", "Azure")
	dst = append(dst, '}', ',')
	if login {
		dst = w.key(dst, "dst_endpoint")
		dst = append(dst, '{')
		dst = w.str(dst, "name", e.ResourceName)
		dst = append(dst, ',')
		dst = w.str(dst, "uid", e.ResourceID)
		dst = append(dst, '}', ',')
	}
	if e.UserAgent != "" {
		dst = w.key(dst, "http_request")
		dst = append(dst, '{')
		dst = w.str(dst, "user_agent", e.UserAgent)
		dst = append(dst, '}', ',')
	}
	if login {
		dst = w.key(dst, "is_mfa")
		dst = append(dst, "false,"...)
		dst = w.num(dst, "logon_type_id", ocsfLogonTypeNetwork)
		dst = append(dst, ',')
	}
	dst = w.str(dst, "message", e.Action)
	dst = append(dst, ',')
	dst = w.metadata(dst, e)
	dst = append(dst, ',')
	dst = w.str(dst, "raw_data", unsafeString(e.Raw))
	dst = append(dst, ',')
	if !login {
		dst = w.resources(dst, e)
		dst = append(dst, ',')
	}
	severity := 1
	if len(e.Tags) > 0 {
		severity = 3
	}
	dst = w.num(dst, "severity_id", int64(severity))
	dst = append(dst, ',')
	dst = w.key(dst, "src_endpoint")
	dst = append(dst, '{')
	if e.SourceIP.IsValid() {
		dst = w.key(dst, "ip")
		w.scratch = e.SourceIP.AppendTo(w.scratch[:0])
		dst = appendHTMLSafe(dst, unsafeString(w.scratch))
	}
	dst = append(dst, '}', ',')
	status, statusName := 0, "Unknown"
	switch e.Outcome {
	case event.OutcomeSuccess:
		status, statusName = 1, "Success"
	case event.OutcomeFailure:
		status, statusName = 2, "Failure"
	}
	dst = w.str(dst, "status", statusName)
	dst = append(dst, ',')
	if e.StatusCode != 0 {
		dst = w.key(dst, "status_code")
		w.scratch = strconv.AppendInt(w.scratch[:0], int64(e.StatusCode), 10)
		dst = appendHTMLSafe(dst, unsafeString(w.scratch))
		dst = append(dst, ',')
	}
	if e.Reason != "" {
		dst = w.str(dst, "status_detail", e.Reason)
		dst = append(dst, ',')
	}
	dst = w.num(dst, "status_id", int64(status))
	dst = append(dst, ',')
	dst = w.num(dst, "time", e.Time.UnixMilli())
	dst = append(dst, ',')
	typ := int64(normalize.OCSFClassAPIActivity*100 + act)
	if login {
		typ = normalize.OCSFClassAuthentication*100 + ocsfAuthActivityLogon
	}
	dst = w.num(dst, "type_uid", typ)
	dst = append(dst, ',')
	dst, ok := w.unmapped(dst, e)
	if !ok {
		return nil, false
	}
	if login {
		dst = append(dst, ',')
		dst = w.key(dst, "user")
		dst = w.user(dst, e)
	}
	return append(dst, '}'), true
}

// user writes the actor's user object.
func (w *ocsfWriter) user(dst []byte, e *event.Event) []byte {
	a := &e.Actor
	dst = append(dst, '{')
	if len(a.Groups) > 0 {
		dst = w.key(dst, "groups")
		dst = append(dst, '[')
		for i, g := range a.Groups {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '{')
			dst = w.str(dst, "name", g)
			dst = append(dst, '}')
		}
		dst = append(dst, ']', ',')
	}
	if a.Name != "" {
		dst = w.str(dst, "name", a.Name)
		dst = append(dst, ',')
	}
	dst = w.str(dst, "type", string(a.Type))
	dst = append(dst, ',')
	dst = w.num(dst, "type_id", int64(ocsfUserType(a.Type)))
	if a.ObjectID != "" {
		dst = append(dst, ',')
		dst = w.str(dst, "uid", a.ObjectID)
	}
	return append(dst, '}')
}

func (w *ocsfWriter) metadata(dst []byte, e *event.Event) []byte {
	dst = w.key(dst, "metadata")
	dst = append(dst, '{')
	if e.CorrelationID != "" {
		dst = w.str(dst, "correlation_uid", e.CorrelationID)
		dst = append(dst, ',')
	}
	dst = w.key(dst, "labels")
	dst = append(dst, '[') // [] when empty: ocsfDocument gives no list nil
	for i, t := range e.Tags {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendHTMLSafe(dst, t)
	}
	dst = append(dst, ']', ',')
	dst = w.str(dst, "log_name", e.Category)
	dst = append(dst, ',')
	dst = w.str(dst, "log_provider", e.SourceKind)
	dst = append(dst, ',')
	if !e.ReceivedTime.IsZero() {
		dst = w.num(dst, "processed_time", e.ReceivedTime.UnixMilli())
		dst = append(dst, ',')
	}
	dst = w.key(dst, "product")
	dst = append(dst, '{')
	dst = w.str(dst, "name", ocsfProductName(e.Service))
	dst = append(dst, ',')
	dst = w.str(dst, "vendor_name", "Microsoft")
	dst = append(dst, '}', ',')
	dst = w.str(dst, "uid", e.ID)
	dst = append(dst, ',')
	dst = w.str(dst, "version", normalize.OCSFVersion)
	return append(dst, '}')
}

// resources writes the resource and the target (API Activity).
func (w *ocsfWriter) resources(dst []byte, e *event.Event) []byte {
	dst = w.key(dst, "resources")
	dst = append(dst, '[')
	if e.ResourceID != "" {
		dst = append(dst, '{')
		dst = w.str(dst, "name", e.ResourceName)
		dst = append(dst, ',')
		dst = w.str(dst, "type", w.joinType(e.Provider, e.ResourceType))
		dst = append(dst, ',')
		dst = w.str(dst, "uid", e.ResourceID)
		dst = append(dst, '}')
	}
	if t := &e.Target; t.Resource != "" || t.Repository != "" || t.ContainerGroup != "" {
		if e.ResourceID != "" {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if t.Image != "" {
			dst = w.key(dst, "data")
			dst = append(dst, '{')
			dst = w.str(dst, "image", t.Image)
			dst = append(dst, '}', ',')
		}
		switch {
		case t.Resource != "":
			dst = w.str(dst, "name", t.Name)
			dst = append(dst, ',')
			if t.Namespace != "" {
				dst = w.str(dst, "namespace", t.Namespace)
				dst = append(dst, ',')
			}
			dst = w.str(dst, "type", w.joinType(t.APIGroup, t.Resource))
		case t.Repository != "":
			dst = w.str(dst, "name", t.Repository)
			dst = append(dst, ',')
			dst = w.str(dst, "type", "container_repository")
			dst = append(dst, ',')
			version := t.Tag
			if version == "" {
				version = t.Digest
			}
			dst = w.str(dst, "version", version)
		default:
			dst = w.str(dst, "name", t.ContainerGroup)
			dst = append(dst, ',')
			dst = w.str(dst, "type", "container_group")
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// joinType is strings.TrimPrefix(a+"/"+b, "/"), in scratch space.
func (w *ocsfWriter) joinType(a, b string) string {
	w.scratch = append(append(append(w.scratch[:0], a...), '/'), b...)
	s := unsafeString(w.scratch)
	return strings.TrimPrefix(s, "/")
}

// unmapped writes the custody fields and the attributes (which replace a
// custody field of the same name), with the record key and no record.
func (w *ocsfWriter) unmapped(dst []byte, e *event.Event) ([]byte, bool) {
	fixed := [...]struct{ k, v string }{
		{"custody_action", e.Action},
		{"custody_action_class", string(e.ActionClass)},
		{ocsfRecordKey, ""},
		{"source_format", e.SourceFormat},
		{"source_position", e.SourcePosition},
	}
	w.keys = w.keys[:0]
	for k := range e.Attributes {
		if k == ocsfRecordKey {
			return nil, false
		}
		w.keys = append(w.keys, k)
	}
	slices.Sort(w.keys)
	dst = w.key(dst, "unmapped")
	dst = append(dst, '{')
	i, j := 0, 0
	for n := 0; i < len(fixed) || j < len(w.keys); n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		switch {
		case j == len(w.keys) || i < len(fixed) && fixed[i].k < w.keys[j]:
			if fixed[i].k == ocsfRecordKey {
				dst = w.key(dst, ocsfRecordKey)
			} else {
				dst = w.str(dst, fixed[i].k, fixed[i].v)
			}
			i++
		default:
			if i < len(fixed) && fixed[i].k == w.keys[j] {
				i++ // the attribute replaces the custody field
			}
			dst = w.str(dst, w.keys[j], e.Attributes[w.keys[j]])
			j++
		}
	}
	return append(dst, '}'), true
}

// ocsfUserType, ocsfProductName and ocsfAPIActivity are normalize.OCSF's.

func ocsfUserType(t event.ActorType) int {
	switch t {
	case event.ActorUser:
		return 1
	case event.ActorSystem, event.ActorNode:
		return 3
	case event.ActorUnknown, "":
		return 0
	}
	return 99
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

func ocsfAPIActivity(c event.ActionClass, action string) (int, string) {
	switch c {
	case event.ClassRead, event.ClassCredentialAccess:
		return 2, "Read"
	case event.ClassDelete:
		return 4, "Delete"
	case event.ClassWrite, event.ClassPermissionChange, event.ClassConfigChange:
		if strings.HasSuffix(action, ":create") {
			return 1, "Create"
		}
		return 3, "Update"
	}
	return 99, "Other"
}

// htmlSafe marks the bytes appendHTMLSafeString copies as they are.
var htmlSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendHTMLSafe is appendHTMLSafeString, copying runs of plain ASCII at
// once.
func appendHTMLSafe(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for len(s) > 0 {
		i := 0
		for i < len(s) && htmlSafe[s[i]] {
			i++
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		if len(s) == 0 {
			break
		}
		c := s[0]
		if c < utf8.RuneSelf {
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return append(dst, '"')
}

// exportedOCSF decodes line into r when line is the OCSF line export
// writes for r, found the quick way: the record is the object under a
// custody_record key, read by the strict scanner (which finds its end),
// and the rest of the line is what ocsfWriter writes. False leaves the
// line to the general comparison.
//
// A line export writes has the key once (quotes inside strings are
// escaped, and attributes may not take the key), so any occurrence will
// do: the search starts a little before where the last line had it.
func (d *lineChecker) exportedOCSF(line []byte, r *trail.Row) bool {
	key := []byte(ocsfRecordKeyJSON)
	from := min(max(d.recordAt-512, 0), len(line))
	k := bytes.Index(line[from:], key)
	if k >= 0 {
		k += from
	} else if k = bytes.Index(line, key); k < 0 {
		return false
	}
	d.recordAt = k
	start := k + len(ocsfRecordKeyJSON) - 1
	n, ok := d.html.scanObject(line[start:], r)
	if !ok {
		return false
	}
	want, ok := d.ocsf.appendLine(d.line[:0], r)
	if !ok {
		return false
	}
	d.line = want
	return sameAround(line, line[start:start+n], want)
}

// sameAround reports whether line is want with rec, a part of line,
// inserted where want's record would be: line's bytes around rec are
// want's.
func sameAround(line, rec, want []byte) bool {
	i := cap(line) - cap(rec) // rec's offset in line
	return len(want) == len(line)-len(rec) && bytes.Equal(want[:i], line[:i]) && bytes.Equal(want[i:], line[i+len(rec):])
}
