-- aimserver database, upgrade from schema version 6 to 7: account settings
-- (Admin 0x0007) and buddy icons (BART 0x0010). Runs inside one transaction;
-- the code that applies it also bumps the version row.

-- The account's e-mail address (Admin 07,04 tag 0x0011; '' when none was
-- given), its registration preference (tag 0x0013: 1 nobody may find the
-- account by e-mail, 2 those who know the address may, 3 the directory may
-- show it too) and whether the account was confirmed (07,06).
ALTER TABLE accounts ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN registration_status INTEGER NOT NULL DEFAULT 2
    CHECK (registration_status BETWEEN 1 AND 3);
ALTER TABLE accounts ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1));

CREATE INDEX accounts_by_email ON accounts (email) WHERE email <> '';

-- Buddy icons and other BART items, stored once per content hash (MD5 of the
-- data), whoever uploaded them.
CREATE TABLE bart_items
(
    hash       BLOB PRIMARY KEY CHECK (length(hash) BETWEEN 1 AND 255),
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL    -- unix seconds
);

-- Who uploaded which item: an item nobody owns any longer can be removed, so
-- the table is bounded by the accounts' upload allowance.
CREATE TABLE bart_owners
(
    normalized  TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    hash        BLOB NOT NULL REFERENCES bart_items (hash) ON DELETE CASCADE,
    uploaded_at INTEGER NOT NULL,  -- unix seconds
    PRIMARY KEY (normalized, hash)
);

CREATE INDEX bart_owners_by_hash ON bart_owners (hash);
