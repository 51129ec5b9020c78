-- title: AKS admin credential listing and runCommand
-- question: Who fetched a cluster's admin kubeconfig or ran commands on a cluster through the Azure API?
-- why: >-
--   listClusterAdminCredential returns a certificate that bypasses Entra ID
--   and Kubernetes RBAC audit by user, and runCommand runs kubectl inside the
--   cluster on the caller's behalf; both give full control from the Azure
--   control plane.
-- mitre:
--   - T1552 Unsecured Credentials
--   - T1609 Container Administration Command
-- window: 30d
SELECT
    event_time,
    actor_name AS actor,
    if(has(tags, 'run_command'), 'runCommand', 'admin credential') AS kind,
    action,
    resource_name AS cluster,
    resource_group,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'arm'
  AND provider = 'Microsoft.ContainerService'
  AND hasAny(tags, ['admin_credential', 'run_command'])
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
