-- title: ACR push, delete and untag
-- question: Who pushed, deleted or untagged images in a registry (optionally one identity)?
-- why: >-
--   A pushed image under a trusted tag is a backdoor every cluster pulling
--   that tag will run, and deleting or untagging destroys evidence or
--   breaks deployments.
-- mitre:
--   - T1525 Implant Internal Image
--   - T1485 Data Destruction
-- window: 7d
-- params:
--   - name: actor
--     type: String
--     default: ""
--     help: only this identity (name or object id); empty for everyone
SELECT
    event_time,
    actor_name AS actor,
    action,
    resource_name AS registry,
    target_repository AS repository,
    target_tag AS tag,
    target_digest AS digest,
    outcome,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'acr'
  AND action IN ('acr:push', 'acr:delete', 'acr:untag')
  AND ({actor:String} = '' OR actor_name = {actor:String} OR actor_object_id = {actor:String})
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
