-- aimserver database, upgrade from schema version 7 to 8: indexes for the
-- directory searches by name and by interest keyword (ODir 0F,02), and the
-- buddy icons no account owns any more. Runs inside one transaction; the
-- code that applies it also bumps the version row.

-- A search matches a value ignoring ASCII case, as "lower(column) =
-- lower(?)" (aimserver/store/directory.py), and only among users who allow
-- searches: each index holds just those users, keyed by the expression the
-- search compares. A name index also holds the key, so that the matches of
-- one name come out in name order, as the search returns them. A search by
-- name needs a first or a last name (ODir status 0x0004 without either).
CREATE INDEX directory_by_first_name ON directory_info (lower(first_name), normalized)
    WHERE allow_search = 1;
CREATE INDEX directory_by_last_name ON directory_info (lower(last_name), normalized)
    WHERE allow_search = 1;

-- A keyword may be in any of the five columns: one index each, which SQLite
-- reads together (a MULTI-INDEX OR). Kept in the row, not in a table of
-- their own, so that nothing moves and a record stays one row to read and
-- write; a column past the user's last keyword is NULL, a small entry.
CREATE INDEX directory_by_keyword1 ON directory_info (lower(keyword1)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword2 ON directory_info (lower(keyword2)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword3 ON directory_info (lower(keyword3)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword4 ON directory_info (lower(keyword4)) WHERE allow_search = 1;
CREATE INDEX directory_by_keyword5 ON directory_info (lower(keyword5)) WHERE allow_search = 1;

-- Version 7 left in the file the items only a deleted account owned (they
-- were never read); deleting an account now removes them with it.
DELETE FROM bart_items
WHERE NOT EXISTS (SELECT 1 FROM bart_owners AS o WHERE o.hash = bart_items.hash);
