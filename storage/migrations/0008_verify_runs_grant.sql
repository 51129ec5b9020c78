-- 0008: the writer records verifications (custody verify and the
-- collector's periodic verify write verify_runs, migration 0006).
-- Placeholders and the skip rules for access statements as in 0004.
GRANT ${on_cluster} ${insert:verify_runs} TO custody_writer;
