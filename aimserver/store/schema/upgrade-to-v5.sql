-- aimserver database, upgrade from schema version 4 to 5: offline-message caps
-- per sender. Runs inside one transaction; the code that applies it also bumps
-- the version row.

-- Who sent the message, as the caps tell senders apart: the normalized screen
-- name (no spaces, lower case), so "Bob Smith" and "bobsmith" share one quota.
-- Messages already stored get it from their display form; screen names are
-- ASCII, where SQLite's lower() is the server's.
ALTER TABLE offline_messages ADD COLUMN sender_key TEXT NOT NULL DEFAULT '';
UPDATE offline_messages SET sender_key = lower(replace(sender, ' ', ''));

-- Counting one sender's messages to one recipient reads those rows only.
CREATE INDEX offline_messages_by_sender ON offline_messages (recipient, sender_key);
