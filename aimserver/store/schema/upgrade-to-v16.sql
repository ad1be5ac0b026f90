-- aimserver database, upgrade from schema version 15 to 16: history entries
-- numbered per account, their ids no longer kept in the chunks. Runs inside
-- one transaction; the code that applies it also bumps the version row.
--
-- Why: building a list per entry to put its id in cost the browser client
-- as much as the rest of a history batch's Python (bench S13). Now an
-- account's entries are numbered 1, 2, ... in the order recorded, and the
-- entry at position i of a chunk's array of n has the id last_id - (n - 1 -
-- i): the array holds [peer, outgoing, text, at], and null where the pruning
-- took an entry from the middle (count does not count those). The store no
-- longer asks for the highest id of all, so its index goes.
--
-- The v15 entries [id, peer, outgoing (0 or 1), text, at] lose their id
-- (json_remove: the rest stays as it was written, byte for byte), and 0 or
-- 1 becomes false or true, as the store now writes it. They keep their order;
-- each account's are numbered anew, 1 for its oldest, across its chunks in
-- chunk order (json_each gives an array's elements in order, and the
-- aggregate takes them as given).
UPDATE history_chunks
SET entries = (SELECT json_group_array(
                              json_replace(json_remove(value, '$[0]'), '$[1]',
                                           json(CASE json_extract(value, '$[2]') WHEN 0 THEN 'false' ELSE 'true' END)))
               FROM json_each(history_chunks.entries));

UPDATE history_chunks
SET last_id = (SELECT sum(c.count)
               FROM history_chunks AS c
               WHERE c.normalized = history_chunks.normalized
                 AND c.id <= history_chunks.id);

DROP INDEX history_chunks_by_last_id;
