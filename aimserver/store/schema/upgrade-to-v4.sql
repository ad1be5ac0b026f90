-- aimserver database, upgrade from schema version 3 to 4: service bots.
-- Runs inside one transaction; the code that applies it also bumps the
-- version row.

-- A bot account is exempt from rate limits and warnings (like the service
-- bots of the AIM network). Only an administrator sets it.
ALTER TABLE accounts ADD COLUMN bot INTEGER NOT NULL DEFAULT 0 CHECK (bot IN (0, 1));
