//! Templates as btrfs subvolumes of one file system (Linux).
//!
//! Each template is a subvolume directly in the store. Every subvolume root
//! is inode 256 and has a device number of its own, so neither an inode nor
//! a device identifies a template: the subvolume's UUID does, and it is
//! what the journal records. A template must be reached through the
//! store's own mount of its btrfs file system: rename(2) moves a subvolume
//! atomically within one mount, and refuses (EXDEV) across mounts, so a
//! subvolume of another file system, or one mounted on its own, is refused
//! with the reason, and so is a plain directory (it cannot be snapshotted).
//!
//! - Renames are renameat2(RENAME_NOREPLACE) relative to the store's
//!   descriptor, as for directories, after opening the entry without
//!   following links and comparing its UUID with the one recorded.
//! - `stage` takes a writable snapshot of the descriptor it checked
//!   (BTRFS_IOC_SNAP_CREATE_V2): no data is copied, whatever the size of
//!   the template. The kernel commits the snapshot before it returns.
//! - A deletion (`prune`, or `stage` discarding its own copy) checks the
//!   UUID and that nothing mounts the subvolume (the kernel would delete a
//!   subvolume that is bind-mounted under a running jail), then deletes it
//!   by its subvolume id (BTRFS_IOC_SNAP_DESTROY_V2), so the subvolume
//!   checked is the one deleted even if a name changed in between, and
//!   syncs the file system so the deletion survives a power loss.
//!
//! Why the kernel's ioctls and not btrfs(8): every operation here must act
//! on the very directory whose identity was just checked. An ioctl takes
//! the descriptor that was opened without following links and checked;
//! btrfs(8) takes paths and resolves them again, following links, and
//! prints its answers as text meant for people. The three ioctls are the
//! ones btrfs(8) itself issues, need no btrfs-progs on the host, and cost
//! no process per look at the store. They are the crate's only unsafe
//! code, in [`ioctl`], each call with the reason it is sound.
//!
//! A snapshot does not descend into nested subvolumes (they appear as empty
//! directories in it), and rename(2) cannot move a plain directory from one
//! subvolume into another: on btrfs a carried path must be a subvolume of
//! its own. docs/stores.md says both to the administrator.

use super::directory::{
    kind_of, list_store, open_below, open_directory, open_parent, rename_no_replace, stat_entry,
};
use super::{fingerprint_tree, io_failure, TemplateStore};
use crate::config::StoreKind;
use crate::host::{Entry, Fingerprint, Found, HostError, HostResult, Template, TemplateId};
use nix::sys::stat::{fstat, FileStat};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The inode number of every subvolume's root directory.
const SUBVOLUME_ROOT: u64 = 256;

pub struct BtrfsStore {
    pub path: PathBuf,
}

/// A subvolume as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subvolume {
    /// The subvolume (tree) id, by which it is deleted.
    id: u64,
    uuid: String,
}

/// Whether `fd` lies on a btrfs file system.
fn is_btrfs(fd: &OwnedFd) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        let found = nix::sys::statfs::fstatfs(fd)?;
        Ok(found.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Ok(false)
    }
}

/// The subvolume whose root `fd` is, if it is one.
fn subvolume(fd: &OwnedFd) -> std::io::Result<Option<Subvolume>> {
    if fstat(fd)?.st_ino != SUBVOLUME_ROOT || !is_btrfs(fd)? {
        return Ok(None);
    }
    Ok(Some(ioctl::subvolume_info(fd.as_fd())?))
}

/// Whether `path` (not followed if it is a link) is the root of a btrfs
/// subvolume: what `store_kind = "auto"` looks for in the live template.
pub fn is_subvolume(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_dir() {
        return false;
    }
    let opened = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    let Ok(fd) = opened else {
        return false;
    };
    matches!(fstat(&fd), Ok(stat) if stat.st_ino == SUBVOLUME_ROOT)
        && is_btrfs(&fd).unwrap_or(false)
}

/// The id of the mount an open descriptor was reached through.
fn mount_id(fd: &OwnedFd) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the kernel does not say which mount a descriptor is on (no mnt_id in /proc/self/fdinfo)",
            )
        })
}

/// One mount of the mount table, by its id.
struct MountLine {
    device: String,
    mount_point: PathBuf,
    fstype: String,
    source: String,
}

/// The mount table of the calling thread's namespace, by mount id.
fn mounts() -> std::io::Result<Vec<(u64, MountLine)>> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let fields: Vec<&str> = head.split(' ').collect();
            let tail: Vec<&str> = tail.split(' ').collect();
            Some((
                fields.first()?.parse().ok()?,
                MountLine {
                    device: fields.get(2)?.to_string(),
                    mount_point: PathBuf::from(crate::fstab::unescape(fields.get(4)?)),
                    fstype: tail.first()?.to_string(),
                    source: tail
                        .get(1)
                        .map(|s| crate::fstab::unescape(s))
                        .unwrap_or_default(),
                },
            ))
        })
        .collect())
}

