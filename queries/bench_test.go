package queries

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage/engine"
)

// Benchmark data: benchEvents generated events spread evenly over
// benchSpan ending at benchEnd, 65% AKS, 25% ACR, 10% Activity Log, from a
// few thousand principals, addresses and resources, with the forensic
// tags at plausible rates. Every query runs with its default window ending
// at benchEnd.
func benchEnd() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

const benchSpan = 30 * 24 * time.Hour

// benchArgs are the values of required parameters: things that exist in
// the generated data.
func benchArgs() map[string]map[string]string {
	return map[string]map[string]string{
		"principal-timeline": {"actor": "user42@contoso.com"},
		"resource-timeline":  {"resource": "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg3/providers/microsoft.containerservice/managedclusters/aks3"},
		"resource-actors":    {"resource": "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg3/providers/microsoft.containerservice/managedclusters/aks3"},
		"image-blast-radius": {"digest": benchDigest(7)},
	}
}

func benchDigest(n int) string {
	return fmt.Sprintf("sha256:%064x", n*7919+1)
}

// benchInsertSQL generates count events from offset: a single INSERT ...
// SELECT FROM numbers(), so generation runs at engine speed.
func benchInsertSQL(offset, count, total uint64) string {
	// Milliseconds: number * span must not overflow UInt64.
	spanMS := uint64(benchSpan / time.Millisecond)
	start := benchEnd().Add(-benchSpan).Format("2006-01-02 15:04:05")
	return fmt.Sprintf(`INSERT INTO custody.events
WITH
    cityHash64(number) AS h,
    h %% 100 AS svc_pick,
    multiIf(svc_pick < 65, 'aks', svc_pick < 90, 'acr', 'arm') AS svc,
    toDateTime64('%[4]s', 6, 'UTC') + toIntervalMicrosecond(intDiv(number * %[5]d, %[3]d) * 1000 + h %% 1000) AS t,
    bitShiftRight(h, 7) %% 100 AS who_pick,
    bitShiftRight(h, 14) %% 2000 AS user_n,
    bitShiftRight(h, 25) %% 40 AS res_n,
    bitShiftRight(h, 31) %% 1000003 AS pick,
    -- Most principals work from one or two addresses of their own.
    if(bitShiftRight(h, 41) %% 10 = 0, bitShiftRight(h, 45) %% 5000, (user_n * 2 + bitShiftRight(h, 44) %% 2) %% 5000) AS ip_n,
    bitShiftRight(h, 53) %% 20 AS ns_n,
    multiIf(who_pick < 70, concat('user', toString(user_n), '@contoso.com'),
        who_pick < 95, if(svc = 'aks', concat('system:serviceaccount:ns', toString(ns_n), ':sa', toString(user_n %% 50)), lower(hex(MD5(toString(user_n %% 300))))),
        if(svc = 'aks', 'system:serviceaccount:kube-system:csi-azuredisk-node-sa', 'aksService')) AS actor,
    multiIf(who_pick < 70, 'user', who_pick < 95, if(svc = 'aks', 'k8s_service_account', 'service_principal'), 'system') AS atype,
    if(ip_n < 4500, concat('10.', toString(ip_n %% 200), '.', toString(ip_n %% 250), '.', toString(ip_n %% 7 + 1)),
        if(ip_n %% 5 = 0, concat('2001:db8::', hex(ip_n)), concat('203.0.113.', toString(ip_n %% 250)))) AS ip,
    ['k8s:pods:get','k8s:pods:list','k8s:pods:get','k8s:deployments:patch','k8s:configmaps:update','k8s:pods:create','k8s:pods:delete','k8s:secrets:get','k8s:services:get','k8s:events:list',
     'k8s:pods/log:get','k8s:deployments:get','k8s:replicasets:list','k8s:pods/exec:create','k8s:serviceaccounts/token:create','k8s:rolebindings:create','k8s:clusterrolebindings:create','k8s:pods/portforward:create','k8s:configmaps:delete','k8s:nodes:get'] AS aks_actions,
    [2500,2000,0,800,700,300,300,60,1000,1000,500,600,500,5,20,2,1,2,200,510] AS aks_weights,
    ['acr:pull','acr:login','acr:push','acr:delete','acr:untag'] AS acr_actions,
    [8500,1200,200,50,50] AS acr_weights,
    ['Microsoft.ContainerInstance/containerGroups/write','Microsoft.ContainerInstance/containerGroups/delete','Microsoft.ContainerInstance/containerGroups/containers/exec/action',
     'Microsoft.ContainerService/managedClusters/listClusterUserCredential/action','Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action','Microsoft.ContainerService/managedClusters/runCommand/action',
     'Microsoft.ContainerService/managedClusters/write','Microsoft.ContainerRegistry/registries/listCredentials/action','Microsoft.ContainerRegistry/registries/regenerateCredential/action',
     'Microsoft.Insights/diagnosticSettings/write','Microsoft.Insights/diagnosticSettings/delete','Microsoft.Authorization/roleAssignments/write','Microsoft.ContainerService/managedClusters/agentPools/write'] AS arm_actions,
    [300,100,20,2000,10,20,1500,10,2,5,1,100,5932] AS arm_weights,
    arrayCumSum(aks_weights) AS aks_cum, arrayCumSum(acr_weights) AS acr_cum, arrayCumSum(arm_weights) AS arm_cum,
    multiIf(svc = 'aks', aks_actions[arrayFirstIndex(c -> pick %% arraySum(aks_weights) < c, aks_cum)],
        svc = 'acr', acr_actions[arrayFirstIndex(c -> pick %% arraySum(acr_weights) < c, acr_cum)],
        concat('arm:', arm_actions[arrayFirstIndex(c -> pick %% arraySum(arm_weights) < c, arm_cum)])) AS act,
    splitByChar(':', act)[2] AS k8s_res_sub,
    if(svc = 'aks', splitByChar('/', k8s_res_sub)[1], '') AS k8s_res,
    if(svc = 'aks' AND position(k8s_res_sub, '/') > 0, splitByChar('/', k8s_res_sub)[2], '') AS k8s_sub,
    if(svc = 'aks', splitByChar(':', act)[3], '') AS verb,
    bitShiftRight(h, 3) %% 1000 AS fate,
    multiIf(fate < 30, 403, fate < 32, 401, svc = 'acr' AND act = 'acr:push', 201, k8s_sub IN ('exec','portforward'), 101, 200) AS code,
    multiIf(svc = 'aks', concat('aks', toString(res_n %% 8)), svc = 'acr', concat('acr', toString(res_n %% 4)),
        position(act, 'ContainerInstance') > 0, concat('cg', toString(res_n)), position(act, 'ContainerRegistry') > 0, concat('acr', toString(res_n %% 4)),
        position(act, 'diagnosticSettings') > 0, 'audit-to-la', position(act, 'Authorization') > 0, lower(hex(MD5(toString(number)))), concat('aks', toString(res_n %% 8))) AS rname,
    multiIf(svc = 'aks' OR position(act, 'ContainerService') > 0, 'Microsoft.ContainerService',
        svc = 'acr' OR position(act, 'ContainerRegistry') > 0, 'Microsoft.ContainerRegistry',
        position(act, 'ContainerInstance') > 0, 'Microsoft.ContainerInstance',
        position(act, 'Insights') > 0, 'Microsoft.Insights', 'Microsoft.Authorization') AS prov,
    multiIf(prov = 'Microsoft.ContainerService', 'managedClusters', prov = 'Microsoft.ContainerRegistry', 'registries',
        prov = 'Microsoft.ContainerInstance', 'containerGroups', prov = 'Microsoft.Insights', 'managedClusters/providers/diagnosticSettings', 'roleAssignments') AS rtype,
    concat('/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg', toString(res_n %% 8), '/providers/',
        lower(prov), '/', lower(rtype), '/', rname,
        if(position(act, '/containers/exec') > 0, '/containers/main', '')) AS rid,
    if(prov = 'Microsoft.Insights', concat('/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg', toString(res_n %% 8),
        '/providers/microsoft.containerservice/managedclusters/aks', toString(res_n %% 8), '/providers/microsoft.insights/diagnosticsettings/', rname), rid) AS rid2,
    bitShiftRight(h, 17) %% 5000 AS img_n,
    concat('sha256:', leftPad(lower(hex(img_n * 7919 + 1)), 64, '0')) AS digest,
    concat('team', toString(img_n %% 30), '/app', toString(img_n %% 200)) AS repo,
    multiIf(img_n %% 50 = 0, concat('docker.io/library/tool', toString(img_n %% 7), ':latest'),
        img_n %% 97 = 0, concat('ghcr.io/x', toString(img_n %% 11), '/miner:1'),
        concat('acr', toString(img_n %% 4), '.azurecr.io/', repo, '@', digest)) AS image,
    (svc = 'aks' AND k8s_res = 'pods' AND verb = 'create' AND k8s_sub = '') OR position(act, 'containerGroups/write') > 0 AS runs_image,
    arraySort(arrayFilter(x -> x != '', [
        if(k8s_res = 'secrets', 'secret_access', ''),
        if(k8s_sub = 'token', 'token_access', ''),
        if(k8s_sub = 'exec' OR position(act, '/exec/') > 0, 'exec', ''),
        if(k8s_sub = 'portforward', 'port_forward', ''),
        if(code IN (401, 403), 'denied', ''),
        if(k8s_res = 'clusterrolebindings' AND fate %% 3 = 0, 'cluster_admin_binding', ''),
        if(runs_image AND fate %% 50 = 7, 'privileged_pod', ''),
        if(runs_image AND fate %% 50 = 7, 'host_path', ''),
        if(position(act, 'diagnosticSettings') > 0, 'logging_change', ''),
        if(position(act, 'AdminCredential') > 0 OR position(act, 'listCredentials') > 0 OR position(act, 'regenerateCredential') > 0, 'admin_credential', ''),
        if(position(act, 'listCluster') > 0 OR position(act, 'listCredentials') > 0, 'credential_listing', ''),
        if(position(act, 'runCommand') > 0, 'run_command', ''),
        if(svc = 'aks' AND fate = 999, 'anonymous', ''),
        if(svc = 'aks' AND fate = 998, 'impersonation', '')])) AS tag_list
SELECT
    concat('eventhubs/bench.servicebus.windows.net/audit/custody/', toString(number %% 4)) AS chain,
    intDiv(number, 4) + 1 AS seq,
    lower(hex(MD5(toString(number)))) AS event_id,
    t AS event_time,
    t + toIntervalMillisecond(h %% 300000) AS received_time,
    svc AS service,
    multiIf(svc = 'aks', if(verb IN ('get','list','watch'), 'kube-audit', 'kube-audit-admin'), svc = 'acr', if(act = 'acr:login', 'ContainerRegistryLoginEvents', 'ContainerRegistryRepositoryEvents'), 'Administrative') AS category,
    'eventhubs' AS source_kind,
    if(svc = 'arm', 'activity-log', 'resource-log') AS source_format,
    concat('hub/', toString(number %% 4), '/', toString(intDiv(number, 4))) AS source_position,
    toInt64(intDiv(number, 4)) AS source_offset,
    '72f988bf-86f1-41af-91ab-2d7cd011db47' AS tenant_id,
    '4f1a2b3c-0000-4000-8000-00000000c0de' AS subscription_id,
    concat('rg', toString(res_n %% 8)) AS resource_group,
    prov AS provider,
    rtype AS resource_type,
    rname AS resource_name,
    rid2 AS resource_id,
    if(fate = 999 AND svc = 'aks', 'system:anonymous', actor) AS actor_name,
    if(atype = 'user', lower(hex(MD5(actor))), '') AS actor_object_id,
    if(fate = 999 AND svc = 'aks', 'anonymous', atype) AS actor_type,
    if(atype = 'service_principal', actor, '') AS actor_app_id,
    if(svc = 'aks', ['system:authenticated'], []) AS actor_groups,
    if(fate = 998 AND svc = 'aks', concat('user', toString((user_n + 1) %% 2000), '@contoso.com'), '') AS impersonated_by,
    ip AS source_ip,
    multiIf(svc = 'aks', if(atype = 'user', 'kubectl/v1.30.3 (linux/amd64) kubernetes/6fc0a69', concat('controller/v1.', toString(user_n %% 5))),
        svc = 'acr', if(fate %% 5 = 0, 'containerd/v1.7.20', 'docker/27.1.1'), if(fate %% 3 = 0, 'Azure-CLI/2.61.0', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)')) AS user_agent,
    act AS action,
    multiIf(k8s_sub IN ('exec','portforward') OR position(act, '/exec/') > 0 OR position(act, 'runCommand') > 0, 'exec',
        k8s_res = 'secrets' OR k8s_sub = 'token' OR position(act, 'Credential') > 0, 'credential_access',
        k8s_res IN ('rolebindings','clusterrolebindings') OR position(act, 'roleAssignments') > 0, 'permission_change',
        position(act, 'diagnosticSettings') > 0, 'config_change',
        verb IN ('delete') OR act IN ('acr:delete','acr:untag') OR position(act, '/delete') > 0, 'delete',
        act = 'acr:login', 'login',
        verb IN ('get','list','watch') OR act = 'acr:pull' OR position(act, '/read') > 0, 'read', 'write') AS action_class,
    if(k8s_res IN ('rolebindings','clusterrolebindings'), 'rbac.authorization.k8s.io', if(k8s_res IN ('deployments','replicasets'), 'apps', '')) AS target_api_group,
    k8s_res AS target_resource,
    k8s_sub AS target_subresource,
    if(svc = 'aks' AND k8s_res NOT IN ('nodes','clusterrolebindings'), concat('ns', toString(ns_n)), '') AS target_namespace,
    if(svc = 'aks' AND verb != 'list', concat(k8s_res, '-', toString(img_n %% 300)), '') AS target_name,
    if(svc = 'acr' AND act != 'acr:login', repo, '') AS target_repository,
    if(svc = 'acr' AND act IN ('acr:push','acr:untag','acr:pull'), concat('v', toString(img_n %% 20)), '') AS target_tag,
    if(svc = 'acr' AND act IN ('acr:push','acr:pull','acr:delete'), digest, '') AS target_digest,
    if(position(act, 'ContainerInstance') > 0, rname, '') AS target_container_group,
    if(position(act, '/containers/exec') > 0, 'main', '') AS target_container,
    multiIf(runs_image OR (svc = 'acr' AND act IN ('acr:push','acr:pull','acr:delete')), image, '') AS target_image,
    if(code >= 400, 'failure', 'success') AS outcome,
    toInt32(code) AS status_code,
    if(code >= 400, 'Forbidden', '') AS reason,
    lower(hex(MD5(concat('c', toString(number))))) AS correlation_id,
    '' AS request_id,
    tag_list AS tags,
    multiIf(svc = 'aks', map('k8s.request_uri', concat('/api/v1/namespaces/ns', toString(ns_n), '/', k8s_res_sub), 'k8s.stage', 'ResponseComplete',
            'k8s.level', 'Metadata', 'k8s.authorization.decision', if(code = 403, 'forbid', 'allow'), 'id_source', 'k8s_audit_id'),
        svc = 'acr', map('acr.login_server', concat('acr', toString(res_n %% 4), '.azurecr.io'), 'acr.media_type', 'application/vnd.oci.image.manifest.v1+json'),
        map('authorization.action', substring(act, 5), 'authorization.scope', rid, 'actor.display_name', actor)) AS attributes,
    concat('{"bench":', toString(number), ',"action":"', act, '","pad":"', repeat('x', 120), '"}') AS raw,
    'json' AS raw_format,
    SHA256(toString(number - 1)) AS prev_hash,
    SHA256(toString(number)) AS hash
FROM numbers(%[1]d, %[2]d)`, offset, count, total, start, spanMS)
}

