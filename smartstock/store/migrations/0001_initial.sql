-- SmartStock store, first schema. Quantities are in units; timestamps are UTC ISO-8601 strings
-- except the outbox, which uses unix seconds for cheap age arithmetic.

CREATE TABLE skus (
    sku                TEXT PRIMARY KEY,
    name               TEXT,
    order_cost         REAL,
    holding_cost       REAL,
    unit_cost          REAL,
    lead_time_days     REAL,
    lead_time_std_days REAL,
    service_level      REAL,
    service_type       TEXT,
    review_period_days REAL,
    production_rate    REAL,
    backorder_cost     REAL,
    annual_demand      REAL,
    updated_at         TEXT NOT NULL
);

CREATE TABLE stock_movements (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    sku       TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('produced', 'scrapped', 'sold', 'received', 'adjusted')),
    quantity  REAL NOT NULL,
    ref       TEXT UNIQUE,          -- idempotency key (inspection event id, sale key, ...); NULL = none
    note      TEXT
);
CREATE INDEX stock_movements_sku ON stock_movements (sku, kind);

CREATE TABLE sales (
    id          INTEGER PRIMARY KEY,
    sku         TEXT NOT NULL,
    date        TEXT NOT NULL,      -- YYYY-MM-DD
    quantity    REAL NOT NULL,
    price       REAL,
    source      TEXT,
    natural_key TEXT NOT NULL UNIQUE,  -- makes re-imports idempotent
    imported_at TEXT NOT NULL
);
CREATE INDEX sales_sku_date ON sales (sku, date);

CREATE TABLE inspections (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    ts            TEXT NOT NULL,
    sku           TEXT NOT NULL,
    label         TEXT NOT NULL,
    score         REAL NOT NULL,
    is_defect     INTEGER NOT NULL,
    latency_ms    REAL,
    model_id      TEXT,
    model_release INTEGER,
    frame_id      INTEGER,
    snapshot      TEXT
);
CREATE INDEX inspections_ts ON inspections (ts);
CREATE INDEX inspections_sku ON inspections (sku, id);

CREATE TABLE forecast_runs (
    id            INTEGER PRIMARY KEY,
    sku           TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    model         TEXT NOT NULL,
    freq          TEXT NOT NULL,
    horizon       INTEGER NOT NULL,
    season_length INTEGER,
    metrics_json  TEXT
);
CREATE INDEX forecast_runs_sku ON forecast_runs (sku, id);

CREATE TABLE forecasts (
    run_id   INTEGER NOT NULL REFERENCES forecast_runs (id) ON DELETE CASCADE,
    date     TEXT NOT NULL,
    forecast REAL NOT NULL,
    lo       REAL,
    hi       REAL,
    PRIMARY KEY (run_id, date)
);

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL,       -- e.g. low_stock:SKU-1; at most one open alert per key
    kind       TEXT NOT NULL,
    sku        TEXT,
    severity   TEXT NOT NULL DEFAULT 'warning',
    message    TEXT NOT NULL,
    data_json  TEXT,
    opened_at  TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at  TEXT
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (key) WHERE closed_at IS NULL;

CREATE TABLE model_history (
    id        INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    kind      TEXT NOT NULL,        -- defect-classifier / demand-forecaster
    model_id  TEXT,
    release   INTEGER,
    sha256    TEXT,
    status    TEXT NOT NULL,        -- installed, trial, committed, rolled_back, refused, ...
    detail    TEXT
);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    qos        INTEGER NOT NULL DEFAULT 1,
    retain     INTEGER NOT NULL DEFAULT 0,
    priority   INTEGER NOT NULL DEFAULT 1,   -- 0 telemetry (dropped first), 1 state, 2 events
    created_at REAL NOT NULL,
    size       INTEGER NOT NULL
);
CREATE INDEX outbox_priority ON outbox (priority, id);

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
