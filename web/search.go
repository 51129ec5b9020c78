package web

import (
	"context"
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
	outcomes  = []string{string(event.OutcomeSuccess), string(event.OutcomeFailure), string(event.OutcomeUnknown)}
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

// where renders the filter as WHERE clauses over fixed text and
// parameters, one per branch of a UNION ALL whose rows are the filter's
// rows, each row in exactly one branch. The actor filter matches three
// columns; as one OR no skip index could prune anything, so each column
// gets a branch of its own, where its bloom filter (or the sort key, for
// actor_name) narrows the read, and the later branches exclude what the
// earlier ones match.
func (f filter) where(p engine.Params) []string {
	c := []string{"event_time >= {from:DateTime64(6)}", "event_time < {to:DateTime64(6)}"}
	p["from"], p["to"] = queries.FormatTime(f.from), queries.FormatTime(f.to)
	if len(f.services) > 0 {
		c = append(c, "service IN {services:Array(String)}")
		p["services"] = engine.StringArray(f.services)
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
		p["classes"] = engine.StringArray(f.classes)
	}
	if len(f.outcomes) > 0 {
		c = append(c, "outcome IN {outcomes:Array(String)}")
		p["outcomes"] = engine.StringArray(f.outcomes)
	}
	if f.sourceIP != "" {
		c = append(c, "source_ip != '' AND isIPAddressInRange(source_ip, {ip:String})")
		p["ip"] = f.sourceIP
	}
	if len(f.tags) > 0 {
		c = append(c, "hasAll(tags, {tags:Array(String)})")
		p["tags"] = engine.StringArray(f.tags)
	}
	common := strings.Join(c, " AND ")
	if f.actor == "" {
		return []string{common}
	}
	p["actor"] = f.actor
	return []string{
		common + " AND actor_name = {actor:String}",
		common + " AND actor_object_id = {actor:String} AND actor_name != {actor:String}",
		common + " AND impersonated_by = {actor:String} AND actor_name != {actor:String} AND actor_object_id != {actor:String}",
	}
}

// candidatesSQL selects the summary columns (the event id and the copy's
// sort key among them) and the delivery path of the rows (copies)
// matching every branch, ordered by order,
// at most {limit:UInt32} rows. Each branch stops at {limit} on the sort
// key, so a page reads a page's worth of rows, not the window's.
func candidatesSQL(db string, branches []string, order string) string {
	cols := summaryColumns + ", delivery AS dv"
	if len(branches) == 1 {
		return "SELECT " + cols + " FROM " + db + ".events WHERE " + branches[0] + " ORDER BY " + order + " LIMIT {limit:UInt32}"
	}
	parts := make([]string, len(branches))
	for i, b := range branches {
		parts[i] = "(SELECT " + cols + " FROM " + db + ".events WHERE " + b + " ORDER BY " + order + " LIMIT {limit:UInt32})"
	}
	return "SELECT * FROM (" + strings.Join(parts, " UNION ALL ") + ") ORDER BY " + order + " LIMIT {limit:UInt32}"
}

// copiesSQL selects the copies (event id, chain, seq, delivery path) of
// the events {ids:Array(String)} among the rows matching every branch.
func copiesSQL(db string, branches []string) string {
	parts := make([]string, len(branches))
	for i, b := range branches {
		parts[i] = "SELECT event_id, toString(chain), seq, delivery FROM " + db + ".events WHERE " + b + " AND event_id IN {ids:Array(String)}"
	}
	return strings.Join(parts, " UNION ALL ")
}

// countSQL counts the distinct events matching every branch and the
// newest one's time.
func countSQL(db string, branches []string) string {
	parts := make([]string, len(branches))
	for i, b := range branches {
		parts[i] = "SELECT event_id, event_time FROM " + db + ".events WHERE " + b
	}
	return "SELECT uniqExact(event_id), max(event_time) FROM (" + strings.Join(parts, " UNION ALL ") + ")"
}

// timesSQL counts the rows matching every branch and their distinct
// times, and the newest time: when no two rows share a time, no event has
// two copies there (copies carry their event's time), and the rows are
// the events, counted without reading an event id.
func timesSQL(db string, branches []string) string {
	parts := make([]string, len(branches))
	for i, b := range branches {
		parts[i] = "SELECT event_time FROM " + db + ".events WHERE " + b
	}
	return "SELECT count(), uniqExact(event_time), max(event_time) FROM (" + strings.Join(parts, " UNION ALL ") + ")"
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
	// DeliveredVia lists the paths that delivered the event (eventhubs,
	// loganalytics, archive): one row stands for every stored copy.
	DeliveredVia string `json:"delivered_via"`
	t            time.Time
	delivery     string // this copy's path (a candidate's)
}

// summaryColumns are an eventSummary's columns; the aliases are what
// orders refer to.
const summaryColumns = "toString(chain) AS c, seq AS s, event_id AS id, event_time AS t, toString(service) AS svc, actor_name AS a, " +
	"toString(action) AS act, toString(action_class) AS cls, toString(outcome) AS o, resource_name AS r, source_ip AS sip, arrayStringConcat(tags, ',') AS tg"

// summaryNames are summaryColumns' aliases.
const summaryNames = "c, s, id, t, svc, a, act, cls, o, r, sip, tg"

func scanSummary(r engine.Rows) (eventSummary, error) {
	var e eventSummary
	err := r.Scan(&e.Chain, &e.Seq, &e.ID, &e.t, &e.Service, &e.Actor, &e.Action, &e.Class, &e.Outcome, &e.Resource, &e.SourceIP, &e.Tags, &e.DeliveredVia)
	e.Time = formatEventTime(e.t)
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

// searchOrder is the search's order: the table's sort key first, so
// the engine reads parts in key order, then time, chain and seq (unique).
func searchOrder(asc bool) string {
	dir := " DESC"
	if asc {
		dir = " ASC"
	}
	return "toStartOfDay(t)" + dir + ", t" + dir + ", c" + dir + ", s" + dir
}

// firstChunk is the first window a search reads; each next one is twice
// as long. A page of a dense filter is found in the newest day (the sort
// key's first part, so the engine reads only that day's granules); a
// sparse one costs a few more queries than one scan would.
const firstChunk = 24 * time.Hour

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
	var after *cursor
	if v := q.Get("after"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			return err
		}
		after = &c
	}
	start := time.Now()
	events, err := s.search(r.Context(), f, after, asc, limit+1, firstChunk, overFetch)
	if err != nil {
		return err
	}
	out := map[string]any{"from": formatEventTime(f.from), "to": formatEventTime(f.to), "elapsed_ms": time.Since(start).Milliseconds()}
	if len(events) > limit {
		events = events[:limit]
		last := events[limit-1]
		out["next"] = cursor{t: last.t, chain: last.Chain, seq: last.Seq}.String()
	}
	if events == nil {
		events = []eventSummary{}
	}
	out["events"] = events
	writeJSON(w, http.StatusOK, out)
	return nil
}

