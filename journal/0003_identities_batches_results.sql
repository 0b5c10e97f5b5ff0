-- Template stores other than directories (btrfs subvolumes, ZFS datasets)
-- identify templates by UUID or GUID rather than inode: `from_id` and
-- `to_id` hold the identity as text (an inode, `subvolume:UUID`,
-- `dataset:GUID`); the integer columns keep the inode, 0 for other kinds.
-- Rolling upgrades restart jails a batch at a time: `batch` numbers the
-- batch a step belongs to. Some steps produce something the audit keeps:
-- `result` holds it as JSON (a copy's identity, a command's exit status and
-- the last lines of its output, a template's fingerprint).

ALTER TABLE txn ADD COLUMN from_id TEXT;
ALTER TABLE txn ADD COLUMN to_id TEXT;
ALTER TABLE step ADD COLUMN batch INTEGER;
ALTER TABLE step ADD COLUMN result TEXT;
