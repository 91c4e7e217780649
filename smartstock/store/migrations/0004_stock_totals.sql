-- Running stock totals per SKU and movement kind: the status page and every alert round read a few
-- rows here instead of aggregating the whole movements table (benchmarks: `python -m benchmarks store`).
-- A trigger adds each movement in the same transaction as its insert, whichever code inserts it (book,
-- book_many, the sales import): an INSERT OR IGNORE that skips a repeated ref fires nothing, and a
-- rolled-back batch takes its totals with it. Movements are append-only (a correction is an
-- `adjusted` movement), so nothing else can make the totals drift; deleting old movements (retention)
-- leaves the totals alone: they stay the sum of every movement ever booked.

CREATE TABLE stock_totals (
    sku      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    quantity REAL NOT NULL,
    PRIMARY KEY (sku, kind)
) WITHOUT ROWID;

INSERT INTO stock_totals(sku, kind, quantity)
    SELECT sku, kind, SUM(quantity) FROM stock_movements GROUP BY sku, kind;

CREATE TRIGGER stock_totals_add AFTER INSERT ON stock_movements
BEGIN
    INSERT INTO stock_totals(sku, kind, quantity) VALUES (NEW.sku, NEW.kind, NEW.quantity)
        ON CONFLICT (sku, kind) DO UPDATE SET quantity = quantity + excluded.quantity;
END;

CREATE TRIGGER stock_movements_append_only BEFORE UPDATE ON stock_movements
BEGIN
    SELECT RAISE(ABORT, 'stock movements are append-only: book an adjusted movement instead');
END;

-- Retention deletes the oldest movements by their time.
CREATE INDEX stock_movements_ts ON stock_movements (ts);
