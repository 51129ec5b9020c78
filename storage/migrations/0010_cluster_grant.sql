-- 0010: on a cluster, verify checks every server's parts (CHECK TABLE on
-- the local tables behind the Distributed ones: a Distributed table has
-- no parts), and finds the servers in system.clusters; verify runs as the
-- writer. The cluster's names and addresses, nothing of its data.
-- Placeholders and the skip rules for access statements as in 0004.
GRANT ${on_cluster} SELECT ON system.clusters TO custody_writer;
