//! The host: the one door between jailswap and the world.
//!
//! Everything jailswap does to or reads from the store, the mounts, the
//! jails and the network goes through [`Host`]: listing and identifying
//! templates, renaming them (each rename checks, at the moment it runs, that
//! the entry is the template recorded before the first stop), copying and
//! deleting them, fingerprinting them, mounting, starting and stopping
//! jails, running the administrator's commands and probing health. The
//! planner, the journal and the executor never touch the system themselves,
//! so the same orchestration runs on Linux, on FreeBSD and, in the crash
//! tests, on a simulated world that can stop after any operation.
//!
//! Operations speak of intent (a template, a jail, a mount), not of system
//! calls, so tests assert outcomes rather than flags. A real host is two
//! independent parts composed in [`system::SystemHost`]: the operating
//! system's mounts ([`linux`] through mount(2) and /proc, [`freebsd`]
//! through mount(8), umount(8) and `mount -p`) and the kind of store the
//! templates live in (`store`: directories, btrfs subvolumes or ZFS
//! datasets). The store backends are private to this module.

pub mod freebsd;
mod jails;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod probe;
#[cfg(feature = "fault-injection")]
pub mod simulated;
mod store;
pub mod system;

use crate::config::{HealthCheck, JailSpec};
use crate::fstab::MountSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::config::StoreKind;
pub use crate::template::{Fingerprint, TemplateId};
pub use system::system;

/// A failure of the world, as the host reports it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The operation failed; the message says why and, where known, who is
    /// in the way.
    #[error("{0}")]
    Failed(String),
    /// The system refused for lack of privilege (EPERM, EACCES).
    #[error("{0}")]
    Denied(String),
    /// The world stopped (only the simulated host says this): the process
    /// is considered dead at this point and must not write anything more.
    #[cfg(feature = "fault-injection")]
    #[error("simulated crash")]
    Crashed,
}

impl HostError {
    /// Classifies an operating-system error: privilege failures are told
    /// apart, because they have their own exit code (77).
    pub fn from_io(context: String, error: &std::io::Error) -> HostError {
        match error.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => HostError::Denied(format!("{context}: {error}")),
            _ => HostError::Failed(format!("{context}: {error}")),
        }
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// What a path in the store is, seen without following links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Absent,
    Symlink,
    /// A file, a device, anything but a directory.
    NotDirectory,
    /// A directory that cannot be a template of this store, and why (on
    /// another file system, not a subvolume, not a dataset of the store).
    Foreign(String),
    /// A directory that can be a template (or a directory inside one).
    Directory(Found),
}

/// A directory of the store and what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: TemplateId,
    /// Modification time, seconds since the epoch.
    pub modified: i64,
}

impl Entry {
    pub fn found(&self) -> Option<&Found> {
        match self {
            Entry::Directory(found) => Some(found),
            _ => None,
        }
    }

    pub fn exists(&self) -> bool {
        *self != Entry::Absent
    }
}

/// One template of the store, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub found: Found,
}

/// The outcome of an administrator's command run through the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRun {
    /// The exit status, `None` when the command was killed or timed out.
    pub status: Option<i32>,
    pub timed_out: bool,
    /// The last lines of its output (stdout and stderr interleaved).
    pub output_tail: String,
}

impl CommandRun {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status == Some(0)
    }
}

/// The operations jailswap asks of the world. A host is bound to one store
/// (its path and kind), chosen when it is made.
pub trait Host: Sync {
    // ---------------------------------------------------------------- store

    /// The store this host works on.
    fn store(&self) -> &Path;

    /// The kind of store it is.
    fn store_kind(&self) -> StoreKind;

    /// Every template in the store (directories, subvolumes or datasets of
    /// the store; not symbolic links, not other files), in name order.
    fn templates(&self) -> HostResult<Vec<Template>>;

    /// What `relative` is: a template's name, or a path inside one
    /// (`mroot/usr/ports`), walked without following links.
    fn examine(&self, relative: &str) -> HostResult<Entry>;

    /// The top-level symbolic links of a template, by name.
    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>>;

    /// Renames a template (`from` and `to` are names in the store), after
    /// checking, as late as it can, that `from` is the template `expected`
    /// and not a link; never replaces anything, and is durable (the store
    /// directory synced) when it returns.
    fn rename_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()>;

    /// Moves a path from inside one template into another (the `carry`
    /// paths), checking that it is `expected`; durable when it returns.
    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()>;

