//! One jailswap at a time: an advisory lock on the journal's directory.
//!
//! The holder also writes its pid to `<journal dir>/lock`, so that `status`
//! can tell a transaction in progress (its holder lives) from an
//! interrupted one, without taking the lock itself: a `status` that took
//! the lock even for a moment could make an upgrade started at that moment
//! refuse as busy.

use crate::error::{Error, Result};
use crate::journal::{create_directory, JournalError};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Held for as long as the value lives; the kernel releases it if the
/// process dies, so a killed jailswap never leaves a stale lock behind.
pub struct Lock {
    _directory: File,
    pid_file: PathBuf,
}

/// A live jailswap that holds the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
}

fn pid_file(journal: &Path) -> PathBuf {
    journal.parent().unwrap_or(Path::new("/")).join("lock")
}

impl Lock {
    pub fn acquire(journal: &Path) -> Result<Lock> {
        let directory = journal.parent().unwrap_or(Path::new("/"));
        let io = |error: std::io::Error| {
            Error::Journal(JournalError {
                path: journal.to_path_buf(),
                cause: crate::journal::Cause::Io(error),
            })
        };
        create_directory(journal).map_err(io)?;
        let file = File::open(directory).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = Lock::holder(journal)
                    .map(|holder| format!(" (pid {})", holder.pid))
                    .unwrap_or_default();
                return Err(Error::busy(
                    format!(
                        "another jailswap is running{who}: it holds the lock on {:?}",
                        directory.display().to_string()
                    ),
                    "wait for it to finish; `jailswap status` shows what it is doing",
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(io(error)),
        }
        let pid_file = pid_file(journal);
        // Best effort: the pid only helps `status` say who runs.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&pid_file)
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())
            });
        if let Err(error) = written {
            tracing::debug!("cannot write {:?}: {error}", pid_file.display().to_string());
        }
        Ok(Lock {
            _directory: file,
            pid_file,
        })
    }

    /// The live jailswap holding the lock of `journal`, if there is one.
    pub fn holder(journal: &Path) -> Option<Holder> {
        let text = std::fs::read_to_string(pid_file(journal)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        if pid == std::process::id() {
            return None;
        }
        // Alive, not a zombie, and a jailswap (where /proc tells).
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let zombie = stat
            .as_deref()
            .and_then(|stat| stat.rsplit(") ").next())
            .is_some_and(|rest| rest.starts_with('Z'));
        let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|comm| comm.trim() == "jailswap")
            .unwrap_or(true);
        (alive && !zombie && named).then_some(Holder { pid })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}
