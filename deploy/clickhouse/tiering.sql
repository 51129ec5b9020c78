-- Move partitions of the trail to the cold volume (Azure Blob Storage, see
-- config.d/custody-storage.xml) once their newest row is older than the hot
-- window. Run once, after `custody init`, as custody_admin:
--   clickhouse-client --user custody_admin --multiquery < tiering.sql
-- A TTL move rewrites no row (the parts are copied as they are), so every
-- hash, chain link and checkpoint stays valid; verify reads cold parts like
-- any others. Change 90 DAY to your hot window.
ALTER TABLE custody.events_local ON CLUSTER custody
    MODIFY TTL toDateTime(received_time) + INTERVAL 90 DAY TO VOLUME 'cold';
ALTER TABLE custody.quarantine_local ON CLUSTER custody
    MODIFY TTL toDateTime(received_time) + INTERVAL 90 DAY TO VOLUME 'cold';
