//! What jailswap asks of the host, in intent-level operations.
//!
//! The executor and recovery are generic over [`Host`], so the same code runs
//! on Linux ([`linux::LinuxHost`]: mount(2) and /proc), on FreeBSD
//! ([`commands::CommandsHost`]: mount(8), umount(8), `mount -p`) and in the
//! crash tests (a simulated host that can stop the world after any
//! operation). Operations speak of jails, templates and mounts, not of
//! system calls, so tests assert outcomes rather than flags.
//!
//! Template renames go through a file descriptor of the store and never
//! follow symbolic links below it (see [`store`]), so a name swapped for a
//! link between the check and the rename cannot redirect it.

pub mod commands;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod simulated;
pub mod store;

use crate::config::{HealthCheck, JailSpec};
use crate::fstab::MountSpec;
use crate::process;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The operation failed; the message says why and, where known, who is
    /// in the way.
    #[error("{0}")]
    Failed(String),
    /// The world stopped (only the simulated host says this): the process
    /// is considered dead at this point and must not write anything more.
    #[error("simulated crash")]
    Crashed,
}

pub type HostResult<T> = Result<T, HostError>;

/// The operations every real host carries out the same way (jail commands
/// through `/bin/sh -c`, renames through the store's descriptor, health
/// checks) are provided; a backend supplies mounts and the mount table.
pub trait Host: Sync {
    /// Runs the jail's stop command.
    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        run_jail_command(jail, &jail.stop)
    }
    /// Runs the jail's start command.
    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        run_jail_command(jail, &jail.start)
    }
    /// Whether the jail runs; `None` when it has no status command.
    fn jail_running(&self, jail: &JailSpec) -> HostResult<Option<bool>> {
        run_status_command(jail)
    }
    /// [`Host::jail_running`] for many jails at once, `parallel` status
    /// commands at a time, in the order of `jails`.
    fn jails_running(&self, jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
        run_status_commands(jails, parallel)
    }
    /// Mounts one fstab entry (read-only when it says `ro`).
    fn mount(&self, mount: &MountSpec) -> HostResult<()>;
    /// Unmounts, never lazily: a busy mount point is an error.
    fn unmount(&self, target: &Path) -> HostResult<()>;
    /// Every mount point currently mounted.
    fn mount_points(&self) -> HostResult<BTreeSet<PathBuf>>;
    /// Every mount point with whether it is read-only, from one reading of
    /// the mount table (for `status`, which asks about every jail).
    fn read_only_mounts(&self) -> HostResult<std::collections::BTreeMap<PathBuf, bool>> {
        let mut table = std::collections::BTreeMap::new();
        for point in self.mount_points()? {
            let read_only = self.mounted_read_only(&point)?.unwrap_or(false);
            table.insert(point, read_only);
        }
        Ok(table)
    }
    /// Whether a mount point is mounted read-only.
    fn mounted_read_only(&self, target: &Path) -> HostResult<Option<bool>>;
    /// The mount points whose source is `store/template` or lies inside it.
    fn template_users(&self, store: &Path, template: &str) -> HostResult<Vec<PathBuf>>;
    /// Renames `store/from` to `store/to` (relative paths inside the store),
    /// refusing to replace anything, then makes the rename durable by
    /// syncing the directories involved.
    fn rename(&self, store_path: &Path, from: &str, to: &str) -> HostResult<()> {
        store::rename(store_path, from, to).map_err(|error| {
            HostError::Failed(format!(
                "cannot rename {from:?} to {to:?} in {:?}: {error}",
                store_path.display().to_string()
            ))
        })
    }
    /// The inode of `store/relative`, without following links; `None` when absent.
    fn inode(&self, store_path: &Path, relative: &str) -> HostResult<Option<u64>> {
        store::entry(store_path, relative)
            .map(|entry| entry.map(|e| e.inode))
            .map_err(|error| {
                HostError::Failed(format!(
                    "cannot examine {relative:?} in {:?}: {error}",
                    store_path.display().to_string()
                ))
            })
    }
    /// One attempt at one health check, bounded by `timeout`.
    fn probe(&self, jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
        crate::health::probe(jail, check, timeout)
    }
}

