-- 0011: events per service and minute, for the evidence-gap view.
-- Placeholders as in 0001.
--
-- The investigation page's gaps (web/timeline.go) count each service's
-- events in 96 buckets of the window to find sources that fell silent;
-- over 10M events that read event_time for every row of the window (0.3 s
-- of engine CPU for 30 days). This aggregate projection keeps one row per
-- service and minute with its count: the same question, asked per minute
-- (when the window and its buckets fall on whole minutes), reads ~130k
-- rows for 10M events instead. The engine keeps it exact through inserts
-- and merges and picks it by itself for a query grouping by exactly these
-- keys; a retention purge drops it with the partition.
--
-- ADD PROJECTION covers parts written from now on; MATERIALIZE PROJECTION
-- builds it for the parts already stored (a background mutation reading
-- service and event_time; no row changes). Until it has run, such a query
-- reads those parts' rows as before.
ALTER TABLE ${db}.events${local} ${on_cluster} ADD PROJECTION IF NOT EXISTS per_minute (SELECT service, toStartOfMinute(event_time), count() GROUP BY service, toStartOfMinute(event_time));
ALTER TABLE ${db}.events${local} ${on_cluster} MATERIALIZE PROJECTION per_minute;
