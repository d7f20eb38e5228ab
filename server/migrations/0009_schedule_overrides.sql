-- One-off dates of a schedule ("2026-12-28 closed; 2027-01-04 10:00-15:00"):
-- they come before holidays, yearly closed days and the weekly hours.
ALTER TABLE schedules ADD COLUMN overrides TEXT NOT NULL DEFAULT '';
