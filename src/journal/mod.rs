//! The write-ahead journal: the only module that speaks SQL.
//!
//! SQLite in WAL mode with `synchronous=FULL`: a transaction of the journal
//! is on disk when `commit` returns, so every "durable before" of the
//! protocol (docs/design.md) is one SQLite commit. The schema is the
//! ordered migrations of the repository's `journal/` folder, applied by
//! `PRAGMA user_version`.
//!
//! The journal names commands that `recover` runs as root, so it is trusted
//! only when nobody else could have written it: run as root, the journal,
//! its directory and the files beside it must be owned by root and writable
//! by nobody else, or every command refuses (74) before it reads a step.
//! Files the journal creates are 0600 in a directory created 0700, whatever
//! the umask.
//!
//! A transaction must be able to finish in either direction even when the
//! journal's file system fills up: before the first stop, a reserve file of
//! the size the rest of the transaction could need is set aside beside the
//! journal (`journal.sqlite.reserve`); when a write finds the disk full, the
//! reserve is given back and the write tried again.

mod audit;
mod error;
mod files;
mod query;
mod records;

pub use audit::Verdict;
pub use error::{Cause, JournalError};
#[cfg(feature = "fault-injection")]
pub use error::{Fault, FaultHook};
use files::companion;
pub use files::{backup_path, check_trust, create_directory, reserve_path};
pub use records::{
    now, shell_words, timestamp, Audit, StepRecord, StepResult, StepState, TxnRecord, TxnState,
};

use crate::plan::Plan;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The migrations, in order; the n-th brings the schema to version n.
const MIGRATIONS: &[&str] = &[
    include_str!("../../journal/0001_initial.sql"),
    include_str!("../../journal/0002_audit_chain.sql"),
    include_str!("../../journal/0003_identities_batches_results.sql"),
];

/// A connection to the journal file.
pub struct Journal {
    connection: Connection,
    path: PathBuf,
    #[cfg(feature = "fault-injection")]
    fault: Option<FaultHook>,
}

