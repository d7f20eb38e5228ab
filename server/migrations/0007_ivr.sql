-- Multi-level voice menus (IVR), destinations `ivr:NAME`. The prompt
-- columns name announcements; a menu is read from here each time a call
-- enters it, so a saved change is live at once. A menu and its options are
-- always written together in one transaction.
CREATE TABLE ivr_menus (
    name            TEXT PRIMARY KEY NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    greeting        TEXT,                                -- played once, on the first entry in a call
    prompt          TEXT NOT NULL,                       -- the menu's choices
    invalid_prompt  TEXT NOT NULL DEFAULT 'ivr-invalid',
    timeout_prompt  TEXT NOT NULL DEFAULT 'ivr-timeout',
    first_digit_ms  INTEGER NOT NULL DEFAULT 5000,       -- after the prompt, for the first key
    inter_digit_ms  INTEGER NOT NULL DEFAULT 2000,       -- between keys of a longer entry
    max_repeats     INTEGER NOT NULL DEFAULT 3,          -- failures replayed before on_failure
    on_failure      TEXT NOT NULL DEFAULT 'hangup',      -- a destination, 'back' or 'hangup'
    direct_dial     INTEGER NOT NULL DEFAULT 0,          -- keyed extensions ring
    updated_at      INTEGER NOT NULL DEFAULT 0           -- Unix ms
);

-- Keys (1 to 4 of 0-9 * #) and what they do: a destination (ivr:SUB is a
-- sub-menu), 'back', 'repeat' or 'hangup'.
CREATE TABLE ivr_options (
    menu    TEXT NOT NULL REFERENCES ivr_menus(name) ON DELETE CASCADE,
    digits  TEXT NOT NULL,
    action  TEXT NOT NULL,
    PRIMARY KEY (menu, digits)
);
