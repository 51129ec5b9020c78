-- title: Timeline of one principal
-- question: What did this principal do across ACI, ACR, AKS and the Activity Log, in order?
-- why: >-
--   The first question after a suspected account compromise is everything
--   the identity did, whatever service recorded it; the Entra object id ties
--   the Kubernetes username, the ACR identity and the ARM caller together,
--   and impersonated requests are included under the real principal.
-- mitre:
--   - T1078 Valid Accounts
-- window: 7d
-- params:
--   - name: actor
--     type: String
--     required: true
--     help: user name, UPN, Kubernetes username or Entra object id
--   - name: limit
--     type: UInt32
--     default: 10000
--     min: 1
--     max: 100000000
--     help: at most this many events, oldest first
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
    user_agent,
    impersonated_by,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (actor_name = {actor:String} OR actor_object_id = {actor:String} OR impersonated_by = {actor:String})
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
LIMIT {limit:UInt32}