fn device_of(table: &[(u64, MountLine)], mount: u64) -> Option<&MountLine> {
    table
        .iter()
        .find(|(id, _)| *id == mount)
        .map(|(_, line)| line)
}

impl BtrfsStore {
    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn store_fd(&self) -> std::io::Result<OwnedFd> {
        Ok(open_directory(&self.path)?)
    }

    /// Why a directory reached through mount `mount` is not on the store's
    /// own mount (`store_mount`).
    fn why_foreign(&self, store_mount: u64, mount: u64) -> String {
        let table = mounts().unwrap_or_default();
        match (
            device_of(&table, store_mount),
            device_of(&table, mount),
        ) {
            (Some(store), Some(entry)) if store.device == entry.device => format!(
                "it is a mount of its own at {:?} (a jail root, or a subvolume mounted by itself), not a subvolume reached through the store's mount: a rename would cross mounts and not be atomic",
                entry.mount_point.display().to_string()
            ),
            (_, Some(entry)) => format!(
                "it is on another file system than the store ({} {}): a rename would not be atomic",
                entry.fstype, entry.source
            ),
            _ => "it is on another mount than the store: a rename would not be atomic".to_string(),
        }
    }

    /// What a top-level entry of the store is, given its open descriptor.
    fn judge(&self, fd: &OwnedFd, stat: &FileStat) -> std::io::Result<Entry> {
        let store = self.store_fd()?;
        if !is_btrfs(&store)? {
            return Ok(Entry::Foreign(format!(
                "the store {:?} is not on a btrfs file system, but the store kind is btrfs; set store_kind = \"directory\" or \"auto\"",
                self.shown()
            )));
        }
        let (store_mount, mount) = (mount_id(&store)?, mount_id(fd)?);
        if mount != store_mount {
            return Ok(Entry::Foreign(self.why_foreign(store_mount, mount)));
        }
        Ok(match subvolume(fd)? {
            Some(found) => Entry::Directory(Found {
                id: TemplateId::Subvolume(found.uuid),
                modified: stat.st_mtime,
            }),
            None => Entry::Foreign(
                "it is a plain directory, not a btrfs subvolume (make templates with `btrfs subvolume create` or `jailswap stage`)".to_string(),
            ),
        })
    }

    /// Opens a top-level template without following links and checks that
    /// it is the subvolume `expected`; returns the store's descriptor, the
    /// template's, and the subvolume.
    fn open_checked(
        &self,
        name: &str,
        expected: &TemplateId,
        context: &str,
    ) -> HostResult<(OwnedFd, OwnedFd, Subvolume)> {
        if name.contains('/') {
            return Err(HostError::Failed(format!(
                "{context}: {name:?} is not a template name"
            )));
        }
        let (parent, last) =
            open_parent(&self.path, name).map_err(|error| io_failure(context, &error))?;
        let opened = match open_below(&parent, last) {
            Ok(opened) => opened,
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(HostError::Failed(format!(
                    "{context}: it is no longer the subvolume recorded before the first stop ({expected}) but a link or a file; it was left untouched"
                )))
            }
            Err(error) => return Err(io_failure(context, &error.into())),
        };
        let stat = fstat(&opened).map_err(|error| io_failure(context, &error.into()))?;
        let found = match self
            .judge(&opened, &stat)
            .map_err(|error| io_failure(context, &error))?
        {
            Entry::Directory(found) => found.id,
            Entry::Foreign(why) => {
                return Err(HostError::Failed(format!(
                    "{context}: {why}; it was left untouched"
                )))
            }
            other => {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a subvolume ({other:?}); it was left untouched"
                )))
            }
        };
        if &found != expected {
            return Err(HostError::Failed(format!(
                "{context}: it is no longer the subvolume recorded before the first stop (expected {expected}, found {found}); it was left untouched"
            )));
        }
        let subvolume = subvolume(&opened)
            .map_err(|error| io_failure(context, &error))?
            .ok_or_else(|| HostError::Failed(format!("{context}: it is not a subvolume")))?;
        Ok((parent, opened, subvolume))
    }

    /// The mount points that show the subvolume open at `fd` (its root or a
    /// directory inside it), on the store's file system.
    fn users(&self, store: &OwnedFd, fd: &OwnedFd) -> std::io::Result<Vec<PathBuf>> {
        let device = fstat(fd)?.st_dev;
        let table = mounts()?;
        let Some(home) = device_of(&table, mount_id(store)?) else {
            return Ok(Vec::new());
        };
        Ok(table
            .iter()
            .filter(|(_, line)| line.device == home.device)
            .filter(|(_, line)| {
                std::fs::metadata(&line.mount_point)
                    .is_ok_and(|meta| std::os::unix::fs::MetadataExt::dev(&meta) == device)
            })
            .map(|(_, line)| line.mount_point.clone())
            .collect())
    }
}

