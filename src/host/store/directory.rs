//! Templates as plain directories of one file system.
//!
//! Every path below the store is walked one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, and the final entry is examined,
//! checked and renamed relative to its parent's descriptor without
//! following links. Before a rename the entry is opened without following
//! links and its inode compared with the one recorded before the first
//! stop, so a name replaced by a link or by another directory between
//! preflight and rename is refused and left where it is. Renames never
//! replace an existing entry, and the parent directories are fsynced before
//! the rename is reported done, so the new names survive a power loss.

use super::{fingerprint_tree, io_failure, TemplateStore};
use crate::config::{valid_name, StoreKind};
use crate::host::{Entry, Fingerprint, Found, HostError, HostResult, Template, TemplateId};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub struct DirectoryStore {
    pub path: PathBuf,
}

fn plain_components(relative: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = relative.split('/').collect();
    let plain = !relative.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..");
    plain.then_some(parts)
}

pub(super) fn open_directory(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub(super) fn open_below(parent: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the parent directory of `store/relative` without following links
/// and returns it with the final component.
pub(super) fn open_parent<'a>(
    store: &Path,
    relative: &'a str,
) -> std::io::Result<(OwnedFd, &'a str)> {
    let parts = plain_components(relative).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{relative:?} is not a plain relative path"),
        )
    })?;
    let mut directory = open_directory(store)?;
    let (last, parents) = parts
        .split_last()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    for part in parents {
        directory = open_below(&directory, part)?;
    }
    Ok((directory, last))
}

/// What `store/relative` is, without following links, with its device.
pub(super) fn stat_entry(
    store: &Path,
    relative: &str,
) -> std::io::Result<Option<nix::sys::stat::FileStat>> {
    let (parent, name) = match open_parent(store, relative) {
        Ok(found) => found,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error),
    };
    match fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// One top-level entry of the store with a plain name: its `lstat`, and the
/// inode its directory entry names (on a mount point, such as a jail root
/// with a template mounted on it, that differs from the `lstat`'s).
pub(super) struct Listed {
    pub(super) name: String,
    pub(super) stat: nix::sys::stat::FileStat,
    pub(super) entry_inode: u64,
}

