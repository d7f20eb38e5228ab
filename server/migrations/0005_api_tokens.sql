-- API tokens for scripts: each acts with its admin's rights. Only a hash
-- of the token is kept.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT NOT NULL UNIQUE,
    admin         TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
    label         TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL DEFAULT 0,
    expires_at    INTEGER NOT NULL                -- unix seconds
);
