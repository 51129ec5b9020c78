// Package grafana tests the Grafana dashboards in deploy/grafana: their
// structure and provisioning, and every ClickHouse panel's SQL, expanded
// the way the grafana-clickhouse-datasource plugin expands it, run on a
// real ClickHouse store holding the demo incident (docs/incident.md).
package grafana
