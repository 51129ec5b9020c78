-- title: One event, copies that disagree
-- question: Which events reached the store through several paths (or twice through one) with copies that disagree in content?
-- why: >-
--   Event Hubs, Log Analytics and the storage archive carry the same event
--   under the same id, and every other query counts it once. Copies of one
--   id that differ in what happened (time, actor, action, target, outcome,
--   address, tags) were altered or mis-delivered on one path, or the
--   normalizer read one shape wrongly; either way one of the stories is
--   false. Fields a path legitimately fills differently (category,
--   reason, tenant, attributes, source and raw fields) are not compared.
--   Both copies stay in their chains; this lists them side by side.
-- mitre:
--   - T1565 Data Manipulation
--   - "T1562.008 Impair Defenses: Disable or Modify Cloud Logs"
-- window: 7d
SELECT
    min(event_time) AS first_seen,
    event_id,
    arrayStringConcat(arraySort(groupUniqArray(toString(service))), ',') AS services,
    arrayStringConcat(arraySort(groupUniqArray(action)), ' ') AS actions,
    count() AS copies,
    uniqExact(fingerprint) AS versions,
    arrayStringConcat(arrayFilter(f -> f != '', [
        if(uniqExact(event_time) > 1, 'event_time', ''), if(uniqExact(service) > 1, 'service', ''),
        if(uniqExact(subscription_id) > 1, 'subscription_id', ''),
        if(uniqExact(resource_group) > 1, 'resource_group', ''), if(uniqExact(provider) > 1, 'provider', ''),
        if(uniqExact(resource_type) > 1, 'resource_type', ''),
        if(uniqExact(resource_name) > 1, 'resource_name', ''),
        if(uniqExact(resource_id) > 1, 'resource_id', ''), if(uniqExact(actor_name) > 1, 'actor_name', ''),
        if(uniqExact(actor_object_id) > 1, 'actor_object_id', ''),
        if(uniqExact(actor_type) > 1, 'actor_type', ''), if(uniqExact(actor_app_id) > 1, 'actor_app_id', ''),
        if(uniqExact(impersonated_by) > 1, 'impersonated_by', ''),
        if(uniqExact(source_ip) > 1, 'source_ip', ''), if(uniqExact(user_agent) > 1, 'user_agent', ''),
        if(uniqExact(action) > 1, 'action', ''), if(uniqExact(action_class) > 1, 'action_class', ''),
        if(uniqExact(target_api_group) > 1, 'target_api_group', ''),
        if(uniqExact(target_resource) > 1, 'target_resource', ''),
        if(uniqExact(target_subresource) > 1, 'target_subresource', ''),
        if(uniqExact(target_namespace) > 1, 'target_namespace', ''),
        if(uniqExact(target_name) > 1, 'target_name', ''),
        if(uniqExact(target_repository) > 1, 'target_repository', ''),
        if(uniqExact(target_tag) > 1, 'target_tag', ''),
        if(uniqExact(target_digest) > 1, 'target_digest', ''),
        if(uniqExact(target_container_group) > 1, 'target_container_group', ''),
        if(uniqExact(target_container) > 1, 'target_container', ''),
        if(uniqExact(target_image) > 1, 'target_image', ''), if(uniqExact(outcome) > 1, 'outcome', ''),
        if(uniqExact(status_code) > 1, 'status_code', ''), if(uniqExact(tags) > 1, 'tags', '')]), ',') AS differing,
    arrayStringConcat(arraySort(groupUniqArray(delivery)), ',') AS delivered_via,
    arrayStringConcat(arraySort(groupArray(concat(chain, '#', toString(seq)))), ' ') AS stored_at
FROM
(
    SELECT event_id, chain, seq, delivery,
        event_time, service, subscription_id, resource_group, provider, resource_type,
        resource_name, resource_id, actor_name, actor_object_id, actor_type, actor_app_id,
        impersonated_by, source_ip, user_agent, action, action_class, target_api_group,
        target_resource, target_subresource, target_namespace, target_name, target_repository, target_tag,
        target_digest, target_container_group, target_container, target_image, outcome, status_code,
        tags,
        cityHash64(
            event_time, service, subscription_id, resource_group, provider, resource_type,
            resource_name, resource_id, actor_name, actor_object_id, actor_type, actor_app_id,
            impersonated_by, source_ip, user_agent, action, action_class, target_api_group,
            target_resource, target_subresource, target_namespace, target_name, target_repository,
            target_tag, target_digest, target_container_group, target_container, target_image,
            outcome, status_code, tags) AS fingerprint
    FROM {db:Identifier}.events
    WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
      AND event_id IN
      (
          -- Ids whose copies hash differently over the compared fields,
          -- fingerprinting only the rows of ids stored more than once
          -- (found first on the event_id column alone).
          SELECT event_id
          FROM {db:Identifier}.events
          WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
            AND cityHash64(event_id) IN
            (
                SELECT cityHash64(event_id) AS id
                FROM {db:Identifier}.events
                WHERE event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}
                GROUP BY id
                HAVING count() > 1
            )
          GROUP BY event_id
          HAVING min(cityHash64(
              event_time, service, subscription_id, resource_group, provider, resource_type,
              resource_name, resource_id, actor_name, actor_object_id, actor_type, actor_app_id,
              impersonated_by, source_ip, user_agent, action, action_class, target_api_group,
              target_resource, target_subresource, target_namespace, target_name,
              target_repository, target_tag, target_digest, target_container_group,
              target_container, target_image, outcome, status_code, tags)) != max(cityHash64(
              event_time, service, subscription_id, resource_group, provider, resource_type,
              resource_name, resource_id, actor_name, actor_object_id, actor_type, actor_app_id,
              impersonated_by, source_ip, user_agent, action, action_class, target_api_group,
              target_resource, target_subresource, target_namespace, target_name,
              target_repository, target_tag, target_digest, target_container_group,
              target_container, target_image, outcome, status_code, tags))
      )
)
GROUP BY event_id
ORDER BY first_seen, event_id
