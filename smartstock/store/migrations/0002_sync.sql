-- Sync: retained state is coalesced in the outbox. A row with a coalesce_key replaces every older
-- unsent row with the same key (the broker keeps only the last retained message per topic anyway),
-- so hours offline leave one state row per topic instead of thousands.

ALTER TABLE outbox ADD COLUMN coalesce_key TEXT;
CREATE INDEX outbox_coalesce ON outbox (coalesce_key) WHERE coalesce_key IS NOT NULL;
