package helm_test

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/custody-audit/custody/deploy/kit/image"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.yaml from the chart's output")

const (
	chartDir  = "../../helm/custody"
	namespace = "audit"
	relName   = "custody"
)

var kubeVersion = &common.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}

// render renders the chart as `helm template` does, with the values file.
func render(t *testing.T, valuesFile string) (string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := common.ReadValuesFile(valuesFile)
	if err != nil {
		t.Fatalf("values %s: %v", valuesFile, err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName, inst.Namespace, inst.Replace = relName, namespace, true
	inst.KubeVersion = kubeVersion
	rel, err := inst.RunWithContext(t.Context(), ch, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("release of type %T", rel)
	}
	return r.Manifest, nil
}

// TestChart renders every values file in testdata/, compares the output
// with testdata/golden/, lints the chart with the same values, and checks
// each manifest and the rendered config.
func TestChart(t *testing.T) {
	custody := buildCustody(t)
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("values files: %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			manifest, err := render(t, f)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(manifest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if manifest != string(want) {
				t.Errorf("rendered chart differs from %s (go test -update rewrites it):\n%s", golden, manifest)
			}
			lintChart(t, f)
			vals, err := common.ReadValuesFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkManifests(t, decodeAll(t, manifest), vals, custody)
		})
	}
}

// TestChartRefuses renders the values files in testdata/bad, each of which
// names the error it must cause in a "# want:" line.
func TestChartRefuses(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("bad values files: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m := regexp.MustCompile(`(?m)^# want: (.+)$`).FindSubmatch(b)
			if m == nil {
				t.Fatalf("%s has no # want: line", f)
			}
			_, err = render(t, f)
			if err == nil || !strings.Contains(err.Error(), string(m[1])) {
				t.Fatalf("render error %v, want %q", err, m[1])
			}
			for _, secret := range []string{"c2VjcmV0", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals the secret: %v", err)
				}
			}
		})
	}
}

// lintChart runs Helm's lint rules (chart file, values, templates,
// dependencies, CRDs) with the values file; warnings and errors fail.
func lintChart(t *testing.T, valuesFile string) {
	t.Helper()
	vals, err := common.ReadValuesFile(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	res := lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(kubeVersion))
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		}
	}
}

// object is one rendered manifest, decoded.
type object struct {
	source string
	typed  runtime.Object             // Kubernetes API kinds
	custom *unstructured.Unstructured // the ServiceMonitor
}

// strictDecoder decodes into the Kubernetes API types and fails on unknown
// or duplicate fields.
func strictDecoder() runtime.Decoder {
	return serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll decodes every manifest of a render strictly.
func decodeAll(t *testing.T, manifest string) []object {
	t.Helper()
	dec := strictDecoder()
	docs := releaseutil.SplitManifests(manifest)
	var objs []object
	for _, k := range slices.Sorted(maps.Keys(docs)) {
		doc := docs[k]
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("manifest %s: %v", k, err)
		}
		o := object{source: firstLine(doc)}
		if head.APIVersion == "monitoring.coreos.com/v1" {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatalf("%s: %v", o.source, err)
			}
			o.custom = u
		} else {
			obj, _, err := dec.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: strict decode into the Kubernetes API types: %v\n%s", o.source, err, doc)
			}
			o.typed = obj
		}
		objs = append(objs, o)
	}
	return objs
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// TestStrictDecoding proves that decodeAll's decoder refuses what the API
// server would: an unknown field and a misspelt one.
func TestStrictDecoding(t *testing.T) {
	dec := strictDecoder()
	for _, doc := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nextra: 1\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n",
	} {
		if _, _, err := dec.Decode([]byte(doc), nil, nil); err == nil || !runtime.IsStrictDecodingError(err) {
			t.Errorf("decoded %q: err %v, want a strict decoding error", doc, err)
		}
	}
}

