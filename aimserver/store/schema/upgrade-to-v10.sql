-- aimserver database, upgrade from schema version 9 to 10: the public chat
-- rooms (exchange 5) an administrator creates and deletes. Runs inside one
-- transaction; the code that applies it also bumps the version row.

-- One row per room, under the key of its name (aimserver.wire.roomname's
-- room_key: names differing only in case are one room), with the name as
-- the administrator spelled it. No account owns a room. The store keeps at
-- most MAX_PUBLIC_ROOMS of them (aimserver/store/interfaces.py).
CREATE TABLE chat_rooms
(
    key        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
