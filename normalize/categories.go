package normalize

import "strings"

// Resource types whose diagnostic settings deliver the categories Custody
// normalizes. The subscription's Activity Log has no resource type.
const (
	ResourceTypeAKS = "Microsoft.ContainerService/managedClusters"
	ResourceTypeACR = "Microsoft.ContainerRegistry/registries"
)

// DiagnosticCategory is a diagnostic-setting log category whose records
// Custody turns into admin-access events (rather than dropping them as
// non-admin or keeping them as generic events).
type DiagnosticCategory struct {
	// ResourceType is the ARM type whose diagnostic settings offer the
	// category (ResourceTypeAKS, ResourceTypeACR), or "" for the
	// subscription's Activity Log.
	ResourceType string
	// Category is the category name as Azure spells it in a diagnostic
	// setting.
	Category string
	// Group is non-empty for categories that overlap: a diagnostic setting
	// enables exactly one category of a group (kube-audit is every audit
	// event, kube-audit-admin the same without get and list), or Custody
	// receives each event twice.
	Group string
}

// DiagnosticCategories returns every diagnostic-setting category Custody
// normalizes into admin-access events: what a deployment sends it (the
// ARM template in deploy/azure is tested against this list). Each entry is
// dispatched to its own decoder by handledCategory.
func DiagnosticCategories() []DiagnosticCategory {
	return []DiagnosticCategory{
		{ResourceType: ResourceTypeAKS, Category: "kube-audit", Group: "kube-audit"},
		{ResourceType: ResourceTypeAKS, Category: "kube-audit-admin", Group: "kube-audit"},
		{ResourceType: ResourceTypeAKS, Category: "guard"},
		{ResourceType: ResourceTypeACR, Category: "ContainerRegistryLoginEvents"},
		{ResourceType: ResourceTypeACR, Category: "ContainerRegistryRepositoryEvents"},
		{ResourceType: "", Category: "Administrative"},
	}
}

// handledCategory reports whether azureParsed hands records of cat (any
// case) to an admin-event decoder: the same predicates its switch uses.
func handledCategory(cat string) bool {
	cat = strings.ToLower(cat)
	return isAKSAudit(cat) || cat == "guard" || isACRCategory(cat) || isActivityCategory(cat)
}
