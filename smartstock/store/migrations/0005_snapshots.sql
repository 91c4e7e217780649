-- Learning from the line: every saved snapshot with why it was saved (defect / uncertain), the
-- model's scores, and the operator's label once given (`smartstock dataset label`, MQTT cmd/label).
-- `smartstock dataset export` builds a class-folder training set from the labelled rows.

CREATE TABLE snapshots (
    event_id       TEXT PRIMARY KEY,
    ts             TEXT NOT NULL,
    file           TEXT NOT NULL,
    reason         TEXT NOT NULL CHECK (reason IN ('defect', 'uncertain')),
    label          TEXT NOT NULL,
    scores         TEXT NOT NULL,
    model_id       TEXT,
    model_release  INTEGER,
    operator_label TEXT,
    labelled_at    TEXT,
    labelled_by    TEXT
);
CREATE INDEX snapshots_ts ON snapshots (ts);
