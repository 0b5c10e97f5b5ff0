//! The write-ahead journal: the only module that speaks SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`: a transaction of the journal
//! is on disk when `commit` returns, so every "durable before" of the
//! protocol (docs/design.md) is one SQLite commit. The file is created 0600
//! in a directory created 0700: it records who did what as root. The schema
//! is the ordered migrations of the repository's `journal/` folder, applied
//! by `PRAGMA user_version`.

use crate::error::{Error, Kind};
use crate::plan::{Action, Phase, Plan};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The migrations, in order; the n-th brings the schema to version n.
const MIGRATIONS: &[&str] = &[
    include_str!("../journal/0001_initial.sql"),
    include_str!("../journal/0002_audit_chain.sql"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Planned,
    Started,
    Done,
    Failed,
    Undoing,
    Undone,
    UndoFailed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Planned => "planned",
            StepState::Started => "started",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Undoing => "undoing",
            StepState::Undone => "undone",
            StepState::UndoFailed => "undo_failed",
        }
    }

    fn parse(text: &str) -> StepState {
        match text {
            "started" => StepState::Started,
            "done" => StepState::Done,
            "failed" => StepState::Failed,
            "undoing" => StepState::Undoing,
            "undone" => StepState::Undone,
            "undo_failed" => StepState::UndoFailed,
            _ => StepState::Planned,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    Running,
    RollingBack,
    NeedsOperator,
    Committed,
    RolledBack,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Running => "running",
            TxnState::RollingBack => "rolling_back",
            TxnState::NeedsOperator => "needs_operator",
            TxnState::Committed => "committed",
            TxnState::RolledBack => "rolled_back",
        }
    }

    fn parse(text: &str) -> TxnState {
        match text {
            "rolling_back" => TxnState::RollingBack,
            "needs_operator" => TxnState::NeedsOperator,
            "committed" => TxnState::Committed,
            "rolled_back" => TxnState::RolledBack,
            _ => TxnState::Running,
        }
    }

    pub fn is_pending(self) -> bool {
        matches!(
            self,
            TxnState::Running | TxnState::RollingBack | TxnState::NeedsOperator
        )
    }
}

/// Who started a transaction, from where, and why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Audit {
    pub user: String,
    pub uid: u32,
    pub hostname: String,
    pub command_line: String,
    pub reason: Option<String>,
    /// Fingerprints of the outgoing and incoming templates.
    pub from_fingerprint: Option<String>,
    pub to_fingerprint: Option<String>,
}

impl Audit {
    /// The invoking user (the login behind `sudo` when set), host and command line.
    pub fn current(reason: Option<String>) -> Audit {
        let uid = nix::unistd::getuid();
        let login = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let user = match std::env::var("SUDO_USER") {
            Ok(sudo) if !sudo.is_empty() && sudo != login => format!("{login} (sudo by {sudo})"),
            _ => login,
        };
        Audit {
            user,
            uid: uid.as_raw(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            reason,
            from_fingerprint: None,
            to_fingerprint: None,
        }
    }
}

/// One step as the journal holds it.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub seq: u32,
    pub wave: u32,
    pub phase: Phase,
    pub action: Action,
    pub state: StepState,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub undo_started_at: Option<String>,
    pub undo_finished_at: Option<String>,
    pub undo_error: Option<String>,
}

/// One transaction as the journal holds it.
#[derive(Clone, Debug)]
pub struct TxnRecord {
    pub id: i64,
    pub kind: String,
    pub state: TxnState,
    pub from_label: String,
    pub to_label: String,
    pub archive_as: String,
    pub target: String,
    pub from_inode: u64,
    pub to_inode: u64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub downtime_ms: Option<i64>,
    pub downtime_jails: Option<String>,
    pub user: String,
    pub hostname: String,
    pub command_line: String,
    pub reason: Option<String>,
    pub interrupted_recoveries: u32,
    pub attention: Option<String>,
    pub error: Option<String>,
    pub plan_json: String,
    pub from_fingerprint: Option<String>,
    pub to_fingerprint: Option<String>,
}

impl TxnRecord {
    pub fn plan(&self) -> Result<Plan, JournalError> {
        serde_json::from_str(&self.plan_json).map_err(|error| {
            JournalError::Corrupt(format!("transaction {}: plan unreadable: {error}", self.id))
        })
    }
}

