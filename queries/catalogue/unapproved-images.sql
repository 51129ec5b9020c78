-- title: Images from registries outside the allow-list
-- question: Which workloads, container groups and pulls used images from a registry not on the allow-list?
-- why: >-
--   Production should run images only from its own registries and a few
--   vetted public ones; an image from a personal Docker Hub account or a
--   fresh ghcr.io namespace is how miners and backdoors arrive. Images
--   without a registry host are Docker Hub (docker.io). Registry events
--   are left out: what a registry logs is by definition from itself.
-- mitre:
--   - T1610 Deploy Container
--   - "T1204.003 User Execution: Malicious Image"
-- window: 7d
-- params:
--   - name: allowed_registries
--     type: Array(String)
--     kind: registry
--     default:
--       - mcr.microsoft.com
--       - "*.azurecr.io"
--     help: registry hosts images may come from (comma-separated; "*.example.com" allows subdomains)
SELECT
    event_time,
    service,
    actor_name AS actor,
    action,
    resource_name AS resource,
    image,
    registry,
    outcome,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM
(
    SELECT
        event_time, service, actor_name, action, resource_name, outcome, event_id, chain, seq, delivery, image,
        splitByChar('/', image)[1] AS first_part,
        lower(if(position(image, '/') > 0 AND (position(first_part, '.') > 0 OR position(first_part, ':') > 0 OR first_part = 'localhost'),
            first_part, 'docker.io')) AS registry
    FROM
    (
        -- One image: in target_image.
        SELECT event_time, service, actor_name, action, resource_name, outcome, event_id, chain, seq, delivery, target_image AS image
        FROM {db:Identifier}.events
        WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
          AND service != 'acr'
          AND target_image != ''
        UNION ALL
        -- Several images: listed in attributes, read only where the key exists.
        SELECT event_time, service, actor_name, action, resource_name, outcome, event_id, chain, seq, delivery,
            arrayJoin(arrayDistinct(arrayFilter(x -> x != '',
                arrayConcat(splitByChar(',', attributes['k8s.images']), splitByChar(',', attributes['aci.images']))))) AS image
        FROM {db:Identifier}.events
        WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
          AND service != 'acr'
          AND target_image = ''
          AND (mapContains(attributes, 'k8s.images') OR mapContains(attributes, 'aci.images'))
    )
)
WHERE NOT arrayExists(r -> registry = r OR (startsWith(r, '*.') AND endsWith(registry, substring(r, 2))), {allowed_registries:Array(String)})
-- One row per event and image however many paths delivered it: the copy
-- in the first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id, image ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id, image
