//! Running zfs(8), and reading what it prints: the one place the ZFS store
//! starts a process.

use crate::host::{HostError, HostResult};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a zfs(8) command did not do what was asked.
pub(super) enum Failure {
    /// It could not be run at all.
    NotRun(String),
    /// It ran and refused, saying why on stderr.
    Refused { command: String, stderr: String },
}

impl Failure {
    /// zfs(8) says so when the dataset it was to open does not exist.
    pub(super) fn missing(&self) -> bool {
        matches!(self, Failure::Refused { stderr, .. } if stderr.contains("dataset does not exist"))
    }

    pub(super) fn into_host(self) -> HostError {
        match self {
            Failure::NotRun(why) => HostError::Failed(why),
            Failure::Refused { command, stderr } => {
                let message = format!("`{command}` failed: {stderr}");
                if stderr.contains("permission denied") {
                    HostError::Denied(message)
                } else {
                    HostError::Failed(message)
                }
            }
        }
    }
}

/// Runs zfs(8); its standard output, or why it failed.
pub(super) fn zfs(arguments: &[&str]) -> Result<String, Failure> {
    let output = Command::new("zfs")
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Failure::NotRun(format!("cannot run zfs: {error}")))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Failure::Refused {
        command: format!("zfs {}", arguments.join(" ")),
        stderr: String::from_utf8_lossy(&output.stderr)
            .trim()
            .replace('\n', "; "),
    })
}

/// Runs a zfs(8) command that changes the pool.
pub(super) fn change(arguments: &[&str]) -> HostResult<()> {
    zfs(arguments).map(|_| ()).map_err(Failure::into_host)
}

/// Whether `path` is where a ZFS dataset of its own is mounted (zfs(8)
/// names the dataset whose file system holds a path it is given). False
/// where there is no zfs(8), or it says the path is not on ZFS.
pub fn is_dataset_root(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(listing) = zfs(&[
        "list",
        "-H",
        "-p",
        "-o",
        "name,mountpoint",
        &path.to_string_lossy(),
    ]) else {
        return false;
    };
    listing
        .lines()
        .next()
        .and_then(|line| line.split('\t').nth(1))
        .is_some_and(|mountpoint| Path::new(mountpoint) == path)
}

/// One dataset's properties, as `zfs get` prints them.
pub(super) struct Dataset {
    pub(super) guid: String,
    pub(super) mountpoint: String,
    /// Where the mountpoint comes from: `default`, `inherited from ...`,
    /// `local`, `received`, `temporary`.
    pub(super) mountpoint_source: String,
    pub(super) mounted: bool,
    /// The snapshot a clone was made from.
    pub(super) origin: Option<String>,
}

impl Dataset {
    /// Reads `property TAB value TAB source` lines.
    pub(super) fn parse(text: &str) -> Option<Dataset> {
        let mut dataset = Dataset {
            guid: String::new(),
            mountpoint: String::new(),
            mountpoint_source: String::new(),
            mounted: false,
            origin: None,
        };
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (Some(property), Some(value), source) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            match property {
                "guid" => dataset.guid = value.to_string(),
                "mountpoint" => {
                    dataset.mountpoint = value.to_string();
                    dataset.mountpoint_source = source.unwrap_or("").to_string();
                }
                "mounted" => dataset.mounted = value == "yes",
                "origin" => dataset.origin = Some(value).filter(|v| *v != "-").map(str::to_string),
                _ => {}
            }
        }
        (!dataset.guid.is_empty()).then_some(dataset)
    }

    /// Whether the mountpoint follows the dataset's name through a rename.
    pub(super) fn follows_name(&self) -> bool {
        self.mountpoint_source == "default" || self.mountpoint_source.starts_with("inherited")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `zfs get` lines are read by property; a clone has an origin, a
    // mountpoint set on the dataset does not follow its name.
    #[test]
    fn dataset_properties() {
        let clone = Dataset::parse(
            "guid\t1234\t-\nmountpoint\t/home/j/mroot\tinherited from tank/j\nmounted\tyes\t-\norigin\ttank/j/mroot.1@jailswap-stage-mroot\t-\n",
        )
        .unwrap();
        assert_eq!(clone.guid, "1234");
        assert!(clone.mounted && clone.follows_name());
        assert_eq!(
            clone.origin.as_deref(),
            Some("tank/j/mroot.1@jailswap-stage-mroot")
        );
        let pinned = Dataset::parse(
            "guid\t99\t-\nmountpoint\t/home/j/x\tlocal\nmounted\tno\t-\norigin\t-\t-\n",
        )
        .unwrap();
        assert!(!pinned.follows_name() && !pinned.mounted && pinned.origin.is_none());
        assert!(Dataset::parse("").is_none());
    }
}
