-- aimserver database, upgrade from schema version 10 to 11: which message
-- of the day each user was last shown (MULTISESSION.md §20: once per user,
-- not per session, across restarts). Runs inside one transaction; the code
-- that applies it also bumps the version row.

-- One row per account that was shown a MOTD: the digest of its text
-- (aimserver/services/motd.py). Deleting the account deletes the row.
CREATE TABLE motd_seen
(
    normalized TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    digest     TEXT NOT NULL
);
