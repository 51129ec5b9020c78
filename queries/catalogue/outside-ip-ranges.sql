-- title: Admin activity from outside the expected networks
-- question: Which principals performed admin actions from addresses outside the configured IP ranges?
-- why: >-
--   Administration normally comes from corporate egress, VPN and the
--   platform's own networks; the same identity acting from an unknown
--   address is the most direct sign of a stolen token or password. Reads
--   are left out; events without a source address cannot be judged and are
--   left out too.
-- mitre:
--   - "T1078.004 Valid Accounts: Cloud Accounts"
-- window: 7d
-- params:
--   - name: allowed_ranges
--     type: Array(String)
--     kind: cidr
--     default:
--       - 10.0.0.0/8
--       - 172.16.0.0/12
--       - 192.168.0.0/16
--       - fc00::/7
--     help: expected source ranges in CIDR form (comma-separated); single addresses allowed
SELECT
    actor_name AS actor,
    source_ip,
    uniqExact(event_id) AS events,
    uniqExactIf(event_id, outcome = 'failure') AS failures,
    min(event_time) AS first,
    max(event_time) AS last,
    arrayStringConcat(arraySort(groupUniqArray(service)), ',') AS services,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(action)), 1, 10), ' ') AS actions,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND source_ip != ''
  AND action_class != 'read'
  AND NOT arrayExists(r -> isIPAddressInRange(source_ip, r), {allowed_ranges:Array(String)})
GROUP BY actor, source_ip
ORDER BY first, actor, source_ip