// checkManifests checks the security context, identity wiring, probes,
// selectors and secrets of one render, and runs custody's config check on
// its config with the pod's environment.
func checkManifests(t *testing.T, objs []object, vals common.Values, custody string) {
	t.Helper()
	var (
		pod       *corev1.PodTemplateSpec
		sa        *corev1.ServiceAccount
		svc       *corev1.Service
		cm        *corev1.ConfigMap
		np        *networkingv1.NetworkPolicy
		monitor   *unstructured.Unstructured
		claims    = map[string]bool{}
		workloads []string
	)
	for _, o := range objs {
		switch x := o.typed.(type) {
		case *appsv1.StatefulSet:
			pod = &x.Spec.Template
			workloads = append(workloads, "StatefulSet")
			if *x.Spec.Replicas != 1 {
				t.Errorf("StatefulSet replicas %d: one collector per store", *x.Spec.Replicas)
			}
			for _, c := range x.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
			if p := x.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				t.Errorf("StatefulSet deletes its volumes with it: %+v", p)
			}
			checkSelector(t, "StatefulSet", x.Spec.Selector.MatchLabels, pod.Labels)
		case *appsv1.Deployment:
			pod = &x.Spec.Template
			workloads = append(workloads, "Deployment")
			if *x.Spec.Replicas != 1 || x.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("Deployment replicas %d strategy %s: want one collector, Recreate", *x.Spec.Replicas, x.Spec.Strategy.Type)
			}
			checkSelector(t, "Deployment", x.Spec.Selector.MatchLabels, pod.Labels)
		case *corev1.ServiceAccount:
			sa = x
		case *corev1.Service:
			svc = x
		case *corev1.ConfigMap:
			cm = x
		case *networkingv1.NetworkPolicy:
			np = x
		case *corev1.PersistentVolumeClaim:
			if x.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Errorf("PVC %s would go with the release", x.Name)
			}
		case *corev1.Secret:
			t.Errorf("the chart renders a Secret (%s): secrets come from existing Secrets only", x.Name)
		case nil:
			monitor = o.custom
		default:
			t.Errorf("%s: unexpected kind %T", o.source, x)
		}
	}
	mode := str(vals, "store", "mode")
	if mode == "" {
		mode = "embedded"
	}
	wantWorkload := map[string]string{"embedded": "StatefulSet", "clickhouse": "Deployment"}[mode]
	if !slices.Equal(workloads, []string{wantWorkload}) || pod == nil || cm == nil || svc == nil {
		t.Fatalf("store mode %s rendered workloads %v (ConfigMap %v, Service %v), want one %s", mode, workloads, cm != nil, svc != nil, wantWorkload)
	}
	spec := pod.Spec

	// Restricted pod security.
	psc := spec.SecurityContext
	if psc == nil || !isTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser != image.UID ||
		psc.FSGroup == nil || *psc.FSGroup != image.GID || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v: want non-root %d, fsGroup %d, seccomp RuntimeDefault", psc, image.UID, image.GID)
	}
	if !isFalse(spec.AutomountServiceAccountToken) {
		t.Error("the pod mounts a Kubernetes API token it never uses")
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%d containers, %d init containers: want the collector only", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || !isFalse(sc.AllowPrivilegeEscalation) || !isTrue(sc.ReadOnlyRootFilesystem) || !isTrue(sc.RunAsNonRoot) ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		isTrue(sc.Privileged) || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context %+v: want no privilege escalation, read-only root, all capabilities dropped, RuntimeDefault", sc)
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Error("no memory request")
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}

	// Probes and the metrics port.
	var metricsPort int32
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if metricsPort != image.MetricsPort {
		t.Errorf("metrics container port %d, want %d", metricsPort, image.MetricsPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v, want GET %s on the metrics port", p.name, p.probe, p.path)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("Service ports %+v, want metrics", svc.Spec.Ports)
	}
	checkSelector(t, "Service", svc.Spec.Selector, pod.Labels)

	// Workload identity: the pod label, and the ServiceAccount's client id.
	wiEnabled := vals["workloadIdentity"].(map[string]any)["enabled"] != false
	if wiEnabled && pod.Labels["azure.workload.identity/use"] != "true" {
		t.Errorf("pod labels %v: no azure.workload.identity/use", pod.Labels)
	}
	saName := str(vals, "serviceAccount", "name")
	if sa != nil {
		if want := str(vals, "workloadIdentity", "clientId"); wiEnabled && sa.Annotations["azure.workload.identity/client-id"] != want {
			t.Errorf("ServiceAccount annotations %v, want client-id %s", sa.Annotations, want)
		}
		if want := str(vals, "workloadIdentity", "tenantId"); want != "" && sa.Annotations["azure.workload.identity/tenant-id"] != want {
			t.Errorf("ServiceAccount annotations %v, want tenant-id %s", sa.Annotations, want)
		}
		saName = sa.Name
	}
	if spec.ServiceAccountName != saName || saName == "" {
		t.Errorf("pod runs as ServiceAccount %q, want %q", spec.ServiceAccountName, saName)
	}

	// Every mount has a volume; the signing key comes from the Secret,
	// readable by the pod's group only.
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok && !claims[m.Name] {
			t.Errorf("mount %s at %s has no volume", m.Name, m.MountPath)
		}
	}
	keys := vols["keys"].Secret
	if keys == nil || keys.SecretName != str(vals, "signingKey", "secretName") || keys.DefaultMode == nil || *keys.DefaultMode&0o007 != 0 {
		t.Errorf("keys volume %+v: want Secret %s, unreadable by others", keys, str(vals, "signingKey", "secretName"))
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, p := range []string{image.DataDir, image.CheckpointDir, image.KeyDir, "/tmp"} {
		if mounts[p] == "" {
			t.Errorf("nothing mounted at %s (the root file system is read-only)", p)
		}
	}

	// Secrets only by reference.
	for _, e := range c.Env {
		if e.Name == "CUSTODY_CLICKHOUSE" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("the ClickHouse DSN is not taken from a Secret: %+v", e)
		}
	}
	cfg := cm.Data["custody.yaml"]
	if regexp.MustCompile(`(?i)connection_string|client_secret|password|sig=`).MatchString(cfg) {
		t.Errorf("ConfigMap holds secret material:\n%s", cfg)
	}
	if got := pod.Annotations["checksum/config"]; len(got) != 64 {
		t.Errorf("pod annotation checksum/config %q: pods would not roll on config changes", got)
	}

	// NetworkPolicy: the collector's pods, metrics in, DNS and Azure out.
	if npEnabled := vals["networkPolicy"] == nil || vals["networkPolicy"].(map[string]any)["enabled"] != false; npEnabled != (np != nil) {
		t.Errorf("NetworkPolicy rendered %v, enabled %v", np != nil, npEnabled)
	}
	if np != nil {
		checkSelector(t, "NetworkPolicy", np.Spec.PodSelector.MatchLabels, pod.Labels)
		if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "metrics" {
			t.Errorf("NetworkPolicy ingress %+v: want the metrics port only", np.Spec.Ingress)
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.Egress) != 2 {
			t.Errorf("NetworkPolicy egress %+v: want DNS and Azure", np.Spec.Egress)
		}
	}

	// ServiceMonitor: only when asked for, scraping the Service's port.
	smEnabled := false
	if m, ok := vals["metrics"].(map[string]any); ok {
		if s, ok := m["serviceMonitor"].(map[string]any); ok {
			smEnabled = s["enabled"] == true
		}
	}
	if smEnabled != (monitor != nil) {
		t.Errorf("ServiceMonitor rendered %v, enabled %v", monitor != nil, smEnabled)
	}
	if monitor != nil {
		checkServiceMonitor(t, monitor, svc)
	}

	checkConfig(t, custody, cfg, c, mode)
}

