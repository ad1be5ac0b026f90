-- aimserver database, schema version 1: accounts.
-- Passwords are never stored: only a per-account random auth key and the two
-- BUCP digests derived from it (LOGIN.md §10).

CREATE TABLE version
(
    version INTEGER NOT NULL -- contains one row
);

CREATE TABLE accounts
(
    normalized  TEXT PRIMARY KEY,  -- screen name without spaces, lower case
    screen_name TEXT NOT NULL,     -- display form, as registered
    auth_key    TEXT NOT NULL,     -- random ASCII salt sent in 17,07
    weak_md5    BLOB NOT NULL,     -- MD5(key ‖ password ‖ signature)
    strong_md5  BLOB NOT NULL,     -- MD5(key ‖ MD5(password) ‖ signature)
    suspended   INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    created_at  INTEGER NOT NULL   -- unix seconds
);
