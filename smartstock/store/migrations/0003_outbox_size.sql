-- Sync: an index on the row size lets the cap check read MAX(size) at once and SUM(size) from the
-- small index instead of every payload, so a large backlog does not stall the writers every 5 s.

CREATE INDEX outbox_size ON outbox (size);
