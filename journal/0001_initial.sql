-- The journal of jailswap: one row per transaction, one row per step.
-- A transaction whose state is running, rolling_back or needs_operator is
-- pending; committed and rolled_back are final.

CREATE TABLE txn (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,            -- upgrade | rollback
    state           TEXT NOT NULL,            -- running | rolling_back | needs_operator | committed | rolled_back
    store           TEXT NOT NULL,
    live            TEXT NOT NULL,
    target          TEXT NOT NULL,            -- the template name that goes live
    archive_as      TEXT NOT NULL,            -- the name the outgoing template gets
    from_label      TEXT NOT NULL,
    to_label        TEXT NOT NULL,
    from_inode      INTEGER NOT NULL,
    to_inode        INTEGER NOT NULL,
    plan            TEXT NOT NULL,            -- the whole plan as JSON, read by recovery
    started_at      TEXT NOT NULL,            -- RFC 3339
    finished_at     TEXT,
    downtime_ms     INTEGER,
    downtime_jails  TEXT,                     -- JSON object: jail -> milliseconds
    user            TEXT NOT NULL,
    uid             INTEGER NOT NULL,
    hostname        TEXT NOT NULL,
    command_line    TEXT NOT NULL,
    reason          TEXT,
    interrupted_recoveries INTEGER NOT NULL DEFAULT 0,
    attention       TEXT,                     -- why an operator is needed, and what to run
    error           TEXT                      -- the failure that caused a rollback
);

CREATE TABLE step (
    txn_id           INTEGER NOT NULL REFERENCES txn(id),
    seq              INTEGER NOT NULL,
    wave             INTEGER NOT NULL,
    phase            TEXT NOT NULL,           -- forward | after_rollback
    action           TEXT NOT NULL,           -- the verb: stop, unmount, rename, ...
    jail             TEXT,
    detail           TEXT NOT NULL,           -- the action as JSON
    state            TEXT NOT NULL,           -- planned | started | done | failed | undoing | undone | undo_failed
    started_at       TEXT,
    finished_at      TEXT,
    error            TEXT,
    undo_started_at  TEXT,
    undo_finished_at TEXT,
    undo_error       TEXT,
    PRIMARY KEY (txn_id, seq)
);

CREATE INDEX txn_state ON txn(state);
