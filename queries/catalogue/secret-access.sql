-- title: Secret and token access by non-system identities
-- question: Which people, pipelines and workloads (not the cluster's own components) read secrets or requested service-account tokens?
-- why: >-
--   Kubernetes secrets hold database passwords, registry credentials and
--   cloud keys, and a minted service-account token lets an attacker act as
--   the workload; control-plane components read them all day, so they are
--   left out by name prefix.
-- mitre:
--   - "T1552.007 Unsecured Credentials: Container API"
--   - T1528 Steal Application Access Token
-- window: 7d
-- params:
--   - name: system_prefixes
--     type: Array(String)
--     help: Kubernetes usernames starting with any of these are system identities and left out (comma-separated)
--     default:
--       - "system:serviceaccount:kube-system:"
--       - "system:node:"
--       - "system:kube-"
--       - "system:apiserver"
SELECT
    event_time,
    actor_name AS actor,
    actor_type,
    resource_name AS cluster,
    action,
    target_namespace AS namespace,
    target_name AS name,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'aks'
  AND hasAny(tags, ['secret_access', 'token_access'])
  AND actor_type NOT IN ('k8s_node', 'system')
  AND NOT arrayExists(p -> startsWith(actor_name, p), {system_prefixes:Array(String)})
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
