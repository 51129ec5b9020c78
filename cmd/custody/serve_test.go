package main

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegistryCollector: the collector view reads the pipelines' counters
// and the lag gauge from the collector's registry, by pipeline.
func TestRegistryCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	vec := func(name string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
		reg.MustRegister(c)
		return c
	}
	vec("custody_ingest_messages_in_total", "pipeline", "stream").WithLabelValues("eventhubs", "p0").Add(10)
	vec("custody_ingest_events_out_total", "pipeline", "stream").WithLabelValues("eventhubs", "p0").Add(7)
	vec("custody_ingest_quarantined_total", "pipeline", "stream").WithLabelValues("eventhubs", "p1").Add(2)
	vec("custody_ingest_dropped_total", "pipeline", "reason").WithLabelValues("eventhubs", "system_read").Add(1)
	vec("custody_ingest_events_skipped_total", "pipeline", "stream").WithLabelValues("loganalytics", "t").Add(3)
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custody_ingest_lag_events", Help: "lag"}, []string{"pipeline", "stream"})
	reg.MustRegister(lag)
	lag.WithLabelValues("eventhubs", "p0").Set(42)
	var ready atomic.Bool
	ready.Store(true)
	got := registryCollector(reg, []namedSource{{name: "eventhubs", kind: "eventhubs"}, {name: "loganalytics", kind: "loganalytics"}}, &ready).Sources(context.Background())
	if len(got) != 2 {
		t.Fatalf("%d sources", len(got))
	}
	eh, la := got[0], got[1]
	if eh.Messages != 10 || eh.Stored != 7 || eh.Quarantined != 2 || eh.Dropped != 1 || eh.Lag["p0"] != 42 || !eh.Running {
		t.Errorf("eventhubs: %+v", eh)
	}
	if la.Skipped != 3 || la.Messages != 0 || la.Lag != nil {
		t.Errorf("loganalytics: %+v", la)
	}
}
