#!/usr/bin/env bash
# The main job on the embedded store, end to end: keys, schema, ingest the
# sample data, answer forensic questions, verify the trail.
# Run by `make demo`; everything lands in ./custody-demo.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
custody="${repo}/bin/custody"
demo="${CUSTODY_DEMO_DIR:-${repo}/custody-demo}"
mkdir -p "${demo}"
export CUSTODY_STORE="${demo}/store"
export CUSTODY_SIGNING_KEY="${demo}/custody.key"
export CUSTODY_VERIFY_KEY="${demo}/custody.pub"
export CUSTODY_CHECKPOINT_DIR="${demo}/checkpoints"
export CUSTODY_LOG_LEVEL=warn

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Signing key for checkpoints"
if [[ -f "${CUSTODY_SIGNING_KEY}" ]]; then echo "using ${CUSTODY_SIGNING_KEY}"; else "${custody}" keygen --name custody-demo; fi

step "Create the embedded store (chDB) in ${CUSTODY_STORE}"
"${custody}" init

step "Ingest the sample Event Hubs bodies (AKS audit, Activity Log, ACR)"
"${custody}" append --format eventhubs --stream demo/eventhubs/0 "${repo}/deploy/local/demo/eventhubs-bodies.jsonl"

step "Chains, heads and checkpoints"
"${custody}" status

step "Forensic question: who exec'd or attached into pods?"
"${custody}" query aks-exec --from 2000-01-01 --to 2100-01-01

step "Forensic question: who listed AKS admin credentials or ran commands?"
"${custody}" query aks-admin-credentials --from 2000-01-01 --to 2100-01-01

step "Forensic question: was diagnostic logging switched off or changed?"
"${custody}" query logging-changes --from 2000-01-01 --to 2100-01-01

step "Verify the trail (hashes, chain links, Merkle roots, signatures)"
"${custody}" verify
