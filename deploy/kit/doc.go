// Package kit builds and tests Custody's deploy kit: the container image,
// the Helm chart, the ARM template, the ClickHouse servers kit, the Grafana
// dashboards and the Prometheus alert rules under deploy/.
//
// It is a Go module of its own so that what the kit's tests need (Helm's
// SDK, the Kubernetes API types, go-containerregistry, Prometheus's rule
// evaluator) never enters the collector's dependency graph; `make test`
// runs its tests after the root module's.
package kit
