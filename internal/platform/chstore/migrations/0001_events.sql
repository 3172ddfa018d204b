-- 0001: the canonical event table, one column per pkg/event.Event field,
-- named like the canonical JSON.
--
-- Written for ClickHouse 18.16 (Debian's) and kept valid on current
-- releases, so it deliberately avoids:
--   DateTime64      absent in 18.16; event_time_ms Int64 keeps milliseconds and
--                   event_time DateTime (seconds, UTC) exists only to partition.
--   TTL             absent in 18.16; retention drops whole day partitions
--                   (Store.DropPartitionsBefore).
--   Map             absent in 18.16.
--   LowCardinality  experimental in 18.16 (needs a SET per session).
--   Nullable        not needed: "" and 0 mean "absent" in pkg/event, and
--                   Nullable costs a second column per field.
--   CODEC(...)      per-column codecs arrived after 18.16.
--
-- ReplacingMergeTree collapses rows with equal ORDER BY keys when parts
-- merge. A retried batch carries the same event_id with the same agent and
-- event time, so it collapses; until a merge happens, exact reads use FINAL
-- or uniqExact(event_id). Column names are quoted because partition, offset
-- and format are also SQL keywords.
--
-- Statements in migration files are split on ';': keep semicolons out of
-- comments and literals, and make every statement idempotent (IF NOT EXISTS),
-- because two processes may run the same migration at once.
CREATE TABLE IF NOT EXISTS events
(
    `event_id`        String,
    `event_time`      DateTime,
    `event_time_ms`   Int64,
    `ingest_time_ms`  Int64,
    `agent_id`        String,
    `identity_source` String,
    `unattributed`    UInt8,
    `credential_id`   String,
    `source_ip`       String,
    `method`          String,
    `route`           String,
    `path`            String,
    `query_params`    Array(String),
    `status`          UInt16,
    `request_bytes`   UInt64,
    `response_bytes`  UInt64,
    `duration_us`     UInt64,
    `user_agent`      String,
    `gateway`         String,
    `upstream`        String,
    `request_id`      String,
    `format`          String,
    `topic`           String,
    `partition`       Int32,
    `offset`          Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (agent_id, event_time_ms, event_id)
