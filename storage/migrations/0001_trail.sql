-- 0001: the audit trail. One SQL text for chDB and ClickHouse servers:
-- ${db} is the store's database, and ${local}, ${on_cluster} and
-- ${merge_tree:TABLE} take their cluster forms (ReplicatedMergeTree behind
-- Distributed tables) when the store runs on a cluster; see
-- storage/schema.go. Requires ClickHouse >= 24.8.

-- events: one row per normalized admin-access event, hash-chained per
-- ingest stream (chain). Every column is covered by the row's hash (see
-- storage/docs/format/event-v1.md).
CREATE TABLE IF NOT EXISTS ${db}.events${local} ${on_cluster}
(
    -- chain position: the chain is one ingest stream (an Event Hubs
    -- partition, a Log Analytics table, an archive blob), seq counts from 1.
    chain LowCardinality(String),
    seq UInt64,
    event_id String,
    -- DateTime64(6): the sources carry microseconds (and k8s nanoseconds);
    -- seconds would merge distinct API calls of one burst.
    event_time DateTime64(6, 'UTC'),
    received_time DateTime64(6, 'UTC'),
    -- LowCardinality: a few dozen distinct values each, dictionary-encoded
    -- to a byte or two per row and compared as integers.
    service LowCardinality(String),
    category LowCardinality(String),
    source_kind LowCardinality(String),
    source_format LowCardinality(String),
    source_position String,
    -- source_offset is the stream offset (Event Hubs sequence number,
    -- row ordinal...) the event was read at. It is written in the same
    -- insert as the event, so the store itself says how far each stream
    -- is durable.
    source_offset Int64,
    tenant_id LowCardinality(String),
    subscription_id LowCardinality(String),
    resource_group LowCardinality(String),
    provider LowCardinality(String),
    resource_type LowCardinality(String),
    resource_name String,
    resource_id String,
    actor_name String,
    actor_object_id String,
    actor_type LowCardinality(String),
    actor_app_id String,
    actor_groups Array(String),
    impersonated_by String,
    -- source_ip is the canonical text form ('' when unknown): both IPv4
    -- and IPv6 fit, isIPAddressInRange() takes it as is, and a bloom
    -- filter answers "everything from this address" without a scan.
    source_ip String,
    user_agent String,
    action LowCardinality(String),
    action_class LowCardinality(String),
    target_api_group LowCardinality(String),
    target_resource LowCardinality(String),
    target_subresource LowCardinality(String),
    target_namespace LowCardinality(String),
    target_name String,
    target_repository String,
    target_tag String,
    target_digest String,
    target_container_group String,
    target_container String,
    target_image String,
    outcome LowCardinality(String),
    status_code Int32,
    reason String,
    correlation_id String,
    request_id String,
    tags Array(LowCardinality(String)),
    attributes Map(String, String),
    -- the original record byte for byte; ZSTD(1) because it is most of the
    -- bytes and is read only to show or verify the original.
    raw String CODEC(ZSTD(1)),
    raw_format LowCardinality(String),
    prev_hash FixedString(32),
    hash FixedString(32),

    -- Skip indexes for the questions asked after an incident: everything
    -- one actor did, everything from one address, the history of one
    -- resource, one event by id.
    INDEX idx_actor actor_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_actor_oid actor_object_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_source_ip source_ip TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_resource resource_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_digest target_digest TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_tags tags TYPE bloom_filter(0.01) GRANULARITY 1,
    -- event_time is not the partition key, so give parts a min/max of it
    -- for time-window pruning.
    INDEX idx_event_time event_time TYPE minmax GRANULARITY 1,
    INDEX idx_seq (chain, seq) TYPE minmax GRANULARITY 1
)
ENGINE = ${merge_tree:events}
-- Monthly partitions by received_time: a chain is appended in received
-- order, so a partition holds a contiguous run of every chain and a
-- retention purge of old partitions removes whole chain prefixes, which a
-- signed purge record can attest.
PARTITION BY toYYYYMM(received_time)
-- Forensic access: almost every question has a time window, then narrows
-- by service and actor ("what did this identity do on AKS last Tuesday").
-- Day first keeps window scans to whole granule ranges, actor next keeps
-- one principal's timeline contiguous within a day.
ORDER BY (toStartOfDay(event_time), service, actor_name, event_time)
-- Compact parts (all columns in one file) up to 256 MiB: a collector's
-- insert is a few tens of megabytes, and writing it as one file instead of
-- ~120 (a file and marks per column and skip index) makes inserts three to
-- four times faster here. Merges produce wide parts past that size, where
-- per-column files pay off for reads.
SETTINGS index_granularity = 8192, min_bytes_for_wide_part = 268435456, non_replicated_deduplication_window = 1000;

-- quarantine: records that could not be normalized, kept raw with the
-- reason. Nothing is dropped silently.
CREATE TABLE IF NOT EXISTS ${db}.quarantine${local} ${on_cluster}
(
    chain LowCardinality(String),
    source_offset Int64,
    source_position String,
    received_time DateTime64(6, 'UTC'),
    format LowCardinality(String),
    reason String,
    raw String CODEC(ZSTD(1)),
    raw_sha256 FixedString(32)
)
ENGINE = ${merge_tree:quarantine}
PARTITION BY toYYYYMM(received_time)
ORDER BY (chain, source_offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- source_positions: how far each stream is durable, written after the
-- batch's events and quarantine rows. Resume reads the newest row per
-- stream and skips events and quarantine rows already stored (their
-- source_offset), so a crash between the inserts loses and repeats nothing.
CREATE TABLE IF NOT EXISTS ${db}.source_positions${local} ${on_cluster}
(
    stream LowCardinality(String),
    source_offset Int64,
    source_position String,
    events UInt64,
    quarantined UInt64,
    dropped UInt64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ${merge_tree:source_positions}
ORDER BY (stream, updated_at);

-- checkpoints: signed tree heads per chain (a Go signed note over
-- "origin\nsize\nroot\n"), plus the Merkle compact range so the tree can be
-- resumed without rereading the chain.
CREATE TABLE IF NOT EXISTS ${db}.checkpoints${local} ${on_cluster}
(
    chain LowCardinality(String),
    tree_size UInt64,
    root_hash FixedString(32),
    last_hash FixedString(32),
    compact_range Array(FixedString(32)),
    note String,
    created_at DateTime64(6, 'UTC')
)
ENGINE = ${merge_tree:checkpoints}
ORDER BY (chain, tree_size);

-- custody_log: the store's own history: schema changes, verifications,
-- exports, retention purges, legal holds. Who, when, what, result.
CREATE TABLE IF NOT EXISTS ${db}.custody_log${local} ${on_cluster}
(
    at DateTime64(6, 'UTC'),
    actor String,
    host String,
    action LowCardinality(String),
    detail String,
    result LowCardinality(String)
)
ENGINE = ${merge_tree:custody_log}
ORDER BY at;
