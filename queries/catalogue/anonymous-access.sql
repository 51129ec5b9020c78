-- title: Anonymous access
-- question: Which requests reached a cluster API or a registry without credentials, and did any succeed?
-- why: >-
--   Anonymous requests are scanners at best; a successful one means an
--   RBAC binding to system:anonymous or system:unauthenticated, or an
--   anonymous-pull registry, exposes something.
-- mitre:
--   - T1190 Exploit Public-Facing Application
-- window: 7d
SELECT
    event_time,
    service,
    actor_name AS actor,
    action,
    resource_name AS resource,
    if(target_resource != '', concat(if(target_namespace != '', target_namespace || '/', ''), target_resource, if(target_name != '', ' ' || target_name, '')), target_repository) AS target,
    outcome,
    status_code,
    source_ip,
    user_agent,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (has(tags, 'anonymous') OR actor_type = 'anonymous')
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
