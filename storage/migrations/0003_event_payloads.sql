-- Version 3: an event sent to many sessions stores its payload once. Outbox rows
-- become small references, so one fan-out writes one payload and N tiny rows.
CREATE TABLE event_payloads (
    id   INTEGER PRIMARY KEY,
    op   INTEGER NOT NULL,
    data BLOB NOT NULL
);

CREATE TABLE outbox_v3 (
    session_ref INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    INTEGER NOT NULL REFERENCES event_payloads (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_ref, seq)
) WITHOUT ROWID;

INSERT INTO event_payloads (id, op, data)
    SELECT row_number() OVER (ORDER BY session_ref, seq), op, data FROM outbox;
INSERT INTO outbox_v3 (session_ref, seq, event_id, created_at)
    SELECT session_ref, seq, row_number() OVER (ORDER BY session_ref, seq), created_at
    FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_v3 RENAME TO outbox;
CREATE INDEX outbox_age ON outbox (created_at);
CREATE INDEX outbox_event ON outbox (event_id);