/// The store's entries whose names could be templates, sorted by name; an
/// entry that vanishes while listed is left out.
pub(super) fn list_store(store: &Path, shown: &str) -> HostResult<Vec<Listed>> {
    let context = format!("cannot list the store {shown:?}");
    let entries = std::fs::read_dir(store).map_err(|error| io_failure(&context, &error))?;
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_failure(&context, &error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_name(&name) {
            continue;
        }
        let Ok(Some(stat)) = stat_entry(store, &name) else {
            continue;
        };
        let entry_inode = std::os::unix::fs::DirEntryExt::ino(&entry);
        listed.push(Listed {
            name,
            stat,
            entry_inode,
        });
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

pub(super) fn kind_of(stat: &nix::sys::stat::FileStat) -> libc::mode_t {
    stat.st_mode & libc::S_IFMT
}

impl DirectoryStore {
    fn store_device(&self) -> HostResult<u64> {
        std::fs::metadata(&self.path)
            .map(|meta| std::os::unix::fs::MetadataExt::dev(&meta))
            .map_err(|error| {
                io_failure(
                    &format!("cannot examine the store {:?}", self.shown()),
                    &error,
                )
            })
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// Opens `name` (a template, or a path inside one) without following
    /// links and checks that it is the directory `expected`.
    fn open_checked(
        &self,
        relative: &str,
        expected: &TemplateId,
    ) -> HostResult<(OwnedFd, OwnedFd)> {
        let context = format!("cannot move {relative:?} in {:?}", self.shown());
        let (parent, name) =
            open_parent(&self.path, relative).map_err(|error| io_failure(&context, &error))?;
        let opened = match open_below(&parent, name) {
            Ok(opened) => opened,
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(HostError::Failed(format!(
                    "{context}: it is no longer the directory recorded before the first stop ({expected}) but a link or a file; it was left untouched"
                )))
            }
            Err(error) => return Err(io_failure(&context, &error.into())),
        };
        let stat = fstat(&opened).map_err(|error| io_failure(&context, &error.into()))?;
        let found = TemplateId::Inode(stat.st_ino);
        if &found != expected {
            return Err(HostError::Failed(format!(
                "{context}: it is no longer the directory recorded before the first stop (expected {expected}, found {found}); it was left untouched"
            )));
        }
        Ok((parent, opened))
    }
}

impl TemplateStore for DirectoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Directory
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn templates(&self) -> HostResult<Vec<Template>> {
        let device = self.store_device()?;
        let listed = list_store(&self.path, &self.shown())?;
        Ok(listed
            .into_iter()
            // A mount point (a jail root) is not a template, nor is
            // anything but a directory of the store's own file system.
            .filter(|entry| {
                kind_of(&entry.stat) == libc::S_IFDIR
                    && entry.stat.st_dev == device
                    && entry.entry_inode == entry.stat.st_ino
            })
            .map(|entry| Template {
                found: Found {
                    id: TemplateId::Inode(entry.stat.st_ino),
                    modified: entry.stat.st_mtime,
                },
                name: entry.name,
            })
            .collect())
    }

    fn examine(&self, relative: &str) -> HostResult<Entry> {
        let context = format!(
            "cannot examine {relative:?} in the store {:?}",
            self.shown()
        );
        let Some(stat) =
            stat_entry(&self.path, relative).map_err(|error| io_failure(&context, &error))?
        else {
            return Ok(Entry::Absent);
        };
        Ok(match kind_of(&stat) {
            libc::S_IFLNK => Entry::Symlink,
            libc::S_IFDIR => {
                // A template must be on the store's own file system, or a
                // rename would not be atomic.
                if !relative.contains('/') && stat.st_dev != self.store_device()? {
                    Entry::Foreign("it is on another file system than the store, so a rename would not be atomic; copy it into the store's file system".into())
                } else {
                    Entry::Directory(Found {
                        id: TemplateId::Inode(stat.st_ino),
                        modified: stat.st_mtime,
                    })
                }
            }
            _ => Entry::NotDirectory,
        })
    }

    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        top_level_symlinks(&self.path, template)
    }

    fn rename(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!("cannot rename {from:?} to {to:?} in {:?}", self.shown());
        let (from_parent, _checked) = self.open_checked(from, expected)?;
        let from_name = from.rsplit('/').next().unwrap_or(from);
        let (to_parent, to_name) =
            open_parent(&self.path, to).map_err(|error| io_failure(&context, &error))?;
        rename_no_replace(&from_parent, from_name, &to_parent, to_name)
            .map_err(|error| io_failure(&context, &error))?;
        nix::unistd::fsync(&from_parent).map_err(|error| io_failure(&context, &error.into()))?;
        // A template rename stays in one directory: one fsync makes it durable.
        if Path::new(from).parent() != Path::new(to).parent() {
            nix::unistd::fsync(&to_parent).map_err(|error| io_failure(&context, &error.into()))?;
        }
        Ok(())
    }

    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        // A carried path may be a file as well as a directory: check what
        // is there without following links.
        let context = format!("cannot move {from:?} to {to:?} in {:?}", self.shown());
        match stat_entry(&self.path, from).map_err(|error| io_failure(&context, &error))? {
            Some(stat) if TemplateId::Inode(stat.st_ino) == *expected => {}
            Some(stat) => {
                return Err(HostError::Failed(format!(
                    "{context}: it is not the path recorded before the first stop (expected {expected}, found inode {}); it was left untouched",
                    stat.st_ino
                )))
            }
            None => return Err(HostError::Failed(format!("{context}: it does not exist"))),
        }
        let (from_parent, from_name) =
            open_parent(&self.path, from).map_err(|error| io_failure(&context, &error))?;
        let (to_parent, to_name) =
            open_parent(&self.path, to).map_err(|error| io_failure(&context, &error))?;
        rename_no_replace(&from_parent, from_name, &to_parent, to_name)
            .map_err(|error| io_failure(&context, &error))?;
        nix::unistd::fsync(&from_parent).map_err(|error| io_failure(&context, &error.into()))?;
        nix::unistd::fsync(&to_parent).map_err(|error| io_failure(&context, &error.into()))?;
        Ok(())
    }

    fn copy(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        let context = format!("cannot copy {from:?} to {to:?} in {:?}", self.shown());
        let (_parent, source) = self.open_checked(from, expected)?;
        super::copy::copy_tree(&source, &self.path, to, exclude)
            .map_err(|error| io_failure(&context, &error))?;
        match self.examine(to)? {
            Entry::Directory(found) => Ok(found.id),
            other => Err(HostError::Failed(format!(
                "{context}: the copy is not a directory ({other:?})"
            ))),
        }
    }

    fn delete(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        let context = format!("cannot delete {name:?} in {:?}", self.shown());
        if name.contains('/') {
            return Err(HostError::Failed(format!("{context}: not a template name")));
        }
        match self.examine(name)? {
            Entry::Absent => return Ok(()),
            Entry::Directory(found) => {
                if let Some(expected) = expected {
                    if &found.id != expected {
                        return Err(HostError::Failed(format!(
                            "{context}: it is no longer the template recorded (expected {expected}, found {}); not deleting it",
                            found.id
                        )));
                    }
                }
            }
            other => {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a template directory ({other:?})"
                )))
            }
        }
        // remove_dir_all does not follow symbolic links inside the tree.
        std::fs::remove_dir_all(self.path.join(name))
            .map_err(|error| io_failure(&context, &error))?;
        let store =
            open_directory(&self.path).map_err(|error| io_failure(&context, &error.into()))?;
        nix::unistd::fsync(&store).map_err(|error| io_failure(&context, &error.into()))
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
        let Ok(meta) = std::fs::metadata(root) else {
            return Ok(None);
        };
        // On Linux a bind mount keeps the template's device; FreeBSD's
        // nullfs reports a device of its own, so there the inode alone
        // names the template (preflight keeps templates on one file system).
        let device = std::os::unix::fs::MetadataExt::dev(&meta);
        if cfg!(target_os = "linux") && device != self.store_device()? {
            return Ok(None);
        }
        Ok(Some(TemplateId::Inode(
            std::os::unix::fs::MetadataExt::ino(&meta),
        )))
    }
}

