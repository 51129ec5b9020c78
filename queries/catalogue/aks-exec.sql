-- title: Exec, attach and port-forward into pods
-- question: Who opened an interactive session, attached to or port-forwarded into a pod, and what did they run?
-- why: >-
--   kubectl exec/attach/port-forward give a shell or a network path inside a
--   workload, next to its secrets and service-account token; outside of
--   break-glass they are rare, and the audit log keeps the command line.
-- mitre:
--   - T1609 Container Administration Command
-- window: 7d
SELECT
    event_time,
    actor_name AS actor,
    resource_name AS cluster,
    target_namespace AS namespace,
    target_name AS pod,
    target_subresource AS kind,
    target_container AS container,
    attributes['k8s.exec.command'] AS command,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'aks'
  AND target_resource = 'pods'
  AND target_subresource IN ('exec', 'attach', 'portforward', 'ephemeralcontainers')
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
