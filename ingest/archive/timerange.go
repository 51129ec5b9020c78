package archive

import (
	"strconv"
	"strings"
	"time"
)

// TimeRange selects archive objects by the hour their path names: an object
// is included when that hour overlaps [From, To). A zero From or To leaves
// that side open.
type TimeRange struct {
	From time.Time
	To   time.Time
}

// IsZero reports whether the range selects everything.
func (r TimeRange) IsZero() bool { return r.From.IsZero() && r.To.IsZero() }

// Overlaps reports whether the hour starting at h overlaps the range.
func (r TimeRange) Overlaps(h time.Time) bool {
	end := h.Add(time.Hour)
	if !r.From.IsZero() && !end.After(r.From) {
		return false
	}
	if !r.To.IsZero() && !h.Before(r.To) {
		return false
	}
	return true
}

// PathHour returns the UTC hour an archive path names, truncated to the hour.
// It understands the diagnostic-settings layout
// (".../y=2026/m=11/d=27/h=10/m=00/PT1H.json") and the Event Hubs Capture
// default layout ("{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/
// {Hour}/{Minute}/{Second}.avro", the last six segments numeric). ok is false
// when the path carries no recognisable time.
func PathHour(p string) (hour time.Time, ok bool) {
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	if h, ok := diagnosticHour(segs); ok {
		return h, true
	}
	return captureHour(segs)
}

// diagnosticHour finds the y=/m=/d=/h= run of segments. The first "m=" after
// "y=" is the month; the second (always "m=00") is the minute.
func diagnosticHour(segs []string) (time.Time, bool) {
	for i := 0; i+3 < len(segs); i++ {
		y, ok1 := keyed(segs[i], "y=", 4)
		mo, ok2 := keyed(segs[i+1], "m=", 2)
		d, ok3 := keyed(segs[i+2], "d=", 2)
		h, ok4 := keyed(segs[i+3], "h=", 2)
		if ok1 && ok2 && ok3 && ok4 {
			return validHour(y, mo, d, h)
		}
	}
	return time.Time{}, false
}

// captureHour reads {Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}[.ext] at
// the end of the path.
func captureHour(segs []string) (time.Time, bool) {
	if len(segs) < 6 {
		return time.Time{}, false
	}
	tailSegs := segs[len(segs)-6:]
	last := tailSegs[5]
	if dot := strings.IndexByte(last, '.'); dot >= 0 {
		last = last[:dot]
	}
	widths := [6]int{4, 2, 2, 2, 2, 2}
	var v [6]int
	for i := range tailSegs {
		s := tailSegs[i]
		if i == 5 {
			s = last
		}
		n, ok := digits(s, widths[i])
		if !ok {
			return time.Time{}, false
		}
		v[i] = n
	}
	if v[4] > 59 || v[5] > 60 {
		return time.Time{}, false
	}
	return validHour(v[0], v[1], v[2], v[3])
}

func keyed(seg, key string, width int) (int, bool) {
	if !strings.HasPrefix(seg, key) {
		return 0, false
	}
	return digits(seg[len(key):], width)
}

// digits parses exactly width ASCII digits (a one-digit month or day is
// also accepted for width 2, as some tools write it).
func digits(s string, width int) (int, bool) {
	if len(s) == 0 || len(s) > width || (width == 4 && len(s) != 4) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func validHour(y, mo, d, h int) (time.Time, bool) {
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, 0, 0, 0, time.UTC)
	if t.Day() != d { // 31 February and the like
		return time.Time{}, false
	}
	return t, true
}