/// What happened to one step, written in one group commit with its wave.
#[derive(Clone, Debug)]
pub struct StepResult {
    pub seq: u32,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Corrupt(String),
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now() -> String {
    timestamp(Utc::now())
}

/// Called around every commit of the journal with the commit's name and
/// whether it already happened; answering `true` stops the world there (the
/// simulated host of the crash tests). Real runs have none.
pub type FaultHook = Box<dyn FnMut(&'static str, bool) -> bool + Send>;

/// A connection to the journal file.
pub struct Journal {
    connection: Connection,
    path: PathBuf,
    fault: Option<FaultHook>,
}

/// Where a copy of the journal as of the last finished transaction is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".backup");
    PathBuf::from(name)
}

impl Journal {
    /// Opens the journal for writing, creating it (0600, directory 0700)
    /// when it does not exist yet, and checks its integrity.
    pub fn open(path: &Path) -> Result<Journal, Error> {
        Journal::open_inner(path, true).map_err(|error| journal_error(path, error))
    }

    /// Opens an existing journal for reading; `None` when there is none yet.
    pub fn open_read(path: &Path) -> Result<Option<Journal>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        Journal::open_inner(path, false)
            .map(Some)
            .map_err(|error| journal_error(path, error))
    }

    fn open_inner(path: &Path, write: bool) -> Result<Journal, JournalError> {
        if write {
            if let Some(directory) = path.parent() {
                if !directory.exists() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(directory)?;
                }
            }
            // Create the file ourselves so that its mode is 0600 from the start.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)?;
            let permissions = std::fs::metadata(path)?.permissions();
            if permissions.mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        let flags = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let connection = Connection::open_with_flags(path, flags)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let integrity: String = connection.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if integrity != "ok" {
            return Err(JournalError::Corrupt(format!(
                "integrity check failed: {integrity}"
            )));
        }
        if write {
            let mode: String =
                connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
            if mode != "wal" {
                return Err(JournalError::Corrupt(format!(
                    "cannot switch to WAL mode (got {mode})"
                )));
            }
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", true)?;
            let mut journal = Journal {
                connection,
                path: path.to_path_buf(),
                fault: None,
            };
            journal.migrate()?;
            Ok(journal)
        } else {
            let version: usize =
                connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if version > MIGRATIONS.len() {
                return Err(JournalError::Corrupt(format!(
                    "schema version {version} is newer than this jailswap knows ({})",
                    MIGRATIONS.len()
                )));
            }
            Ok(Journal {
                connection,
                path: path.to_path_buf(),
                fault: None,
            })
        }
    }

