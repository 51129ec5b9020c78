-- 0002: retention and legal hold. Placeholders as in 0001 (see
-- storage/schema.go); the formats are specified in
-- storage/docs/format/purge-v1.md.

-- legal_holds: every change to a legal hold, append-only. A hold is active
-- while it has an 'add' row and no 'release' row; nothing is updated in
-- place, so the table is its own history (the custody log has it too).
CREATE TABLE IF NOT EXISTS ${db}.legal_holds${local} ${on_cluster}
(
    hold_id String,
    -- 'add' or 'release'
    change LowCardinality(String),
    -- what the hold preserves: 'resource' (an Azure resource id and
    -- everything under it), 'actor' (a name, object id or app id) or
    -- 'time' (events whose event or received time is in [from_time,
    -- to_time)).
    kind LowCardinality(String),
    resource_id String,
    actor String,
    from_time DateTime64(6, 'UTC'),
    to_time DateTime64(6, 'UTC'),
    reason String,
    changed_by String,
    changed_at DateTime64(6, 'UTC')
)
ENGINE = ${merge_tree:legal_holds}
ORDER BY (hold_id, changed_at);

-- purges: one row per chain per retention purge of an events partition.
-- The row attests that rows first_seq..last_seq of the chain were removed
-- by Custody under the retention policy: `note` is a signed checkpoint of
-- the chain at last_seq (root of compact_range) with purge extension
-- lines, so verify resumes the chain at last_seq + 1 from last_hash and
-- compact_range instead of reporting a gap.
CREATE TABLE IF NOT EXISTS ${db}.purges${local} ${on_cluster}
(
    purge_id String,
    partition_id String,
    -- oldest and newest received_time in the partition, and the newest of
    -- event_time and received_time (what retention was measured on).
    range_from DateTime64(6, 'UTC'),
    range_to DateTime64(6, 'UTC'),
    newest_time DateTime64(6, 'UTC'),
    partition_rows UInt64,
    chain LowCardinality(String),
    first_seq UInt64,
    last_seq UInt64,
    chain_rows UInt64,
    -- JSON object: rows of this chain in the partition by
    -- "service/category".
    counts String,
    last_hash FixedString(32),
    compact_range Array(FixedString(32)),
    root_hash FixedString(32),
    -- the chain's head and newest checkpoint when the purge was made.
    head_seq UInt64,
    head_hash FixedString(32),
    checkpoint_size UInt64,
    checkpoint_root FixedString(32),
    checkpoint_note String,
    -- the retention rule(s) the partition was past, as text.
    policy String,
    note String,
    purged_at DateTime64(6, 'UTC'),
    actor String
)
ENGINE = ${merge_tree:purges}
ORDER BY (chain, last_seq);
