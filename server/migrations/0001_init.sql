-- Users (extensions) and their SIP secrets, stored only as HA1 digests.
CREATE TABLE users (
    extension   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    ha1_md5     TEXT NOT NULL,
    ha1_sha256  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- One row per registered device of an extension (RFC 5626 instance or contact URI).
CREATE TABLE bindings (
    extension    TEXT NOT NULL REFERENCES users(extension) ON DELETE CASCADE,
    device_key   TEXT NOT NULL,
    contact      TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    transport    TEXT NOT NULL,
    source       TEXT NOT NULL,
    instance     TEXT,
    reg_id       INTEGER,
    pn_provider  TEXT,
    pn_prid      TEXT,
    pn_param     TEXT,
    call_id      TEXT NOT NULL,
    cseq         INTEGER NOT NULL,
    user_agent   TEXT,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (extension, device_key)
);

-- Settings fixed at creation (the digest realm) and change counters that
-- running servers poll to pick up edits made by other processes at once.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('users_version', '0');

CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'users_version';
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'users_version';
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'users_version';
END;
