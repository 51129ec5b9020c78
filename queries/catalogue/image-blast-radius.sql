-- title: Blast radius of an image digest
-- question: Who pushed and pulled this image digest, and where did it run (AKS workloads, ACI container groups)?
-- why: >-
--   Once an image is known to be backdoored, every pull and every workload
--   that referenced it is a place the payload may have run; the pushing
--   identity is the next suspect.
-- mitre:
--   - T1525 Implant Internal Image
--   - "T1204.003 User Execution: Malicious Image"
-- window: 90d
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
    event_id
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND (target_digest = {digest:String}
       OR (target_image != '' AND position(target_image, {digest:String}) > 0)
       OR (action_class = 'write' AND target_image = ''
           AND (position(attributes['k8s.images'], {digest:String}) > 0 OR position(attributes['aci.images'], {digest:String}) > 0)))
ORDER BY event_time, event_id
