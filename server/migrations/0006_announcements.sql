-- Announcements: recorded prompts and hold music the PBX plays itself
-- (destinations `announcement:NAME`, IVR prompts, music on hold). The audio
-- is DATA/announcements/NAME.wav, 8 kHz mono 16-bit; a row is written only
-- after its file is in place.
CREATE TABLE announcements (
    name        TEXT PRIMARY KEY NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL CHECK (source IN ('tts', 'upload', 'builtin')),
    text        TEXT,                      -- what espeak-ng said (tts, builtin prompts)
    voice       TEXT,                      -- espeak-ng voice, e.g. ja
    samples     INTEGER NOT NULL DEFAULT 0, -- at 8 kHz
    version     INTEGER NOT NULL DEFAULT 1, -- rises at every change
    updated_at  INTEGER NOT NULL DEFAULT 0  -- Unix seconds
);

-- Hold music and a greeting per public number and per ring group (NULL: the
-- next level decides: the DID's, else the group's, else the setting
-- music_on_hold); an announcement repeated while a caller waits in a group.
ALTER TABLE dids ADD COLUMN moh TEXT;
ALTER TABLE dids ADD COLUMN greeting TEXT;
ALTER TABLE ring_groups ADD COLUMN moh TEXT;
ALTER TABLE ring_groups ADD COLUMN greeting TEXT;
ALTER TABLE ring_groups ADD COLUMN queue_announcement TEXT;
ALTER TABLE ring_groups ADD COLUMN queue_announcement_secs INTEGER;
