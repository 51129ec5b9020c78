package web

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage/engine"
)

// Timeline limits.
const (
	maxMarks = 5000 // events drawn; beyond this the page says how many were left out
	// silentBuckets divides the window to find sources that went silent:
	// a service with activity in the window and none for at least
	// silentRun consecutive buckets between two active ones.
	silentBuckets  = 96
	silentRun      = 4
	silentMinCount = 2 * silentBuckets / 4 // a sparse service is not "silent", just quiet
)

// gap is a stretch of time in which the evidence is incomplete.
type gap struct {
	Kind    string `json:"kind"`    // silent, logging_disabled, purged
	Service string `json:"service"` // the lane it concerns; "" for every lane
	From    string `json:"from"`
	To      string `json:"to"`
	Detail  string `json:"detail"`
}

func (s *Server) handleTimeline(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains([]string{"actor", "resource", "from", "to"}, k) {
			return badRequest("unknown parameter %q", trimForError(k))
		}
	}
	actor, err := text(q, "actor")
	if err != nil {
		return err
	}
	resource, err := text(q, "resource")
	if err != nil {
		return err
	}
	if (actor == "") == (resource == "") {
		return badRequest("give exactly one of actor and resource")
	}
	f := filter{actor: actor}
	if resource != "" {
		if f.resource, err = (queries.Param{Name: "resource", Type: "String", Kind: "resource"}).Bind(resource); err != nil {
			return badRequest("%s", err.Error())
		}
	}
	ctx := r.Context()
	whole := q.Get("from") == "" && q.Get("to") == ""
	if whole {
		// The whole history of the subject: its marks from the start of
		// time; the window is their span, padded a little.
		f.from, f.to = time.Unix(0, 0).UTC(), s.now().UTC().Add(time.Hour)
	} else if f.from, f.to, err = parseWindow(q.Get("from"), q.Get("to"), s.now(), defaultWindow); err != nil {
		return err
	}
	// The marks are the subject's first events, oldest first, read as the
	// search reads a page (candidates by the sort key, their copies
	// collapsed), in one chunk: one more than drawn says whether the
	// window holds more, and only then are they counted.
	marks, err := s.search(ctx, f, nil, true, s.marks+1, f.to.Sub(f.from), 1)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	total := uint64(len(marks))
	if len(marks) > s.marks {
		marks = marks[:s.marks]
		var hi time.Time
		p := engine.Params{}
		where := f.where(p)
		var times uint64
		err := engine.Each(ctx, s.eng, timesSQL(s.db, where), p, func(r engine.Rows) error { return r.Scan(&total, &times, &hi) })
		if err != nil {
			return fmt.Errorf("timeline count: %w", err)
		}
		if times != total {
			// Rows share a time, so some may be copies of one event:
			// count the events by id.
			err := engine.Each(ctx, s.eng, countSQL(s.db, where), p, func(r engine.Rows) error { return r.Scan(&total, &hi) })
			if err != nil {
				return fmt.Errorf("timeline count: %w", err)
			}
		}
		if whole {
			f.to = hi
		}
	}
	if whole {
		if len(marks) == 0 {
			f.from = f.to.Add(-defaultWindow)
		} else {
			lo, hi := marks[0].t, marks[len(marks)-1].t
			if total > uint64(len(marks)) {
				hi = f.to
			}
			pad := max(hi.Sub(lo)/20, time.Minute)
			f.from, f.to = lo.Add(-pad).Truncate(time.Second), hi.Add(pad).Truncate(time.Second).Add(time.Second)
			if unit := silentBuckets * time.Minute; f.to.Sub(f.from) >= 24*time.Hour {
				// A long history: on whole minutes and a whole number
				// of gap buckets of whole minutes long (at most 7%
				// more), so that the page's gaps for this window read
				// the per-minute counts rather than every row.
				f.from = f.from.Truncate(time.Minute)
				f.to = f.from.Add((f.to.Sub(f.from) + unit - 1) / unit * unit)
			}
		}
	}
	if marks == nil {
		marks = []eventSummary{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"from": formatEventTime(f.from), "to": formatEventTime(f.to), "services": services,
		"events": marks, "total": total, "truncated": total > uint64(len(marks)),
	})
	return nil
}

