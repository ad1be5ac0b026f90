-- aimserver database, upgrade from schema version 12 to 13: each account's
-- conversation history, so that the browser client shows the same
-- conversation on every device. Runs inside one transaction; the code that
-- applies it also bumps the version row.

-- One row per IM an account sent (outgoing = 1) or received, with the other
-- screen name as given. The id orders an account's entries (the order they
-- were recorded in); the server prunes each history as it adds to it
-- (aimserver/store/history.py). Deleting the account deletes its rows.
CREATE TABLE history
(
    id         INTEGER PRIMARY KEY,
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    peer       TEXT NOT NULL,
    outgoing   INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    text       TEXT NOT NULL,
    at         INTEGER NOT NULL
);

-- An account's entries in order: the newest few, the pruning, the cascade.
CREATE INDEX history_by_account ON history (normalized, id);

-- Its entries by age: pruning what is older than [web] history_days finds
-- them without reading the others (each IM kept prunes).
CREATE INDEX history_by_age ON history (normalized, at);