    fn migrate(&mut self) -> Result<(), JournalError> {
        let version: usize = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(JournalError::Corrupt(format!(
                "schema version {version} is newer than this jailswap knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let transaction = self.connection.transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index + 1)?;
            transaction.commit()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Installs a fault hook (crash tests only).
    pub fn set_fault_hook(&mut self, hook: Option<FaultHook>) {
        self.fault = hook;
    }

    /// Asks the fault hook whether the process dies at this point.
    fn fault_point(&mut self, name: &'static str, after: bool) -> Result<(), Error> {
        if self.fault.as_mut().is_some_and(|hook| hook(name, after)) {
            let when = if after { "after" } else { "before" };
            return Err(Error::internal(format!(
                "simulated crash {when} journal commit {name:?}"
            )));
        }
        Ok(())
    }

    /// Writes the whole plan in one commit: after it returns, recovery can
    /// finish or undo anything the transaction will do.
    pub fn begin(&mut self, plan: &Plan, audit: &Audit) -> Result<i64, Error> {
        self.fault_point("begin", false)?;
        let result = (|| -> Result<i64, JournalError> {
            let plan_json =
                serde_json::to_string(plan).map_err(|e| JournalError::Corrupt(e.to_string()))?;
            let transaction = self.connection.transaction()?;
            transaction.execute(
                "INSERT INTO txn (kind, state, store, live, target, archive_as, from_label, to_label, from_inode, to_inode,
                                  plan, started_at, user, uid, hostname, command_line, reason, from_fingerprint, to_fingerprint)
                 VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    plan.kind.as_str(),
                    plan.store.to_string_lossy(),
                    plan.live,
                    plan.target,
                    plan.archive_as,
                    plan.from_label,
                    plan.to_label,
                    plan.live_inode as i64,
                    plan.target_inode as i64,
                    plan_json,
                    now(),
                    audit.user,
                    audit.uid,
                    audit.hostname,
                                        audit.command_line,
                    audit.reason,
                    audit.from_fingerprint,
                    audit.to_fingerprint,
                ],
            )?;
            let id = transaction.last_insert_rowid();
            {
                let mut insert = transaction.prepare(
                    "INSERT INTO step (txn_id, seq, wave, phase, action, jail, detail, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'planned')",
                )?;
                for step in &plan.steps {
                    let detail = serde_json::to_string(&step.action)
                        .map_err(|e| JournalError::Corrupt(e.to_string()))?;
                    let phase = match step.phase {
                        Phase::Forward => "forward",
                        Phase::AfterRollback => "after_rollback",
                    };
                    insert.execute(params![
                        id,
                        step.seq,
                        step.wave,
                        phase,
                        step.action.verb(),
                        step.action.jail(),
                        detail
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(id)
        })();
        let id = result.map_err(|error| journal_error(&self.path, error))?;
        self.fault_point("begin", true)?;
        Ok(id)
    }

    /// Records the intent of a wave: these steps (or their undos) are about
    /// to run. One commit for the whole wave.
    pub fn mark_started(&mut self, id: i64, seqs: &[u32], undo: bool) -> Result<(), Error> {
        let state = if undo {
            StepState::Undoing
        } else {
            StepState::Started
        };
        let states: Vec<(u32, StepState)> = seqs.iter().map(|seq| (*seq, state)).collect();
        self.update_step_states(id, &states, "intent")
    }

    /// Records the outcome of a wave's steps (or undos). One commit.
    pub fn mark_finished(
        &mut self,
        id: i64,
        results: &[StepResult],
        undo: bool,
    ) -> Result<(), Error> {
        let sql = if undo {
            "UPDATE step SET state = ?3, undo_started_at = COALESCE(?4, undo_started_at), undo_finished_at = COALESCE(?5, undo_finished_at), undo_error = ?6 WHERE txn_id = ?1 AND seq = ?2"
        } else {
            "UPDATE step SET state = ?3, started_at = COALESCE(?4, started_at), finished_at = COALESCE(?5, finished_at), error = ?6 WHERE txn_id = ?1 AND seq = ?2"
        };
        self.fault_point("completion", false)?;
        let result = (|| -> Result<(), JournalError> {
            let transaction = self.connection.transaction()?;
            {
                let mut update = transaction.prepare(sql)?;
                for r in results {
                    update.execute(params![
                        id,
                        r.seq,
                        r.state.as_str(),
                        r.started_at.map(timestamp),
                        r.finished_at.map(timestamp),
                        r.error
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })();
        result.map_err(|error| journal_error(&self.path, error))?;
        self.fault_point("completion", true)?;
        Ok(())
    }

    /// Sets the state of a step without times, as recovery does once it has
    /// observed whether an uncertain step took effect.
    pub fn set_step_states(&mut self, id: i64, states: &[(u32, StepState)]) -> Result<(), Error> {
        self.update_step_states(id, states, "observed")
    }

    /// Sets the states of several steps in one commit named `commit`.
    fn update_step_states(
        &mut self,
        id: i64,
        states: &[(u32, StepState)],
        commit: &'static str,
    ) -> Result<(), Error> {
        self.fault_point(commit, false)?;
        let result = (|| -> Result<(), JournalError> {
            let transaction = self.connection.transaction()?;
            {
                let mut update = transaction
                    .prepare("UPDATE step SET state = ?3 WHERE txn_id = ?1 AND seq = ?2")?;
                for (seq, state) in states {
                    update.execute(params![id, seq, state.as_str()])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })();
        result.map_err(|error| journal_error(&self.path, error))?;
        self.fault_point(commit, true)?;
        Ok(())
    }

    pub fn set_state(
        &mut self,
        id: i64,
        state: TxnState,
        attention: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), Error> {
        self.fault_point("state", false)?;
        self.connection
            .execute(
                "UPDATE txn SET state = ?2, attention = ?3, error = COALESCE(?4, error) WHERE id = ?1",
                params![id, state.as_str(), attention, error],
            )
            .map(|_| ())
            .map_err(|error| journal_error(&self.path, error.into()))?;
        self.fault_point("state", true)
    }

    /// Counts a recovery that starts; a recovery that finishes resets it.
    pub fn set_interrupted_recoveries(&mut self, id: i64, count: u32) -> Result<(), Error> {
        self.fault_point("recovery_count", false)?;
        self.connection
            .execute(
                "UPDATE txn SET interrupted_recoveries = ?2 WHERE id = ?1",
                params![id, count],
            )
            .map(|_| ())
            .map_err(|error| journal_error(&self.path, error.into()))?;
        self.fault_point("recovery_count", true)
    }

    /// Makes a transaction final.
    pub fn finish(
        &mut self,
        id: i64,
        state: TxnState,
        downtime_ms: Option<i64>,
        downtime_jails: Option<&str>,
    ) -> Result<(), Error> {
        self.fault_point("finish", false)?;
        // The final state and the record's place in the audit chain are one
        // commit: a finished transaction is always hashed.
        let result = (|| -> Result<(), JournalError> {
            let transaction = self.connection.transaction()?;
            transaction.execute(
                "UPDATE txn SET state = ?2, finished_at = ?3, downtime_ms = ?4, downtime_jails = ?5, attention = NULL, interrupted_recoveries = 0 WHERE id = ?1",
                params![id, state.as_str(), now(), downtime_ms, downtime_jails],
            )?;
            let previous: Option<String> = transaction
                .query_row("SELECT record_hash FROM txn WHERE record_hash IS NOT NULL AND id < ?1 ORDER BY id DESC LIMIT 1", [id], |row| row.get(0))
                .optional()?;
            let previous = previous.unwrap_or_default();
            let hash = record_hash(&transaction, id, &previous)?;
            transaction.execute(
                "UPDATE txn SET previous_hash = ?2, record_hash = ?3 WHERE id = ?1",
                params![id, previous, hash],
            )?;
            transaction.commit()?;
            Ok(())
        })();
        result.map_err(|error| journal_error(&self.path, error))?;
        self.fault_point("finish", true)?;
        self.write_backup();
        Ok(())
    }

    /// Keeps a copy of the journal as of the last finished transaction, for
    /// the day the journal itself is damaged. Best effort: a failed copy
    /// does not fail the transaction.
    fn write_backup(&self) {
        let backup = backup_path(&self.path);
        let mut temporary = backup.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let _ = std::fs::remove_file(&temporary);
        let copied = self
            .connection
            .execute("VACUUM INTO ?1", params![temporary.to_string_lossy()]);
        if copied.is_ok() {
            let _ = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600));
            let _ = std::fs::rename(&temporary, &backup);
        } else {
            tracing::warn!(
                "could not write journal backup {:?}",
                backup.display().to_string()
            );
        }
    }

    const TXN_COLUMNS: &'static str = "id, kind, state, from_label, to_label, archive_as, target, from_inode, to_inode, started_at, finished_at,
        downtime_ms, downtime_jails, user, hostname, command_line, reason, interrupted_recoveries, attention, error, plan,
        from_fingerprint, to_fingerprint";

    fn txn_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TxnRecord> {
        Ok(TxnRecord {
            id: row.get(0)?,
            kind: row.get(1)?,
            state: TxnState::parse(&row.get::<_, String>(2)?),
            from_label: row.get(3)?,
            to_label: row.get(4)?,
            archive_as: row.get(5)?,
            target: row.get(6)?,
            from_inode: row.get::<_, i64>(7)? as u64,
            to_inode: row.get::<_, i64>(8)? as u64,
            started_at: row.get(9)?,
            finished_at: row.get(10)?,
            downtime_ms: row.get(11)?,
            downtime_jails: row.get(12)?,
            user: row.get(13)?,
            hostname: row.get(14)?,
            command_line: row.get(15)?,
            reason: row.get(16)?,
            interrupted_recoveries: row.get(17)?,
            attention: row.get(18)?,
            error: row.get(19)?,
            plan_json: row.get(20)?,
            from_fingerprint: row.get(21)?,
            to_fingerprint: row.get(22)?,
        })
    }

    /// The transaction that did not reach a final state, if any.
    pub fn pending(&self) -> Result<Option<TxnRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM txn WHERE state IN ('running', 'rolling_back', 'needs_operator') ORDER BY id DESC LIMIT 1",
            Self::TXN_COLUMNS
        );
        self.connection
            .query_row(&sql, [], Self::txn_from_row)
            .optional()
            .map_err(|error| journal_error(&self.path, error.into()))
    }

    pub fn transaction(&self, id: i64) -> Result<Option<TxnRecord>, Error> {
        let sql = format!("SELECT {} FROM txn WHERE id = ?1", Self::TXN_COLUMNS);
        self.connection
            .query_row(&sql, [id], Self::txn_from_row)
            .optional()
            .map_err(|error| journal_error(&self.path, error.into()))
    }

    /// Transactions, newest first.
    pub fn history(&self, limit: Option<u32>) -> Result<Vec<TxnRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM txn ORDER BY id DESC LIMIT ?1",
            Self::TXN_COLUMNS
        );
        let limit = limit.map(i64::from).unwrap_or(-1);
        let result = (|| -> rusqlite::Result<Vec<TxnRecord>> {
            let mut statement = self.connection.prepare(&sql)?;
            let rows = statement.query_map([limit], Self::txn_from_row)?;
            rows.collect()
        })();
        result.map_err(|error| journal_error(&self.path, error.into()))
    }

    /// The newest transaction that reached a final state.
    pub fn last_final(&self) -> Result<Option<TxnRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM txn WHERE state IN ('committed', 'rolled_back') AND kind != 'prune' ORDER BY id DESC LIMIT 1",
            Self::TXN_COLUMNS
        );
        self.connection
            .query_row(&sql, [], Self::txn_from_row)
            .optional()
            .map_err(|error| journal_error(&self.path, error.into()))
    }

    /// The newest committed transaction: its archive is the rollback target.
    pub fn last_committed(&self) -> Result<Option<TxnRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM txn WHERE state = 'committed' AND kind != 'prune' ORDER BY id DESC LIMIT 1",
            Self::TXN_COLUMNS
        );
        self.connection
            .query_row(&sql, [], Self::txn_from_row)
            .optional()
            .map_err(|error| journal_error(&self.path, error.into()))
    }

    pub fn steps(&self, id: i64) -> Result<Vec<StepRecord>, Error> {
        let result = (|| -> Result<Vec<StepRecord>, JournalError> {
            let mut statement = self.connection.prepare(
                "SELECT seq, wave, phase, detail, state, started_at, finished_at, error, undo_started_at, undo_finished_at, undo_error
                 FROM step WHERE txn_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([id], |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                    row.get::<_, Option<String>>(10)?,
                ))
            })?;
            let mut steps = Vec::new();
            for row in rows {
                let (
                    seq,
                    wave,
                    phase,
                    detail,
                    state,
                    started_at,
                    finished_at,
                    error,
                    undo_started_at,
                    undo_finished_at,
                    undo_error,
                ) = row?;
                let action: Action = serde_json::from_str(&detail).map_err(|e| {
                    JournalError::Corrupt(format!(
                        "transaction {id} step {seq}: unreadable action: {e}"
                    ))
                })?;
                steps.push(StepRecord {
                    seq,
                    wave,
                    phase: if phase == "after_rollback" {
                        Phase::AfterRollback
                    } else {
                        Phase::Forward
                    },
                    action,
                    state: StepState::parse(&state),
                    started_at,
                    finished_at,
                    error,
                    undo_started_at,
                    undo_finished_at,
                    undo_error,
                });
            }
            Ok(steps)
        })();
        result.map_err(|error| journal_error(&self.path, error))
    }

