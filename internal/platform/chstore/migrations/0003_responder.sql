-- 0003: the responder's tables in distributed mode, written and read by
-- chstore's Audit, Chain, Seen and Feedback: the audit log, the evidence
-- chain, the set of handled anomalies and the false-positive verdicts the
-- detector polls. (The revocation ledger holds secrets and stays a local
-- 0600 file.)
--
-- Same constraints as 0001 and 0002: valid on ClickHouse 18.16 and on
-- current releases, so no DateTime64, TTL, Map, LowCardinality, Nullable or
-- CODEC. Times are Int64 Unix milliseconds, and a DateTime column exists only
-- where a table is partitioned by time. Every name is quoted.
--
-- audit: one row per audit.Record (internal/responder/audit), written by the
-- responder for every action - automatic, Slack button, CLI or HTTP API,
-- executed or dry-run - and every refused request. It answers
-- `responder audit --agent ID --from T --to T` with a primary-key range
-- scan: ORDER BY starts with (agent_id, at), so the query reads only the
-- granules of one agent and time range, in the months it spans. at_ms is the
-- exact time and at is the same instant in whole seconds (DateTime, UTC,
-- clamped to 1970..2106), for the partition and the key. Retention drops
-- month partitions (ALTER TABLE audit DROP PARTITION 202501).
-- ReplacingMergeTree, not plain MergeTree: the responder retries a failed
-- INSERT, and a retried record has the same id (a hash of its content,
-- at_ms included), so the copies collapse on merge. The id ends the key only
-- to make it unique, and costs nothing for the range scan. Reads collapse
-- unmerged copies with LIMIT 1 BY at_ms, id (audit.Store's rule: records
-- with equal ID and AtMs count once), which needs no merging read as FINAL
-- does. chstore.auditColumns is the column list the code uses.
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

-- evidence_chain: one row per evidence.Record, the hash chain of evidence
-- bundles. Plain MergeTree, not ReplacingMergeTree: a chain that forked
-- (two writers appending at the same seq) must keep both rows so that
-- verification sees the fork, and a retried insert's identical copy is
-- harmless (verification counts identical copies once). appended_ms is the
-- writer's clock when it appended, and orders copies of one seq: the head
-- is the first appended record of the highest seq. The table stays small
-- (one row per bundle), so it is not partitioned.
CREATE TABLE IF NOT EXISTS evidence_chain
(
    `seq`             Int64,
    `bundle_id`       String,
    `agent_id`        String,
    `anomaly_id`      String,
    `incident_id`     String,
    `path`            String,
    `manifest_sha256` String,
    `prev_sha256`     String,
    `created_ms`      Int64,
    `appended_ms`     Int64
)
ENGINE = MergeTree()
ORDER BY (seq, appended_ms);

-- responder_handled: the anomaly ids the responder has handled
-- (outbox.Seen). Membership is all that is read, so copies of an id are
-- harmless and collapse when parts merge. handled_at (handled_ms in
-- seconds, UTC) picks a monthly partition, so old ids can be dropped with
-- ALTER TABLE responder_handled DROP PARTITION 202501 once no anomaly that
-- old can be redelivered.
CREATE TABLE IF NOT EXISTS responder_handled
(
    `anomaly_id` String,
    `handled_ms` Int64,
    `handled_at` DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(handled_at)
ORDER BY anomaly_id;

-- feedback_verdicts: one row per anomaly.Verdict (pkg/anomaly/verdict.go),
-- written by the responder when a human marks an anomaly a false positive
-- and polled by the detector (chstore.Feedback.Since). values is indexed by
-- feature id, empty when unknown. A verdict retried with the same
-- verdict_id and at_ms collapses on merge. Reads keep, per verdict_id, the
-- copy with the smallest at_ms, so a verdict retried later is still seen
-- once, at its first time. ORDER BY starts with verdict_id so that looking
-- ids up is an index range. Verdicts are made by humans, a few a day, so the
-- table is not partitioned.
CREATE TABLE IF NOT EXISTS feedback_verdicts
(
    `verdict_id`      String,
    `anomaly_id`      String,
    `agent_id`        String,
    `kind`            String,
    `window_start_ms` Int64,
    `window_end_ms`   Int64,
    `values`          Array(Float64),
    `verdict`         String,
    `author`          String,
    `at_ms`           Int64
)
ENGINE = ReplacingMergeTree()
ORDER BY (verdict_id, at_ms)
