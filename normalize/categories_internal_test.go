package normalize

import "testing"

// TestDiagnosticCategories holds the exported list to the dispatcher: every
// listed category reaches an admin-event decoder, and the other categories
// Azure offers for the same resources do not.
func TestDiagnosticCategories(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range DiagnosticCategories() {
		listed[c.Category] = true
		if !handledCategory(c.Category) {
			t.Errorf("%s/%s is listed but not dispatched to an admin-event decoder", c.ResourceType, c.Category)
		}
	}
	// The categories Azure offers for AKS clusters, registries and the
	// Activity Log (Azure Monitor's supported-categories reference).
	offered := []string{
		"kube-apiserver", "kube-audit", "kube-audit-admin", "kube-controller-manager", "kube-scheduler",
		"cluster-autoscaler", "cloud-controller-manager", "guard", "csi-azuredisk-controller",
		"csi-azurefile-controller", "csi-snapshot-controller",
		"ContainerRegistryLoginEvents", "ContainerRegistryRepositoryEvents",
		"Administrative", "Security", "ServiceHealth", "Alert", "Recommendation", "Policy", "Autoscale", "ResourceHealth",
	}
	for _, c := range offered {
		if got := handledCategory(c); got != listed[c] {
			t.Errorf("category %s: dispatched to an admin decoder %v, listed %v", c, got, listed[c])
		}
	}
}
