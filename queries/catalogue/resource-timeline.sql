-- title: Timeline of one resource
-- question: What happened to this resource (and everything below it), in order?
-- why: >-
--   When a cluster, registry or container group is suspected, the
--   responder needs every change and access to it and its sub-resources
--   (Kubernetes objects, repositories, containers, diagnostic settings)
--   from every source, with who did it.
-- mitre: []
-- window: 7d
-- params:
--   - name: resource
--     type: String
--     kind: resource
--     required: true
--     help: Azure resource id (/subscriptions/...; any case) or resource name
--   - name: limit
--     type: UInt32
--     default: 10000
--     min: 1
--     max: 100000000
--     help: at most this many events, oldest first
WITH firsts AS (
    -- The first {limit} events, found on the columns that order them (the
    -- sort key's day first, so the engine reads the first days only).
    SELECT event_id, event_time
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND (resource_id = {resource:String} OR startsWith(resource_id, {resource:String} || '/') OR resource_name = {resource:String})
    ORDER BY toStartOfDay(event_time), event_time, event_id
    LIMIT 1 BY event_id
    LIMIT {limit:UInt32}
)
SELECT
    event_time,
    service,
    actor_name AS actor,
    action,
    resource_name AS resource,
    multiIf(
        target_resource != '', concat(if(target_namespace != '', target_namespace || '/', ''), target_resource,
            if(target_subresource != '', '/' || target_subresource, ''), if(target_name != '', ' ' || target_name, '')),
        target_repository != '', concat(target_repository, if(target_tag != '', ':' || target_tag, ''),
            if(target_digest != '', '@' || target_digest, '')),
        target_container_group != '', concat(target_container_group, if(target_container != '', '/' || target_container, '')),
        target_image) AS target,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (resource_id = {resource:String} OR startsWith(resource_id, {resource:String} || '/') OR resource_name = {resource:String})
  -- Only the first events' copies are collapsed: the copies at their
  -- times (a copy carries its event's time, whichever path delivered
  -- it), read up to the last of them rather than over the whole window.
  AND event_time <= (SELECT max(event_time) FROM firsts)
  AND event_id IN (SELECT event_id FROM firsts)
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
LIMIT {limit:UInt32}
