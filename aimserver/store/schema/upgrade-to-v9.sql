-- aimserver database, upgrade from schema version 8 to 9: a summary of each
-- stored buddy list, next to it. Runs inside one transaction; the code that
-- applies it also bumps the version row.

-- What a sign-on needs of a list (FeedbagSummary in store/interfaces.py):
-- the items as the 13,06 carries them, their count, the buddies' keys and the
-- few items that are neither buddy nor group (privacy settings, the icon).
-- Written by the server with every edit, in the same transaction; any write
-- of the items without one (the admin CLI, an older server) sets it to NULL,
-- so it is never stale; NULL means "read the items". Lists stored before
-- this version start with NULL and get one at their next sign-on.
ALTER TABLE feedbag_meta ADD COLUMN summary_count INTEGER;
ALTER TABLE feedbag_meta ADD COLUMN summary_wire BLOB;
ALTER TABLE feedbag_meta ADD COLUMN summary_buddies TEXT;
ALTER TABLE feedbag_meta ADD COLUMN summary_special BLOB;