    /// The number of transactions recorded.
    pub fn count(&self) -> Result<i64, Error> {
        self.connection
            .query_row("SELECT count(*) FROM txn", [], |row| row.get(0))
            .map_err(|error| journal_error(&self.path, error.into()))
    }
}

/// The hash of one transaction's record chained to `previous`: SHA-256 of
/// the previous hash and the canonical text of every column of its row
/// (but the chain's own) and of its steps, in a fixed order, one JSON
/// object per row. Rows are hashed one at a time, so a transaction of a
/// thousand jails costs no more memory than one row.
fn record_hash(connection: &Connection, id: i64, previous: &str) -> Result<String, JournalError> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    let mut hash_rows = |statement: &mut rusqlite::Statement<'_>| -> Result<(), JournalError> {
        let names: Vec<String> = statement
            .column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut rows = statement.query([id])?;
        while let Some(row) = rows.next()? {
            let mut object = serde_json::Map::new();
            for (index, name) in names.iter().enumerate() {
                let value = match row.get_ref(index)? {
                    rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                    rusqlite::types::ValueRef::Integer(n) => serde_json::Value::from(n),
                    rusqlite::types::ValueRef::Real(f) => serde_json::Value::from(f),
                    rusqlite::types::ValueRef::Text(t) => {
                        serde_json::Value::from(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => serde_json::Value::from(
                        b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                    ),
                };
                object.insert(name.clone(), value);
            }
            hasher.update(b"\n");
            hasher.update(serde_json::Value::Object(object).to_string().as_bytes());
        }
        Ok(())
    };
    hash_rows(&mut connection.prepare(
        "SELECT id, kind, state, store, live, target, archive_as, from_label, to_label, from_inode, to_inode, plan, started_at,
                finished_at, downtime_ms, downtime_jails, user, uid, hostname, command_line, reason, error, from_fingerprint, to_fingerprint
         FROM txn WHERE id = ?1",
    )?)?;
    hash_rows(&mut connection.prepare(
        "SELECT seq, wave, phase, action, jail, detail, state, started_at, finished_at, error, undo_started_at, undo_finished_at, undo_error
         FROM step WHERE txn_id = ?1 ORDER BY seq",
    )?)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// What `verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The integrity check passed and every finished record matches its hash.
    Intact { records: usize },
    /// The first record that does not match, and why.
    Broken { id: Option<i64>, reason: String },
}