// handleGaps answers GET /api/gaps?from=&to=: where the evidence in the
// window is incomplete, whoever the subject. The page asks for it after
// drawing a timeline's marks: it reads every event of the window.
func (s *Server) handleGaps(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "from" && k != "to" {
			return badRequest("unknown parameter %q", trimForError(k))
		}
	}
	if q.Get("from") == "" || q.Get("to") == "" {
		return badRequest("give from and to")
	}
	from, to, err := parseWindow(q.Get("from"), q.Get("to"), s.now(), defaultWindow)
	if err != nil {
		return err
	}
	gaps, err := s.gaps(r, from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": formatEventTime(from), "to": formatEventTime(to), "gaps": gaps})
	return nil
}

// gaps finds where the evidence in [from, to) is incomplete, whoever the
// subject: services that went silent, logging switched off (a diagnostic
// setting deleted until one is written again), and attested retention
// purges.
func (s *Server) gaps(r *http.Request, from, to time.Time) ([]gap, error) {
	ctx := r.Context()
	out := []gap{}
	bucket := to.Sub(from) / silentBuckets
	if bucket < time.Second {
		bucket = time.Second
	}
	p := engine.Params{"from": queries.FormatTime(from), "to": queries.FormatTime(to),
		"from_us": strconv.FormatInt(from.UnixMicro(), 10), "bucket_us": strconv.FormatInt(bucket.Microseconds(), 10)}
	// Rows (copies) per service and bucket: a bucket is empty of events
	// exactly when it holds no row, so counting rows finds the same
	// silent runs as counting events, reading event_time and the sort
	// key's service only (event ids are read below, for a few rows).
	counts := map[string][]uint64{}
	q := `SELECT toString(service), intDiv(toUnixTimestamp64Micro(event_time) - {from_us:Int64}, {bucket_us:Int64}) AS b, count()
FROM ` + s.db + `.events WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)} GROUP BY service, b`
	if onMinutes(from) && onMinutes(to) && bucket%time.Minute == 0 {
		// Each minute lies in one bucket: sum the per_minute projection's
		// counts (migration 0011), which the engine reads in place of the
		// window's rows for the inner query's exact shape.
		q = `SELECT toString(service), intDiv(toUnixTimestamp64Micro(toDateTime64(m, 6)) - {from_us:Int64}, {bucket_us:Int64}) AS b, sum(n)
FROM (SELECT service, toStartOfMinute(event_time) AS m, count() AS n FROM ` + s.db + `.events
  WHERE toStartOfMinute(event_time) >= {from:DateTime64(6)} AND toStartOfMinute(event_time) < {to:DateTime64(6)} GROUP BY service, m)
GROUP BY service, b`
	}
	err := engine.Each(ctx, s.eng, q, p, func(r engine.Rows) error {
		var svc string
		var b int64
		var n uint64
		if err := r.Scan(&svc, &b, &n); err != nil {
			return err
		}
		if counts[svc] == nil {
			counts[svc] = make([]uint64, silentBuckets+1)
		}
		if b >= 0 && b <= silentBuckets {
			counts[svc][b] += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("timeline gaps: %w", err)
	}
	for _, svc := range services {
		c := counts[svc]
		var sum uint64
		for _, n := range c {
			sum += n
		}
		if sum < silentMinCount {
			continue
		}
		// A sparse service is one with fewer than silentMinCount events
		// (distinct ids per bucket, summed); rows count copies too, so
		// count events, stopping at silentMinCount.
		if sum, err = s.eventsAtLeast(ctx, svc, p, silentMinCount); err != nil {
			return nil, err
		}
		if sum < silentMinCount {
			continue
		}
		last := -1 // last active bucket
		for i, n := range c {
			if n == 0 {
				continue
			}
			if last >= 0 && i-last-1 >= silentRun {
				gf, gt := from.Add(time.Duration(last+1)*bucket), from.Add(time.Duration(i)*bucket)
				out = append(out, gap{Kind: "silent", Service: svc, From: formatEventTime(gf), To: formatEventTime(gt),
					Detail: fmt.Sprintf("no %s events for %s", svc, gt.Sub(gf).Round(time.Minute))})
			}
			last = i
		}
	}

	// Logging switched off: a diagnostic setting deleted, until the
	// same setting is written again (or the window ends).
	type change struct {
		t        time.Time
		action   string
		resource string
		actor    string
	}
	var changes []change
	err = engine.Each(ctx, s.eng, `SELECT event_time, toString(action), resource_id, actor_name FROM `+s.db+`.events
WHERE event_time < {to:DateTime64(6)} AND has(tags, 'logging_change') AND outcome != 'failure' ORDER BY event_time, event_id, chain, seq LIMIT 1 BY event_id LIMIT 10000`, p, func(r engine.Rows) error {
		var c change
		err := r.Scan(&c.t, &c.action, &c.resource, &c.actor)
		changes = append(changes, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("timeline logging changes: %w", err)
	}
	for i, c := range changes {
		if !strings.HasSuffix(strings.ToLower(c.action), "/delete") {
			continue
		}
		end := to
		for _, d := range changes[i+1:] {
			if d.resource == c.resource && strings.HasSuffix(strings.ToLower(d.action), "/write") {
				end = d.t
				break
			}
		}
		if !end.After(from) {
			continue
		}
		name := c.resource[strings.LastIndexByte(c.resource, '/')+1:]
		out = append(out, gap{Kind: "logging_disabled", Service: monitoredService(c.resource), From: formatEventTime(c.t), To: formatEventTime(end),
			Detail: fmt.Sprintf("diagnostic setting %s deleted by %s", name, c.actor)})
	}

	// Attested purges: rows removed under the retention policy, by
	// received time.
	err = engine.Each(ctx, s.eng, `SELECT toString(chain), range_from, range_to, first_seq, last_seq FROM `+s.db+`.purges
WHERE range_to >= {from:DateTime64(6)} AND range_from < {to:DateTime64(6)} ORDER BY range_from LIMIT 1000`, p, func(r engine.Rows) error {
		var chain string
		var rf, rt time.Time
		var first, last uint64
		if err := r.Scan(&chain, &rf, &rt, &first, &last); err != nil {
			return err
		}
		out = append(out, gap{Kind: "purged", From: formatEventTime(rf), To: formatEventTime(rt),
			Detail: fmt.Sprintf("chain %s rows %d-%d purged under retention (signed purge record)", chain, first, last)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("timeline purges: %w", err)
	}
	return out, nil
}

// onMinutes reports whether t is on a whole minute.
func onMinutes(t time.Time) bool { return t.UnixMicro()%time.Minute.Microseconds() == 0 }

// eventsAtLeast counts the distinct (bucket, event id) pairs of service
// svc in the gaps window p, up to n: the engine stops reading once it has
// n of them.
func (s *Server) eventsAtLeast(ctx context.Context, svc string, p engine.Params, n int) (uint64, error) {
	q := engine.Params{"service": svc, "n": strconv.Itoa(n)}
	for k, v := range p {
		q[k] = v
	}
	var got uint64
	err := engine.Each(ctx, s.eng, `SELECT count() FROM (SELECT DISTINCT intDiv(toUnixTimestamp64Micro(event_time) - {from_us:Int64}, {bucket_us:Int64}) AS b, event_id
FROM `+s.db+`.events WHERE service = {service:String} AND event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)} LIMIT {n:UInt32})`, q, func(r engine.Rows) error {
		return r.Scan(&got)
	})
	if err != nil {
		return 0, fmt.Errorf("timeline gaps: counting %s events: %w", svc, err)
	}
	return got, nil
}

// monitoredService is the lane whose evidence a diagnostic setting
// carries, from the id of the resource it monitors.
func monitoredService(resourceID string) string {
	switch id := strings.ToLower(resourceID); {
	case strings.Contains(id, "/microsoft.containerservice/"):
		return "aks"
	case strings.Contains(id, "/microsoft.containerregistry/"):
		return "acr"
	case strings.Contains(id, "/microsoft.containerinstance/"):
		return "aci"
	}
	return ""
}
