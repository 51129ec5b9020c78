// Package loadgen generates a deterministic, realistic mix of Azure
// diagnostic records for benchmarks: mostly AKS kube-audit records whose
// properties.log holds the audit event as a JSON string (as Event Hubs
// delivers them), some Activity Log records and some ACR repository and
// login events. The shapes follow the real public samples in
// shared/samples (AKS kube-audit from the Dynatrace and Sumo Logic
// samples, Activity Log from the Microsoft Learn schema example, ACR from
// the documented ContainerRegistryRepositoryEvents fields); the values are
// synthetic. The same seed always yields the same bytes, so benchmark runs
// are comparable.
package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Mix is the share of each record kind, in percent; the rest is AKS
// kube-audit.
type Mix struct {
	ActivityPercent int
	ACRPercent      int
}

// DefaultMix is 85% AKS kube-audit, 10% Activity Log, 5% ACR.
func DefaultMix() Mix { return Mix{ActivityPercent: 10, ACRPercent: 5} }

// Generator produces records. It is not safe for concurrent use.
type Generator struct {
	rng  *rand.Rand
	mix  Mix
	t    time.Time
	seq  uint64
	sub  string
	aks  string
	acr  string
	size int
}

// New returns a generator for seed and mix.
func New(seed uint64, mix Mix) *Generator {
	return &Generator{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		mix: mix,
		t:   time.Date(2025, 4, 20, 16, 0, 0, 0, time.UTC),
		sub: "c088dc46-d692-42ad-a4b6-9a542d28ad2a",
		aks: "/SUBSCRIPTIONS/C088DC46-D692-42AD-A4B6-9A542D28AD2A/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS",
		acr: "/SUBSCRIPTIONS/C088DC46-D692-42AD-A4B6-9A542D28AD2A/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERREGISTRY/REGISTRIES/PRODACR",
	}
}

func (g *Generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(a>>32), uint16(a>>16), uint16(a), uint16(b>>48), b&0xffffffffffff)
}

func (g *Generator) tick() time.Time {
	g.t = g.t.Add(time.Duration(g.rng.IntN(3000)) * time.Microsecond)
	return g.t
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// Record returns one record (a JSON object, no trailing newline).
func (g *Generator) Record() []byte {
	g.seq++
	n := g.rng.IntN(100)
	switch {
	case n < g.mix.ActivityPercent:
		return g.activity()
	case n < g.mix.ActivityPercent+g.mix.ACRPercent:
		return g.acrEvent()
	default:
		return g.kubeAudit()
	}
}

// Body returns an Event Hubs body {"records":[...]} holding n records.
func (g *Generator) Body(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"records":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(g.Record())
	}
	b.WriteString("]}")
	return []byte(b.String())
}

type auditCase struct {
	user, verb, group, version, resource, sub, ns string
	groups                                        []string
	code                                          int
}

var auditCases = []auditCase{
	{"system:node:aks-nodepool1-12345678-vmss000000", "get", "", "v1", "nodes", "", "", []string{"system:nodes", "system:authenticated"}, 200},
	{"system:node:aks-nodepool1-12345678-vmss000001", "patch", "", "v1", "nodes", "status", "", []string{"system:nodes", "system:authenticated"}, 200},
	{"system:serviceaccount:kube-system:coredns", "list", "discovery.k8s.io", "v1", "endpointslices", "", "", []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}, 200},
	{"aksService", "update", "coordination.k8s.io", "v1", "leases", "", "kube-system", []string{"system:masters", "system:authenticated"}, 200},
	{"system:kube-controller-manager", "get", "coordination.k8s.io", "v1", "leases", "", "kube-system", []string{"system:authenticated"}, 200},
	{"system:kube-scheduler", "watch", "", "v1", "pods", "", "", []string{"system:authenticated"}, 200},
	{"alice@contoso.com", "get", "", "v1", "pods", "", "payments", []string{"4b9e3c1a-aaaa-bbbb-cccc-111111111111", "system:authenticated"}, 200},
	{"alice@contoso.com", "create", "", "v1", "pods", "exec", "payments", []string{"4b9e3c1a-aaaa-bbbb-cccc-111111111111", "system:authenticated"}, 101},
	{"bob@contoso.com", "get", "", "v1", "secrets", "", "payments", []string{"system:authenticated"}, 403},
	{"system:serviceaccount:argocd:argocd-application-controller", "patch", "apps", "v1", "deployments", "", "payments", []string{"system:serviceaccounts", "system:authenticated"}, 200},
	{"0b1f8c2e-3d4a-4e5f-8a9b-0c1d2e3f4a5b", "create", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "", "", []string{"system:authenticated"}, 201},
	{"system:serviceaccount:kube-system:metrics-server", "create", "authorization.k8s.io", "v1", "subjectaccessreviews", "", "", []string{"system:serviceaccounts", "system:authenticated"}, 201},
}

