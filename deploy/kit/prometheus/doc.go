// Package prometheus tests the alert rules in deploy/prometheus: each
// rules file's cases (promtool's unit-test format, *.rules.test.yml) are
// evaluated with Prometheus's own PromQL engine and template expander,
// the way `promtool test rules` does, and every metric a rule uses must
// be one the collector's Go code registers.
package prometheus
