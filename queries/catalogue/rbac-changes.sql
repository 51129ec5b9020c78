-- title: RBAC changes
-- question: Who created, changed or deleted roles, role bindings or Azure role assignments, and were any of them cluster-admin bindings?
-- why: >-
--   Granting oneself cluster-admin or a new role is how an intruder turns a
--   foothold into persistence; every permission change is worth a look and
--   a cluster-admin binding almost always is.
-- mitre:
--   - "T1098.006 Account Manipulation: Additional Container Cluster Roles"
--   - "T1098.003 Account Manipulation: Additional Cloud Roles"
-- window: 7d
SELECT
    event_time,
    service,
    actor_name AS actor,
    action,
    resource_name AS resource,
    if(target_resource != '', concat(if(target_namespace != '', target_namespace || '/', ''), target_resource, ' ', target_name), resource_type) AS target,
    has(tags, 'cluster_admin_binding') AS cluster_admin,
    outcome,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND action_class = 'permission_change'
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