impl Journal {
    /// Checks SQLite's integrity (the full check) and the audit chain.
    pub fn verify(&self) -> Result<Verdict, Error> {
        let result = (|| -> Result<Verdict, JournalError> {
            let integrity: String =
                self.connection
                    .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            if integrity != "ok" {
                return Ok(Verdict::Broken {
                    id: None,
                    reason: format!("SQLite integrity check failed: {integrity}"),
                });
            }
            let mut statement = self.connection.prepare("SELECT id, previous_hash, record_hash FROM txn WHERE record_hash IS NOT NULL ORDER BY id")?;
            let chain: Vec<(i64, Option<String>, String)> = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let mut previous = String::new();
            for (id, stored_previous, stored_hash) in &chain {
                if stored_previous.as_deref().unwrap_or("") != previous {
                    return Ok(Verdict::Broken {
                        id: Some(*id),
                        reason: "its link to the previous record does not match: a record before it was removed or altered".into(),
                    });
                }
                if record_hash(&self.connection, *id, &previous)? != *stored_hash {
                    return Ok(Verdict::Broken {
                        id: Some(*id),
                        reason: "its contents do not match its hash: the record was edited".into(),
                    });
                }
                previous = stored_hash.clone();
            }
            let unhashed: Option<i64> = self
                .connection
                .query_row("SELECT id FROM txn WHERE record_hash IS NULL AND state IN ('committed', 'rolled_back') ORDER BY id LIMIT 1", [], |row| row.get(0))
                .optional()?;
            if let Some(id) = unhashed {
                return Ok(Verdict::Broken {
                    id: Some(id),
                    reason: "it is final but carries no hash".into(),
                });
            }
            Ok(Verdict::Intact {
                records: chain.len(),
            })
        })();
        result.map_err(|error| journal_error(&self.path, error))
    }
}

