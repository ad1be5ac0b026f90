-- aimserver database, upgrade from schema version 5 to 6: directory records.
-- Runs inside one transaction; the code that applies it also bumps the
-- version row.

-- One directory record per account (Locate 02,09 fields and 02,0F interest
-- keywords), whichever session wrote it. Values are the client's bytes, kept
-- as they came (the store bounds them, see check_directory_fields); an empty
-- value is a field the client left out. keyword1..keyword5 hold the interest
-- keywords in order, NULL past the last one.
CREATE TABLE directory_info
(
    normalized   TEXT PRIMARY KEY REFERENCES accounts (normalized) ON DELETE CASCADE,
    first_name   BLOB NOT NULL DEFAULT x'',
    middle_name  BLOB NOT NULL DEFAULT x'',
    last_name    BLOB NOT NULL DEFAULT x'',
    maiden_name  BLOB NOT NULL DEFAULT x'',
    nickname     BLOB NOT NULL DEFAULT x'',
    street       BLOB NOT NULL DEFAULT x'',
    city         BLOB NOT NULL DEFAULT x'',
    state        BLOB NOT NULL DEFAULT x'',
    zip_code     BLOB NOT NULL DEFAULT x'',
    country      BLOB NOT NULL DEFAULT x'',
    charset      BLOB NOT NULL DEFAULT x'',
    allow_search INTEGER NOT NULL DEFAULT 0 CHECK (allow_search IN (0, 1)),
    keyword1     BLOB,
    keyword2     BLOB,
    keyword3     BLOB,
    keyword4     BLOB,
    keyword5     BLOB
);
