-- title: Mass deletions
-- question: Which principals deleted many objects, images or resources within a few minutes?
-- why: >-
--   Destroying workloads, images or whole resources in bulk is sabotage or
--   ransom, or covering tracks; a burst of deletes by one identity is rare
--   in normal operations. Deletes are counted in fixed buckets of
--   bucket_minutes.
-- mitre:
--   - T1485 Data Destruction
--   - T1070 Indicator Removal
-- window: 24h
-- params:
--   - name: bucket_minutes
--     type: UInt32
--     default: 10
--     min: 1
--     max: 1440
--     help: length of a bucket in minutes
--   - name: min_deletes
--     type: UInt32
--     default: 20
--     min: 1
--     help: deletions within one bucket that make a burst
SELECT
    toStartOfInterval(event_time, toIntervalMinute({bucket_minutes:UInt32})) AS bucket,
    actor_name AS actor,
    uniqExact(event_id) AS deletes,
    uniqExactIf(event_id, outcome = 'success') AS succeeded,
    min(event_time) AS first,
    max(event_time) AS last,
    arrayStringConcat(arraySort(groupUniqArray(service)), ',') AS services,
    arrayStringConcat(arraySort(groupUniqArray(resource_name)), ' ') AS resources,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(action)), 1, 10), ' ') AS actions,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND action_class = 'delete'
GROUP BY bucket, actor
HAVING deletes >= {min_deletes:UInt32}
ORDER BY bucket, deletes DESC, actor
