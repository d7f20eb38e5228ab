-- Call routing configuration (read at each call, so edits take effect on
-- the next call) and durable call records.

-- Per-user call settings: caller ID choice and forwarding.
CREATE TABLE user_settings (
    extension          TEXT PRIMARY KEY NOT NULL REFERENCES users(extension) ON DELETE CASCADE,
    caller_id          TEXT NOT NULL DEFAULT 'main',   -- 'main' or 'own'
    own_did            TEXT,
    fwd_always         TEXT,
    fwd_busy           TEXT,
    fwd_no_answer      TEXT,
    fwd_no_answer_secs INTEGER NOT NULL DEFAULT 20,
    fwd_unregistered   TEXT
);

-- Ring (hunt) groups. members: comma-separated extensions or outside numbers.
CREATE TABLE ring_groups (
    number          TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    strategy        TEXT NOT NULL,                 -- simultaneous | sequential | round-robin | longest-idle
    members         TEXT NOT NULL,
    member_timeout  INTEGER NOT NULL DEFAULT 15,
    timeout         INTEGER NOT NULL DEFAULT 60,
    overflow        TEXT,
    skip_busy       INTEGER NOT NULL DEFAULT 0,
    rr_next         INTEGER NOT NULL DEFAULT 0
);

-- Carrier trunks, tried in priority order (lowest first) for outbound calls.
CREATE TABLE trunks (
    name        TEXT PRIMARY KEY NOT NULL,
    host        TEXT NOT NULL,                     -- ip:port
    transport   TEXT NOT NULL DEFAULT 'udp',
    username    TEXT,
    password    TEXT,
    priority    INTEGER NOT NULL DEFAULT 10,
    register    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'unknown',   -- written by the running server
    state_detail TEXT NOT NULL DEFAULT '',
    state_at    INTEGER NOT NULL DEFAULT 0
);

-- Public numbers and where they ring: user:EXT, group:NUMBER or number:DIGITS.
CREATE TABLE dids (
    number  TEXT PRIMARY KEY NOT NULL,
    dest    TEXT NOT NULL,
    label   TEXT NOT NULL DEFAULT ''
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per call, written at every state change.
CREATE TABLE calls (
    id              TEXT PRIMARY KEY NOT NULL,
    direction       TEXT NOT NULL,                 -- internal | inbound | outbound
    caller          TEXT NOT NULL,
    callee          TEXT NOT NULL,
    did             TEXT,
    trunk           TEXT,
    started_at      INTEGER NOT NULL,              -- unix ms
    answered_at     INTEGER,
    ended_at        INTEGER,
    result          TEXT NOT NULL DEFAULT 'ringing',
    answered_by     TEXT,
    answered_device TEXT,
    caller_id_shown TEXT
);
CREATE INDEX calls_started ON calls(started_at);
CREATE INDEX calls_caller ON calls(caller);
CREATE INDEX calls_callee ON calls(callee);
CREATE INDEX calls_answered_by ON calls(answered_by);
