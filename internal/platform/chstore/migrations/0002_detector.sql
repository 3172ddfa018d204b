-- 0002: the detector's persistence (issue 3). Five tables, all
-- ReplacingMergeTree, written by cmd/detector through the Store methods in
-- detector.go and mirrored by internal/detstate.FileStore in embedded mode.
--
-- Same constraints as 0001: valid on ClickHouse 18.16 and on current
-- releases, so no DateTime64, TTL, Map, LowCardinality, Nullable or CODEC.
-- Times are Int64 Unix milliseconds, and a DateTime column exists only where
-- a table is partitioned by time (clamped to 1970..2106 like event_time).
-- Every name is quoted because partition, key, group and values are keywords.
--
-- ReplacingMergeTree merges lazily: until parts merge, a key can have several
-- rows. Every read deduplicates, with FINAL. Under FINAL, WHERE runs after
-- the rows of a key collapse, but PREWHERE (explicit, or moved there by the
-- optimizer) would run before, so reads never use PREWHERE on such tables.
--
-- detector_state: one serialised baseline per (kind, key), kind "agent" (key
-- = agent id) or "peer" (key = role, "" for all agents). The row with the
-- highest updated_ms wins, and on equal updated_ms the one inserted last.
-- topic and partition say which events partition the newest version came
-- from. They are plain columns, not key columns, because an agent moves to
-- another partition when the topic is repartitioned: a detector restores the
-- rows whose newest version is on one of its partitions. state is an opaque
-- binary blob, stored byte for byte.
CREATE TABLE IF NOT EXISTS detector_state
(
    `topic`      String,
    `partition`  Int32,
    `kind`       String,
    `key`        String,
    `updated_ms` Int64,
    `state`      String
)
ENGINE = ReplacingMergeTree(updated_ms)
ORDER BY (kind, `key`);

-- detector_checkpoints: where one events partition stands for one detector
-- group. Every window ending at or before closed_through_ms is scored and
-- written, processing resumes at resume_offset (-1: the group's committed
-- offset), last_offset is the highest offset processed. Newest updated_ms
-- wins per (group, topic, partition).
CREATE TABLE IF NOT EXISTS detector_checkpoints
(
    `group`             String,
    `topic`             String,
    `partition`         Int32,
    `closed_through_ms` Int64,
    `watermark_ms`      Int64,
    `resume_offset`     Int64,
    `last_offset`       Int64,
    `updated_ms`        Int64
)
ENGINE = ReplacingMergeTree(updated_ms)
ORDER BY (`group`, topic, `partition`);

-- anomalies: every pkg/anomaly.Anomaly the detector emitted. body is the
-- record's JSON, the source of truth that reads decode, and the other
-- columns are copies for filtering and dashboards. anomaly_id is derived
-- from (agent_id, window_start_ms, kind), so a re-detection after a restart
-- has the same key and collapses. window_start is window_start_ms in
-- seconds, for monthly partitions. partition is the events partition the
-- agent's events came from, used to find what was already published after
-- a restart.
CREATE TABLE IF NOT EXISTS anomalies
(
    `anomaly_id`         String,
    `agent_id`           String,
    `kind`               String,
    `severity`           String,
    `summary`            String,
    `role`               String,
    `owner`              String,
    `credential_id`      String,
    `window_start_ms`    Int64,
    `window_end_ms`      Int64,
    `detected_ms`        Int64,
    `window_start`       DateTime,
    `score`              Float64,
    `peer_baseline`      UInt8,
    `partition`          Int32,
    `count`              UInt32,
    `sample_request_ids` Array(String),
    `body`               String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(window_start)
ORDER BY (agent_id, window_start_ms, kind, anomaly_id);

-- window_scores: one pkg/anomaly.Score per closed agent window, anomalous or
-- not, for plots and evaluation. values, expected and surprise are indexed
-- by feature id. A re-scored window replaces the earlier row (the one
-- inserted last wins). Daily partitions, so old scores can be dropped like
-- old events.
CREATE TABLE IF NOT EXISTS window_scores
(
    `agent_id`        String,
    `window_start_ms` Int64,
    `window_end_ms`   Int64,
    `window_start`    DateTime,
    `partition`       Int32,
    `score`           Float64,
    `severity`        String,
    `values`          Array(Float64),
    `expected`        Array(Float64),
    `surprise`        Array(Float64),
    `trained`         UInt8,
    `peer_baseline`   UInt8,
    `late`            UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (agent_id, window_start_ms);

-- backfill_progress: how far a named baseline backfill job got. Every event
-- before done_through_ms has been folded in. Newest updated_ms wins.
CREATE TABLE IF NOT EXISTS backfill_progress
(
    `job`             String,
    `done_through_ms` Int64,
    `updated_ms`      Int64
)
ENGINE = ReplacingMergeTree(updated_ms)
ORDER BY job
