-- aimserver database, upgrade from schema version 2 to 3: warning levels and
-- offline messages (MULTISESSION.md §15, §12). Runs inside one transaction;
-- the code that applies it also bumps the version row.

-- The level as last set and when; the server computes the decay since then.
ALTER TABLE accounts ADD COLUMN warning_level INTEGER NOT NULL DEFAULT 0
    CHECK (warning_level BETWEEN 0 AND 1000);  -- tenths of a percent
ALTER TABLE accounts ADD COLUMN warning_updated_at INTEGER NOT NULL DEFAULT 0;  -- unix seconds

-- IMs sent "store if offline" to a signed-off user, until a session gets them.
-- AUTOINCREMENT: ids only grow, even after deletes, so the server can delete
-- exactly what it delivered ("id <= last delivered").
CREATE TABLE offline_messages
(
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    sender    TEXT NOT NULL,       -- display form
    cookie    BLOB NOT NULL CHECK (length(cookie) = 8),
    channel   INTEGER NOT NULL CHECK (channel BETWEEN 0 AND 65535),
    tlvs      BLOB NOT NULL,       -- the raw TLV block to relay, as sent
    sent_at   INTEGER NOT NULL     -- unix seconds
);

CREATE INDEX offline_messages_by_recipient ON offline_messages (recipient, id);
