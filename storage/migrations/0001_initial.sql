-- Version 1: the whole schema of the contract (PROTOCOL.md sections 1, 4-8).

-- Actors registered on this server (home actors). Foreign actors have no row here.
CREATE TABLE actors (
    id            INTEGER PRIMARY KEY,
    local_name    TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- The server's own ID-Certs, newest last. replaced_at is set when a rotation
-- replaces a cert; the cert stays servable for timestamps before it.
CREATE TABLE server_certs (
    id            INTEGER PRIMARY KEY,
    serial        TEXT NOT NULL UNIQUE,
    der           BLOB NOT NULL,
    not_before    INTEGER NOT NULL,
    not_after     INTEGER NOT NULL,
    replaced_at   INTEGER
);

-- One client of one actor, home or foreign. A session ID may be reused once the
-- session that held it has ended, so uniqueness only covers live sessions.
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    fid             TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    is_foreign      INTEGER NOT NULL,
    current_cert_id INTEGER,
    created_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    next_seq        INTEGER NOT NULL DEFAULT 0,
    dropped_through INTEGER NOT NULL DEFAULT -1,
    dropped_pending INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX sessions_live ON sessions (fid, session_id) WHERE ended_at IS NULL;
CREATE INDEX sessions_fid ON sessions (fid);

-- Every ID-Cert a session has held: issued here (home) or presented (foreign).
CREATE TABLE id_certs (
    id             INTEGER PRIMARY KEY,
    session_ref    INTEGER NOT NULL REFERENCES sessions (id),
    fid            TEXT NOT NULL,
    serial         TEXT NOT NULL,
    issuer_domain  TEXT NOT NULL,
    der            BLOB NOT NULL,
    not_before     INTEGER NOT NULL,
    not_after      INTEGER NOT NULL,
    invalidated_at INTEGER,
    UNIQUE (issuer_domain, serial)
);
CREATE INDEX id_certs_fid ON id_certs (fid, not_before);
CREATE INDEX id_certs_session ON id_certs (session_ref);

-- Bearer tokens, stored only as SHA-256. A token lives as long as its session's
-- current ID-Cert is valid; rotation and logout delete it.
CREATE TABLE tokens (
    hash        BLOB PRIMARY KEY,
    session_ref INTEGER NOT NULL REFERENCES sessions (id),
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_session ON tokens (session_ref);

-- MLS KeyPackages. init_key is unique on the whole server; each session has at
-- most one last-resort KeyPackage.
CREATE TABLE keypackages (
    id             INTEGER PRIMARY KEY,
    session_ref    INTEGER NOT NULL REFERENCES sessions (id),
    init_key       BLOB NOT NULL UNIQUE,
    data           BLOB NOT NULL,
    not_after      INTEGER NOT NULL,
    is_last_resort INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX keypackages_session ON keypackages (session_ref, is_last_resort, id);
CREATE UNIQUE INDEX keypackages_last_resort ON keypackages (session_ref)
    WHERE is_last_resort = 1;

-- The durable per-session event outbox (PROTOCOL.md section 8).
CREATE TABLE outbox (
    session_ref INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    op          INTEGER NOT NULL,
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (session_ref, seq)
) WITHOUT ROWID;
CREATE INDEX outbox_age ON outbox (created_at);
