-- audit: one row per audit.Record (internal/audit), written by the responder
-- for every action - automatic, Slack button, CLI or HTTP API, executed or
-- dry-run - and every refused request. It answers
-- `responder audit --agent ID --from T --to T` with a primary-key range
-- scan: ORDER BY starts with (agent_id, at), so the WHERE below reads only
-- the granules of one agent and time range, in the months it spans.
--
-- Same constraints as the chstore migrations: valid on ClickHouse 18.16 and
-- on current releases, so no DateTime64, TTL, Map, LowCardinality, Nullable
-- or CODEC. at_ms is the exact time (Int64 Unix milliseconds) and at is the
-- same instant in whole seconds (DateTime, UTC, clamped to 1970..2106), for
-- the partition and the key. Retention drops month partitions
-- (ALTER TABLE audit DROP PARTITION 202501). Every name is quoted, as action
-- and result are close to keywords and chstore quotes everything.
--
-- ReplacingMergeTree, not plain MergeTree: the responder retries a failed
-- INSERT, and a retried record has the same id (a hash of its content,
-- at_ms included), so the copies collapse on merge. Until parts merge, exact
-- reads use FINAL (and no PREWHERE, which would run before the collapse).
-- The id ends the key only to make it unique, and costs nothing for the
-- range scan.
--
-- Insert with the columns named, in audit.Columns order, values from
-- Record.ColumnValues. Query (the filter's agent, incident and limit are
-- optional, bound as parameters):
--
--   SELECT <audit.Columns> FROM audit FINAL
--   WHERE agent_id = {agent}
--     AND at >= toDateTime(intDiv({from_ms}, 1000))
--     AND at <= toDateTime(intDiv({to_ms}, 1000))
--     AND at_ms >= {from_ms} AND at_ms < {to_ms}
--   ORDER BY at_ms, id
--   LIMIT {limit}
--
-- Keep semicolons out of this text except after the statement, so that the
-- migration runner (which splits on them) can take it as it is.
CREATE TABLE IF NOT EXISTS audit
(
    `id`               String,
    `at`               DateTime,
    `at_ms`            Int64,
    `actor_kind`       String,
    `actor_name`       String,
    `actor_user_id`    String,
    `actor_token_name` String,
    `action`           String,
    `playbook`         String,
    `decision_id`      String,
    `step_id`          String,
    `incident_id`      String,
    `anomaly_id`       String,
    `agent_id`         String,
    `credential_id`    String,
    `dry_run`          UInt8,
    `why`              String,
    `result`           String,
    `detail`           String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (agent_id, at, id);
