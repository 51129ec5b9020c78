-- title: Privileged and host-access workloads
-- question: Who created or changed pods, workloads or container groups that run privileged or share the host's PID, network, IPC namespace or filesystem?
-- why: >-
--   A privileged container or a hostPath mount of / is a short step to root
--   on the node and to every other pod on it; legitimate uses are few and
--   known (CNI, CSI, monitoring agents).
-- mitre:
--   - T1611 Escape to Host
--   - T1610 Deploy Container
-- window: 7d
SELECT
    event_time,
    service,
    actor_name AS actor,
    action,
    resource_name AS resource,
    if(target_name != '', concat(target_namespace, '/', target_name), target_container_group) AS workload,
    arrayStringConcat(arrayFilter(t -> t IN ('privileged_pod', 'host_pid', 'host_network', 'host_ipc', 'host_path'), tags), ',') AS flags,
    attributes['k8s.host_path'] AS host_paths,
    if(target_image != '', target_image, attributes['k8s.images'] || attributes['aci.images']) AS images,
    outcome,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND hasAny(tags, ['privileged_pod', 'host_pid', 'host_network', 'host_ipc', 'host_path'])
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
