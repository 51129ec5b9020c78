-- 0009: a bloom filter on impersonated_by. Placeholders as in 0001.
--
-- "Everything this principal did" matches actor_name (the sort key),
-- actor_object_id (its bloom filter) and impersonated_by: requests another
-- identity sent in this principal's name. Without an index of its own
-- the impersonated_by branch read the column over the whole window (the
-- investigation page's whole-history timeline of one principal read every
-- row of the store); with it, a principal's search and timeline read the
-- granules that may hold the name. Almost every value is '' (no
-- impersonation), which the filter holds once per granule.
--
-- ADD INDEX covers parts written from now on; MATERIALIZE INDEX builds it
-- for the parts already stored (a mutation the engine runs in the
-- background, reading impersonated_by only; no row changes). Until it has
-- run, queries read those parts as before.
ALTER TABLE ${db}.events${local} ${on_cluster} ADD INDEX IF NOT EXISTS idx_impersonated impersonated_by TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE ${db}.events${local} ${on_cluster} MATERIALIZE INDEX idx_impersonated;
