// Package helm tests Custody's Helm chart (deploy/helm/custody): it renders
// the chart with Helm's SDK for every values file in testdata/, compares
// the output with golden files, decodes every manifest strictly into the
// Kubernetes API types, checks the pod security and workload identity
// wiring, and loads the rendered config with custody's own config check.
package helm