    /// Makes `to` a new template with the contents of `from` (which must be
    /// `expected`) by the store's cheapest faithful copy: a writable
    /// snapshot, a clone, or a copy. Returns the new template's identity.
    /// `exclude` names paths inside the template left out of the copy.
    fn copy_template(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId>;

    /// Deletes a template, checking that it is `expected` (or, when
    /// `expected` is `None`, that it is at least a template of this store).
    fn delete_template(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()>;

    /// A digest that changes whenever any file's content, name, type, mode,
    /// owner or link target in the template changes.
    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint>;

    /// The template a mounted jail root currently shows, if it is one of
    /// the store's.
    fn template_at(&self, root: &Path) -> HostResult<Option<TemplateId>>;

    // --------------------------------------------------------------- mounts

    /// Mounts one fstab entry (read-only when it says `ro`).
    fn mount(&self, mount: &MountSpec) -> HostResult<()>;
    /// Unmounts, never lazily: a busy mount point is an error.
    fn unmount(&self, target: &Path) -> HostResult<()>;
    /// The mount table: every mount point with whether its top mount is
    /// read-only, from one reading.
    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>>;
    /// The mount points whose source is the template (or lies inside it).
    fn template_users(&self, template: &str) -> HostResult<Vec<PathBuf>>;

    /// Every mount point currently mounted.
    fn mount_points(&self) -> HostResult<BTreeSet<PathBuf>> {
        Ok(self.mount_table()?.into_keys().collect())
    }

    // ---------------------------------------------------------------- jails

    /// Runs the jail's stop command.
    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()>;
    /// Runs the jail's start command.
    fn start_jail(&self, jail: &JailSpec) -> HostResult<()>;
    /// Whether each jail runs (`None` without a status command), `parallel`
    /// status commands at a time, in the order of `jails`.
    fn jails_running(&self, jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>>;

    /// Whether one jail runs; `None` when it has no status command.
    fn jail_running(&self, jail: &JailSpec) -> HostResult<Option<bool>> {
        self.jails_running(std::slice::from_ref(jail), 1)
            .pop()
            .unwrap_or(Ok(None))
    }

    // ------------------------------------------------- commands and health

    /// Runs an administrator's command through `/bin/sh -c` with extra
    /// environment, bounded by `timeout`.
    fn run_command(
        &self,
        command: &str,
        environment: &[(&str, &str)],
        timeout: Duration,
    ) -> HostResult<CommandRun>;

    /// One attempt at one health check, bounded by `timeout`.
    fn probe(&self, jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String>;
}

impl<T: Host + ?Sized> Host for Box<T> {
    fn store(&self) -> &Path {
        (**self).store()
    }
    fn store_kind(&self) -> StoreKind {
        (**self).store_kind()
    }
    fn templates(&self) -> HostResult<Vec<Template>> {
        (**self).templates()
    }
    fn examine(&self, relative: &str) -> HostResult<Entry> {
        (**self).examine(relative)
    }
    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        (**self).top_level_symlinks(template)
    }
    fn rename_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        (**self).rename_template(from, to, expected)
    }
    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        (**self).move_inside(from, to, expected)
    }
    fn copy_template(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        (**self).copy_template(from, to, expected, exclude)
    }
    fn delete_template(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        (**self).delete_template(name, expected)
    }
    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        (**self).fingerprint(template)
    }
    fn template_at(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        (**self).template_at(root)
    }
    fn mount(&self, mount: &MountSpec) -> HostResult<()> {
        (**self).mount(mount)
    }
    fn unmount(&self, target: &Path) -> HostResult<()> {
        (**self).unmount(target)
    }
    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>> {
        (**self).mount_table()
    }
    fn template_users(&self, template: &str) -> HostResult<Vec<PathBuf>> {
        (**self).template_users(template)
    }
    fn mount_points(&self) -> HostResult<BTreeSet<PathBuf>> {
        (**self).mount_points()
    }
    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        (**self).stop_jail(jail)
    }
    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        (**self).start_jail(jail)
    }
    fn jails_running(&self, jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
        (**self).jails_running(jails, parallel)
    }
    fn jail_running(&self, jail: &JailSpec) -> HostResult<Option<bool>> {
        (**self).jail_running(jail)
    }
    fn run_command(
        &self,
        command: &str,
        environment: &[(&str, &str)],
        timeout: Duration,
    ) -> HostResult<CommandRun> {
        (**self).run_command(command, environment, timeout)
    }
    fn probe(&self, jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
        (**self).probe(jail, check, timeout)
    }
}
