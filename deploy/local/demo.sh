#!/usr/bin/env bash
# The incident scenario, end to end, on the embedded store: a developer
# account is phished and used to take over a payments platform on AKS,
# ACR and ACI. Custody ingests the day's logs in the formats Azure
# delivers them, the canned forensic queries reveal each step of the
# attack, the trail is verified, and the day's evidence is exported and
# checked offline (skipped when the build has no `custody export`), once
# intact and once tampered with. The story and the expected answers are in
# docs/incident.md; the dataset is deploy/local/incident.
#
# Run by `make demo` (which installs libchdb and builds bin/ first);
# everything lands in ./custody-demo (CUSTODY_DEMO_DIR overrides it).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
custody="${repo}/bin/custody"
incident="${repo}/deploy/local/incident"
demo="${CUSTODY_DEMO_DIR:-${repo}/custody-demo}"

export CUSTODY_STORE="${demo}/store"
export CUSTODY_SIGNING_KEY="${demo}/custody.key"
export CUSTODY_VERIFY_KEY="${demo}/custody.pub"
export CUSTODY_CHECKPOINT_DIR="${demo}/checkpoints"
export CUSTODY_LOG_LEVEL=warn

# The scenario's day and the people in it.
day_from=2025-06-12T00:00:00Z
day_to=2025-06-13T00:00:00Z
phished=dana.dev@contoso.com
backdoor=sha256:208c617e65c7dd2d62f72172b3eca6b10e6a4ff8df7da14cb7d8b6c39b430dc9
approved=contosopayments.azurecr.io,contosodev.azurecr.io,mcr.microsoft.com
# secret-access leaves out the cluster's own components by name prefix;
# cert-manager reading its TLS secret every hour is known-good here too.
system_prefixes="system:serviceaccount:kube-system:,system:node:,system:kube-,system:apiserver,system:serviceaccount:cert-manager:"

if [[ -t 1 ]]; then
	bold=$'\033[1m' dim=$'\033[2m' red=$'\033[31m' reset=$'\033[0m'
	table=(--format table)
else
	bold='' dim='' red='' reset=''
	table=(--format table --width "${CUSTODY_DEMO_WIDTH:-240}")
fi

chapter() { printf '\n%s━━ %s%s\n' "${bold}" "$*" "${reset}"; }
step() { printf '\n%s== %s%s\n' "${bold}" "$*" "${reset}"; }
note() { printf '%s%s%s\n' "${dim}" "$*" "${reset}"; }
finding() { printf '%s▶ %s%s\n' "${red}" "$*" "${reset}"; }
ask() {
	local name=$1
	shift
	printf '%s$ custody query %s %s%s\n' "${dim}" "${name}" "$*" "${reset}"
	"${custody}" query "${name}" --from "${day_from}" --to "${day_to}" "${table[@]}" "$@"
}

for f in "${custody}" "${incident}/loganalytics/sandbox-azureactivity.json"; do
	if [[ ! -e "${f}" ]]; then
		echo "demo: ${f} is missing; run it with \`make demo\`" >&2
		exit 1
	fi
done

# Start from an empty store each time so the story reads the same; the
# signing key is kept.
rm -rf "${CUSTODY_STORE}" "${CUSTODY_CHECKPOINT_DIR}" "${demo}/evidence" "${demo}/evidence-tampered"
mkdir -p "${demo}"

chapter "Thursday 12 June 2025, 15:21 UTC: Defender for Containers flags a crypto miner"
cat <<'EOF'
The miner runs in container group cg-build-cache in the sandbox subscription,
created by dana.dev@contoso.com, a developer on the payments team. Dana says
she never did that. She clicked a "shared document" link at lunch. What else
did her account do, and what do we have to clean up?

The platform's admin-access logs for the day, as Azure delivered them:
  - AKS kube-audit, archived by the cluster's diagnostic setting to a storage
    account: one PT1H.json per hour (insights-logs-kube-audit/resourceId=...)
  - the prod subscription's Activity Log and the registry's repository and
    login events, read from Event Hubs: {"records":[...]} bodies
  - the sandbox subscription's Activity Log, in a Log Analytics workspace:
    an AzureActivity query API response
EOF

step "Signing key for checkpoints"
if [[ -f "${CUSTODY_SIGNING_KEY}" ]]; then
	echo "using ${CUSTODY_SIGNING_KEY}"
else
	"${custody}" keygen --name custody-demo
fi

step "Create the embedded store (chDB) in ${CUSTODY_STORE}"
"${custody}" init

step "Backfill the AKS audit archive (storage account, PT1H.json per hour)"
note "Reads and normalizes kube-audit; the cluster's own reads are dropped by the noise policy and counted."
"${custody}" backfill "${incident}/archive"

step "Load the Event Hubs bodies (Activity Log, ACR repository and login events)"
"${custody}" backfill --format eventhubs "${incident}/eventhubs"

