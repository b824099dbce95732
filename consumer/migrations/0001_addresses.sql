-- Portable between SQLite and PostgreSQL: plain types, timestamps as RFC 3339 text written
-- by the service, and microseconds since the epoch where the order of events matters.

-- Every event this consumer has applied or recorded, by id: the idempotency record. A
-- redelivered event finds its id here and is acknowledged without being applied again.
CREATE TABLE applied_events (
    event_id        TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    effective_date  TEXT NOT NULL,
    occurred_at_us  BIGINT NOT NULL,
    -- 'applied': it became the customer's current address; 'superseded': a change that
    -- takes effect later had already been applied, so it is kept here only.
    outcome         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    -- Which consumer instance applied it (its connection name): shows competing
    -- consumers sharing the work.
    recorded_by     TEXT NOT NULL
);

CREATE INDEX applied_events_by_customer ON applied_events (customer_id);

-- Each customer's current address: the applied change with the latest
-- (effective_date, occurred_at_us, event_id).
CREATE TABLE customer_addresses (
    customer_id     TEXT PRIMARY KEY,
    line1           TEXT NOT NULL,
    line2           TEXT,
    town            TEXT NOT NULL,
    postcode        TEXT NOT NULL,
    country         TEXT NOT NULL,
    effective_date  TEXT NOT NULL,
    occurred_at_us  BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
