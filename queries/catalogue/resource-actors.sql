-- title: Who touched one resource
-- question: Which principals acted on this resource, when first and last, from where and doing what?
-- why: >-
--   Scoping an incident starts from the asset: every identity that touched
--   a compromised cluster, registry or container group is either a suspect
--   or a witness, and an identity seen only during the incident window
--   stands out.
-- mitre:
--   - T1078 Valid Accounts
-- window: 7d
-- params:
--   - name: resource
--     type: String
--     kind: resource
--     required: true
--     help: Azure resource id (/subscriptions/...; any case) or resource name
SELECT
    actor_name AS actor,
    actor_type,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
    uniqExact(event_id) AS events,
    uniqExactIf(event_id, outcome = 'failure') AS failures,
    arrayStringConcat(arraySort(groupUniqArray(service)), ',') AS services,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(action)), 1, 10), ' ') AS actions,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(source_ip)), 1, 5), ' ') AS source_ips,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (resource_id = {resource:String} OR startsWith(resource_id, {resource:String} || '/') OR resource_name = {resource:String})
GROUP BY actor_name, actor_type
ORDER BY first_seen, actor, actor_type
