//! The files of the journal: where its companions lie (backup, reserve,
//! the command records, the lock), the trust check over all of them, and
//! the directory that holds them.

use super::{Cause, JournalError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where a copy of the journal as of the last finished transaction is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    companion(path, ".backup")
}

/// The reserve set aside beside the journal.
pub fn reserve_path(path: &Path) -> PathBuf {
    companion(path, ".reserve")
}

pub(super) fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The files that make up the journal, for the trust check.
fn journal_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["", "-wal", "-shm", ".backup", ".reserve"]
        .iter()
        .map(|suffix| companion(path, suffix))
        .collect();
    if let Some(directory) = path.parent() {
        let commands = directory.join("commands");
        if let Ok(entries) = std::fs::read_dir(&commands) {
            files.extend(entries.flatten().map(|entry| entry.path()));
        }
        files.push(commands);
        files.push(directory.join("lock"));
        files.insert(0, directory.to_path_buf());
    }
    files
}

/// Run as root, refuses a journal that someone else could have written: its
/// directory, the journal and every file beside it must be owned by root
/// and not writable by group or others.
pub fn check_trust(path: &Path) -> Result<(), JournalError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    for file in journal_files(path) {
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(JournalError {
                    path: path.to_path_buf(),
                    cause: Cause::Io(error),
                })
            }
        };
        let shown = file.display().to_string();
        let untrusted = |why: String, fix: String| JournalError {
            path: path.to_path_buf(),
            cause: Cause::Untrusted {
                file: file.clone(),
                why,
                fix,
            },
        };
        if meta.file_type().is_symlink() {
            return Err(untrusted(
                "is a symbolic link".into(),
                format!("replace {shown:?} by the file itself"),
            ));
        }
        if meta.uid() != 0 {
            return Err(untrusted(
                format!("is owned by uid {}, not root", meta.uid()),
                format!("check who changed it, then chown root {shown:?}"),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(
                format!(
                    "is writable by group or others (mode {:o})",
                    meta.mode() & 0o7777
                ),
                format!("check who changed it, then chmod go-w {shown:?}"),
            ));
        }
    }
    Ok(())
}

/// Creates the journal's directory (0700) when it does not exist.
pub fn create_directory(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(directory) if !directory.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory),
        _ => Ok(()),
    }
}
