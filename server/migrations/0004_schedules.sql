-- Business-hour schedules (destinations `schedule:NAME`).
CREATE TABLE schedules (
    name           TEXT PRIMARY KEY NOT NULL,
    label          TEXT NOT NULL DEFAULT '',
    hours          TEXT NOT NULL,                 -- "mon-fri 08:30-17:15; sat 09:00-12:00"
    open_dest      TEXT NOT NULL,
    closed_dest    TEXT NOT NULL,
    holiday_dest   TEXT,                          -- NULL: closed_dest
    disaster_dest  TEXT,                          -- NULL: no change in disaster mode
    closed_days    TEXT NOT NULL DEFAULT '',      -- "12-29..01-03, 08-13"
    use_holidays   INTEGER NOT NULL DEFAULT 1
);
