// Command gen writes the incident scenario dataset in deploy/local/incident:
// one day (2025-06-12, UTC) of admin-access logs from a payments platform on
// AKS, ACR and ACI, in the formats Azure delivers them, with a phished
// developer account's intrusion mixed into ordinary traffic. The story and
// the answer each forensic query gives for it are in docs/incident.md.
//
// The dataset is committed; this generator is what wrote it, so that the
// records are reviewable as code and can be changed in one place:
//
//	$ go run ./deploy/local/incident/gen            # rewrite the dataset
//	$ go run ./deploy/local/incident/gen -out /tmp/x # write it elsewhere
//
// Output is deterministic: fixed timestamps, identifiers derived from
// names by hashing, and background jitter from a PCG generator with a
// fixed seed. main_test.go fails when the committed files differ from what
// this program writes.
//
// Every identifier, name and address is synthetic: contoso.com users,
// documentation address ranges (198.51.100.0/24 for the corporate egress,
// 203.0.113.0/24 for the attacker) and private ranges inside Azure. The
// record shapes follow Microsoft's documented schemas and the public
// samples in normalize/testdata (see deploy/local/incident/SOURCES.md).
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

func main() {
	out := flag.String("out", defaultDir(), "directory to write the dataset into")
	flag.Parse()
	files, err := Generate()
	if err == nil {
		err = Write(*out, files)
	}
	if err != nil {
		slog.Error("generate incident dataset", "err", err)
		os.Exit(1)
	}
	slog.Info("incident dataset written", "dir", *out, "files", len(files))
}

// defaultDir is deploy/local/incident, next to this source file.
func defaultDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(filepath.Dir(file))
}

// File is one generated file: a slash-separated path relative to the
// dataset directory and its content.
type File struct {
	Path string
	Body []byte
}

// Dataset subdirectories, one per delivery path.
const (
	DirArchive      = "archive"      // storage-account archive of the AKS diagnostic setting (PT1H.json)
	DirEventHubs    = "eventhubs"    // bodies read from Event Hubs, one per line
	DirLogAnalytics = "loganalytics" // Log Analytics query API responses
)

// Write writes files under dir, replacing what is there. Only the three
// dataset subdirectories are cleared first, so stale hours do not linger.
func Write(dir string, files []File) error {
	for _, sub := range []string{DirArchive, DirEventHubs, DirLogAnalytics} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("clear %s: %w", sub, err)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, f.Body, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return nil
}

// The estate.
const (
	tenantID    = "6f1c0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
	prodSub     = "3c5e7a91-2b4d-4f60-8a1c-9e0d2f4b6a80" // payments-prod: AKS, ACR
	devSub      = "8d2f4b6a-0c1e-4a3b-9d5f-7e9a1b3c5d70" // payments-sandbox: ACI test runs
	prodRG      = "payments-prod-rg"
	devRG       = "sandbox-rg"
	clusterName = "payments-aks"
	registry    = "contosopayments"
	loginServer = "contosopayments.azurecr.io"
	devRegistry = "contosodev.azurecr.io"
	location    = "westeurope"
	apiServer   = "kube-apiserver-6b8f7d9c54-r2x8q"
	apiServerID = "8c1f3e5a7b9d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a"
	diagSetting = "aks-audit-archive"
	azCLIAppID  = "04b07795-8ddb-461a-bbee-02f9e1bf7b46" // Microsoft Azure CLI (first-party, public)
	corpIP      = "198.51.100.10"                        // corporate egress
	attackerIP  = "203.0.113.77"                         // the attacker's VPS
	ciIP        = "10.20.1.4"                            // self-hosted CI runner in the hub VNet
)

// Day is the scenario's day; every record falls inside it.
var Day = time.Date(2025, 6, 12, 0, 0, 0, 0, time.UTC)

func at(hms string) time.Time {
	t, err := time.Parse("15:04:05.999999999", hms)
	if err != nil {
		panic("bad scenario time " + hms) // literal in this file: a programming error
	}
	return Day.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
		time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond()))
}

// person is an Entra ID user.
type person struct {
	upn, oid, group string
	ip              string
	kubectl, docker string // user agents
}

var (
	dana = person{upn: "dana.dev@contoso.com", oid: "5d1e2f3a-4b5c-4d6e-8f70-81a2b3c4d5e6", group: groupDevs, ip: corpIP,
		kubectl: "kubectl/v1.30.3 (windows/amd64) kubernetes/6fc0a69", docker: "docker/27.1.1 go/go1.22.5 os/windows"}
	priya = person{upn: "priya.sre@contoso.com", oid: "2b7c9d1e-6f8a-4b3c-9d2e-5f6a7b8c9d01", group: groupSRE, ip: corpIP,
		kubectl: "kubectl/v1.30.3 (darwin/arm64) kubernetes/6fc0a69", docker: "docker/27.1.1 go/go1.22.5 os/darwin"}
	tom = person{upn: "tom.dev@contoso.com", oid: "7e8f9a0b-1c2d-4e3f-8a4b-5c6d7e8f9a02", group: groupDevs, ip: corpIP,
		kubectl: "kubectl/v1.30.3 (linux/amd64) kubernetes/6fc0a69", docker: "docker/27.1.1 go/go1.22.5 os/linux"}
	// attacker is dana's identity used from the attacker's machine.
	attacker = person{upn: dana.upn, oid: dana.oid, group: groupDevs, ip: attackerIP,
		kubectl: "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819", docker: "docker/24.0.7 go/go1.20.10 os/linux"}
)

const (
	groupDevs   = "c4d5e6f7-0a1b-4c2d-8e3f-4a5b6c7d8e01" // payments-developers
	groupSRE    = "c4d5e6f7-0a1b-4c2d-8e3f-4a5b6c7d8e02" // platform-sre
	ciAppID     = "0c9b8a7d-6e5f-4a3b-8c2d-1e0f9a8b7c03" // sp-payments-ci
	ciObjectID  = "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c04"
	kubeletMIID = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e05" // payments-aks-agentpool managed identity
)

// Images and digests.
var (
	digestAPIGood    = digest("payments/api:v2.4.0 built by CI")
	digestAPIBad     = digest("payments/api:v2.4.0 backdoored")
	digestWorker     = digest("payments/worker:v1.9.3 built by CI")
	digestWorkerPrev = digest("payments/worker:v1.9.2 built by CI")
	minerImage       = "docker.io/evil/miner:5.2"
	runnerImage      = devRegistry + "/tests/runner:1.8"
)

func digest(seed string) string {
	s := sha256.Sum256([]byte(seed))
	return "sha256:" + hex.EncodeToString(s[:])
}

