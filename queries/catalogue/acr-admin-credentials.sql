-- title: ACR admin credential listing, regeneration and use
-- question: Who listed or regenerated a registry's admin credentials or scoped-token passwords, and who signed in as the admin user?
-- why: >-
--   The registry admin user is one shared password with push and delete on
--   every repository; listing it hands that password out, regenerating it
--   can lock the owners out, and an admin-user sign-in cannot be tied to a
--   person.
-- mitre:
--   - T1552 Unsecured Credentials
--   - "T1098.001 Account Manipulation: Additional Cloud Credentials"
-- window: 30d
SELECT
    event_time,
    actor_name AS actor,
    multiIf(service = 'acr', 'admin user sign-in',
        positionCaseInsensitive(action, 'regenerate') > 0, 'regenerate',
        'list') AS kind,
    action,
    resource_name AS registry,
    outcome,
    status_code,
    source_ip,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',') AS delivered_via
FROM {db:Identifier}.events
WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
  AND ((service = 'arm' AND provider = 'Microsoft.ContainerRegistry' AND action_class = 'credential_access')
       OR (service = 'acr' AND has(tags, 'admin_credential')))
-- One row per event however many paths delivered it: the copy in the
-- first chain (by name, then sequence), listing every path.
WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
QUALIFY row_number() OVER copies = 1
ORDER BY event_time, event_id
