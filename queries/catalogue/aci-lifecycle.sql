-- title: ACI container group create, delete and exec
-- question: Who created, changed, started, stopped or deleted container groups, or exec'd into their containers, and with which images?
-- why: >-
--   A container group is the quickest way to run arbitrary code with the
--   subscription's network access and managed identities (crypto miners,
--   C2 relays); exec gives a shell inside one.
-- mitre:
--   - T1610 Deploy Container
--   - T1609 Container Administration Command
-- window: 7d
SELECT
    event_time,
    actor_name AS actor,
    replaceRegexpOne(action, '^arm:Microsoft\\.ContainerInstance/', '') AS operation,
    resource_group,
    target_container_group AS container_group,
    target_container AS container,
    if(target_image != '', target_image, attributes['aci.images']) AS images,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'arm'
  AND provider = 'Microsoft.ContainerInstance'
  AND action_class IN ('write', 'delete', 'exec')
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
