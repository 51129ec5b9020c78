-- title: Impersonation
-- question: Who acted as another user, group or service account through Kubernetes impersonation?
-- why: >-
--   Impersonation makes a request look like someone else's; the audit log
--   keeps the real principal, and the pair is what matters when an
--   intruder hides behind a workload identity.
-- mitre:
--   - T1134 Access Token Manipulation
-- window: 7d
SELECT
    event_time,
    impersonated_by AS real_actor,
    actor_name AS acted_as,
    action,
    resource_name AS cluster,
    concat(if(target_namespace != '', target_namespace || '/', ''), target_resource, if(target_name != '', ' ' || target_name, '')) AS target,
    outcome,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (has(tags, 'impersonation') OR impersonated_by != '')
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
