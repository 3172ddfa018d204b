-- 0004: leases, so that one of several replicas runs a periodic job (the
-- ingest retention scheduler). ClickHouse has no transactions and no
-- unique keys, so a lease is claimed by appending a row and reading back
-- who holds it: among the rows of a name whose expires_s is still in the
-- future, the one taken first (ties: the smallest owner) holds it.
-- taken_s and expires_s are the server's clock (now()), in Unix seconds,
-- so the replicas' clocks do not matter. A claimant reads back only once
-- the server's clock is two seconds past its claim (chstore.TakeLease), so
-- racing claimants see the same claims and agree on the holder; the jobs
-- run under a lease are idempotent all the same. One row per claim: a few
-- per hour, so the table is not partitioned.
CREATE TABLE IF NOT EXISTS leases
(
    `name`      String,
    `owner`     String,
    `taken_s`   Int64,
    `expires_s` Int64
)
ENGINE = MergeTree()
ORDER BY (name, taken_s, owner)
