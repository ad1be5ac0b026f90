-- aimserver database, upgrade from schema version 1 to 2: server-stored
-- buddy lists (feedbags) and server secrets. Runs inside one transaction;
-- the code that applies it also bumps the version row.

CREATE TABLE feedbag_items
(
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL CHECK (group_id BETWEEN 0 AND 65535),
    item_id    INTEGER NOT NULL CHECK (item_id BETWEEN 0 AND 65535),
    class_id   INTEGER NOT NULL CHECK (class_id BETWEEN 0 AND 65535),
    name       TEXT NOT NULL,
    attributes BLOB NOT NULL,      -- the item's raw TLV block, as sent
    PRIMARY KEY (normalized, group_id, item_id)
);

CREATE TABLE feedbag_meta
(
    normalized    TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    last_modified INTEGER NOT NULL -- unix seconds
);

CREATE TABLE secrets
(
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
