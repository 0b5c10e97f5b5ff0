//! How the journal fails, and what the operator can do about it (exit 74);
//! and, for the crash tests, the faults that can be injected at its commits.

use super::backup_path;
use std::path::PathBuf;

/// Why the journal failed.
#[derive(Debug)]
pub enum Cause {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
    /// The journal holds something it never writes.
    Corrupt(String),
    /// The audit chain does not verify: a record was edited or removed.
    Tampered(String),
    /// A file of the journal could have been written by someone else.
    Untrusted {
        file: PathBuf,
        why: String,
        fix: String,
    },
    /// There is no room to set the reserve aside.
    NoRoom {
        needed: u64,
        error: std::io::Error,
    },
    /// The process is considered dead here (crash tests only).
    #[cfg(feature = "fault-injection")]
    Crashed,
}

impl From<rusqlite::Error> for Cause {
    fn from(error: rusqlite::Error) -> Cause {
        Cause::Sqlite(error)
    }
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Cause {
        Cause::Io(error)
    }
}

/// A failure of the journal at `path`: exit 74.
#[derive(Debug)]
pub struct JournalError {
    pub path: PathBuf,
    pub cause: Cause,
}

impl std::error::Error for JournalError {}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.path.display().to_string();
        match &self.cause {
            Cause::Sqlite(rusqlite::Error::SqliteFailure(failure, detail)) => {
                let what = match failure.code {
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => {
                        "is corrupt"
                    }
                    rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::PermissionDenied => "cannot be opened for writing",
                    rusqlite::ErrorCode::DiskFull => "cannot grow: the disk is full",
                    _ => "cannot be used",
                };
                let detail = detail.as_deref().unwrap_or("");
                write!(f, "journal {shown:?} {what}: {failure} {detail}")
            }
            Cause::Sqlite(error) => write!(f, "journal {shown:?} cannot be used: {error}"),
            Cause::Io(error) => write!(f, "journal {shown:?} cannot be opened: {error}"),
            Cause::Corrupt(why) => write!(f, "journal {shown:?} is corrupt: {why}"),
            Cause::Tampered(why) => write!(f, "journal {shown:?} does not verify: {why}"),
            Cause::Untrusted { file, why, .. } => write!(
                f,
                "journal {shown:?} is not trusted: {:?} {why}; the journal names commands that run as root",
                file.display().to_string()
            ),
            Cause::NoRoom { needed, error } => write!(
                f,
                "journal {shown:?} has no room to finish a transaction: cannot set {needed} bytes aside beside it: {error}"
            ),
            #[cfg(feature = "fault-injection")]
            Cause::Crashed => write!(f, "simulated crash at a journal commit"),
        }
    }
}

impl JournalError {
    /// What the operator can do, for the `help:` line.
    pub fn help(&self) -> String {
        let backup = backup_path(&self.path);
        let backup_hint = if backup.exists() {
            format!(
                "; a copy as of the last finished transaction is at {:?}",
                backup.display().to_string()
            )
        } else {
            String::new()
        };
        match &self.cause {
            Cause::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => match failure.code {
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => format!(
                    "move it aside and restore a copy{backup_hint}; the host itself was not changed"
                ),
                rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied => {
                    "check that its file system is mounted read-write and that jailswap runs as root".into()
                }
                rusqlite::ErrorCode::DiskFull => "free space on its file system".into(),
                _ => format!("check the file{backup_hint}"),
            },
            Cause::Corrupt(_) => format!(
                "move it aside and restore a copy{backup_hint}; the host itself was not changed"
            ),
            Cause::Tampered(_) => format!(
                "compare with the copy at {:?} and with the system logs; the host itself was not changed",
                backup.display().to_string()
            ),
            Cause::Io(_) => "check that its directory exists and is writable, and that jailswap runs as root".into(),
            Cause::Untrusted { fix, .. } => format!("{fix}; nothing was changed"),
            Cause::NoRoom { .. } => format!(
                "free space on the file system of {:?}; nothing was changed",
                self.path.display().to_string()
            ),
            Cause::Sqlite(_) => format!("check the file{backup_hint}"),
            #[cfg(feature = "fault-injection")]
            Cause::Crashed => String::new(),
        }
    }

    /// Whether the disk under the journal is full.
    pub fn disk_full(&self) -> bool {
        match &self.cause {
            Cause::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::DiskFull
            }
            Cause::Io(error) => error.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }

    /// Whether the process is considered dead (crash tests only).
    pub fn crashed(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        if matches!(self.cause, Cause::Crashed) {
            return true;
        }
        false
    }
}

/// What an injected fault does at a journal commit (crash tests only).
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process dies here.
    Crash,
    /// The write fails as on a full disk (SQLITE_FULL, ENOSPC).
    DiskFull,
    /// The write fails as on a failing disk (SQLITE_IOERR, EIO).
    IoError,
}

/// Called around every commit with the commit's name and whether it already
/// happened; the answer injects a fault there (crash tests only).
#[cfg(feature = "fault-injection")]
pub type FaultHook = Box<dyn FnMut(&'static str, bool) -> Option<Fault> + Send>;