// benchDuplicatesSQL copies one generated event in ten into Log Analytics
// chains, as a second diagnostic setting would deliver it.
const benchDuplicatesSQL = `INSERT INTO custody.events
SELECT * REPLACE (
    concat('loganalytics/bench-workspace/', multiIf(service = 'aks', 'AKSAudit', service = 'acr', 'ContainerRegistryRepositoryEvents', 'AzureActivity')) AS chain,
    rowNumberInAllBlocks() + 1 AS seq,
    'loganalytics' AS source_kind,
    'la-row' AS source_format,
    received_time + toIntervalMinute(3) AS received_time,
    if(cityHash64(event_id) % 10000 = 0, status_code + 1, status_code) AS status_code)
FROM custody.events
WHERE cityHash64(event_id) % 10 = 0`

// benchDuplicateShare: one generated event in this many is stored twice.
const benchDuplicateShare = 10

// benchStore opens (and on first use fills) the benchmark store.
// CUSTODY_BENCH_EVENTS sets the size (default 1,000,000);
// CUSTODY_BENCH_DIR keeps the store between runs.
func benchStore(b *testing.B) (engine.Engine, uint64) {
	b.Helper()
	total := uint64(1_000_000)
	if s := os.Getenv("CUSTODY_BENCH_EVENTS"); s != "" {
		n, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil || n == 0 {
			b.Fatalf("CUSTODY_BENCH_EVENTS=%q: want a positive count", s)
		}
		total = n
	}
	dir := os.Getenv("CUSTODY_BENCH_DIR")
	if dir != "" {
		dir = filepath.Join(dir, strconv.FormatUint(total, 10))
	}
	eng := chdbtest.Open(b, dir)
	ctx := context.Background()
	querytest.CreateSchema(ctx, b, eng)
	have := countEvents(ctx, b, eng)
	if have == total {
		return eng, total
	}
	if have != 0 {
		b.Fatalf("store %s holds %d events, want 0 or %d", dir, have, total)
	}
	start := time.Now()
	const chunk = 1_000_000
	for off := uint64(0); off < total; off += chunk {
		n := min(chunk, total-off)
		if err := eng.Exec(ctx, benchInsertSQL(off, n, total), nil); err != nil {
			b.Fatalf("generate events: %v", err)
		}
	}
	// One event in ten reaches the store a second time, through Log
	// Analytics, and one in a thousand of those copies disagrees with the
	// first (a different status code): delivery-conflicts has something to
	// find, and every other query collapses the copies.
	if err := eng.Exec(ctx, benchDuplicatesSQL, nil); err != nil {
		b.Fatalf("generate second deliveries: %v", err)
	}
	// Merge the generated parts, so that every run measures the same
	// store rather than whatever the background merges have reached.
	if err := eng.Exec(ctx, "OPTIMIZE TABLE custody.events FINAL", nil); err != nil {
		b.Fatalf("merge generated parts: %v", err)
	}
	b.Logf("generated %d events in %s", total, time.Since(start).Round(time.Millisecond))
	return eng, total
}

