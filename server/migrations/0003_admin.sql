-- The admin side: departments, admins with roles and grants, sign-in
-- sessions, the audit log, the shared phonebook, and recordings with their
-- access log (filled by the recording feature).

CREATE TABLE departments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- NULL: not in any department (only system and organisation admins see it).
ALTER TABLE users ADD COLUMN department INTEGER REFERENCES departments(id);
ALTER TABLE ring_groups ADD COLUMN department INTEGER REFERENCES departments(id);

CREATE TABLE admins (
    name                  TEXT PRIMARY KEY NOT NULL,
    role                  TEXT NOT NULL,            -- system | org | group | auditor | supervisor | readonly
    rights                TEXT NOT NULL DEFAULT '', -- comma-separated: recordings, devices
    password_hash         TEXT NOT NULL,            -- Argon2id PHC string
    must_change_password  INTEGER NOT NULL DEFAULT 1,
    totp_secret           TEXT,                     -- base32; NULL until enrolled
    totp_pending          TEXT,                     -- secret offered, not yet confirmed
    totp_last_step        INTEGER NOT NULL DEFAULT 0, -- a code is good once
    recovery_codes        TEXT NOT NULL DEFAULT '', -- comma-separated SHA-256 hex of unused codes
    failed_signins        INTEGER NOT NULL DEFAULT 0,
    locked_until          INTEGER NOT NULL DEFAULT 0, -- unix seconds
    created_at            INTEGER NOT NULL
);

CREATE TABLE admin_departments (
    admin       TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
    department  INTEGER NOT NULL REFERENCES departments(id) ON DELETE CASCADE,
    PRIMARY KEY (admin, department)
);

CREATE TABLE admin_dids (
    admin  TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
    did    TEXT NOT NULL,
    PRIMARY KEY (admin, did)
);

-- Only a hash of the cookie's token is kept: a copy of the database does
-- not sign anybody in.
CREATE TABLE admin_sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    admin       TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    state       TEXT NOT NULL,                      -- password | mfa | enrol | ok
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    source      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,                       -- unix ms
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL DEFAULT '',
    before  TEXT,                                   -- JSON
    after   TEXT,                                   -- JSON
    source  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit_log(at);

CREATE TABLE phonebook (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    kana        TEXT NOT NULL DEFAULT '',
    number      TEXT NOT NULL,
    department  TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    version     INTEGER NOT NULL,                   -- the phonebook version at its last change
    deleted     INTEGER NOT NULL DEFAULT 0          -- tombstone, so a delta can say it went
);
CREATE INDEX phonebook_version ON phonebook(version);
INSERT INTO meta (key, value) VALUES ('phonebook_version', '0');

CREATE TABLE recordings (
    id           TEXT PRIMARY KEY NOT NULL,
    call_id      TEXT NOT NULL,
    extension    TEXT NOT NULL DEFAULT '',
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL DEFAULT 0,
    object_key   TEXT NOT NULL
);

CREATE TABLE recording_access (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    recording  TEXT NOT NULL,
    action     TEXT NOT NULL,                       -- list | play | download
    source     TEXT NOT NULL DEFAULT ''
);