func (g *Generator) kubeAudit() []byte {
	c := auditCases[g.rng.IntN(len(auditCases))]
	// system traffic dominates real clusters
	if g.rng.IntN(100) < 60 {
		c = auditCases[g.rng.IntN(6)]
	}
	t := g.tick()
	name := fmt.Sprintf("obj-%05d", g.rng.IntN(50000))
	uri := "/api/" + c.version + "/"
	if c.group != "" {
		uri = "/apis/" + c.group + "/" + c.version + "/"
	}
	if c.ns != "" {
		uri += "namespaces/" + c.ns + "/"
	}
	uri += c.resource + "/" + name
	if c.sub != "" {
		uri += "/" + c.sub
	}
	obj := map[string]any{"resource": c.resource, "name": name, "apiVersion": c.version}
	if c.group != "" {
		obj["apiGroup"] = c.group
	}
	if c.ns != "" {
		obj["namespace"] = c.ns
	}
	if c.sub != "" {
		obj["subresource"] = c.sub
	}
	decision := "allow"
	if c.code == 403 {
		decision = "forbid"
	}
	inner := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": g.uuid(), "stage": "ResponseComplete", "requestURI": uri, "verb": c.verb,
		"user":                     map[string]any{"username": c.user, "groups": c.groups},
		"sourceIPs":                []string{fmt.Sprintf("10.224.%d.%d", g.rng.IntN(255), g.rng.IntN(255))},
		"userAgent":                "kubectl/v1.30.3 (linux/amd64) kubernetes/6fc0a69",
		"objectRef":                obj,
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": c.code},
		"requestReceivedTimestamp": t.Add(-2 * time.Millisecond).Format(time.RFC3339Nano),
		"stageTimestamp":           t.Format(time.RFC3339Nano),
		"annotations": map[string]string{
			"authorization.k8s.io/decision": decision,
			"authorization.k8s.io/reason":   `RBAC: allowed by ClusterRoleBinding "system:controller" of ClusterRole "system:controller" to User "` + c.user + `"`,
		},
	}
	innerJSON, _ := json.Marshal(inner)
	rec := map[string]any{
		"category":      "kube-audit",
		"operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
		"properties": map[string]any{
			"log":         string(innerJSON) + "\n",
			"pod":         "kube-apiserver-57b5944b45-94w49",
			"stream":      "stdout",
			"containerID": "5aeef33b3cfdafa517d8e1d8c4fe4e08901d99958bc6ad3ca5c74891120a0c44",
		},
		"resourceId":   g.aks,
		"serviceBuild": "na",
		"time":         t.Add(time.Millisecond).Format(time.RFC3339Nano),
	}
	b, _ := json.Marshal(rec)
	return b
}

var activityOps = []string{
	"MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/LISTCLUSTERUSERCREDENTIAL/ACTION",
	"Microsoft.ContainerService/managedClusters/write",
	"Microsoft.ContainerService/managedClusters/runCommand/action",
	"Microsoft.ContainerRegistry/registries/listCredentials/action",
	"Microsoft.ContainerInstance/containerGroups/containers/exec/action",
	"microsoft.insights/diagnosticSettings/write",
}

func (g *Generator) activity() []byte {
	t := g.tick()
	op := pick(g.rng, activityOps)
	res := pick(g.rng, []string{"Start", "Success", "Success", "Failure"})
	rec := map[string]any{
		"time": t.Format(time.RFC3339Nano), "resourceId": g.aks, "operationName": op,
		"category": "Administrative", "resultType": res, "resultSignature": "Succeeded.OK",
		"durationMs": g.rng.IntN(3000), "callerIpAddress": fmt.Sprintf("203.0.113.%d", g.rng.IntN(255)),
		"correlationId": g.uuid(), "level": "Information", "location": "westeurope",
		"identity": map[string]any{
			"authorization": map[string]any{"scope": strings.ToLower(g.aks), "action": op,
				"evidence": map[string]any{"role": "Azure Kubernetes Service Cluster User Role", "principalType": "User", "principalId": g.uuid()}},
			"claims": map[string]any{
				"http://schemas.microsoft.com/identity/claims/objectidentifier": g.uuid(),
				"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":     "alice@contoso.com",
				"http://schemas.microsoft.com/identity/claims/tenantid":         "72f988bf-86f1-41af-91ab-2d7cd011db47",
				"appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "idtyp": "user", "ipaddr": "203.0.113.7", "name": "Alice",
			},
		},
		"properties": map[string]any{"statusCode": "OK", "serviceRequestId": g.uuid()},
	}
	b, _ := json.Marshal(rec)
	return b
}

func (g *Generator) acrEvent() []byte {
	t := g.tick()
	op := pick(g.rng, []string{"Pull", "Pull", "Pull", "Push", "Delete", "Untag"})
	cat := "ContainerRegistryRepositoryEvents"
	props := map[string]any{
		"loginServer": "prodacr.azurecr.io", "repository": pick(g.rng, []string{"payments/api", "web/frontend", "jobs/etl"}),
		"tag": fmt.Sprintf("v1.%d.%d", g.rng.IntN(20), g.rng.IntN(50)), "digest": "sha256:" + strings.Repeat("ab", 32),
		"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "artifactType": "acr.docker",
		"size": g.rng.IntN(1 << 26), "userAgent": "containerd/1.7.20", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
	}
	if g.rng.IntN(4) == 0 {
		op, cat = "Login", "ContainerRegistryLoginEvents"
		props = map[string]any{"loginServer": "prodacr.azurecr.io", "userAgent": "docker/27.1.1", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"}
	}
	rec := map[string]any{
		"time": t.Format(time.RFC3339Nano), "category": cat, "resourceId": g.acr, "operationName": op,
		"identity": pick(g.rng, []string{"alice@contoso.com", "0b1f8c2e-3d4a-4e5f-8a9b-0c1d2e3f4a5b", "prodacr"}),
		"location": "westeurope", "resultType": "HttpStatusCode", "resultDescription": pick(g.rng, []string{"200", "200", "201", "401", "404"}),
		"durationMs": fmt.Sprintf("%d.%06d", g.rng.IntN(200), g.rng.IntN(1000000)), "callerIpAddress": fmt.Sprintf("198.51.100.%d", g.rng.IntN(255)),
		"correlationId": g.uuid(), "properties": props,
	}
	b, _ := json.Marshal(rec)
	return b
}
