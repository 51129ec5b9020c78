-- title: Audit logging switched off or changed
-- question: Who deleted or changed diagnostic settings (the export of audit and activity logs)?
-- why: >-
--   Deleting a diagnostic setting stops the audit trail at the source,
--   and changing one can redirect it to an attacker's workspace or drop
--   categories; intruders do it before the noisy part.
-- mitre:
--   - "T1562.008 Impair Defenses: Disable or Modify Cloud Logs"
-- window: 30d
SELECT
    event_time,
    actor_name AS actor,
    action,
    resource_name AS setting,
    if(position(resource_id, '/providers/microsoft.insights/') > 0,
        substring(resource_id, 1, position(resource_id, '/providers/microsoft.insights/') - 1), resource_id) AS monitored_resource,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND has(tags, 'logging_change')
  AND action_class != 'read'
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