step "Load the Log Analytics response (sandbox subscription, AzureActivity)"
"${custody}" append --format loganalytics --stream loganalytics/sandbox/AzureActivity \
	"${incident}/loganalytics/sandbox-azureactivity.json"

step "What the trail now holds"
"${custody}" sql "SELECT multiIf(chain LIKE '%insights-logs-kube-audit%', 'storage archive', chain LIKE '%/eventhubs/%', 'Event Hubs', chain LIKE 'loganalytics/%', 'Log Analytics', chain) AS delivered_via,
       service, category, count() AS events, uniqExact(chain) AS chains,
       min(event_time) AS first, max(event_time) AS last
FROM custody.events GROUP BY ALL ORDER BY delivered_via, service, category"

chapter "Everything the account did"
ask principal-timeline --param actor="${phished}"
finding "From 198.51.100.10 (the office) until 12:38, then from 203.0.113.77 with another kubectl and docker:"
finding "admin credential, exec, secrets, a registry push, a container group, a deleted diagnostic setting."

chapter "Step by step"
step "1. Who fetched the cluster admin kubeconfig?"
ask aks-admin-credentials
finding "dana's account, from 203.0.113.77 at 14:02: a client certificate that bypasses Entra ID (user \"masterclient\")."

step "2. Who opened a shell in a pod?"
ask aks-exec
finding "priya's 11:05 exec is the on-call's; dana's 14:06 exec read the payments API's env and service-account token."

step "3. Who read secrets (people and pipelines, not the cluster's components)?"
ask secret-access --param system_prefixes="${system_prefixes}"
finding "The payments DB credentials and the Stripe key; kube-system refused (403) until 14:12, then every secret in the cluster."

step "4. Who changed RBAC?"
ask rbac-changes
finding "At 14:11 \"masterclient\" (the admin certificate, same address) bound cluster-admin to dana's account: persistence."

step "5. Who pushed to the registry?"
ask acr-changes
finding "dana's account overwrote payments/api:v2.4.0, the tag production runs, with a new digest."
ask image-blast-radius --param digest="${backdoor}"
finding "A node of payments-aks pulled the backdoored digest at 14:37: it runs in production."

step "6. Which images came from outside our registries?"
ask unapproved-images --param allowed_registries="${approved}"
ask aci-lifecycle
finding "cg-build-cache runs docker.io/evil/miner:5.2 in the sandbox subscription, created from 203.0.113.77."

step "7. Who touched audit logging?"
ask logging-changes
finding "At 14:44 the AKS audit export was deleted: the archive has no kube-audit record from 14:44 until priya restored it at 15:40."

chapter "The evidence"
step "Verify the trail (hashes, chain links, Merkle roots, checkpoint signatures)"
"${custody}" verify

if "${custody}" export --help >/dev/null 2>&1 && "${custody}" verify-export --help >/dev/null 2>&1; then
	step "Export the day's evidence for the auditors, signed with the store's key"
	"${custody}" export --from "${day_from}" --to "${day_to}" --format jsonl --out "${demo}/evidence"

	step "Verify the export offline, with only the public key"
	"${custody}" verify-export "${demo}/evidence" --pubkey "${CUSTODY_VERIFY_KEY}"

	step "Someone edits the copy to hide the attacker's address: the check says where"
	rm -rf "${demo}/evidence-tampered"
	cp -r "${demo}/evidence" "${demo}/evidence-tampered"
	sed -i '0,/203\.0\.113\.77/s//198.51.100.10/' "${demo}/evidence-tampered/events.jsonl"
	note "\$ sed -i '0,/203\.0\.113\.77/s//198.51.100.10/' evidence-tampered/events.jsonl"
	if "${custody}" verify-export "${demo}/evidence-tampered" --pubkey "${CUSTODY_VERIFY_KEY}"; then
		echo "demo: the tampered bundle verified; that is a bug" >&2
		exit 1
	fi

	step "Exports and verifications are in the custody log"
	"${custody}" sql "SELECT at, actor, action, result, detail FROM custody.custody_log WHERE action IN ('export', 'verify') ORDER BY at"
else
	note "(this build has no \`custody export\`: skipping the auditor export)"
fi

cat <<EOF

${bold}Containment checklist${reset} (docs/incident.md explains each):
  - revoke dana's sessions and reset her credentials; block 203.0.113.77
  - rotate the cluster certificates (az aks rotate-certs): the admin kubeconfig stays valid until then
  - delete ClusterRoleBinding dana-cluster-admin (done by priya at 15:45)
  - rotate payments-db-credentials, stripe-api-key and the payments-api service-account token
  - retag payments/api:v2.4.0 to the CI digest sha256:1b43b171… and redeploy; delete the backdoored digest
  - delete cg-build-cache (done by priya at 15:50); keep the diagnostic setting (restored at 15:40)

Store: ${CUSTODY_STORE}   verification key: ${CUSTODY_VERIFY_KEY}
Try:   CUSTODY_STORE=${CUSTODY_STORE} ${custody} timeline --actor masterclient --from ${day_from} --to ${day_to}
EOF
