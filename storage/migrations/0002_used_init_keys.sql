-- Version 2: remember the init_key of every KeyPackage handed out, so that a
-- claimed KeyPackage (RFC 9420 section 16.8: used once) cannot be uploaded again.
CREATE TABLE used_init_keys (
    init_key BLOB PRIMARY KEY,
    used_at  INTEGER NOT NULL
) WITHOUT ROWID;
