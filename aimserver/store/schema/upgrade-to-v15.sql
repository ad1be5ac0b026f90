-- aimserver database, upgrade from schema version 14 to 15: MD5(password)
-- of each account, so that a strong-hash BUCP login (TLV 0x4C) can be
-- checked against a fresh random challenge instead of the account's fixed
-- auth key, and a captured login does not replay ([auth] allow_weak_hash =
-- false; LOGIN.md §10). Runs inside one transaction; the code that applies
-- it also bumps the version row.

-- 16 raw bytes, or NULL while it is not known: the accounts of earlier
-- versions (their password is not known) until the password is set again
-- or the account makes one roasted (FLAP channel-1) login, and accounts
-- registered from a BUCP digest. Password-equivalent for BUCP logins, like
-- the digests.
ALTER TABLE accounts ADD COLUMN password_md5 BLOB
    CHECK (password_md5 IS NULL OR length(password_md5) = 16);