/// Runs one of a jail's commands with its timeout, as real hosts do.
pub fn run_jail_command(jail: &JailSpec, template: &str) -> HostResult<()> {
    let command = jail.expand(template);
    let timeout = Duration::from_millis(jail.timeout_ms);
    let outcome = process::run_tracked(&command, timeout)
        .map_err(|error| HostError::Failed(format!("cannot run `{command}`: {error}")))?;
    if outcome.success() {
        Ok(())
    } else {
        Err(HostError::Failed(outcome.failure(&command, timeout)))
    }
}

/// Runs a jail's status command: exit 0 means running.
pub fn run_status_command(jail: &JailSpec) -> HostResult<Option<bool>> {
    run_status_commands(std::slice::from_ref(jail), 1)
        .pop()
        .unwrap_or(Ok(None))
}

/// Runs the status commands of many jails through [`process::run_many`]:
/// a few shells for all of them rather than one shell each. A jail without
/// a status command is `None`.
pub fn run_status_commands(jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
    let (indices, commands): (Vec<usize>, Vec<(String, Duration)>) = jails
        .iter()
        .enumerate()
        .filter_map(|(index, jail)| {
            let command = jail.expand(jail.status.as_ref()?);
            Some((index, (command, Duration::from_millis(jail.timeout_ms))))
        })
        .unzip();
    let mut results: Vec<HostResult<Option<bool>>> = jails.iter().map(|_| Ok(None)).collect();
    for (index, outcome) in indices
        .into_iter()
        .zip(process::run_many(&commands, parallel))
    {
        results[index] = outcome.map(Some).map_err(HostError::Failed);
    }
    results
}

/// The host backend the configuration chose.
pub fn system(backend: crate::config::Backend) -> Box<dyn Host> {
    match backend {
        #[cfg(target_os = "linux")]
        crate::config::Backend::Linux => Box::new(linux::LinuxHost),
        #[cfg(not(target_os = "linux"))]
        crate::config::Backend::Linux => Box::new(commands::CommandsHost),
        crate::config::Backend::Commands => Box::new(commands::CommandsHost),
    }
}

impl<T: Host + ?Sized> Host for Box<T> {
    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        (**self).stop_jail(jail)
    }
    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        (**self).start_jail(jail)
    }
    fn jail_running(&self, jail: &JailSpec) -> HostResult<Option<bool>> {
        (**self).jail_running(jail)
    }
    fn jails_running(&self, jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
        (**self).jails_running(jails, parallel)
    }
    fn mount(&self, mount: &MountSpec) -> HostResult<()> {
        (**self).mount(mount)
    }
    fn unmount(&self, target: &Path) -> HostResult<()> {
        (**self).unmount(target)
    }
    fn mount_points(&self) -> HostResult<BTreeSet<PathBuf>> {
        (**self).mount_points()
    }
    fn mounted_read_only(&self, target: &Path) -> HostResult<Option<bool>> {
        (**self).mounted_read_only(target)
    }
    fn read_only_mounts(&self) -> HostResult<std::collections::BTreeMap<PathBuf, bool>> {
        (**self).read_only_mounts()
    }
    fn template_users(&self, store: &Path, template: &str) -> HostResult<Vec<PathBuf>> {
        (**self).template_users(store, template)
    }
    fn rename(&self, store: &Path, from: &str, to: &str) -> HostResult<()> {
        (**self).rename(store, from, to)
    }
    fn inode(&self, store: &Path, relative: &str) -> HostResult<Option<u64>> {
        (**self).inode(store, relative)
    }
    fn probe(&self, jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
        (**self).probe(jail, check, timeout)
    }
}