// uuid derives a stable, random-looking version-4 UUID from a name.
func uuid(name string) string {
	s := sha256.Sum256([]byte("custody-incident/" + name))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	h := hex.EncodeToString(s[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ---- JSON with fields in the order Azure writes them ----

type field struct {
	k string
	v any
}

// obj is a JSON object that keeps its field order.
type obj []field

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshal(f.k)
		if err != nil {
			return nil, err
		}
		v, err := marshal(f.v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", f.k, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping: Azure writes '<', '>'
// and '&' as they are.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func mustJSON(v any) string {
	b, err := marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal scenario record: %v", err)) // only literal values of this file are marshalled
	}
	return string(b)
}

// ---- resource ids ----

func clusterID() string {
	return strings.ToUpper("/subscriptions/" + prodSub + "/resourceGroups/" + prodRG + "/providers/Microsoft.ContainerService/managedClusters/" + clusterName)
}

func registryID() string {
	return strings.ToUpper("/subscriptions/" + prodSub + "/resourceGroups/" + prodRG + "/providers/Microsoft.ContainerRegistry/registries/" + registry)
}

func containerGroupID(name string) string {
	return "/subscriptions/" + devSub + "/resourceGroups/" + devRG + "/providers/Microsoft.ContainerInstance/containerGroups/" + name
}

// ---- Kubernetes audit events (AKS kube-audit) ----

type k8sUser struct {
	name   string
	groups []string
	oid    string // Entra object id (user.extra.oid) for Entra users
	uid    string
}

func entraUser(p person) k8sUser {
	return k8sUser{name: p.upn, groups: []string{p.group, "system:authenticated"}, oid: p.oid}
}

func serviceAccount(ns, name string) k8sUser {
	return k8sUser{name: "system:serviceaccount:" + ns + ":" + name,
		groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		uid:    uuid("sa/" + ns + "/" + name)}
}

func nodeUser(node string) k8sUser {
	return k8sUser{name: "system:node:" + node, groups: []string{"system:nodes", "system:authenticated"}}
}

var (
	masterclient = k8sUser{name: "masterclient", groups: []string{"system:masters", "system:authenticated"}}
	aksService   = k8sUser{name: "aksService", groups: []string{"system:masters", "system:authenticated"}}
	kcm          = k8sUser{name: "system:kube-controller-manager", groups: []string{"system:authenticated"}}
	scheduler    = k8sUser{name: "system:kube-scheduler", groups: []string{"system:authenticated"}}
)

func (u k8sUser) json() obj {
	o := obj{{"username", u.name}}
	if u.uid != "" {
		o = append(o, field{"uid", u.uid})
	}
	o = append(o, field{"groups", u.groups})
	if u.oid != "" {
		o = append(o, field{"extra", obj{{"oid", []string{u.oid}}}})
	}
	return o
}

// audit is one Kubernetes API request as the audit log records it.
type audit struct {
	id       string // unique name; the auditID is derived from it
	t        time.Time
	verb     string
	uri      string
	user     k8sUser
	ip       string
	ua       string
	ref      obj
	code     int
	level    string // Metadata unless set
	reqObj   any
	forbid   string // the RBAC denial message for 403s
	reason   string // authorization.k8s.io/reason
	duration time.Duration
}

func (a audit) record() obj {
	level := a.level
	if level == "" {
		level = "Metadata"
	}
	status := obj{{"metadata", obj{}}, {"code", a.code}}
	decision := "allow"
	if a.code == 403 {
		status = obj{{"metadata", obj{}}, {"status", "Failure"}, {"message", a.forbid}, {"reason", "Forbidden"},
			{"details", obj{}}, {"code", 403}}
		decision = "forbid"
	}
	dur := a.duration
	if dur == 0 {
		dur = 3*time.Millisecond + time.Duration(len(a.id)*137)*time.Microsecond
	}
	ev := obj{
		{"kind", "Event"}, {"apiVersion", "audit.k8s.io/v1"}, {"level", level},
		{"auditID", uuid("audit/" + a.id)}, {"stage", "ResponseComplete"},
		{"requestURI", a.uri}, {"verb", a.verb}, {"user", a.user.json()},
		{"sourceIPs", []string{a.ip}}, {"userAgent", a.ua}, {"objectRef", a.ref},
		{"responseStatus", status},
	}
	if a.reqObj != nil && level != "Metadata" {
		ev = append(ev, field{"requestObject", a.reqObj})
	}
	ev = append(ev,
		field{"requestReceivedTimestamp", a.t.Format("2006-01-02T15:04:05.000000Z")},
		field{"stageTimestamp", a.t.Add(dur).Format("2006-01-02T15:04:05.000000Z")},
		field{"annotations", obj{{"authorization.k8s.io/decision", decision}, {"authorization.k8s.io/reason", a.reason}}},
	)
	// The resource-log record as the AKS diagnostic setting writes it to
	// storage (same shape on Event Hubs, inside {"records":[...]}).
	return obj{
		{"category", "kube-audit"},
		{"operationName", "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read"},
		{"properties", obj{{"pod", apiServer}, {"log", mustJSON(ev) + "\n"}, {"stream", "stdout"}, {"containerID", apiServerID}}},
		{"resourceId", clusterID()},
		{"serviceBuild", "na"},
		{"time", a.t.Add(dur + 411*time.Microsecond + 417).Format(time.RFC3339Nano)},
	}
}

func ref(resource, ns, name string) obj {
	o := obj{{"resource", resource}}
	if ns != "" {
		o = append(o, field{"namespace", ns})
	}
	if name != "" {
		o = append(o, field{"name", name})
	}
	return append(o, field{"apiVersion", "v1"})
}

func groupRef(resource, group, version, ns, name string) obj {
	o := obj{{"resource", resource}}
	if ns != "" {
		o = append(o, field{"namespace", ns})
	}
	if name != "" {
		o = append(o, field{"name", name})
	}
	return append(o, field{"apiGroup", group}, field{"apiVersion", version})
}

func subRef(resource, ns, name, sub string) obj {
	return obj{{"resource", resource}, {"namespace", ns}, {"name", name}, {"apiVersion", "v1"}, {"subresource", sub}}
}

// ---- Activity Log records ----

type armCall struct {
	id        string // unique name; correlation and request ids derive from it
	t         time.Time
	sub       string
	rg        string
	resource  string // ARM id as the Activity Log writes it
	operation string
	caller    armCaller
	ip        string
	result    string // Start, Accept, Success, Failure
	signature string
	status    string // properties.statusCode
	reqBody   any
	corr      string // correlation id name when shared by several records
}

type armCaller struct {
	upn, oid, appID, idtyp, role, principalType string
}

func userCaller(p person, role string) armCaller {
	return armCaller{upn: p.upn, oid: p.oid, appID: azCLIAppID, idtyp: "user", role: role, principalType: "User"}
}

func (c armCall) correlation() string {
	if c.corr != "" {
		return uuid("corr/" + c.corr)
	}
	return uuid("corr/" + c.id)
}

func (c armCall) authorization() obj {
	return obj{
		{"scope", strings.ToLower(c.resource)},
		{"action", c.operation},
		{"evidence", obj{
			{"role", c.caller.role},
			{"roleAssignmentScope", "/subscriptions/" + c.sub},
			{"roleAssignmentId", strings.ReplaceAll(uuid("ra/"+c.caller.oid+"/"+c.caller.role), "-", "")},
			{"roleDefinitionId", strings.ReplaceAll(uuid("role/"+c.caller.role), "-", "")},
			{"principalId", strings.ReplaceAll(c.caller.oid, "-", "")},
			{"principalType", c.caller.principalType},
		}},
	}
}

func (c armCall) claims() obj {
	o := obj{
		{"aud", "https://management.core.windows.net/"},
		{"iss", "https://sts.windows.net/" + tenantID + "/"},
		{"iat", fmt.Sprint(c.t.Add(-40 * time.Minute).Unix())},
		{"nbf", fmt.Sprint(c.t.Add(-40 * time.Minute).Unix())},
		{"exp", fmt.Sprint(c.t.Add(35 * time.Minute).Unix())},
		{"http://schemas.microsoft.com/claims/authnmethodsreferences", "pwd,mfa"},
		{"appid", c.caller.appID},
		{"appidacr", "0"},
		{"idtyp", c.caller.idtyp},
		{"ipaddr", c.ip},
		{"http://schemas.microsoft.com/identity/claims/objectidentifier", c.caller.oid},
		{"http://schemas.microsoft.com/identity/claims/tenantid", tenantID},
		{"ver", "1.0"},
	}
	if c.caller.upn != "" {
		o = append(o, field{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", c.caller.upn},
			field{"name", c.caller.upn})
	}
	return o
}

func (c armCall) properties() obj {
	var p obj
	if c.status != "" {
		p = append(p, field{"statusCode", c.status})
	}
	p = append(p,
		field{"serviceRequestId", uuid("svcreq/" + c.id)},
		field{"eventCategory", "Administrative"},
		field{"entity", c.resource},
		field{"message", c.operation},
		field{"hierarchy", tenantID + "/" + c.sub},
	)
	if c.reqBody != nil {
		p = append(p, field{"requestbody", mustJSON(c.reqBody)})
	}
	return p
}

// eventHubsRecord is the Activity Log record in the storage-account and
// Event Hubs schema (activity-log-schema.md).
func (c armCall) eventHubsRecord() obj {
	return obj{
		{"RoleLocation", location},
		{"time", c.t.Format("2006-01-02T15:04:05.0000000Z")},
		{"resourceId", c.resource},
		{"operationName", strings.ToUpper(c.operation)},
		{"category", "Administrative"},
		{"resultType", c.result},
		{"resultSignature", c.signature},
		{"durationMs", fmt.Sprint(120 + len(c.id)*7)},
		{"callerIpAddress", c.ip},
		{"correlationId", c.correlation()},
		{"identity", obj{{"authorization", c.authorization()}, {"claims", c.claims()}}},
		{"level", "Information"},
		{"location", "global"},
		{"properties", c.properties()},
	}
}

// ---- ACR records ----

type acrEvent struct {
	id         string
	t          time.Time
	op         string // Login, Push, Pull, Delete, Untag
	identity   string
	ip         string
	ua         string
	code       int
	repository string
	tag        string
	digest     string
	size       int
}

func (a acrEvent) record() obj {
	category := "ContainerRegistryRepositoryEvents"
	if a.op == "Login" {
		category = "ContainerRegistryLoginEvents"
	}
	props := obj{{"loginServer", loginServer}}
	if a.op != "Login" {
		props = append(props, field{"repository", a.repository}, field{"tag", a.tag}, field{"digest", a.digest},
			field{"mediaType", "application/vnd.docker.distribution.manifest.v2+json"}, field{"size", fmt.Sprint(a.size)})
	}
	props = append(props, field{"userAgent", a.ua})
	return obj{
		{"time", a.t.Format("2006-01-02T15:04:05.0000000Z")},
		{"resourceId", registryID()},
		{"operationName", a.op},
		{"category", category},
		{"resultType", "HttpStatusCode"},
		{"resultDescription", fmt.Sprint(a.code)},
		{"durationMs", fmt.Sprint(8 + len(a.id)%40)},
		{"callerIpAddress", a.ip},
		{"correlationId", uuid("acr/" + a.id)},
		{"identity", a.identity},
		{"level", "Information"},
		{"location", location},
		{"properties", props},
	}
}

// ---- the story ----

// scenario holds every record of the day, by delivery path.
type scenario struct {
	k8s      []audit
	activity []armCall // prod subscription: Activity Log to Event Hubs
	sandbox  []armCall // sandbox subscription: Activity Log to Log Analytics
	acr      []acrEvent
}

func (s *scenario) kube(a audit)   { s.k8s = append(s.k8s, a) }
func (s *scenario) reg(a acrEvent) { s.acr = append(s.acr, a) }

var nodes = []struct{ name, ip string }{
	{"aks-system-31415926-vmss000000", "10.224.0.4"},
	{"aks-user-31415926-vmss000000", "10.224.0.5"},
	{"aks-user-31415926-vmss000001", "10.224.0.6"},
}

const (
	podAPI1   = "payments-api-6f7d9c8b5-x7k2p"
	podAPI2   = "payments-api-6f7d9c8b5-q4m8n"
	podWorker = "payments-worker-85b4c7d9f6-j2w5r"
	apiAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
)

// diagnosticOffAt is when the attacker deletes the AKS diagnostic
// setting: the archive holds no kube-audit record after it until the
// responder restores the setting at diagnosticOnAt.
var (
	diagnosticOffAt = at("14:44:10")
	diagnosticOnAt  = at("15:40:30")
)

func build() *scenario {
	s := &scenario{}
	rng := rand.New(rand.NewPCG(20250612, 5))
	s.background(rng)
	s.attack()
	s.containment()
	// The deleted diagnostic setting stops the archive: nothing the API
	// server logs between the deletion and the restore is delivered.
	kept := s.k8s[:0]
	for _, a := range s.k8s {
		if a.t.Before(diagnosticOffAt) || a.t.After(diagnosticOnAt) {
			kept = append(kept, a)
		}
	}
	s.k8s = kept
	sort.SliceStable(s.k8s, func(i, j int) bool { return s.k8s[i].t.Before(s.k8s[j].t) })
	sort.SliceStable(s.activity, func(i, j int) bool { return s.activity[i].t.Before(s.activity[j].t) })
	sort.SliceStable(s.sandbox, func(i, j int) bool { return s.sandbox[i].t.Before(s.sandbox[j].t) })
	sort.SliceStable(s.acr, func(i, j int) bool { return s.acr[i].t.Before(s.acr[j].t) })
	return s
}

// background is an ordinary day: the cluster's own components, the GitOps
// controller, CI pushing and deploying images, developers looking at
// their workloads.
func (s *scenario) background(rng *rand.Rand) {
	jitter := func(max time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(max))) }
	end := Day.Add(24 * time.Hour)

	// Control-plane and node chatter, thinned to every fifteen minutes
	// (a real cluster logs this many per second). Reads by system
	// principals are what the noise policy drops; the lease renewals are
	// writes and are kept.
	for t := Day; t.Before(end); t = t.Add(15 * time.Minute) {
		stamp := t.Format("1504")
		for i, n := range nodes {
			s.kube(audit{id: "node-get/" + n.name + "/" + stamp, t: t.Add(time.Duration(i)*7*time.Second + jitter(3*time.Second)),
				verb: "get", uri: "/api/v1/nodes/" + n.name + "?resourceVersion=0&timeout=10s", user: nodeUser(n.name), ip: n.ip,
				ua: "kubelet/v1.30.3 (linux/amd64) kubernetes/6fc0a69", ref: ref("nodes", "", n.name), code: 200})
		}
		s.kube(audit{id: "coredns/" + stamp, t: t.Add(61*time.Second + jitter(5*time.Second)), verb: "list",
			uri:  "/apis/discovery.k8s.io/v1/endpointslices?limit=500&resourceVersion=0",
			user: serviceAccount("kube-system", "coredns"), ip: "10.244.0.12", ua: "coredns/v1.11.3 (linux/amd64) kubernetes/$Format",
			ref: groupRef("endpointslices", "discovery.k8s.io", "v1", "", ""), code: 200})
		s.kube(audit{id: "kcm-lease-get/" + stamp, t: t.Add(90*time.Second + jitter(5*time.Second)), verb: "get",
			uri:  "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s",
			user: kcm, ip: "172.31.22.18", ua: "kube-controller-manager/v1.30.3 (linux/amd64) kubernetes/6fc0a69/leader-election",
			ref: groupRef("leases", "coordination.k8s.io", "v1", "kube-system", "kube-controller-manager"), code: 200})
		s.kube(audit{id: "sched-lease-get/" + stamp, t: t.Add(95*time.Second + jitter(5*time.Second)), verb: "get",
			uri:  "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler?timeout=5s",
			user: scheduler, ip: "172.31.22.19", ua: "kube-scheduler/v1.30.3 (linux/amd64) kubernetes/6fc0a69/leader-election",
			ref: groupRef("leases", "coordination.k8s.io", "v1", "kube-system", "kube-scheduler"), code: 200})
		s.kube(audit{id: "aks-lease/" + stamp, t: t.Add(150*time.Second + jitter(5*time.Second)), verb: "update",
			uri:  "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/external-resizer-file-csi-azure-com",
			user: aksService, ip: "172.31.35.83", ua: "csi-resizer/v0.0.0 (linux/amd64) kubernetes/$Format",
			ref: groupRef("leases", "coordination.k8s.io", "v1", "kube-system", "external-resizer-file-csi-azure-com"), code: 200})
	}

	// cert-manager checks the payments TLS secret every hour: a
	// non-system workload reading a secret, every day.
	for h := 0; h < 24; h++ {
		t := Day.Add(time.Duration(h)*time.Hour + 17*time.Minute + jitter(time.Minute))
		s.kube(audit{id: fmt.Sprintf("certmgr/%02d", h), t: t, verb: "get", uri: "/api/v1/namespaces/payments/secrets/api-tls",
			user: serviceAccount("cert-manager", "cert-manager"), ip: "10.244.1.31",
			ua:  "cert-manager-controller/v1.15.1 (linux/amd64) cert-manager/4486c01f726f17d2790a8a563b9ef3bb9ae9d5be",
			ref: ref("secrets", "payments", "api-tls"), code: 200})
	}

	// 08:12-12:40: the working morning.
	s.activity = append(s.activity,
		armCall{id: "priya-usercred", t: at("08:12:44.2185530"), sub: prodSub, rg: prodRG, resource: clusterID(),
			operation: "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", caller: userCaller(priya, "Azure Kubernetes Service Cluster User Role"),
			ip: priya.ip, result: "Success", signature: "Succeeded.OK", status: "OK"},
		armCall{id: "dana-usercred", t: at("08:41:09.6630712"), sub: prodSub, rg: prodRG, resource: clusterID(),
			operation: "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", caller: userCaller(dana, "Contributor"),
			ip: dana.ip, result: "Success", signature: "Succeeded.OK", status: "OK"},
		armCall{id: "priya-scale", t: at("10:05:31.0042117"), sub: prodSub, rg: prodRG,
			resource:  clusterID() + "/AGENTPOOLS/USER",
			operation: "Microsoft.ContainerService/managedClusters/agentPools/write", caller: userCaller(priya, "Azure Kubernetes Service Contributor Role"),
			ip: priya.ip, result: "Success", signature: "Succeeded.OK", status: "OK",
			reqBody: obj{{"properties", obj{{"count", 3}, {"vmSize", "Standard_D4ds_v5"}, {"mode", "User"}}}}},
		armCall{id: "tom-usercred", t: at("11:30:02.7718841"), sub: prodSub, rg: prodRG, resource: clusterID(),
			operation: "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", caller: userCaller(tom, "Contributor"),
			ip: tom.ip, result: "Success", signature: "Succeeded.OK", status: "OK"},
	)
	morning := []struct {
		p    person
		at   string
		verb string
		uri  string
		ref  obj
	}{
		{priya, "08:13:20.118000", "list", "/api/v1/nodes?limit=500", ref("nodes", "", "")},
		{priya, "08:13:41.902000", "list", "/api/v1/namespaces/payments/pods?limit=500", ref("pods", "payments", "")},
		{dana, "08:42:02.310000", "list", "/api/v1/namespaces/payments/pods?limit=500", ref("pods", "payments", "")},
		{dana, "08:42:15.884000", "get", "/api/v1/namespaces/payments/pods/" + podAPI1 + "/log?container=api&tailLines=200", subRef("pods", "payments", podAPI1, "log")},
		{dana, "08:47:33.051000", "list", "/apis/apps/v1/namespaces/payments/deployments?limit=500", groupRef("deployments", "apps", "v1", "payments", "")},
		{tom, "11:31:10.442000", "list", "/api/v1/namespaces/payments/pods?limit=500", ref("pods", "payments", "")},
		{tom, "11:31:28.006000", "get", "/api/v1/namespaces/payments/pods/" + podWorker + "/log?container=worker&follow=true", subRef("pods", "payments", podWorker, "log")},
		{dana, "11:52:47.730000", "get", "/apis/apps/v1/namespaces/payments/deployments/payments-api", groupRef("deployments", "apps", "v1", "payments", "payments-api")},
		{priya, "12:20:05.215000", "list", "/api/v1/events?limit=500", ref("events", "", "")},
		{dana, "12:38:19.660000", "list", "/api/v1/namespaces/payments/pods?limit=500", ref("pods", "payments", "")},
	}
	for i, m := range morning {
		s.kube(audit{id: fmt.Sprintf("morning/%d", i), t: at(m.at), verb: m.verb, uri: m.uri, user: entraUser(m.p), ip: m.p.ip, ua: m.p.kubectl, ref: m.ref, code: 200})
	}
	// The on-call rotation: priya grants the new on-call engineer view
	// rights, and execs into the worker to look at a stuck queue.
	s.kube(audit{id: "priya-rolebinding", t: at("09:05:12.500000"), verb: "create", level: "RequestResponse",
		uri:  "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings?fieldManager=kubectl-create&fieldValidation=Strict",
		user: entraUser(priya), ip: priya.ip, ua: priya.kubectl,
		ref: groupRef("rolebindings", "rbac.authorization.k8s.io", "v1", "payments", "oncall-view"), code: 201,
		reqObj: obj{{"kind", "RoleBinding"}, {"apiVersion", "rbac.authorization.k8s.io/v1"},
			{"metadata", obj{{"name", "oncall-view"}, {"namespace", "payments"}, {"creationTimestamp", nil}}},
			{"subjects", []obj{{{"kind", "User"}, {"apiGroup", "rbac.authorization.k8s.io"}, {"name", tom.upn}}}},
			{"roleRef", obj{{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "ClusterRole"}, {"name", "view"}}}}})
	s.kube(audit{id: "priya-exec", t: at("11:05:44.020000"), verb: "create",
		uri:  "/api/v1/namespaces/payments/pods/" + podWorker + "/exec?command=sh&container=worker&stdin=true&stdout=true&tty=true",
		user: entraUser(priya), ip: priya.ip, ua: priya.kubectl, ref: subRef("pods", "payments", podWorker, "exec"), code: 101,
		duration: 9*time.Minute + 12*time.Second})

	// CI builds and pushes images (self-hosted runner, service
	// principal); the GitOps controller rolls them out; the nodes pull.
	ci := func(id, hms string, repo, tag, dg string, size int) {
		t := at(hms)
		s.reg(acrEvent{id: id + "/login", t: t, op: "Login", identity: ciAppID, ip: ciIP, ua: "docker/26.1.4 go/go1.21.11 os/linux", code: 200})
		s.reg(acrEvent{id: id + "/push", t: t.Add(38*time.Second + 412*time.Millisecond), op: "Push", identity: ciAppID, ip: ciIP,
			ua: "docker/26.1.4 go/go1.21.11 os/linux", code: 201, repository: repo, tag: tag, digest: dg, size: size})
	}
	pull := func(id string, t time.Time, node int, repo, tag, dg string) {
		s.reg(acrEvent{id: id, t: t, op: "Pull", identity: kubeletMIID, ip: nodes[node].ip,
			ua: "containerd/v1.7.15-1", code: 200, repository: repo, tag: tag, digest: dg, size: 1787})
	}
	rollout := func(id, hms, deploy, container, image string, pods []string) {
		t := at(hms)
		s.kube(audit{id: id + "/patch", t: t, verb: "patch", level: "Request",
			uri:  "/apis/apps/v1/namespaces/payments/deployments/" + deploy + "?fieldManager=kustomize-controller",
			user: serviceAccount("flux-system", "kustomize-controller"), ip: "10.244.1.20", ua: "kustomize-controller/v1.3.0",
			ref: groupRef("deployments", "apps", "v1", "payments", deploy), code: 200,
			reqObj: obj{{"spec", obj{{"template", obj{{"spec", obj{{"containers", []obj{{{"name", container}, {"image", image}}}}}}}}}}}})
		for i, pod := range pods {
			pt := t.Add(time.Duration(3+i*40) * time.Second)
			s.kube(audit{id: id + "/pod/" + pod, t: pt, verb: "create", level: "Request",
				uri:  "/api/v1/namespaces/payments/pods",
				user: serviceAccount("kube-system", "replicaset-controller"), ip: "172.31.22.18",
				ua:  "kube-controller-manager/v1.30.3 (linux/amd64) kubernetes/6fc0a69/system:serviceaccount:kube-system:replicaset-controller",
				ref: ref("pods", "payments", pod), code: 201,
				reqObj: obj{{"kind", "Pod"}, {"apiVersion", "v1"},
					{"metadata", obj{{"name", pod}, {"namespace", "payments"}, {"labels", obj{{"app", deploy}}}}},
					{"spec", obj{{"serviceAccountName", deploy}, {"containers", []obj{{{"name", container}, {"image", image},
						{"envFrom", []obj{{{"secretRef", obj{{"name", "payments-db-credentials"}}}}}}}}}}}}})
			node := 1 + i%2
			s.kube(audit{id: id + "/secret/" + pod, t: pt.Add(2 * time.Second), verb: "get",
				uri:  "/api/v1/namespaces/payments/secrets/payments-db-credentials",
				user: nodeUser(nodes[node].name), ip: nodes[node].ip, ua: "kubelet/v1.30.3 (linux/amd64) kubernetes/6fc0a69",
				ref: ref("secrets", "payments", "payments-db-credentials"), code: 200})
		}
	}
	ci("ci-api-240", "09:38:02.1183020", "payments/api", "v2.4.0", digestAPIGood, 2204)
	rollout("rollout-api-240", "09:41:30.000000", "payments-api", "api", loginServer+"/payments/api:v2.4.0", []string{podAPI1, podAPI2})
	pull("pull-api-240-a", at("09:41:36.5530000"), 1, "payments/api", "v2.4.0", digestAPIGood)
	pull("pull-api-240-b", at("09:42:16.1180000"), 2, "payments/api", "v2.4.0", digestAPIGood)
	ci("ci-worker-193", "12:15:47.9051174", "payments/worker", "v1.9.3", digestWorker, 1931)
	rollout("rollout-worker-193", "12:19:02.000000", "payments-worker", "worker", loginServer+"/payments/worker:v1.9.3", []string{podWorker})
	pull("pull-worker-193", at("12:19:08.7310000"), 1, "payments/worker", "v1.9.3", digestWorker)
	s.reg(acrEvent{id: "tom-login", t: at("10:30:11.4120000"), op: "Login", identity: tom.upn, ip: tom.ip, ua: tom.docker, code: 200})
	s.reg(acrEvent{id: "tom-pull", t: at("10:30:19.0060000"), op: "Pull", identity: tom.upn, ip: tom.ip, ua: tom.docker, code: 200,
		repository: "payments/worker", tag: "v1.9.2", digest: digestWorkerPrev, size: 1931})

	// The sandbox subscription: tom's integration tests run in a
	// container group from the dev registry, every morning.
	cgTests := containerGroupID("cg-integration-tests")
	s.sandbox = append(s.sandbox,
		armCall{id: "tom-aci-create/start", corr: "tom-aci-create", t: at("09:15:03.2210000"), sub: devSub, rg: devRG, resource: cgTests,
			operation: "Microsoft.ContainerInstance/containerGroups/write", caller: userCaller(tom, "Contributor"), ip: tom.ip,
			result: "Start", signature: "Started.", reqBody: aciBody("runner", runnerImage, 2)},
		armCall{id: "tom-aci-create/success", corr: "tom-aci-create", t: at("09:15:21.9040000"), sub: devSub, rg: devRG, resource: cgTests,
			operation: "Microsoft.ContainerInstance/containerGroups/write", caller: userCaller(tom, "Contributor"), ip: tom.ip,
			result: "Success", signature: "Succeeded.Created", status: "Created"},
		armCall{id: "tom-aci-delete", t: at("09:52:40.6630000"), sub: devSub, rg: devRG, resource: cgTests,
			operation: "Microsoft.ContainerInstance/containerGroups/delete", caller: userCaller(tom, "Contributor"), ip: tom.ip,
			result: "Success", signature: "Succeeded.OK", status: "OK"},
	)

	// Afternoon and evening CI activity after the incident is contained.
	ci("ci-api-241", "17:02:10.5520000", "payments/api", "v2.4.1", digest("payments/api:v2.4.1 built by CI"), 2210)
}

// aciBody is the PUT body of a container group (Container Instances REST
// API, 2023-05-01).
func aciBody(container, image string, cpu int) obj {
	return obj{
		{"location", location},
		{"properties", obj{
			{"containers", []obj{{{"name", container}, {"properties", obj{
				{"image", image},
				{"resources", obj{{"requests", obj{{"cpu", cpu}, {"memoryInGB", 4}}}}},
			}}}}},
			{"osType", "Linux"},
			{"restartPolicy", "Always"},
		}},
	}
}

// attack is the intrusion: dana's session token, stolen by an
// adversary-in-the-middle phishing page at lunch, replayed from
// 203.0.113.77.
func (s *scenario) attack() {
	a := attacker
	// (1) The cluster admin kubeconfig: a client certificate that bypasses
	// Entra ID and shows up in the audit log as "masterclient".
	s.activity = append(s.activity, armCall{id: "attack-admincred", t: at("14:02:37.4471930"), sub: prodSub, rg: prodRG,
		resource: clusterID(), operation: "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
		caller: userCaller(a, "Contributor"), ip: a.ip, result: "Success", signature: "Succeeded.OK", status: "OK"})
	// Reconnaissance with dana's own Entra identity.
	s.kube(audit{id: "attack-list-pods", t: at("14:05:12.640112"), verb: "list", uri: "/api/v1/namespaces/payments/pods?limit=500",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("pods", "payments", ""), code: 200})
	// (2) A shell in the payments API pod, reading its environment and
	// the workload's service-account token.
	s.kube(audit{id: "attack-exec", t: at("14:06:03.104512"), verb: "create",
		uri:  "/api/v1/namespaces/payments/pods/" + podAPI1 + "/exec?command=sh&command=-c&command=env%3B+cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api&stderr=true&stdout=true",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: subRef("pods", "payments", podAPI1, "exec"), code: 101, duration: 2 * time.Second})
	// (3) The namespace's secrets.
	s.kube(audit{id: "attack-list-secrets", t: at("14:08:30.551020"), verb: "list", uri: "/api/v1/namespaces/payments/secrets?limit=500",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("secrets", "payments", ""), code: 200})
	s.kube(audit{id: "attack-get-db", t: at("14:08:41.009871"), verb: "get", uri: "/api/v1/namespaces/payments/secrets/payments-db-credentials",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("secrets", "payments", "payments-db-credentials"), code: 200})
	s.kube(audit{id: "attack-get-stripe", t: at("14:08:47.312200"), verb: "get", uri: "/api/v1/namespaces/payments/secrets/stripe-api-key",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("secrets", "payments", "stripe-api-key"), code: 200})
	s.kube(audit{id: "attack-kube-system-denied", t: at("14:09:15.777310"), verb: "list", uri: "/api/v1/namespaces/kube-system/secrets?limit=500",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("secrets", "kube-system", ""), code: 403,
		forbid: `secrets is forbidden: User "dana.dev@contoso.com" cannot list resource "secrets" in API group "" in the namespace "kube-system"`})
	// (4) With the admin certificate: cluster-admin for dana's identity,
	// a grant that outlives a rotated admin credential.
	s.kube(audit{id: "attack-crb", t: at("14:11:20.250330"), verb: "create", level: "RequestResponse",
		uri:  "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict",
		user: masterclient, ip: a.ip, ua: a.kubectl,
		ref: groupRef("clusterrolebindings", "rbac.authorization.k8s.io", "v1", "", "dana-cluster-admin"), code: 201,
		reqObj: obj{{"kind", "ClusterRoleBinding"}, {"apiVersion", "rbac.authorization.k8s.io/v1"},
			{"metadata", obj{{"name", "dana-cluster-admin"}, {"creationTimestamp", nil}}},
			{"subjects", []obj{{{"kind", "User"}, {"apiGroup", "rbac.authorization.k8s.io"}, {"name", dana.upn}}}},
			{"roleRef", obj{{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "ClusterRole"}, {"name", "cluster-admin"}}}}})
	// The grant works: every secret in the cluster, as dana.
	s.kube(audit{id: "attack-all-secrets", t: at("14:12:02.918004"), verb: "list", uri: "/api/v1/secrets?limit=500",
		user: entraUser(a), ip: a.ip, ua: a.kubectl, ref: ref("secrets", "", ""), code: 200, reason: `RBAC: allowed by ClusterRoleBinding "dana-cluster-admin" of ClusterRole "cluster-admin" to User "dana.dev@contoso.com"`})
	// (5) A backdoored build pushed over the tag production runs.
	s.reg(acrEvent{id: "attack-acr-login", t: at("14:19:40.2051000"), op: "Login", identity: a.upn, ip: a.ip, ua: a.docker, code: 200})
	s.reg(acrEvent{id: "attack-push", t: at("14:20:05.8812000"), op: "Push", identity: a.upn, ip: a.ip, ua: a.docker, code: 201,
		repository: "payments/api", tag: "v2.4.0", digest: digestAPIBad, size: 2204})
	// (6) A crypto miner from Docker Hub in the sandbox subscription.
	cg := containerGroupID("cg-build-cache")
	s.sandbox = append(s.sandbox,
		armCall{id: "attack-aci/start", corr: "attack-aci", t: at("14:31:05.1180000"), sub: devSub, rg: devRG, resource: cg,
			operation: "Microsoft.ContainerInstance/containerGroups/write", caller: userCaller(a, "Contributor"), ip: a.ip,
			result: "Start", signature: "Started.", reqBody: aciBody("cache", minerImage, 4)},
		armCall{id: "attack-aci/success", corr: "attack-aci", t: at("14:31:19.6020000"), sub: devSub, rg: devRG, resource: cg,
			operation: "Microsoft.ContainerInstance/containerGroups/write", caller: userCaller(a, "Contributor"), ip: a.ip,
			result: "Success", signature: "Succeeded.Created", status: "Created"},
	)
	// A payments-api pod is rescheduled and its node pulls the tag: the
	// backdoored digest now runs in production.
	s.kube(audit{id: "attack-pod-reschedule", t: at("14:37:51.300210"), verb: "create", level: "Request",
		uri:  "/api/v1/namespaces/payments/pods",
		user: serviceAccount("kube-system", "replicaset-controller"), ip: "172.31.22.18",
		ua:  "kube-controller-manager/v1.30.3 (linux/amd64) kubernetes/6fc0a69/system:serviceaccount:kube-system:replicaset-controller",
		ref: ref("pods", "payments", "payments-api-6f7d9c8b5-w9d3t"), code: 201,
		reqObj: obj{{"kind", "Pod"}, {"apiVersion", "v1"},
			{"metadata", obj{{"name", "payments-api-6f7d9c8b5-w9d3t"}, {"namespace", "payments"}, {"labels", obj{{"app", "payments-api"}}}}},
			{"spec", obj{{"serviceAccountName", "payments-api"}, {"containers", []obj{{{"name", "api"}, {"image", loginServer + "/payments/api:v2.4.0"},
				{"envFrom", []obj{{{"secretRef", obj{{"name", "payments-db-credentials"}}}}}}}}}}}}})
	s.reg(acrEvent{id: "attack-pull-bad", t: at("14:37:55.0410000"), op: "Pull", identity: kubeletMIID, ip: nodes[2].ip,
		ua: "containerd/v1.7.15-1", code: 200, repository: "payments/api", tag: "v2.4.0", digest: digestAPIBad, size: 2204})
	// (7) The AKS audit export to storage is switched off.
	s.activity = append(s.activity, armCall{id: "attack-diag-delete", t: diagnosticOffAt.Add(412 * time.Millisecond), sub: prodSub, rg: prodRG,
		resource:  clusterID() + "/providers/microsoft.insights/diagnosticSettings/" + diagSetting,
		operation: "Microsoft.Insights/diagnosticSettings/delete", caller: userCaller(a, "Contributor"), ip: a.ip,
		result: "Success", signature: "Succeeded.OK", status: "OK"})
}

// containment is the response after Defender for Containers flags the
// miner at 15:21: priya restores the audit export, removes the binding
// and deletes the container group.
func (s *scenario) containment() {
	p := priya
	s.activity = append(s.activity, armCall{id: "priya-diag-restore", t: diagnosticOnAt.Add(-5 * time.Second), sub: prodSub, rg: prodRG,
		resource:  clusterID() + "/providers/microsoft.insights/diagnosticSettings/" + diagSetting,
		operation: "Microsoft.Insights/diagnosticSettings/write", caller: userCaller(p, "Owner"), ip: p.ip,
		result: "Success", signature: "Succeeded.OK", status: "OK",
		reqBody: obj{{"properties", obj{
			{"storageAccountId", "/subscriptions/" + prodSub + "/resourceGroups/" + prodRG + "/providers/Microsoft.Storage/storageAccounts/paymentsauditlogs"},
			{"logs", []obj{{{"category", "kube-audit"}, {"enabled", true}}, {{"category", "kube-audit-admin"}, {"enabled", true}}}},
		}}}})
	s.kube(audit{id: "priya-crb-delete", t: at("15:45:08.006412"), verb: "delete",
		uri:  "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/dana-cluster-admin",
		user: entraUser(p), ip: p.ip, ua: p.kubectl,
		ref: groupRef("clusterrolebindings", "rbac.authorization.k8s.io", "v1", "", "dana-cluster-admin"), code: 200})
	s.sandbox = append(s.sandbox, armCall{id: "priya-aci-delete", t: at("15:50:12.3350000"), sub: devSub, rg: devRG,
		resource: containerGroupID("cg-build-cache"), operation: "Microsoft.ContainerInstance/containerGroups/delete",
		caller: userCaller(p, "Owner"), ip: p.ip, result: "Success", signature: "Succeeded.OK", status: "OK"})
}

// ---- files ----

// Generate returns the dataset's files, sorted by path.
func Generate() ([]File, error) {
	s := build()
	var files []File

	// The storage-account archive: one PT1H.json per hour of the AKS
	// diagnostic setting, one resource-log record per line.
	byHour := map[int][]obj{}
	for _, a := range s.k8s {
		byHour[a.t.Hour()] = append(byHour[a.t.Hour()], a.record())
	}
	for h, recs := range byHour {
		var b bytes.Buffer
		for _, r := range recs {
			line, err := marshal(r)
			if err != nil {
				return nil, fmt.Errorf("archive hour %d: %w", h, err)
			}
			b.Write(line)
			b.WriteByte('\n')
		}
		p := fmt.Sprintf("%s/insights-logs-kube-audit/resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
			DirArchive, clusterID(), Day.Year(), int(Day.Month()), Day.Day(), h)
		files = append(files, File{Path: p, Body: b.Bytes()})
	}

	// Event Hubs: bodies of the prod subscription's Activity Log export
	// and of the registry's diagnostic setting, as the collector reads
	// them, one body per line.
	activity := make([]timed, 0, len(s.activity))
	for _, c := range s.activity {
		activity = append(activity, timed{c.t, c.eventHubsRecord()})
	}
	acr := make([]timed, 0, len(s.acr))
	for _, e := range s.acr {
		acr = append(acr, timed{e.t, e.record()})
	}
	for _, hub := range []struct {
		name string
		recs []timed
	}{{"activity-log.jsonl", activity}, {"acr.jsonl", acr}} {
		body, err := eventHubsBodies(hub.recs)
		if err != nil {
			return nil, fmt.Errorf("event hubs %s: %w", hub.name, err)
		}
		files = append(files, File{Path: DirEventHubs + "/" + hub.name, Body: body})
	}

	// Log Analytics: the sandbox subscription's AzureActivity table as the
	// query API returns it, on one line.
	la, err := azureActivityResponse(s.sandbox)
	if err != nil {
		return nil, fmt.Errorf("log analytics: %w", err)
	}
	files = append(files, File{Path: DirLogAnalytics + "/sandbox-azureactivity.json", Body: la})

	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

type timed struct {
	t   time.Time
	rec obj
}

// eventHubsBodies batches records the way Azure Monitor does: records
// emitted within the same minute travel in one {"records":[...]} body.
func eventHubsBodies(recs []timed) ([]byte, error) {
	var b bytes.Buffer
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].t.Truncate(time.Minute).Equal(recs[i].t.Truncate(time.Minute)) {
			j++
		}
		batch := make([]obj, 0, j-i)
		for _, r := range recs[i:j] {
			batch = append(batch, r.rec)
		}
		line, err := marshal(obj{{"records", batch}})
		if err != nil {
			return nil, err
		}
		b.Write(line)
		b.WriteByte('\n')
		i = j
	}
	return b.Bytes(), nil
}

