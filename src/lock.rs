//! One jailswap at a time: an advisory lock on the journal's directory.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Held for as long as the value lives; the kernel releases it if the
/// process dies, so a killed jailswap never leaves a stale lock behind.
pub struct Lock {
    _directory: File,
}

impl Lock {
    pub fn acquire(journal: &Path) -> Result<Lock> {
        let directory = journal.parent().unwrap_or(Path::new("/"));
        if !directory.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(directory).map_err(|error| {
                Error::new(crate::error::Kind::Journal, format!("cannot create the journal directory {:?}: {error}", directory.display().to_string()))
                    .with_help("check that its parent exists and is writable, and that jailswap runs as root")
            })?;
        }
        let file = File::open(directory).map_err(|error| {
            Error::new(
                crate::error::Kind::Journal,
                format!(
                    "cannot open the journal directory {:?}: {error}",
                    directory.display().to_string()
                ),
            )
        })?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _directory: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::busy(format!(
                "another jailswap is running (it holds the lock on {:?})",
                directory.display().to_string()
            ))
            .with_help("wait for it to finish; `jailswap status` shows what it is doing")),
            Err(std::fs::TryLockError::Error(error)) => Err(Error::new(
                crate::error::Kind::Journal,
                format!(
                    "cannot lock the journal directory {:?}: {error}",
                    directory.display().to_string()
                ),
            )),
        }
    }
}
