-- aimserver database, upgrade from schema version 11 to 12: the BART type of
-- each item, so that the items of one type can be listed (the management
-- API's GET /bart?type=). Runs inside one transaction; the code that applies
-- it also bumps the version row.

-- The type (u16) of the 10,02 upload that stored the item; a later upload
-- of the same bytes does not change it (aimserver/store/bart_items.py).
-- Earlier versions did not record it: their items count as buddy icons
-- (type 1), what clients upload as their icon.
ALTER TABLE bart_items ADD COLUMN bart_type INTEGER NOT NULL DEFAULT 1
    CHECK (bart_type BETWEEN 0 AND 65535);

-- Listing one type, most recently stored first: each entry ends with the
-- item's rowid, the order items were stored in, so the list needs no sort.
CREATE INDEX bart_items_by_type ON bart_items (bart_type);
