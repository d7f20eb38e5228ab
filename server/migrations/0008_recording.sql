-- Call recording: the state of each recording, where its audio is and how
-- to check it, and the recording policy per user, ring group and public
-- number (read with the setting recording_mode = selected).

-- recording: being written (the row comes first, so a crash leaves a
-- trace); stored: in the object store; failed: no audio kept (reason
-- says why); interrupted: the server stopped mid-call, the audio up to
-- then is stored.
ALTER TABLE recordings ADD COLUMN state TEXT NOT NULL DEFAULT 'recording'
    CHECK (state IN ('recording', 'stored', 'failed', 'interrupted'));
ALTER TABLE recordings ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recordings ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN format TEXT NOT NULL DEFAULT 'wav-ulaw-stereo';
ALTER TABLE recordings ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN caller TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN callee TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN channels TEXT NOT NULL DEFAULT 'left: caller, right: callee';
CREATE INDEX recordings_started ON recordings(started_at);
CREATE INDEX recordings_call ON recordings(call_id);
CREATE INDEX recording_access_recent ON recording_access(recording, actor, at);

ALTER TABLE users ADD COLUMN record_calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ring_groups ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dids ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
