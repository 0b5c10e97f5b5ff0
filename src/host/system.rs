//! The real host: an operating system's mounts composed with a kind of
//! store, plus the jail commands and health probes every real host runs the
//! same way.

use super::store::{self, TemplateStore};
use super::{jails, probe, CommandRun, Entry, Fingerprint, Host, HostResult, Template, TemplateId};
use crate::config::{Backend, HealthCheck, JailSpec, StoreKind};
use crate::fstab::MountSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How an operating system mounts and reads its mount table.
pub trait Mounts: Send + Sync {
    fn mount(&self, mount: &MountSpec) -> HostResult<()>;
    fn unmount(&self, target: &Path) -> HostResult<()>;
    /// Mount point -> read-only, the top mount of each point winning.
    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>>;
    /// The mount points whose source is `path` or lies inside it.
    fn users_of(&self, path: &Path) -> HostResult<Vec<PathBuf>>;
}

pub struct SystemHost {
    mounts: Box<dyn Mounts>,
    store: Box<dyn TemplateStore>,
}

/// The real host for `backend`, working on the store at `store` of `kind`.
pub fn system(backend: Backend, store: &Path, kind: StoreKind) -> SystemHost {
    let mounts: Box<dyn Mounts> = match backend {
        #[cfg(target_os = "linux")]
        Backend::Linux => Box::new(super::linux::LinuxMounts),
        #[cfg(not(target_os = "linux"))]
        Backend::Linux => Box::new(super::freebsd::CommandMounts),
        Backend::Commands => Box::new(super::freebsd::CommandMounts),
    };
    SystemHost {
        mounts,
        store: store::open(kind, store),
    }
}

/// Which kind of store `store` is, judged by its live template: a ZFS
/// dataset of its own, a btrfs subvolume, or a plain directory.
pub fn detect_store_kind(store: &Path, live: &str) -> StoreKind {
    if store::zfs::is_dataset_root(&store.join(live)) {
        return StoreKind::Zfs;
    }
    // A subvolume's root is inode 256 on a file system whose statfs magic
    // is btrfs'; a plain directory of a btrfs file system is not one.
    if store::btrfs::is_subvolume(&store.join(live)) {
        return StoreKind::Btrfs;
    }
    StoreKind::Directory
}

impl Host for SystemHost {
    fn store(&self) -> &Path {
        self.store.path()
    }
    fn store_kind(&self) -> StoreKind {
        self.store.kind()
    }
    fn templates(&self) -> HostResult<Vec<Template>> {
        self.store.templates()
    }
    fn examine(&self, relative: &str) -> HostResult<Entry> {
        self.store.examine(relative)
    }
    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        self.store.top_level_symlinks(template)
    }
    fn rename_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.store.rename(from, to, expected)
    }
    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.store.move_inside(from, to, expected)
    }
    fn copy_template(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        self.store.copy(from, to, expected, exclude)
    }
    fn delete_template(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        self.store.delete(name, expected)
    }
    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        self.store.fingerprint(template)
    }
    fn template_at(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        self.store.identify_root(root)
    }
    fn mount(&self, mount: &MountSpec) -> HostResult<()> {
        self.mounts.mount(mount)
    }
    fn unmount(&self, target: &Path) -> HostResult<()> {
        self.mounts.unmount(target)
    }
    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>> {
        self.mounts.mount_table()
    }
    fn template_users(&self, template: &str) -> HostResult<Vec<PathBuf>> {
        self.mounts.users_of(&self.store.path().join(template))
    }
    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        jails::run_jail_command(jail, &jail.stop)
    }
    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        jails::run_jail_command(jail, &jail.start)
    }
    fn jails_running(&self, jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
        jails::run_status_commands(jails, parallel)
    }
    fn run_command(
        &self,
        command: &str,
        environment: &[(&str, &str)],
        timeout: Duration,
    ) -> HostResult<CommandRun> {
        jails::run_command(command, environment, timeout)
    }
    fn probe(&self, jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
        probe::probe(jail, check, timeout)
    }
}