/// Turns a failure of the journal into exit 74, naming the file and what to do.
pub fn journal_error(path: &Path, error: JournalError) -> Error {
    let shown = path.display().to_string();
    let backup = backup_path(path);
    let backup_hint = if backup.exists() {
        format!(
            "; a copy as of the last finished transaction is at {:?}",
            backup.display().to_string()
        )
    } else {
        String::new()
    };
    let (what, help) = match &error {
        JournalError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => match failure.code {
            rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => (
                "is corrupt".to_string(),
                format!("move it aside and restore a copy{backup_hint}; the host itself was not changed"),
            ),
            rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied => (
                "cannot be opened for writing".to_string(),
                "check that its file system is mounted read-write and that jailswap runs as root".to_string(),
            ),
            rusqlite::ErrorCode::DiskFull => ("cannot grow: the disk is full".to_string(), "free space on its file system".to_string()),
            _ => ("cannot be used".to_string(), format!("check the file{backup_hint}")),
        },
        JournalError::Corrupt(_) => (
            "is corrupt".to_string(),
            format!("move it aside and restore a copy{backup_hint}; the host itself was not changed"),
        ),
        JournalError::Io(_) => (
            "cannot be opened".to_string(),
            "check that its directory exists and is writable, and that jailswap runs as root".to_string(),
        ),
        JournalError::Sqlite(_) => ("cannot be used".to_string(), format!("check the file{backup_hint}")),
    };
    Error::new(Kind::Journal, format!("journal {shown:?} {what}: {error}")).with_help(help)
}
