package web

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage/engine"
)

// Enumerations the filters accept.
var (
	services = []string{string(event.ServiceAKS), string(event.ServiceACR), string(event.ServiceACI), string(event.ServiceARM)}
	classes  = []string{string(event.ClassRead), string(event.ClassWrite), string(event.ClassDelete), string(event.ClassExec), string(event.ClassLogin),
		string(event.ClassCredentialAccess), string(event.ClassPermissionChange), string(event.ClassConfigChange), string(event.ClassOther)}
	outcomes = []string{string(event.OutcomeSuccess), string(event.OutcomeFailure), string(event.OutcomeUnknown)}
	knownTags = []string{event.TagPrivilegedPod, event.TagHostPath, event.TagHostPID, event.TagHostNetwork, event.TagHostIPC,
		event.TagClusterAdminBinding, event.TagSecretAccess, event.TagTokenAccess, event.TagAnonymous, event.TagDenied,
		event.TagImpersonation, event.TagUnapprovedRegistry, event.TagCredentialListing, event.TagLoggingChange,
		event.TagAdminCredential, event.TagExecIntoContainer, event.TagPortForward, event.TagRunCommand}
)

// Limits on what a request may ask for.
const (
	maxTextLen     = 1024 // one filter value
	defaultPage    = 100
	maxPage        = 500
	maxWindow      = 20 * 365 * 24 * time.Hour
	defaultWindow  = 7 * 24 * time.Hour
	maxListEntries = 32
)

// filter is a validated search: each field is bound as a server-side
// parameter of a fixed clause.
type filter struct {
	from, to time.Time
	services []string
	actor    string
	resource string
	action   string
	classes  []string
	outcomes []string
	sourceIP string // an address or a CIDR prefix, canonical
	tags     []string
}

// parseFilter reads the filters from a query string. Unknown parameters
// are refused, so a mistyped filter does not silently widen a search.
func parseFilter(q url.Values, now time.Time, allowed ...string) (filter, error) {
	var f filter
	known := append([]string{"from", "to", "service", "actor", "resource", "action", "class", "outcome", "ip", "tag"}, allowed...)
	for k, v := range q {
		if !slices.Contains(known, k) {
			return f, badRequest("unknown parameter %q", trimForError(k))
		}
		if len(v) > maxListEntries {
			return f, badRequest("parameter %s given %d times; at most %d", k, len(v), maxListEntries)
		}
	}
	var err error
	if f.from, f.to, err = parseWindow(q.Get("from"), q.Get("to"), now, defaultWindow); err != nil {
		return f, err
	}
	if f.services, err = enumList(q, "service", services); err != nil {
		return f, err
	}
	if f.classes, err = enumList(q, "class", classes); err != nil {
		return f, err
	}
	if f.outcomes, err = enumList(q, "outcome", outcomes); err != nil {
		return f, err
	}
	if f.tags, err = enumList(q, "tag", knownTags); err != nil {
		return f, err
	}
	if f.actor, err = text(q, "actor"); err != nil {
		return f, err
	}
	if f.action, err = text(q, "action"); err != nil {
		return f, err
	}
	if f.resource, err = text(q, "resource"); err != nil {
		return f, err
	}
	if f.resource != "" {
		if f.resource, err = (queries.Param{Name: "resource", Type: "String", Kind: "resource"}).Bind(f.resource); err != nil {
			return f, badRequest("%s", err.Error())
		}
	}
	ip, err := text(q, "ip")
	if err != nil {
		return f, err
	}
	if ip != "" {
		p := queries.Param{Name: "ip", Type: "Array(String)", Kind: "cidr"}
		b, err := p.Bind(ip)
		if err != nil || strings.Contains(ip, ",") {
			return f, badRequest("ip: %q is not an IP address or a CIDR range", trimForError(ip))
		}
		f.sourceIP = strings.Trim(b, "[]'")
	}
	return f, nil
}

