-- 0005: the inventory's summary tables, kept by materialized views on
-- events, read by chstore.Visibility (the ClickHouse visibility.Source).
--
-- Same constraints as 0001: valid on ClickHouse 18.16 and on current
-- releases. 18.16 has no SimpleAggregateFunction, so the sums and the
-- first and last times live in one AggregatingMergeTree as -State values
-- (read with -Merge): a SummingMergeTree cannot keep a min and a max, and a
-- second table for them would cost ingest a third view.
--
-- day is the UTC day of event_time (toDate(event_time, 'UTC')), and each
-- table is partitioned by toYYYYMMDD(day), the same numbers as the events
-- partitions, so retention (Store.DropPartitionsBefore) drops a day of
-- summaries with its day of events, and Store.RebuildInventory replaces
-- whole days.
--
-- A materialized view sees each INSERT into events as it happens, before
-- ReplacingMergeTree collapses anything: an insert that is retried after it
-- succeeded on the server (a lost answer, or a crash before the Kafka offset
-- was committed) is counted twice here, while events reads that count each
-- event_id once stay exact. RebuildInventory recounts a day from the events
-- with each event_id once. A view sees only inserts made after it exists:
-- events stored before this migration are summarised by a rebuild
-- (agentwatch-ingest inventory rebuild, docs/schema.md).
--
-- inventory_agent_route_daily: one row per (UTC day, agent, route), the
-- calls, bytes and status mix, and the first and last event time in Unix
-- milliseconds. Status classes: s2xx for 200..299 and so on, s401 and s403
-- also counted in s4xx. The key leads with agent_id so one agent's rows
-- are a range, and day is constant within a partition.
CREATE TABLE IF NOT EXISTS inventory_agent_route_daily
(
    `day`            Date,
    `agent_id`       String,
    `route`          String,
    `calls`          AggregateFunction(count),
    `request_bytes`  AggregateFunction(sum, UInt64),
    `response_bytes` AggregateFunction(sum, UInt64),
    `s2xx`           AggregateFunction(sum, UInt64),
    `s3xx`           AggregateFunction(sum, UInt64),
    `s4xx`           AggregateFunction(sum, UInt64),
    `s5xx`           AggregateFunction(sum, UInt64),
    `s401`           AggregateFunction(sum, UInt64),
    `s403`           AggregateFunction(sum, UInt64),
    `first_ms`       AggregateFunction(min, Int64),
    `last_ms`        AggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (agent_id, route, day);

-- The view's SELECT is also what RebuildInventory inserts, from the events
-- of one day read once per event_id (chstore.inventoryRouteSelect): change
-- both together.
CREATE MATERIALIZED VIEW IF NOT EXISTS inventory_agent_route_daily_mv TO inventory_agent_route_daily AS
SELECT
    toDate(event_time, 'UTC') AS day,
    agent_id,
    route,
    countState() AS calls,
    sumState(request_bytes) AS request_bytes,
    sumState(response_bytes) AS response_bytes,
    sumState(toUInt64(status >= 200 AND status < 300)) AS s2xx,
    sumState(toUInt64(status >= 300 AND status < 400)) AS s3xx,
    sumState(toUInt64(status >= 400 AND status < 500)) AS s4xx,
    sumState(toUInt64(status >= 500 AND status < 600)) AS s5xx,
    sumState(toUInt64(status = 401)) AS s401,
    sumState(toUInt64(status = 403)) AS s403,
    minState(event_time_ms) AS first_ms,
    maxState(event_time_ms) AS last_ms
FROM events
GROUP BY day, agent_id, route;

-- inventory_agent_attr_daily: the distinct source addresses (kind 1),
-- credentials (kind 2) and gateways (kind 3) of each agent and UTC day,
-- with their calls. Empty values are not kept. SummingMergeTree adds up the
-- calls of a (day, agent, kind, value) when parts merge.
CREATE TABLE IF NOT EXISTS inventory_agent_attr_daily
(
    `day`      Date,
    `agent_id` String,
    `kind`     UInt8,
    `value`    String,
    `calls`    UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(day)
ORDER BY (agent_id, kind, value, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS inventory_agent_attr_daily_mv TO inventory_agent_attr_daily AS
SELECT
    toDate(event_time, 'UTC') AS day,
    agent_id,
    tupleElement(attr, 1) AS kind,
    tupleElement(attr, 2) AS value,
    count() AS calls
FROM events
ARRAY JOIN [(toUInt8(1), source_ip), (toUInt8(2), credential_id), (toUInt8(3), gateway)] AS attr
WHERE value != ''
GROUP BY day, agent_id, kind, value
