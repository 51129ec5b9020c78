-- title: Blast radius of an image digest
-- question: Who pushed and pulled this image digest, and where did it run (AKS workloads, ACI container groups)?
-- why: >-
--   Once an image is known to be backdoored, every pull and every workload
--   that referenced it is a place the payload may have run; the pushing
--   identity is the next suspect.
-- mitre:
--   - T1525 Implant Internal Image
--   - "T1204.003 User Execution: Malicious Image"
-- window: 7d
-- params:
--   - name: digest
--     type: String
--     kind: digest
--     required: true
--     help: manifest digest, sha256:<64 hex digits>
SELECT
    event_time,
    multiIf(action = 'acr:push', 'pushed', action = 'acr:pull', 'pulled', action IN ('acr:delete', 'acr:untag'), 'deleted',
        service = 'aks', 'deployed to AKS', provider = 'Microsoft.ContainerInstance', 'deployed to ACI', action) AS what,
    actor_name AS actor,
    service,
    resource_name AS resource,
    multiIf(target_name != '', concat(target_namespace, '/', target_resource, ' ', target_name),
        target_container_group != '', target_container_group,
        target_repository) AS target,
    outcome,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM
(
    -- Registry events carry the digest in its own, indexed column.
    SELECT *, delivery
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND target_digest = {digest:String}
    UNION ALL
    -- Workloads and container groups name it in the image reference,
    -- read only for writes (creates, updates).
    SELECT *, delivery
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND action_class = 'write'
      AND target_image != ''
      AND target_digest != {digest:String}
      AND position(target_image, {digest:String}) > 0
    UNION ALL
    -- A workload of several containers lists its images in attributes
    -- (k8s.images, aci.images). Each condition is its own conjunct so the
    -- engine reads the map's values only where those keys exist.
    SELECT *, delivery
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND action_class = 'write'
      AND (target_resource IN ('pods', 'deployments', 'replicasets', 'statefulsets', 'daemonsets', 'jobs', 'cronjobs', 'replicationcontrollers')
           OR provider = 'Microsoft.ContainerInstance')
      AND target_image = ''
      AND target_digest != {digest:String}
      AND (mapContains(attributes, 'k8s.images') OR mapContains(attributes, 'aci.images'))
      AND position(concat(attributes['k8s.images'], ',', attributes['aci.images']), {digest:String}) > 0
)
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