// parseWindow reads a [from, to) window; empty to is now, empty from is
// def before to.
func parseWindow(fromS, toS string, now time.Time, def time.Duration) (from, to time.Time, err error) {
	to = now.UTC()
	if toS != "" {
		if to, err = parseTime("to", toS); err != nil {
			return
		}
	}
	from = to.Add(-def)
	if fromS != "" {
		if from, err = parseTime("from", fromS); err != nil {
			return
		}
	}
	if !from.Before(to) {
		return from, to, badRequest("from %s is not before to %s", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	if to.Sub(from) > maxWindow {
		return from, to, badRequest("window longer than %d years", int(maxWindow/(365*24*time.Hour)))
	}
	return from, to, nil
}

func parseTime(name, s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, badRequest("%s: not a time", name)
	}
	t, err := queries.ParseTime(s)
	if err != nil {
		return t, badRequest("%s: %s", name, err.Error())
	}
	if t.Year() < 1970 || t.Year() > 2299 {
		return t, badRequest("%s: %s is outside 1970-2299", name, trimForError(s))
	}
	return t, nil
}

// text reads one free-text filter: UTF-8 without control characters, at
// most maxTextLen bytes. It is only ever compared as data.
func text(q url.Values, name string) (string, error) {
	v := q[name]
	if len(v) > 1 {
		return "", badRequest("parameter %s given more than once", name)
	}
	if len(v) == 0 {
		return "", nil
	}
	s := strings.TrimSpace(v[0])
	if len(s) > maxTextLen {
		return "", badRequest("%s: value of %d bytes is longer than %d", name, len(s), maxTextLen)
	}
	if !utf8.ValidString(s) {
		return "", badRequest("%s: not valid UTF-8", name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", badRequest("%s: contains a control character", name)
		}
	}
	return s, nil
}

// enumList reads a repeated or comma-separated parameter whose values must
// be among allowed.
func enumList(q url.Values, name string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range q[name] {
		for it := range strings.SplitSeq(v, ",") {
			it = strings.TrimSpace(it)
			if it == "" {
				continue
			}
			if !slices.Contains(allowed, it) {
				return nil, badRequest("%s: %q is not one of %s", name, trimForError(it), strings.Join(allowed, ", "))
			}
			if !slices.Contains(out, it) {
				out = append(out, it)
			}
		}
	}
	return out, nil
}

// trimForError shortens a value quoted in an error message.
func trimForError(s string) string {
	if len(s) > 64 {
		s = s[:64]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		return s + "…"
	}
	return s
}

// where renders the filter as a WHERE clause over fixed text and
// parameters.
func (f filter) where(p engine.Params) string {
	c := []string{"event_time >= {from:DateTime64(6)}", "event_time < {to:DateTime64(6)}"}
	p["from"], p["to"] = queries.FormatTime(f.from), queries.FormatTime(f.to)
	if len(f.services) > 0 {
		c = append(c, "service IN {services:Array(String)}")
		p["services"] = arrayParam(f.services)
	}
	if f.actor != "" {
		c = append(c, "(actor_name = {actor:String} OR actor_object_id = {actor:String} OR impersonated_by = {actor:String})")
		p["actor"] = f.actor
	}
	if f.resource != "" {
		c = append(c, "(resource_id = {resource:String} OR startsWith(resource_id, concat({resource:String}, '/')) OR resource_name = {resource:String})")
		p["resource"] = f.resource
	}
	if f.action != "" {
		c = append(c, "action = {action:String}")
		p["action"] = f.action
	}
	if len(f.classes) > 0 {
		c = append(c, "action_class IN {classes:Array(String)}")
		p["classes"] = arrayParam(f.classes)
	}
	if len(f.outcomes) > 0 {
		c = append(c, "outcome IN {outcomes:Array(String)}")
		p["outcomes"] = arrayParam(f.outcomes)
	}
	if f.sourceIP != "" {
		c = append(c, "source_ip != '' AND isIPAddressInRange(source_ip, {ip:String})")
		p["ip"] = f.sourceIP
	}
	if len(f.tags) > 0 {
		c = append(c, "hasAll(tags, {tags:Array(String)})")
		p["tags"] = arrayParam(f.tags)
	}
	return strings.Join(c, " AND ")
}

// arrayParam renders enumeration values (plain words) as an Array(String)
// parameter.
func arrayParam(items []string) string {
	return "['" + strings.Join(items, "','") + "']"
}

// eventSummary is one event in a list.
type eventSummary struct {
	Chain    string `json:"chain"`
	Seq      uint64 `json:"seq"`
	ID       string `json:"event_id"`
	Time     string `json:"time"`
	Service  string `json:"service"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Class    string `json:"class"`
	Outcome  string `json:"outcome"`
	Resource string `json:"resource"`
	SourceIP string `json:"source_ip"`
	Tags     string `json:"tags"`
}

const summaryColumns = "toString(chain), seq, event_id, event_time, toString(service), actor_name, toString(action), toString(action_class), toString(outcome), resource_name, source_ip, arrayStringConcat(tags, ',')"

func scanSummary(r engine.Rows) (eventSummary, error) {
	var e eventSummary
	var t time.Time
	err := r.Scan(&e.Chain, &e.Seq, &e.ID, &t, &e.Service, &e.Actor, &e.Action, &e.Class, &e.Outcome, &e.Resource, &e.SourceIP, &e.Tags)
	e.Time = formatEventTime(t)
	return e, err
}

func formatEventTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// cursor is a keyset position: the last row of a page in the search's
// order (event_time, chain, seq).
type cursor struct {
	t     time.Time
	chain string
	seq   uint64
}

func (c cursor) String() string {
	s := strconv.FormatInt(c.t.UnixMicro(), 10) + "~" + strconv.FormatUint(c.seq, 10) + "~" + c.chain
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func parseCursor(s string) (cursor, error) {
	bad := badRequest("after: not a cursor from this server")
	if len(s) > 2048 {
		return cursor{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	parts := strings.SplitN(string(b), "~", 3)
	if len(parts) != 3 || !utf8.ValidString(parts[2]) || parts[2] == "" {
		return cursor{}, bad
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || us < 0 || us > 10_000_000_000_000_000 {
		return cursor{}, bad
	}
	return cursor{t: time.UnixMicro(us).UTC(), chain: parts[2], seq: seq}, nil
}

// searchSQL is the search: the filter, after the cursor, in the table's
// sort order. The sort key starts with toStartOfDay(event_time), so
// ordering by it first lets the engine read parts in order and stop after
// the page (read-in-order), and the event_time bound from the cursor
// prunes every granule before it by the primary key.
func searchSQL(db, where string, asc, after bool) string {
	dir, cmp, bound := "DESC", "<", "<="
	if asc {
		dir, cmp, bound = "ASC", ">", ">="
	}
	q := "SELECT " + summaryColumns + " FROM " + db + ".events WHERE " + where
	if after {
		q += " AND event_time " + bound + " {after_t:DateTime64(6)} AND (event_time, toString(chain), seq) " + cmp + " ({after_t:DateTime64(6)}, {after_chain:String}, {after_seq:UInt64})"
	}
	return q + " ORDER BY toStartOfDay(event_time) " + dir + ", event_time " + dir + ", toString(chain) " + dir + ", seq " + dir + " LIMIT {limit:UInt32}"
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f, err := parseFilter(q, s.now(), "after", "limit", "order")
	if err != nil {
		return err
	}
	limit := defaultPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return badRequest("limit: want 1 to %d", maxPage)
		}
		limit = n
	}
	asc := false
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		asc = true
	default:
		return badRequest("order: want asc or desc")
	}
	p := engine.Params{}
	where := f.where(p)
	var after *cursor
	if v := q.Get("after"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			return err
		}
		after = &c
		p["after_t"], p["after_chain"], p["after_seq"] = queries.FormatTime(c.t), c.chain, strconv.FormatUint(c.seq, 10)
	}
	p["limit"] = strconv.Itoa(limit + 1)
	start := time.Now()
	var events []eventSummary
	err = engine.Each(r.Context(), s.eng, searchSQL(s.db, where, asc, after != nil), p, func(rows engine.Rows) error {
		e, err := scanSummary(rows)
		if err != nil {
			return err
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	out := map[string]any{"from": formatEventTime(f.from), "to": formatEventTime(f.to), "elapsed_ms": time.Since(start).Milliseconds()}
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		t, _ := time.Parse("2006-01-02T15:04:05.000000Z", last.Time)
		out["next"] = cursor{t: t, chain: last.Chain, seq: last.Seq}.String()
	}
	if events == nil {
		events = []eventSummary{}
	}
	out["events"] = events
	writeJSON(w, http.StatusOK, out)
	return nil
}
