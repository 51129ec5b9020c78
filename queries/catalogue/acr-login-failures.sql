-- title: ACR login failures
-- question: Which identities and addresses failed to sign in to a registry, how often and when?
-- why: >-
--   Failed registry logins are password guessing against the admin user or
--   replayed, expired tokens; the identity "<registry name>" is the admin
--   user, which should be disabled.
-- mitre:
--   - T1110 Brute Force
-- window: 7d
-- params:
--   - name: min_failures
--     type: UInt32
--     default: 1
--     min: 1
--     help: failures per identity and address to report
SELECT
    actor_name AS actor,
    source_ip,
    resource_name AS registry,
    uniqExact(event_id) AS failures,
    min(event_time) AS first,
    max(event_time) AS last,
    arrayStringConcat(arraySort(groupUniqArray(toString(status_code))), ',') AS status_codes,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(user_agent)), 1, 3), ' | ') AS user_agents,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND service = 'acr'
  AND action_class = 'login'
  AND outcome = 'failure'
GROUP BY actor, source_ip, registry
HAVING failures >= {min_failures:UInt32}
ORDER BY first, actor, source_ip