/// The identity of a path inside a template: a nested subvolume by its
/// UUID, anything else by its inode.
fn identity_inside(parent: &OwnedFd, name: &str, stat: &FileStat) -> std::io::Result<TemplateId> {
    if kind_of(stat) == libc::S_IFDIR && stat.st_ino == SUBVOLUME_ROOT {
        let fd = open_below(parent, name)?;
        if let Some(found) = subvolume(&fd)? {
            return Ok(TemplateId::Subvolume(found.uuid));
        }
    }
    Ok(TemplateId::Inode(stat.st_ino))
}

impl TemplateStore for BtrfsStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Btrfs
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn templates(&self) -> HostResult<Vec<Template>> {
        let mut found = Vec::new();
        for entry in list_store(&self.path, &self.shown())? {
            // Anything that cannot be opened as a subvolume of the store's
            // mount (a file, a link, a jail root with a template mounted on
            // it, a plain directory) is not a template.
            if kind_of(&entry.stat) != libc::S_IFDIR {
                continue;
            }
            let Ok((parent, last)) = open_parent(&self.path, &entry.name) else {
                continue;
            };
            let Ok(fd) = open_below(&parent, last) else {
                continue;
            };
            if let Ok(Entry::Directory(template)) = self.judge(&fd, &entry.stat) {
                found.push(Template {
                    name: entry.name,
                    found: template,
                });
            }
        }
        Ok(found)
    }

    fn examine(&self, relative: &str) -> HostResult<Entry> {
        let context = format!(
            "cannot examine {relative:?} in the store {:?}",
            self.shown()
        );
        let failed = |error: std::io::Error| io_failure(&context, &error);
        let Some(stat) = stat_entry(&self.path, relative).map_err(failed)? else {
            return Ok(Entry::Absent);
        };
        match kind_of(&stat) {
            libc::S_IFLNK => Ok(Entry::Symlink),
            libc::S_IFDIR => {
                let (parent, name) = open_parent(&self.path, relative).map_err(failed)?;
                if relative.contains('/') {
                    return Ok(Entry::Directory(Found {
                        id: identity_inside(&parent, name, &stat).map_err(failed)?,
                        modified: stat.st_mtime,
                    }));
                }
                let fd = open_below(&parent, name).map_err(|error| failed(error.into()))?;
                self.judge(&fd, &stat).map_err(failed)
            }
            _ => Ok(Entry::NotDirectory),
        }
    }

    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        super::directory::top_level_symlinks(&self.path, template)
    }

    fn rename(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!("cannot rename {from:?} to {to:?} in {:?}", self.shown());
        let (store, _checked, _) = self.open_checked(from, expected, &context)?;
        if to.contains('/') || to.is_empty() {
            return Err(HostError::Failed(format!(
                "{context}: {to:?} is not a template name"
            )));
        }
        rename_no_replace(&store, from, &store, to)
            .map_err(|error| io_failure(&context, &error))?;
        // btrfs commits its transaction when a directory that names a
        // subvolume is fsynced: the new name is durable when this returns.
        nix::unistd::fsync(&store).map_err(|error| io_failure(&context, &error.into()))
    }

    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!("cannot move {from:?} to {to:?} in {:?}", self.shown());
        let failed = |error: std::io::Error| io_failure(&context, &error);
        let (from_parent, from_name) = open_parent(&self.path, from).map_err(failed)?;
        let Some(stat) = stat_entry(&self.path, from).map_err(failed)? else {
            return Err(HostError::Failed(format!("{context}: it does not exist")));
        };
        let found = identity_inside(&from_parent, from_name, &stat).map_err(failed)?;
        if found != *expected {
            return Err(HostError::Failed(format!(
                "{context}: it is not the path recorded before the first stop (expected {expected}, found {found}); it was left untouched"
            )));
        }
        let (to_parent, to_name) = open_parent(&self.path, to).map_err(failed)?;
        match rename_no_replace(&from_parent, from_name, &to_parent, to_name) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EXDEV) => {
                return Err(HostError::Failed(format!(
                    "{context}: rename(2) cannot move a plain directory or file from one btrfs subvolume into another; make it a subvolume of its own (`btrfs subvolume create`) to carry it"
                )))
            }
            Err(error) => return Err(failed(error)),
        }
        nix::unistd::fsync(&from_parent).map_err(|error| failed(error.into()))?;
        nix::unistd::fsync(&to_parent).map_err(|error| failed(error.into()))
    }

    fn copy(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        let context = format!("cannot snapshot {from:?} as {to:?} in {:?}", self.shown());
        if to.contains('/') || to.is_empty() {
            return Err(HostError::Failed(format!(
                "{context}: {to:?} is not a name in the store"
            )));
        }
        let (store, source, _) = self.open_checked(from, expected, &context)?;
        ioctl::snapshot(store.as_fd(), to, source.as_fd())
            .map_err(|error| io_failure(&context, &error.into()))?;
        // A snapshot shows a nested subvolume (a carried path is one) as an
        // empty directory: left out, it is removed from the new template.
        for path in exclude {
            match std::fs::remove_dir(self.path.join(to).join(path)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(io_failure(
                        &format!("{context}: cannot leave out {path:?}"),
                        &error,
                    ))
                }
            }
        }
        match self.examine(to)? {
            Entry::Directory(found) => Ok(found.id),
            other => Err(HostError::Failed(format!(
                "{context}: the snapshot is not a subvolume of the store ({other:?})"
            ))),
        }
    }

    fn delete(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        let context = format!("cannot delete {name:?} in {:?}", self.shown());
        if name.contains('/') {
            return Err(HostError::Failed(format!("{context}: not a template name")));
        }
        let id = match self.examine(name)? {
            Entry::Absent => return Ok(()),
            Entry::Directory(found) => found.id,
            Entry::Foreign(why) => {
                return Err(HostError::Failed(format!(
                    "{context}: {why}; not deleting it"
                )))
            }
            other => {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a subvolume ({other:?}); not deleting it"
                )))
            }
        };
        let expected = expected.unwrap_or(&id);
        let (store, fd, subvolume) = self.open_checked(name, expected, &context)?;
        let users = self
            .users(&store, &fd)
            .map_err(|error| io_failure(&context, &error))?;
        if let Some(user) = users.first() {
            return Err(HostError::Failed(format!(
                "{context}: it is still mounted at {:?}; not deleting it",
                user.display().to_string()
            )));
        }
        drop(fd);
        ioctl::destroy(store.as_fd(), subvolume.id, name)
            .map_err(|error| io_failure(&context, &error.into()))?;
        // A deletion is not committed by the ioctl: commit it, so that the
        // subvolume does not come back after a power loss.
        #[cfg(target_os = "linux")]
        nix::unistd::syncfs(&store).map_err(|error| io_failure(&context, &error.into()))?;
        Ok(())
    }

    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        let context = format!("cannot fingerprint {template:?} in {:?}", self.shown());
        let (parent, name) =
            open_parent(&self.path, template).map_err(|error| io_failure(&context, &error))?;
        let root =
            open_below(&parent, name).map_err(|error| io_failure(&context, &error.into()))?;
        fingerprint_tree(&root).map_err(|error| io_failure(&context, &error))
    }

    fn identify_root(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        let Ok(fd) = open_directory(root) else {
            return Ok(None);
        };
        let Ok(Some(found)) = subvolume(&fd) else {
            return Ok(None);
        };
        // A jail root is a bind mount of the template: another mount, the
        // same file system as the store's.
        let context = format!("cannot examine {:?}", root.display().to_string());
        let store = self
            .store_fd()
            .map_err(|error| io_failure(&context, &error))?;
        let table = mounts().map_err(|error| io_failure(&context, &error))?;
        let device = |fd: &OwnedFd| -> HostResult<Option<String>> {
            let mount = mount_id(fd).map_err(|error| io_failure(&context, &error))?;
            Ok(device_of(&table, mount).map(|line| line.device.clone()))
        };
        if device(&fd)? != device(&store)? {
            return Ok(None);
        }
        Ok(Some(TemplateId::Subvolume(found.uuid)))
    }
}

// The ioctls are the crate's only unsafe code: a pointer handed to the
// kernel; ioctl.rs says why each call is sound.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod ioctl;

/// btrfs exists on Linux only: elsewhere nothing is a subvolume, so a
/// store configured as btrfs refuses every template, saying why.
#[cfg(not(target_os = "linux"))]
mod ioctl {
    use super::Subvolume;
    use std::os::fd::BorrowedFd;

    pub fn subvolume_info(_fd: BorrowedFd) -> nix::Result<Subvolume> {
        Err(nix::errno::Errno::EOPNOTSUPP)
    }

    pub fn snapshot(_directory: BorrowedFd, _name: &str, _source: BorrowedFd) -> nix::Result<()> {
        Err(nix::errno::Errno::EOPNOTSUPP)
    }

    pub fn destroy(_directory: BorrowedFd, _id: u64, _name: &str) -> nix::Result<()> {
        Err(nix::errno::Errno::EOPNOTSUPP)
    }
}
