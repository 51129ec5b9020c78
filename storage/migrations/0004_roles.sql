-- 0004: least privilege. Placeholders as in 0001 (see storage/schema.go).
--
-- Three roles, one per kind of work; every Custody command connects as a
-- user holding exactly one of them (README.md, "Least privilege"):
--   custody_writer     the collector (run, backfill, append), verify and
--                      export (they record themselves in custody_log):
--                      reads the store, appends to the trail tables,
--                      checks parts' checksums (verify's CHECK TABLE), and
--                      nothing else: no ALTER, DELETE, UPDATE, DROP,
--                      TRUNCATE or OPTIMIZE.
--   custody_reader     investigators (sql, query, timeline, status,
--                      retention plan, hold list): SELECT on the store's
--                      tables and the part list `status` sums. No source
--                      privileges (file, url, remote, s3, hdfs, mysql,
--                      postgresql...), no CREATE TEMPORARY TABLE (which
--                      table functions need), no SYSTEM, KILL QUERY,
--                      introspection or dictionaries.
--   custody_retention  retention apply and legal holds: drops partitions
--                      of events and quarantine (ClickHouse grants DROP
--                      PARTITION with ALTER DELETE, so this role can also
--                      delete rows: verify reports any row removed without
--                      a signed purge record), writes purge records, holds
--                      and the custody log.
-- ${insert:TABLE} is INSERT on the table; on a cluster, on its _local
-- table too (inserts through a Distributed table reach the shards').
-- A user holding a role gets nothing else: no grant here is WITH GRANT
-- OPTION, and none is on another database.
--
-- Where the migrating user may not manage access (a server whose admin
-- keeps that to themselves), or roles come from the server's users
-- configuration (the embedded store: its generated users config holds
-- these same grants, from storage.Roles), Migrate skips these statements
-- and says so in the custody log.
CREATE ROLE IF NOT EXISTS custody_writer ${on_cluster};
CREATE ROLE IF NOT EXISTS custody_reader ${on_cluster};
CREATE ROLE IF NOT EXISTS custody_retention ${on_cluster};

GRANT ${on_cluster} SELECT ON ${db}.* TO custody_reader;
GRANT ${on_cluster} SELECT ON system.parts TO custody_reader;

GRANT ${on_cluster} SELECT ON ${db}.* TO custody_writer;
GRANT ${on_cluster} CHECK ON ${db}.* TO custody_writer;
GRANT ${on_cluster} ${insert:events} TO custody_writer;
GRANT ${on_cluster} ${insert:quarantine} TO custody_writer;
GRANT ${on_cluster} ${insert:source_positions} TO custody_writer;
GRANT ${on_cluster} ${insert:checkpoints} TO custody_writer;
GRANT ${on_cluster} ${insert:custody_log} TO custody_writer;

GRANT ${on_cluster} SELECT ON ${db}.* TO custody_retention;
GRANT ${on_cluster} SELECT ON system.parts TO custody_retention;
GRANT ${on_cluster} ${insert:purges} TO custody_retention;
GRANT ${on_cluster} ${insert:legal_holds} TO custody_retention;
GRANT ${on_cluster} ${insert:custody_log} TO custody_retention;
GRANT ${on_cluster} ALTER DELETE ON ${db}.events${local} TO custody_retention;
GRANT ${on_cluster} ALTER DELETE ON ${db}.quarantine${local} TO custody_retention;
