package grafana_test

import (
	"slices"
	"strconv"
	"testing"
)

// The people and addresses of docs/incident.md.
const (
	dana       = "dana.dev@contoso.com"
	priya      = "priya.sre@contoso.com"
	attackerIP = "203.0.113.77"
	corpIP     = "198.51.100.10"
	day        = "2025-06-12 "
)

// panelChecks holds each panel and variable query to the incident story
// (docs/incident.md), by dashboard uid and panel title or $variable. The
// store holds every incident event twice (secondDelivery): the panels
// that count or list events must answer as for one delivery, and those
// that list events say both paths (checkDelivered).
func panelChecks() map[string]func(*testing.T, result) {
	return map[string]func(*testing.T, result){
		"custody-overview/Events by service": func(t *testing.T, r result) {
			// Totals per service: 145 kube-audit, 14 ACR, 7 Activity Log + 6
			// AzureActivity (both ARM).
			totals := map[string]int{}
			perHour := map[string]string{}
			for _, row := range r.project(t, "time", "service", "events") {
				n, _ := strconv.Atoi(row[2])
				totals[row[1]] += n
				perHour[row[0]+" "+row[1]] = row[2]
			}
			if totals["aks"] != 145 || totals["acr"] != 14 || totals["arm"] != 13 || len(totals) != 3 {
				t.Errorf("totals by service %v, want aks 145, acr 14, arm 13", totals)
			}
			// The deleted diagnostic setting shows as a dip: 13 kube-audit
			// events in the attack's hour, 2 in the next (from 15:40:30).
			if perHour[day+"14:00:00 aks"] != "13" || perHour[day+"15:00:00 aks"] != "2" {
				t.Errorf("aks at 14:00 %q and 15:00 %q, want 13 and 2", perHour[day+"14:00:00 aks"], perHour[day+"15:00:00 aks"])
			}
		},
		"custody-overview/Events by service and class": func(t *testing.T, r result) {
			equalRows(t, "service, class, events", r.project(t, "service", "action_class", "events"), [][]string{
				{"acr", "login", "5"}, {"acr", "read", "5"}, {"acr", "write", "4"},
				{"aks", "credential_access", "31"}, {"aks", "exec", "2"}, {"aks", "permission_change", "3"}, {"aks", "read", "11"}, {"aks", "write", "98"},
				{"arm", "config_change", "2"}, {"arm", "credential_access", "4"}, {"arm", "delete", "2"}, {"arm", "write", "5"},
			})
		},
		"custody-overview/Denials": func(t *testing.T, r result) {
			// dana's edit role ends at her namespace.
			equalRows(t, "denials", r.project(t, "event_time", "actor", "action", "namespace", "status_code", "source_ip"), [][]string{
				{day + "14:09:15.777310", dana, "k8s:secrets:list", "kube-system", "403", attackerIP},
			})
		},
		"custody-overview/Top actors": func(t *testing.T, r result) {
			if len(r.rows) != 10 {
				t.Errorf("%d actors, want the top 10", len(r.rows))
			}
			// AKS's lease renewals and cert-manager's hourly read lead; dana
			// is next, from two addresses.
			equalRows(t, "top three", r.project(t, "actor", "events", "changes", "addresses")[:3], [][]string{
				{"aksService", "92", "92", "1"},
				{"system:serviceaccount:cert-manager:cert-manager", "23", "23", "1"},
				{dana, "19", "13", "2"},
			})
		},
		"custody-overview/Logging changes": func(t *testing.T, r result) {
			equalRows(t, "logging changes", r.project(t, "event_time", "actor", "action", "setting", "source_ip"), [][]string{
				{day + "14:44:10.412000", dana, "arm:Microsoft.Insights/diagnosticSettings/delete", "aks-audit-archive", attackerIP},
				{day + "15:40:25.000000", priya, "arm:Microsoft.Insights/diagnosticSettings/write", "aks-audit-archive", corpIP},
			})
		},
		"custody-overview/Last event per source": func(t *testing.T, r result) {
			got := map[string][]string{}
			for _, row := range r.project(t, "service", "resource", "events", "last_event", "silent_minutes") {
				got[row[0]+"/"+row[1]] = row[2:]
			}
			// The cluster's audit log runs to the end of the day; the
			// registry's last event is CI's 17:02 push (dateDiff counts
			// minute boundaries up to the range's end).
			if !slices.Equal(got["aks/payments-aks"], []string{"145", day + "23:47:34.533064", "13"}) {
				t.Errorf("aks/payments-aks: %v", got["aks/payments-aks"])
			}
			if !slices.Equal(got["acr/contosopayments"], []string{"14", day + "17:02:48.964000", "418"}) {
				t.Errorf("acr/contosopayments: %v", got["acr/contosopayments"])
			}
		},
		"custody-investigation/$actor": func(t *testing.T, r result) {
			actors := r.col(t, "actor_name")
			for _, a := range []string{dana, "masterclient", priya} {
				if !slices.Contains(actors, a) {
					t.Errorf("actor variable lacks %s: %v", a, actors)
				}
			}
		},
		"custody-investigation/$resource": func(t *testing.T, r result) {
			if res := r.col(t, "resource_name"); !slices.Contains(res, "cg-build-cache") || !slices.Contains(res, "payments-aks") {
				t.Errorf("resource variable: %v", res)
			}
		},
		"custody-investigation/$source_ip": func(t *testing.T, r result) {
			if ips := r.col(t, "source_ip"); !slices.Contains(ips, attackerIP) || !slices.Contains(ips, corpIP) {
				t.Errorf("source_ip variable: %v", ips)
			}
		},
		"custody-investigation/Principal timeline": func(t *testing.T, r result) {
			// docs/incident.md, "Everything the account did": 19 rows.
			equalRows(t, "dana's timeline", r.project(t, "event_time", "service", "action", "outcome", "status_code", "source_ip"), [][]string{
				{day + "08:41:09.663071", "arm", "arm:Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", "success", "200", corpIP},
				{day + "08:42:02.310000", "aks", "k8s:pods:list", "success", "200", corpIP},
				{day + "08:42:15.884000", "aks", "k8s:pods/log:get", "success", "200", corpIP},
				{day + "08:47:33.051000", "aks", "k8s:deployments:list", "success", "200", corpIP},
				{day + "11:52:47.730000", "aks", "k8s:deployments:get", "success", "200", corpIP},
				{day + "12:38:19.660000", "aks", "k8s:pods:list", "success", "200", corpIP},
				{day + "14:02:37.447193", "arm", "arm:Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action", "success", "200", attackerIP},
				{day + "14:05:12.640112", "aks", "k8s:pods:list", "success", "200", attackerIP},
				{day + "14:06:03.104512", "aks", "k8s:pods/exec:create", "success", "101", attackerIP},
				{day + "14:08:30.551020", "aks", "k8s:secrets:list", "success", "200", attackerIP},
				{day + "14:08:41.009871", "aks", "k8s:secrets:get", "success", "200", attackerIP},
				{day + "14:08:47.312200", "aks", "k8s:secrets:get", "success", "200", attackerIP},
				{day + "14:09:15.777310", "aks", "k8s:secrets:list", "failure", "403", attackerIP},
				{day + "14:12:02.918004", "aks", "k8s:secrets:list", "success", "200", attackerIP},
				{day + "14:19:40.205100", "acr", "acr:login", "success", "200", attackerIP},
				{day + "14:20:05.881200", "acr", "acr:push", "success", "201", attackerIP},
				{day + "14:31:05.118000", "arm", "arm:Microsoft.ContainerInstance/containerGroups/write", "unknown", "0", attackerIP},
				{day + "14:31:19.602000", "arm", "arm:Microsoft.ContainerInstance/containerGroups/write", "success", "201", attackerIP},
				{day + "14:44:10.412000", "arm", "arm:Microsoft.Insights/diagnosticSettings/delete", "success", "200", attackerIP},
			})
		},
		"custody-investigation/Addresses of the principal": func(t *testing.T, r result) {
			equalRows(t, "dana's addresses", r.project(t, "source_ip", "events", "first_seen", "last_seen"), [][]string{
				{corpIP, "6", day + "08:41:09.663071", day + "12:38:19.660000"},
				{attackerIP, "13", day + "14:02:37.447193", day + "14:44:10.412000"},
			})
		},
		"custody-investigation/Resource timeline": func(t *testing.T, r result) {
			// The miner's container group: created by the stolen session,
			// deleted by the on-call SRE.
			equalRows(t, "cg-build-cache", r.project(t, "event_time", "actor", "action", "outcome", "source_ip"), [][]string{
				{day + "14:31:05.118000", dana, "arm:Microsoft.ContainerInstance/containerGroups/write", "unknown", attackerIP},
				{day + "14:31:19.602000", dana, "arm:Microsoft.ContainerInstance/containerGroups/write", "success", attackerIP},
				{day + "15:50:12.335000", priya, "arm:Microsoft.ContainerInstance/containerGroups/delete", "success", corpIP},
			})
		},
		"custody-investigation/Everything from the address": func(t *testing.T, r result) {
			// dana's 13 events from the address plus the ClusterRoleBinding
			// made with the admin certificate, logged as masterclient.
			rows := r.project(t, "event_time", "actor", "action")
			if len(rows) != 14 {
				t.Fatalf("%d events from %s, want 14", len(rows), attackerIP)
			}
			if want := []string{day + "14:11:20.250330", "masterclient", "k8s:clusterrolebindings:create"}; !slices.Equal(rows[7], want) {
				t.Errorf("8th event from the address %q, want %q", rows[7], want)
			}
		},
		"custody-integrity/Chains": func(t *testing.T, r result) {
			// 27 chains (24 hourly archives, two Event Hubs files, one Log
			// Analytics response), 172 events, each delivered a second time
			// (secondDelivery): 54 chains, 344 rows, every one under a
			// signed checkpoint. Chains count rows: each copy is evidence.
			total := 0
			for _, row := range r.project(t, "events", "last_seq", "attested", "unattested") {
				n, _ := strconv.Atoi(row[0])
				total += n
				if row[1] != row[0] || row[2] != row[0] || row[3] != "0" {
					t.Errorf("chain row events/last_seq/attested/unattested %v: want all attested", row)
				}
			}
			if len(r.rows) != 54 || total != 344 {
				t.Errorf("%d chains, %d events; want 54 and 344", len(r.rows), total)
			}
			if i := slices.Index(r.col(t, "chain"), "incident/eventhubs/acr.jsonl"); i < 0 || r.rows[i][1] != "14" {
				t.Errorf("chain incident/eventhubs/acr.jsonl missing or not 14 events")
			}
		},
		"custody-integrity/Oldest newest checkpoint": func(t *testing.T, r result) {
			age := r.col(t, "checkpoint_age_seconds")
			if n, err := strconv.Atoi(age[0]); len(age) != 1 || err != nil || n < 0 || n > 3600 {
				t.Errorf("checkpoint age %v: want the seconds since this test signed them", age)
			}
		},
		"custody-integrity/Last verification": func(t *testing.T, r result) {
			equalRows(t, "last verify", r.project(t, "trigger", "result", "chains", "rows", "errors"), [][]string{
				{"cli", "ok", "54", "344", "0"},
			})
		},
		"custody-integrity/Verifications in range": func(t *testing.T, r result) {
			equalRows(t, "verifications", r.project(t, "trigger", "chain", "result", "rows", "errors"), [][]string{
				{"cli", "", "ok", "344", "0"},
			})
		},
		"custody-integrity/Quarantine by reason": func(t *testing.T, r result) {
			rows := r.project(t, "records", "first")
			if len(rows) != 1 || rows[0][0] != "1" || rows[0][1] != day+"16:00:00.000000" {
				t.Errorf("quarantine: %v, want the one malformed record received at 16:00", r.rows)
			}
		},
	}
}