// azureActivityResponse renders calls as a Log Analytics query API
// response over the AzureActivity table: {"tables":[{"name":
// "PrimaryResult","columns":[...],"rows":[...]}]}.
func azureActivityResponse(calls []armCall) ([]byte, error) {
	type column struct{ name, typ string }
	cols := []column{
		{"TenantId", "string"}, {"SourceSystem", "string"}, {"CallerIpAddress", "string"}, {"CategoryValue", "string"},
		{"CorrelationId", "string"}, {"Authorization", "string"}, {"Authorization_d", "dynamic"}, {"Claims", "string"},
		{"Claims_d", "dynamic"}, {"Level", "string"}, {"OperationNameValue", "string"}, {"Properties", "string"},
		{"Properties_d", "dynamic"}, {"Caller", "string"}, {"EventDataId", "string"}, {"EventSubmissionTimestamp", "datetime"},
		{"HTTPRequest", "string"}, {"OperationId", "string"}, {"ResourceGroup", "string"}, {"ResourceProviderValue", "string"},
		{"ActivityStatusValue", "string"}, {"ActivitySubstatusValue", "string"}, {"Hierarchy", "string"}, {"TimeGenerated", "datetime"},
		{"SubscriptionId", "string"}, {"OperationName", "string"}, {"ActivityStatus", "string"}, {"ActivitySubstatus", "string"},
		{"Category", "string"}, {"ResourceId", "string"}, {"ResourceProvider", "string"}, {"Resource", "string"},
		{"Type", "string"}, {"_ResourceId", "string"},
	}
	columns := make([]obj, len(cols))
	for i, c := range cols {
		columns[i] = obj{{"name", c.name}, {"type", c.typ}}
	}
	rows := make([][]any, 0, len(calls))
	for _, c := range calls {
		status, sub, _ := strings.Cut(c.signature, ".")
		statusValue := map[string]string{"Started": "Start", "Succeeded": "Success", "Failed": "Failure", "Accepted": "Accept"}[status]
		if statusValue == "" {
			return nil, fmt.Errorf("call %s: unknown result signature %q", c.id, c.signature)
		}
		props := c.properties()
		props = append(props, field{"resource", c.resource[strings.LastIndexByte(c.resource, '/')+1:]})
		httpReq := obj{{"clientRequestId", uuid("clientreq/" + c.id)}, {"clientIpAddress", c.ip},
			{"method", map[bool]string{true: "DELETE", false: "PUT"}[strings.HasSuffix(c.operation, "/delete")]}}
		opName := map[string]string{
			"Microsoft.ContainerInstance/containerGroups/write":  "Create or Update Container Group",
			"Microsoft.ContainerInstance/containerGroups/delete": "Delete Container Group",
		}[c.operation]
		if opName == "" {
			return nil, fmt.Errorf("call %s: no display name for %s", c.id, c.operation)
		}
		parts := strings.Split(c.resource, "/")
		rows = append(rows, []any{
			tenantID, "Azure", c.ip, "Administrative",
			c.correlation(), mustJSON(c.authorization()), nil, mustJSON(c.claims()),
			nil, "Informational", strings.ToUpper(c.operation), mustJSON(props),
			nil, c.caller.upn, uuid("eventdata/" + c.id), c.t.Add(9*time.Second + 200*time.Millisecond).Format("2006-01-02T15:04:05.000Z"),
			mustJSON(httpReq), uuid("op/" + c.id), strings.ToUpper(c.rg), "MICROSOFT.CONTAINERINSTANCE",
			statusValue, sub, tenantID + "/" + c.sub, c.t.Format("2006-01-02T15:04:05.000Z"),
			c.sub, opName, status, sub,
			"Administrative", strings.ToUpper(c.resource), "Microsoft.ContainerInstance", strings.ToUpper(parts[len(parts)-1]),
			"AzureActivity", strings.ToLower(c.resource),
		})
	}
	if len(rows) > 0 && len(rows[0]) != len(cols) {
		return nil, errors.New("azure activity row does not match its columns")
	}
	body, err := marshal(obj{{"tables", []obj{{{"name", "PrimaryResult"}, {"columns", columns}, {"rows", rows}}}}})
	if err != nil {
		return nil, err
	}
	return append(body, '\n'), nil
}