// checkServiceMonitor checks the ServiceMonitor against the fields of
// monitoring.coreos.com/v1 it uses and the Service it scrapes.
func checkServiceMonitor(t *testing.T, u *unstructured.Unstructured, svc *corev1.Service) {
	t.Helper()
	if u.GetKind() != "ServiceMonitor" || u.GetNamespace() != namespace {
		t.Errorf("monitor %s in %q", u.GetKind(), u.GetNamespace())
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	for k := range spec {
		if !slices.Contains([]string{"selector", "namespaceSelector", "endpoints"}, k) {
			t.Errorf("ServiceMonitor spec.%s: not a field this chart sets", k)
		}
	}
	sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	checkSelector(t, "ServiceMonitor", sel, svc.Labels)
	eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", eps)
	}
	ep := eps[0].(map[string]any)
	for k, want := range map[string]string{"port": "metrics", "path": "/metrics"} {
		if ep[k] != want {
			t.Errorf("ServiceMonitor endpoint %s = %v, want %s", k, ep[k], want)
		}
	}
	for k := range ep {
		if !slices.Contains([]string{"port", "path", "interval", "scrapeTimeout"}, k) {
			t.Errorf("ServiceMonitor endpoint field %s: not a field this chart sets", k)
		}
	}
}

// checkConfig runs `custody config check` on the rendered config, in the
// environment the container gets (the image's, then the pod's), with a
// stand-in for each value taken from a Secret.
func checkConfig(t *testing.T, custody, cfg string, c corev1.Container, mode string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := image.Env()
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			v = "clickhouse://custody_writer:from-a-secret@ch-0:9440/?secure=true"
		}
		env = append(env, e.Name+"="+v)
	}
	args := slices.Clone(c.Args)
	i := slices.Index(args, "--config")
	if i < 0 || args[len(args)-1] != "run" {
		t.Fatalf("container args %q: want --config FILE run", args)
	}
	if args[i+1] != "/etc/custody/config/custody.yaml" {
		t.Errorf("--config %s is not where the ConfigMap is mounted", args[i+1])
	}
	args[i+1] = path
	args[len(args)-1] = "config"
	args = append(args, "check")
	cmd := exec.CommandContext(t.Context(), custody, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("custody config check on the rendered config: %v\n%s\n%s", err, out.String(), cfg)
	}
	want := map[string]string{"embedded": "store: embedded, " + image.StoreDir, "clickhouse": "store: ClickHouse servers (DSN from CUSTODY_CLICKHOUSE)"}[mode]
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "warning") {
		t.Errorf("custody config check:\n%s\nwant %q and no warnings", out.String(), want)
	}
	if strings.Contains(out.String(), "from-a-secret") {
		t.Errorf("config check printed the DSN:\n%s", out.String())
	}
}

func checkSelector(t *testing.T, what string, sel, lbls map[string]string) {
	t.Helper()
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(lbls)) {
		t.Errorf("%s selector %v does not select the collector's pods %v", what, sel, lbls)
	}
}

func str(vals common.Values, keys ...string) string {
	var v any = map[string]any(vals)
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// buildCustody builds this checkout's custody binary.
func buildCustody(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "custody")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/custody")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/custody: %v\n%s", err, out)
	}
	return bin
}
