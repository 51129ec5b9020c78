package grafana_test

import (
	"testing"
	"time"

	"github.com/custody-audit/custody/deploy/kit/grafana"
)

// TestExpand pins the expansion to what the plugin and Grafana produce
// (grafana/clickhouse-datasource pkg/macros, Grafana's percentencode).
func TestExpand(t *testing.T) {
	q := grafana.Query{
		From:      time.Date(2025, 6, 12, 0, 0, 0, 0, time.UTC),
		To:        time.Date(2025, 6, 13, 0, 0, 0, 0, time.UTC),
		Interval:  30 * time.Second,
		Variables: map[string]string{"actor": "dana.dev@contoso.com", "odd": `a'b\c (d)*!~`},
	}
	for _, c := range []struct{ in, want, wantErr string }{
		{in: "WHERE $__timeFilter(event_time)", want: "WHERE event_time >= toDateTime(1749686400) AND event_time <= toDateTime(1749772800)"},
		{in: "$__fromTime, $__toTime", want: "toDateTime(1749686400), toDateTime(1749772800)"},
		{in: "$__timeInterval(event_time) AS t, $__interval_s", want: "toStartOfInterval(toDateTime(event_time), INTERVAL 30 second) AS t, 30"},
		{in: "a = '${actor:percentencode}'", want: "a = 'dana.dev%40contoso.com'"},
		{in: "a = '${odd:percentencode}'", want: "a = 'a%27b%5Cc%20%28d%29%2A%21~'"},
		{in: "a = '$actor' AND b = '${actor}'", want: "a = 'dana.dev@contoso.com' AND b = 'dana.dev@contoso.com'"},
		{in: "$nope", wantErr: "variable nope has no value"},
		{in: "$__timeFilter_ms(t)", wantErr: "macro $__timeFilter_ms is not one the dashboards may use"},
		{in: "$__timeFilter(a, b)", wantErr: "macro $__timeFilter: 2 arguments, want 1"},
	} {
		got, err := grafana.Expand(c.in, q)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("Expand(%q) error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
