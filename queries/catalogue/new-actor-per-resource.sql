-- title: New actor on a resource
-- question: Which principals acted on a resource for the first time in the window, compared with a baseline of the days before?
-- why: >-
--   An identity that never touched a cluster, registry or container group
--   before and suddenly does is the classic sign of a stolen account or a
--   new foothold.
--   A value counts as new when it was not seen on the same resource during
--   baseline_days before the window (compared by a 64-bit hash of the
--   resource id and the value).
-- mitre:
--   - T1078 Valid Accounts
-- window: 24h
-- params:
--   - name: baseline_days
--     type: UInt32
--     default: 7
--     min: 1
--     max: 3650
--     help: days before the window that count as known (the baseline is read whole; about 100 ms per million events)
SELECT
    first_seen,
    resource,
    value AS actor,
    events,
    first_action,
    first_source_ip,
    arrayStringConcat(arraySort(via), ',') AS delivered_via,
    resource_id
FROM
(
    SELECT
        resource_id,
        actor_name AS value,
        any(resource_name) AS resource,
        min(event_time) AS first_seen,
        uniqExact(event_id) AS events,
        argMin(action, event_time) AS first_action,
        argMin(source_ip, event_time) AS first_source_ip,
        groupUniqArray(delivery) AS via
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND resource_id != '' AND actor_name != ''
    GROUP BY resource_id, value
)
WHERE cityHash64(resource_id, value) NOT IN
(
    SELECT cityHash64(resource_id, actor_name)
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} - toIntervalDay({baseline_days:UInt32}) AND event_time < {from:DateTime64(6)}
      AND resource_id != '' AND actor_name != ''
)
ORDER BY first_seen, resource_id, value
