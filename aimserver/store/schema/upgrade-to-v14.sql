-- aimserver database, upgrade from schema version 13 to 14: each account's
-- conversation history kept in chunks, many entries to a row, instead of
-- one row per entry. Runs inside one transaction; the code that applies it
-- also bumps the version row.
--
-- Why: the browser client records two entries per IM (the sender's and the
-- recipient's), in batches. One row per entry cost a table b-tree insert,
-- two TEXT-keyed index inserts, a foreign key check and pruning deletes for
-- every entry; chunks cost about one row write per account per batch, plus
-- the rewrite of the chunk the pruning cuts into
-- (aimserver/store/history.py).

-- One row holds up to history.CHUNK_ENTRIES (64) entries of one account, as
-- a JSON array of [id, peer, outgoing (0 or 1), text, at], oldest (lowest
-- id) first. Entry ids are per entry, unique in the store, and need not be
-- contiguous in a chunk (other accounts' entries are recorded in between).
-- The row's own id orders an account's chunks (the order they were started
-- in), so that its entries read in id order chunk after chunk.
--
-- What pruning needs is kept beside the JSON, so that it decides which
-- chunks to drop or rewrite without reading the entries: count (never 0:
-- an emptied chunk is deleted), the oldest and newest "at" among the
-- entries, and last_id, the highest entry id in it (the store's next entry
-- id follows the highest last_id). The JSON column comes last: the small
-- columns before it stay on the row's first page even when the entries
-- spill onto overflow pages. Deleting the account deletes its chunks.
CREATE TABLE history_chunks
(
    id         INTEGER PRIMARY KEY,
    normalized TEXT NOT NULL REFERENCES accounts (normalized) ON DELETE CASCADE,
    count      INTEGER NOT NULL CHECK (count > 0),
    oldest_at  INTEGER NOT NULL,
    newest_at  INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    entries    TEXT NOT NULL
);

-- An account's chunks in order: its newest (to append to), its oldest (to
-- prune), reads, the cascade. It covers the columns the pruning decides
-- from, so that walking an account's chunks reads no entries.
CREATE INDEX history_chunks_by_account ON history_chunks (normalized, id, count, oldest_at, newest_at);

-- The highest entry id in the store, without reading every chunk.
CREATE INDEX history_chunks_by_last_id ON history_chunks (last_id);

-- The v13 entries in (account, id) order, numbered 1, 2, ... in that order:
-- an account's entries have consecutive numbers, so number / 64 cuts them
-- into chunks of at most 64 (without window functions, which older SQLite
-- lacks). A temporary table, gone at the end.
CREATE TEMP TABLE history_v13_order
(
    seq INTEGER PRIMARY KEY,
    id  INTEGER NOT NULL
);
INSERT INTO history_v13_order (id)
SELECT id
FROM history
ORDER BY normalized, id;

-- Each chunk's entries are aggregated in the order the subquery gives them
-- (number order, hence id order: SQLite's sort for the GROUP BY keeps the
-- order of rows of one group, which the upgrade test checks); the chunks are
-- inserted in number order, so that each account's chunk ids increase with
-- its entry ids.
INSERT INTO history_chunks (normalized, count, oldest_at, newest_at, last_id, entries)
SELECT normalized,
       count(*),
       min(at),
       max(at),
       max(id),
       json_group_array(json_array(id, peer, outgoing, text, at))
FROM (SELECT o.seq, h.normalized, h.id, h.peer, h.outgoing, h.text, h.at
      FROM history_v13_order AS o
               JOIN history AS h ON h.id = o.id
      ORDER BY o.seq)
GROUP BY normalized, seq / 64
ORDER BY min(seq);

DROP TABLE history_v13_order;

-- Its indexes go with it.
DROP TABLE history;
