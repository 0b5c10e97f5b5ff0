-- Tamper evidence: each finished transaction's record (its row and its
-- steps) is hashed together with the previous finished record's hash.
-- `jailswap verify` recomputes the chain. Also: the fingerprint of each
-- template (inode and manifest digest), taken before the downtime window.

ALTER TABLE txn ADD COLUMN previous_hash TEXT;
ALTER TABLE txn ADD COLUMN record_hash TEXT;
ALTER TABLE txn ADD COLUMN from_fingerprint TEXT;
ALTER TABLE txn ADD COLUMN to_fingerprint TEXT;