// overFetch is how many candidate rows a search reads per event it still
// needs: a copy that does not stand for its event is dropped, so a page
// of events is read from somewhat more rows; when too few remain the
// search reads on from the last candidate.
const overFetch = 2

// search returns up to n events of f after the cursor, in the search
// order, reading the window in chunks from the end it starts at (the
// first one chunk long, each next one twice as long as the one before).
//
// An event delivered through several paths is stored as several copies;
// it is shown once, as the copy that stands for it (queries' FirstCopy
// rule: the first chain, then the lowest seq), with its copies' paths.
// Each chunk reads candidate rows in the search order with an ordered
// LIMIT (so the engine stops at a page's worth of rows), then looks up
// the copies of just those events by id among the rows of f in the
// candidates' own time span, and keeps a candidate only if it is the
// copy that stands for its event there. Copies of one event carry the
// same time (the normalizer takes it from the record, whichever path
// delivered it), so the decision for a row never depends on where a
// page starts or ends: the kept rows are in order, the cursor is on the
// last kept row's sort key, and across pages each event appears once, at
// its standing copy's position, and none is skipped. (Copies a path
// stored with another time collapse when one read holds both; otherwise
// each is shown at its own time.) Looking the copies up in the span the
// candidates came from, rather than in f's whole window, is what keeps a
// page's cost that of a page.
//
// fetch is how many candidates the first read takes per event wanted
// (overFetch for a page; a timeline's thousands of marks take one each,
// so that the engine reads the columns of only the rows it returns: its
// lazy reading stops at 10,000 rows), then overFetch.
func (s *Server) search(ctx context.Context, f filter, after *cursor, asc bool, n int, firstChunk time.Duration, fetch int) ([]eventSummary, error) {
	lo, hi := f.from, f.to
	if after != nil {
		// The cursor's time bounds the window (and prunes by the sort
		// key); its chain and seq order rows of that same microsecond.
		if asc {
			lo = maxTime(lo, after.t)
		} else {
			hi = minTime(hi, after.t.Add(time.Microsecond))
		}
	}
	var out []eventSummary
	chunk := firstChunk
	for lo.Before(hi) && len(out) < n {
		cf := f
		if asc {
			cf.from, cf.to = lo, minTime(hi, lo.Add(chunk))
			lo = cf.to
		} else {
			cf.from, cf.to = maxTime(lo, hi.Add(-chunk)), hi
			hi = cf.from
		}
		chunk *= 2
		// Read the chunk's candidates from the position pos on until
		// the page is full or the chunk has no more rows.
		pos := after
		for len(out) < n {
			limit := (n - len(out)) * fetch
			fetch = overFetch
			cands, err := s.candidates(ctx, cf, pos, asc, limit)
			if err != nil {
				return nil, err
			}
			if len(cands) == 0 {
				break
			}
			// The candidates are every row of f between pos and the last
			// candidate, except at those two times, where rows beyond
			// pos or beyond the LIMIT may hold more copies.
			var edges []time.Time
			if pos != nil {
				edges = append(edges, pos.t)
			}
			if last := cands[len(cands)-1].t; len(cands) == limit && (pos == nil || !last.Equal(pos.t)) {
				edges = append(edges, last)
			}
			kept, err := s.standing(ctx, f, cands, edges)
			if err != nil {
				return nil, err
			}
			out = append(out, kept...)
			if len(cands) < limit {
				break
			}
			last := cands[len(cands)-1]
			pos = &cursor{t: last.t, chain: last.Chain, seq: last.Seq}
		}
	}
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// candidates reads up to limit rows (copies) of f after pos (if any), in
// the search order.
func (s *Server) candidates(ctx context.Context, f filter, pos *cursor, asc bool, limit int) ([]eventSummary, error) {
	p := engine.Params{"limit": strconv.Itoa(limit)}
	branches := f.where(p)
	if pos != nil {
		cmp := "<"
		if asc {
			cmp = ">"
		}
		for i := range branches {
			branches[i] += " AND (event_time, toString(chain), seq) " + cmp + " ({after_t:DateTime64(6)}, {after_chain:String}, {after_seq:UInt64})"
		}
		p["after_t"], p["after_chain"], p["after_seq"] = queries.FormatTime(pos.t), pos.chain, strconv.FormatUint(pos.seq, 10)
	}
	var out []eventSummary
	err := engine.Each(ctx, s.eng, candidatesSQL(s.db, branches, searchOrder(asc)), p, func(rows engine.Rows) error {
		var e eventSummary
		if err := rows.Scan(&e.Chain, &e.Seq, &e.ID, &e.t, &e.Service, &e.Actor, &e.Action, &e.Class, &e.Outcome, &e.Resource, &e.SourceIP, &e.Tags, &e.delivery); err != nil {
			return err
		}
		e.Time = formatEventTime(e.t)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: reading candidate events: %w", err)
	}
	return out, nil
}

// standing keeps the candidates that stand for their event among its
// copies matching f at the candidates' times, in their order, each with
// those copies' delivery paths. The candidates hold every row of f at
// their times but at the edges (the times of the cursor the read started
// from and of the last candidate, when the LIMIT cut it short): only the
// events seen there are looked up, at those times, which holds every
// copy at an edge's time, so that every page decides alike.
func (s *Server) standing(ctx context.Context, f filter, cands []eventSummary, edges []time.Time) ([]eventSummary, error) {
	type copyOf struct {
		chain    string
		seq      uint64
		delivery string
	}
	copies := map[string][]copyOf{}
	var lookup []string
	for _, c := range cands {
		copies[c.ID] = append(copies[c.ID], copyOf{c.Chain, c.Seq, c.delivery})
		if slices.ContainsFunc(edges, c.t.Equal) && !slices.Contains(lookup, c.ID) {
			lookup = append(lookup, c.ID)
		}
	}
	for i, at := range edges {
		if slices.ContainsFunc(edges[:i], at.Equal) || !slices.ContainsFunc(cands, func(c eventSummary) bool { return c.t.Equal(at) }) {
			continue
		}
		ef := f
		ef.from, ef.to = at, at.Add(time.Microsecond)
		p := engine.Params{"ids": engine.StringArray(lookup)}
		err := engine.Each(ctx, s.eng, copiesSQL(s.db, ef.where(p)), p, func(rows engine.Rows) error {
			var id string
			var c copyOf
			if err := rows.Scan(&id, &c.chain, &c.seq, &c.delivery); err != nil {
				return err
			}
			if !slices.ContainsFunc(copies[id], func(o copyOf) bool { return o.chain == c.chain && o.seq == c.seq }) {
				copies[id] = append(copies[id], c)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("search: finding the copies of %d events at %s: %w", len(lookup), formatEventTime(at), err)
		}
	}
	var out []eventSummary
	for _, c := range cands {
		cs := copies[c.ID]
		first := cs[0]
		var via []string
		for _, o := range cs {
			if o.chain < first.chain || (o.chain == first.chain && o.seq < first.seq) {
				first = o
			}
			if !slices.Contains(via, o.delivery) {
				via = append(via, o.delivery)
			}
		}
		if first.chain == c.Chain && first.seq == c.Seq {
			slices.Sort(via)
			c.DeliveredVia = strings.Join(via, ",")
			out = append(out, c)
		}
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