/// The top-level symbolic links of `store/template`, by name, read without
/// following links (every store kind mounts its templates as directories).
pub(super) fn top_level_symlinks(store: &Path, template: &str) -> HostResult<Vec<String>> {
    let context = format!(
        "cannot list {template:?} in the store {:?}",
        store.display().to_string()
    );
    let (parent, name) =
        open_parent(store, template).map_err(|error| io_failure(&context, &error))?;
    let fd = open_below(&parent, name).map_err(|error| io_failure(&context, &error.into()))?;
    let mut directory =
        nix::dir::Dir::from_fd(fd).map_err(|error| io_failure(&context, &error.into()))?;
    let mut links = Vec::new();
    for entry in directory.iter() {
        let entry = entry.map_err(|error| io_failure(&context, &error.into()))?;
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name == "." || entry_name == ".." {
            continue;
        }
        if entry.file_type() == Some(nix::dir::Type::Symlink) {
            links.push(entry_name);
        }
    }
    links.sort();
    Ok(links)
}

#[cfg(target_os = "linux")]
pub(super) fn rename_no_replace(
    from_parent: &OwnedFd,
    from: &str,
    to_parent: &OwnedFd,
    to: &str,
) -> std::io::Result<()> {
    nix::fcntl::renameat2(
        from_parent,
        from,
        to_parent,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn rename_no_replace(
    from_parent: &OwnedFd,
    from: &str,
    to_parent: &OwnedFd,
    to: &str,
) -> std::io::Result<()> {
    // Without RENAME_NOREPLACE, check first: jailswap holds the journal's
    // lock, so no other jailswap can create the name in between.
    match fstatat(to_parent, to, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => return Err(std::io::Error::from_raw_os_error(libc::EEXIST)),
        Err(nix::errno::Errno::ENOENT) => {}
        Err(error) => return Err(error.into()),
    }
    nix::fcntl::renameat(from_parent, from, to_parent, to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(store: &Path, name: &str) -> TemplateId {
        let stat = stat_entry(store, name).unwrap().unwrap();
        TemplateId::Inode(stat.st_ino)
    }

    // A rename never replaces, never follows a link, and refuses an entry
    // that is not the directory recorded, leaving it where it is.
    #[test]
    fn renames_check_identity_and_never_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore {
            path: dir.path().to_path_buf(),
        };
        let path = dir.path();
        std::fs::create_dir(path.join("a")).unwrap();
        std::fs::create_dir(path.join("b")).unwrap();
        let a = inode(path, "a");
        let b = inode(path, "b");
        assert!(store.rename("a", "b", &a).is_err());
        // The wrong identity: refused, nothing moves.
        let error = store.rename("b", "c", &a).unwrap_err();
        assert!(error.to_string().contains("left untouched"), "{error}");
        assert!(path.join("b").is_dir() && !path.join("c").exists());
        // A link where the template was: refused, the link stays.
        std::os::unix::fs::symlink(path.join("b"), path.join("link")).unwrap();
        let error = store.rename("link", "c", &b).unwrap_err();
        assert!(error.to_string().contains("link"), "{error}");
        assert!(std::fs::symlink_metadata(path.join("link"))
            .unwrap()
            .is_symlink());
        // A path through a link is not followed.
        std::fs::create_dir(path.join("b/inner")).unwrap();
        let inner = inode(path, "b/inner");
        assert!(store.move_inside("link/inner", "a/inner", &inner).is_err());
        store.rename("a", "c", &a).unwrap();
        assert!(path.join("c").is_dir() && !path.join("a").exists());
        assert_eq!(store.examine("link").unwrap(), Entry::Symlink);
        assert_eq!(store.examine("missing").unwrap(), Entry::Absent);
        assert!(store.examine("../etc").is_err());
    }

    // Listing shows directories with plain names, not links, files or mount points.
    #[test]
    fn listing_shows_only_templates() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore {
            path: dir.path().to_path_buf(),
        };
        for name in ["mroot", "mroot.1", "other.V5", ".hidden", "lost+found"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("mroot", dir.path().join("alias")).unwrap();
        let names: Vec<String> = store
            .templates()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["mroot", "mroot.1", "other.V5"]);
    }

    // Deleting checks the identity and never deletes through a link.
    #[test]
    fn delete_checks_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore {
            path: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dir.path().join("old/usr")).unwrap();
        std::fs::create_dir(dir.path().join("keep")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("keep"), dir.path().join("link")).unwrap();
        let old = inode(dir.path(), "old");
        let keep = inode(dir.path(), "keep");
        assert!(store.delete("old", Some(&keep)).is_err());
        assert!(store.delete("link", None).is_err());
        assert!(dir.path().join("keep").is_dir());
        store.delete("old", Some(&old)).unwrap();
        assert!(!dir.path().join("old").exists());
        store.delete("old", Some(&old)).unwrap();
    }
}