impl Journal {
    /// Opens the journal for writing, creating it (0600, directory 0700)
    /// when it does not exist yet, after checking that it can be trusted.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        check_trust(path)?;
        let directory = path.parent().filter(|directory| !directory.exists());
        let existed = path.exists();
        Journal::open_inner(path, true).map_err(|cause| {
            // A journal that could not be made leaves nothing behind (a
            // full disk, say): the host is exactly as it was.
            if !existed {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(companion(path, suffix));
                }
                if let Some(directory) = directory {
                    let _ = std::fs::remove_dir(directory);
                }
            }
            JournalError {
                path: path.to_path_buf(),
                cause,
            }
        })
    }

    /// Opens an existing journal for reading; `None` when there is none yet.
    pub fn open_read(path: &Path) -> Result<Option<Journal>, JournalError> {
        check_trust(path)?;
        if !path.exists() {
            return Ok(None);
        }
        let journal = Journal::open_inner(path, false).map_err(|cause| JournalError {
            path: path.to_path_buf(),
            cause,
        })?;
        // A file without the schema yet holds no transaction.
        let version = journal
            .check_version()
            .map_err(|cause| journal.error(cause))?;
        Ok((version > 0).then_some(journal))
    }

    fn open_inner(path: &Path, write: bool) -> Result<Journal, Cause> {
        if write {
            create_directory(path)?;
            // Create the file ourselves so that its mode is 0600 from the
            // start; SQLite gives its -wal and -shm files the same mode.
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
            return Err(Cause::Corrupt(format!(
                "integrity check failed: {integrity}"
            )));
        }
        let mut journal = Journal {
            connection,
            path: path.to_path_buf(),
            #[cfg(feature = "fault-injection")]
            fault: None,
        };
        if write {
            let mode: String =
                journal
                    .connection
                    .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
            if mode != "wal" {
                return Err(Cause::Corrupt(format!(
                    "cannot switch to WAL mode (got {mode})"
                )));
            }
            journal
                .connection
                .pragma_update(None, "synchronous", "FULL")?;
            journal
                .connection
                .pragma_update(None, "foreign_keys", true)?;
            journal.migrate()?;
        } else {
            journal.check_version()?;
        }
        Ok(journal)
    }

    fn check_version(&self) -> Result<usize, Cause> {
        let version: usize = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(Cause::Corrupt(format!(
                "schema version {version} is newer than this jailswap knows ({})",
                MIGRATIONS.len()
            )));
        }
        Ok(version)
    }

    fn migrate(&mut self) -> Result<(), Cause> {
        let version = self.check_version()?;
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

    fn error(&self, cause: Cause) -> JournalError {
        JournalError {
            path: self.path.clone(),
            cause,
        }
    }

    /// Installs a fault hook (crash tests only).
    #[cfg(feature = "fault-injection")]
    pub fn set_fault_hook(&mut self, hook: Option<FaultHook>) {
        self.fault = hook;
    }

    /// Asks the fault hook what happens at this point of a commit.
    #[allow(unused_variables)]
    fn fault_point(&mut self, name: &'static str, after: bool) -> Result<(), JournalError> {
        #[cfg(feature = "fault-injection")]
        if let Some(fault) = self.fault.as_mut().and_then(|hook| hook(name, after)) {
            let failure = |code: i32| {
                Cause::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(code),
                    Some(format!("injected at journal commit {name:?}")),
                ))
            };
            return Err(self.error(match fault {
                Fault::Crash => Cause::Crashed,
                Fault::DiskFull => failure(rusqlite::ffi::SQLITE_FULL),
                Fault::IoError => failure(rusqlite::ffi::SQLITE_IOERR),
            }));
        }
        Ok(())
    }

    /// Runs one commit named `name`, with the fault points around it.
    fn commit<T>(
        &mut self,
        name: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, Cause>,
    ) -> Result<T, JournalError> {
        self.fault_point(name, false)?;
        let value = work(&mut self.connection).map_err(|cause| self.error(cause))?;
        self.fault_point(name, true)?;
        Ok(value)
    }

    /// Sets `bytes` aside beside the journal (see the module essay); fails
    /// when there is no room, before anything was changed.
    pub fn ensure_reserve(&self, bytes: u64) -> Result<(), JournalError> {
        let path = reserve_path(&self.path);
        if std::fs::metadata(&path).is_ok_and(|meta| meta.len() >= bytes) {
            return Ok(());
        }
        let made = (|| -> std::io::Result<()> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            // Written, not only sized: blocks must really be taken, on any
            // file system.
            let mut writer = std::io::BufWriter::new(&file);
            let block = vec![0u8; 64 * 1024];
            let mut written = file.metadata()?.len();
            std::io::Seek::seek(&mut writer, std::io::SeekFrom::Start(written))?;
            // Bounded by `bytes`.
            while written < bytes {
                let length = block.len().min((bytes - written) as usize);
                std::io::Write::write_all(&mut writer, &block[..length])?;
                written += length as u64;
            }
            std::io::Write::flush(&mut writer)?;
            drop(writer);
            file.sync_all()
        })();
        made.map_err(|error| {
            let _ = std::fs::remove_file(&path);
            self.error(Cause::NoRoom {
                needed: bytes,
                error,
            })
        })
    }

    /// Gives the reserve back to the file system; true when there was one.
    pub fn release_reserve(&self) -> bool {
        std::fs::remove_file(reserve_path(&self.path)).is_ok()
    }

    /// Writes the whole plan in one commit: after it returns, recovery can
    /// finish or undo anything the transaction will do.
    pub fn begin(&mut self, plan: &Plan, audit: &Audit) -> Result<i64, JournalError> {
        let plan_json =
            serde_json::to_string(plan).map_err(|e| self.error(Cause::Corrupt(e.to_string())))?;
        self.commit("begin", |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "INSERT INTO txn (kind, state, store, live, target, archive_as, from_label, to_label, from_inode, to_inode,
                                  plan, started_at, user, uid, hostname, command_line, reason, from_fingerprint, to_fingerprint,
                                  from_id, to_id)
                 VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
                params![
                    plan.kind.as_str(),
                    plan.store.to_string_lossy(),
                    plan.live,
                    plan.target,
                    plan.archive_as,
                    plan.from_label,
                    plan.to_label,
                    plan.live_id.inode() as i64,
                    plan.target_id.inode() as i64,
                    plan_json,
                    now(),
                    audit.user,
                    audit.uid,
                    audit.hostname,
                    audit.command_line,
                    audit.reason,
                    audit.from_fingerprint,
                    audit.to_fingerprint,
                    plan.live_id.to_text(),
                    plan.target_id.to_text(),
                ],
            )?;
            let id = transaction.last_insert_rowid();
            {
                let mut insert = transaction.prepare(
                    "INSERT INTO step (txn_id, seq, wave, phase, action, jail, detail, state, batch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'planned', ?8)",
                )?;
                for step in &plan.steps {
                    let detail = serde_json::to_string(&step.action)
                        .map_err(|e| Cause::Corrupt(e.to_string()))?;
                    insert.execute(params![
                        id,
                        step.seq,
                        step.wave,
                        step.phase.as_str(),
                        step.action.verb(),
                        step.action.jail(),
                        detail,
                        step.batch,
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(id)
        })
    }

    /// Records the intent of a wave: these steps (or their undos) are about
    /// to run, from now. One commit for the whole wave. The time stays if
    /// the process is killed before the completion: recovery then still
    /// knows when each jail may have gone down, for the downtime and the
    /// timeline; the completion replaces it with the step's own.
    pub fn mark_started(&mut self, id: i64, seqs: &[u32], undo: bool) -> Result<(), JournalError> {
        let (state, sql) = if undo {
            (
                StepState::Undoing,
                "UPDATE step SET state = ?3, undo_started_at = ?4 WHERE txn_id = ?1 AND seq = ?2",
            )
        } else {
            (
                StepState::Started,
                "UPDATE step SET state = ?3, started_at = ?4 WHERE txn_id = ?1 AND seq = ?2",
            )
        };
        let at = now();
        self.commit("intent", |connection| {
            let transaction = connection.transaction()?;
            {
                let mut update = transaction.prepare(sql)?;
                for seq in seqs {
                    update.execute(params![id, seq, state.as_str(), at])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
    }

    /// Records the outcome of a wave's steps (or undos). One commit.
    pub fn mark_finished(
        &mut self,
        id: i64,
        results: &[StepResult],
        undo: bool,
    ) -> Result<(), JournalError> {
        // A step that did not run after all (a sibling failed first) loses
        // the time its intent recorded.
        let sql = if undo {
            "UPDATE step SET state = ?3, undo_started_at = CASE WHEN ?4 IS NULL AND ?3 = 'done' THEN NULL ELSE COALESCE(?4, undo_started_at) END, undo_finished_at = COALESCE(?5, undo_finished_at), undo_error = ?6, result = COALESCE(?7, result) WHERE txn_id = ?1 AND seq = ?2"
        } else {
            "UPDATE step SET state = ?3, started_at = CASE WHEN ?4 IS NULL AND ?3 = 'planned' THEN NULL ELSE COALESCE(?4, started_at) END, finished_at = COALESCE(?5, finished_at), error = ?6, result = COALESCE(?7, result) WHERE txn_id = ?1 AND seq = ?2"
        };
        self.commit("completion", |connection| {
            let transaction = connection.transaction()?;
            {
                let mut update = transaction.prepare(sql)?;
                for r in results {
                    update.execute(params![
                        id,
                        r.seq,
                        r.state.as_str(),
                        r.started_at.map(timestamp),
                        r.finished_at.map(timestamp),
                        r.error,
                        r.output,
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
    }

    /// Sets the state of steps without times, as recovery does once it has
    /// observed whether an uncertain step took effect.
    pub fn set_step_states(
        &mut self,
        id: i64,
        states: &[(u32, StepState)],
    ) -> Result<(), JournalError> {
        self.update_step_states(id, states, "observed")
    }

    /// Sets the states of several steps in one commit named `commit`.
    fn update_step_states(
        &mut self,
        id: i64,
        states: &[(u32, StepState)],
        commit: &'static str,
    ) -> Result<(), JournalError> {
        self.commit(commit, |connection| {
            let transaction = connection.transaction()?;
            {
                let mut update = transaction
                    .prepare("UPDATE step SET state = ?3 WHERE txn_id = ?1 AND seq = ?2")?;
                for (seq, state) in states {
                    update.execute(params![id, seq, state.as_str()])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
    }

    pub fn set_state(
        &mut self,
        id: i64,
        state: TxnState,
        attention: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), JournalError> {
        self.commit("state", |connection| {
            connection.execute(
                "UPDATE txn SET state = ?2, attention = ?3, error = COALESCE(?4, error) WHERE id = ?1",
                params![id, state.as_str(), attention, error],
            )?;
            Ok(())
        })
    }

    /// Counts a recovery that starts; a recovery that finishes resets it.
    pub fn set_interrupted_recoveries(&mut self, id: i64, count: u32) -> Result<(), JournalError> {
        self.commit("recovery_count", |connection| {
            connection.execute(
                "UPDATE txn SET interrupted_recoveries = ?2 WHERE id = ?1",
                params![id, count],
            )?;
            Ok(())
        })
    }

    /// Makes a transaction final, in one commit. After the journal failed
    /// mid-transaction this is the first write that records what was done
    /// since: every step's state as the process holds it (`steps`) and the
    /// cause of the rollback (`error`, kept when one is recorded already).
    pub fn finish(
        &mut self,
        id: i64,
        state: TxnState,
        downtime: (Option<i64>, Option<&str>),
        steps: &[(u32, StepState)],
        error: Option<&str>,
    ) -> Result<(), JournalError> {
        let (downtime_ms, downtime_jails) = downtime;
        // The final state and the record's place in the audit chain are one
        // commit: a finished transaction is always hashed.
        self.commit("finish", |connection| {
            let transaction = connection.transaction()?;
            {
                let mut update = transaction
                    .prepare("UPDATE step SET state = ?3 WHERE txn_id = ?1 AND seq = ?2")?;
                for (seq, state) in steps {
                    update.execute(params![id, seq, state.as_str()])?;
                }
            }
            transaction.execute(
                "UPDATE txn SET state = ?2, finished_at = ?3, downtime_ms = ?4, downtime_jails = ?5, attention = NULL, interrupted_recoveries = 0, error = COALESCE(error, ?6) WHERE id = ?1",
                params![id, state.as_str(), now(), downtime_ms, downtime_jails, error],
            )?;
            let previous: Option<String> = transaction
                .query_row("SELECT record_hash FROM txn WHERE record_hash IS NOT NULL AND id < ?1 ORDER BY id DESC LIMIT 1", [id], |row| row.get(0))
                .optional()?;
            let previous = previous.unwrap_or_default();
            let hash = audit::record_hash(&transaction, id, &previous)?;
            transaction.execute(
                "UPDATE txn SET previous_hash = ?2, record_hash = ?3 WHERE id = ?1",
                params![id, previous, hash],
            )?;
            transaction.commit()?;
            Ok(())
        })?;
        self.write_backup();
        Ok(())
    }

    /// Keeps a copy of the journal as of the last finished transaction, for
    /// the day the journal itself is damaged. Best effort: a failed copy
    /// does not fail the transaction.
    fn write_backup(&self) {
        let backup = backup_path(&self.path);
        let temporary = companion(&backup, ".tmp");
        let _ = std::fs::remove_file(&temporary);
        let copied = self
            .connection
            .execute("VACUUM INTO ?1", params![temporary.to_string_lossy()]);
        if copied.is_ok() {
            let _ = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600));
            let _ = std::fs::rename(&temporary, &backup);
        } else {
            let _ = std::fs::remove_file(&temporary);
            tracing::warn!(
                "could not write journal backup {:?}",
                backup.display().to_string()
            );
        }
    }
}
