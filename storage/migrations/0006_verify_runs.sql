-- 0006: verify_runs, the outcome of every verification (custody verify, the
-- collector's periodic verify), so that `custody status` and the web page
-- can say when the trail was last verified and with what result.
-- Placeholders as in 0001.
CREATE TABLE IF NOT EXISTS ${db}.verify_runs${local} ${on_cluster}
(
    started_at DateTime64(6, 'UTC'),
    finished_at DateTime64(6, 'UTC'),
    actor String,
    host String,
    -- who ran it: cli (custody verify) or collector (custody run's periodic verify)
    trigger LowCardinality(String),
    -- the chain verified; '' for every chain
    chain String,
    -- the content check's event_time window; '' for unbounded
    content_from String,
    content_to String,
    -- ok (no error findings) or failed
    result LowCardinality(String),
    chains UInt64,
    rows UInt64,
    checkpoints UInt64,
    external_checkpoints UInt64,
    errors UInt64,
    warnings UInt64,
    -- findings by kind (storage.FindingKind)
    findings Map(LowCardinality(String), UInt64)
)
ENGINE = ${merge_tree:verify_runs}
ORDER BY finished_at;
