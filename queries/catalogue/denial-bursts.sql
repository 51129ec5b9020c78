-- title: Bursts of denied requests
-- question: Which principal and address pairs were refused (401/403) many times within a few minutes?
-- why: >-
--   An intruder with a stolen identity probes what it may do, and a
--   password or token spray fails in bulk; both leave bursts of denials
--   that ordinary misconfigurations rarely produce. Bursts are counted in
--   fixed buckets of bucket_minutes.
-- mitre:
--   - T1613 Container and Resource Discovery
--   - T1110 Brute Force
-- window: 24h
-- params:
--   - name: bucket_minutes
--     type: UInt32
--     default: 5
--     min: 1
--     max: 1440
--     help: length of a burst bucket in minutes
--   - name: min_denials
--     type: UInt32
--     default: 5
--     min: 1
--     help: denials within one bucket that make a burst
SELECT
    toStartOfInterval(event_time, toIntervalMinute({bucket_minutes:UInt32})) AS bucket,
    actor_name AS actor,
    source_ip,
    uniqExact(event_id) AS denials,
    min(event_time) AS first,
    max(event_time) AS last,
    arrayStringConcat(arraySort(groupUniqArray(service)), ',') AS services,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(action)), 1, 10), ' ') AS actions,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (has(tags, 'denied') OR status_code IN (401, 403))
GROUP BY bucket, actor, source_ip
HAVING denials >= {min_denials:UInt32}
ORDER BY bucket, denials DESC, actor, source_ip
