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
    event_id
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'arm'
  AND provider = 'Microsoft.ContainerService'
  AND hasAny(tags, ['admin_credential', 'run_command'])
ORDER BY event_time, event_id