func countEvents(ctx context.Context, b *testing.B, eng engine.Engine) uint64 {
	rows, err := eng.Query(ctx, "SELECT countIf(startsWith(chain, 'eventhubs/')) FROM custody.events", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// estimateRows is the engine's estimate of the rows the query reads after
// partition, primary key and skip index pruning (EXPLAIN ESTIMATE; the
// embedded engine keeps no query log).
func estimateRows(ctx context.Context, b *testing.B, eng engine.Engine, q *Query, params engine.Params) uint64 {
	params, err := Runner{Engine: eng}.withDB(params)
	if err != nil {
		b.Fatal(err)
	}
	rows, err := eng.Query(ctx, "SELECT sum(rows) FROM viewExplain('EXPLAIN ESTIMATE', '', (\n"+q.SQL+"\n))", params)
	if err != nil {
		b.Fatalf("estimate %s: %v", q.Name, err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkCatalogue runs every canned query with its default window on a
// generated store and prints a Markdown table of rows estimated, rows
// returned, first-run time, p50 and p95:
//
//	CUSTODY_BENCH_EVENTS=10000000 go test ./queries -run '^$' -bench Catalogue -benchtime 10x -timeout 60m
func BenchmarkCatalogue(b *testing.B) {
	cat, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	eng, total := benchStore(b)
	ctx := context.Background()
	type stat struct {
		name           string
		estimate, rows uint64
		first          time.Duration
		times          []time.Duration
	}
	var stats []*stat
	for _, q := range cat.List() {
		args := benchArgs()[q.Name]
		from, to := q.DefaultWindow(benchEnd())
		params, err := q.Bind(args, from, to)
		if err != nil {
			b.Fatal(err)
		}
		st := &stat{name: q.Name, estimate: estimateRows(ctx, b, eng, q, params)}
		stats = append(stats, st)
		b.Run(q.Name, func(b *testing.B) {
			for b.Loop() {
				start := time.Now()
				rows, err := Runner{Engine: eng}.RunBound(ctx, q, params)
				if err != nil {
					b.Fatal(err)
				}
				res, err := Collect(rows)
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				if st.first == 0 {
					st.first = d
				}
				st.times = append(st.times, d)
				st.rows = uint64(len(res.Rows))
			}
		})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d events over %s, one in %d delivered twice; each query with its default window ending at the newest event.\n\n", total, benchSpan, benchDuplicateShare)
	out.WriteString("| query | rows read (estimate) | rows returned | first run | p50 | p95 |\n|---|---:|---:|---:|---:|---:|\n")
	for _, st := range stats {
		slices.Sort(st.times)
		fmt.Fprintf(&out, "| %s | %d | %d | %s | %s | %s |\n", st.name, st.estimate, st.rows,
			ms(st.first), ms(percentile(st.times, 50)), ms(percentile(st.times, 95)))
	}
	fmt.Print(out.String())
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}
