//! The kinds of store templates live in, private to the host backends.
//!
//! A store is the directory that holds the live template and its siblings.
//! What a template *is* differs by kind, and so do renames, copies, deletes
//! and identities; everything else in jailswap sees only the [`Host`]
//! operations built on [`TemplateStore`]:
//!
//! | kind        | template            | identity       | rename       | copy (stage)        |
//! |-------------|---------------------|----------------|--------------|---------------------|
//! | `directory` | a directory         | inode          | rename(2)    | faithful tree copy  |
//! | `zfs`       | a dataset           | dataset GUID   | `zfs rename` | snapshot and clone  |
//! | `btrfs`     | a subvolume         | subvolume UUID | rename(2)    | writable snapshot   |
//!
//! Fingerprints are the same for every kind: a mounted template is a
//! directory tree, and [`fingerprint_tree`] reads it.
//!
//! [`Host`]: crate::host::Host

pub mod btrfs;
mod copy;
pub mod directory;
pub mod zfs;

use crate::config::StoreKind;
use crate::host::{Entry, Fingerprint, HostError, HostResult, Template, TemplateId};
use crate::template::hex;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One kind of store: the template operations of [`crate::host::Host`]
/// that differ by kind. Names are names in the store (or, for `examine` and
/// `move_inside`, paths inside a template), never absolute paths.
pub trait TemplateStore: Send + Sync {
    fn kind(&self) -> StoreKind;
    fn path(&self) -> &Path;
    fn templates(&self) -> HostResult<Vec<Template>>;
    fn examine(&self, relative: &str) -> HostResult<Entry>;
    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>>;
    fn rename(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()>;
    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()>;
    fn copy(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId>;
    fn delete(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()>;
    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint>;
    /// The template a (mounted) jail root shows, if it is one of the store's.
    fn identify_root(&self, root: &Path) -> HostResult<Option<TemplateId>>;
}

/// Opens the store of `kind` at `path`.
pub fn open(kind: StoreKind, path: &Path) -> Box<dyn TemplateStore> {
    match kind {
        StoreKind::Directory => Box::new(directory::DirectoryStore {
            path: path.to_path_buf(),
        }),
        StoreKind::Zfs => Box::new(zfs::ZfsStore::new(path)),
        StoreKind::Btrfs => Box::new(btrfs::BtrfsStore {
            path: path.to_path_buf(),
        }),
    }
}

/// Turns an I/O error into a host error with its context.
pub fn io_failure(context: &str, error: &std::io::Error) -> HostError {
    HostError::from_io(context.to_string(), error)
}

/// One entry of a template, as the fingerprint sees it.
struct Item {
    relative: PathBuf,
    /// Type, mode, owner, size and link target or device, as one line.
    line: String,
    /// Regular files: their content is hashed.
    file: bool,
}

/// Fingerprints the directory tree at `root` (not following links): the
/// SHA-256 of one line per entry, in path order, naming its path, type,
/// mode, owner, group and size, and its link target, device number, or
/// the SHA-256 of its content. Contents are read by as many threads as
/// there are CPUs, so a large template costs its read time divided by the
/// cores; it is computed before the first stop, never inside the downtime.
pub fn fingerprint_tree(root: &std::os::fd::OwnedFd) -> std::io::Result<Fingerprint> {
    // Descend through the descriptor's path: the caller opened it without
    // following links, and /proc names exactly that directory.
    let root_path = fd_path(root)?;
    let mut items = Vec::new();
    let mut pending = vec![PathBuf::new()];
    // Bounded by the number of directories of the tree.
    while let Some(directory) = pending.pop() {
        let mut children: Vec<_> = std::fs::read_dir(root_path.join(&directory))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|entry| directory.join(entry.file_name()))
            .collect();
        children.sort();
        for relative in children.into_iter().rev() {
            let meta = std::fs::symlink_metadata(root_path.join(&relative))?;
            let kind = meta.file_type();
            let detail = if kind.is_symlink() {
                let target = std::fs::read_link(root_path.join(&relative))?;
                format!("link {}", target.display())
            } else if kind.is_dir() {
                pending.push(relative.clone());
                "dir".to_string()
            } else if kind.is_file() {
                format!("file {}", meta.len())
            } else {
                // Devices by number; fifos and sockets by type alone.
                format!("special {:o} {}", meta.mode() & libc::S_IFMT, meta.rdev())
            };
            items.push(Item {
                line: format!(
                    "{}\0{:o}\0{}\0{}\0{detail}",
                    relative.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ),
                file: kind.is_file(),
                relative,
            });
        }
    }
    items.sort_by(|a, b| a.relative.cmp(&b.relative));
    let digests = hash_contents(&root_path, &items)?;
    let mut hasher = Sha256::new();
    for (item, digest) in items.iter().zip(&digests) {
        hasher.update(item.line.as_bytes());
        if let Some(digest) = digest {
            hasher.update(b"\0");
            hasher.update(digest);
        }
        hasher.update(b"\n");
    }
    Ok(Fingerprint {
        entries: items.len() as u64,
        sha256: hex(&hasher.finalize()),
    })
}

/// The path the kernel gives a directory descriptor.
fn fd_path(fd: &std::os::fd::OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .or_else(|_| std::fs::read_link(format!("/dev/fd/{}", fd.as_raw_fd())))
}

/// The SHA-256 of each regular file's content, read in parallel.
fn hash_contents(root: &Path, items: &[Item]) -> std::io::Result<Vec<Option<[u8; 32]>>> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let mut digests: Vec<Option<[u8; 32]>> = vec![None; items.len()];
    let results = std::sync::Mutex::new(Vec::new());
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut found = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    if !item.file {
                        continue;
                    }
                    match hash_file(&root.join(&item.relative), &mut buffer) {
                        Ok(digest) => found.push((index, digest)),
                        Err(error) => {
                            if let Ok(mut slot) = failure.lock() {
                                slot.get_or_insert(error);
                            }
                            break;
                        }
                    }
                }
                if let Ok(mut all) = results.lock() {
                    all.extend(found);
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    for (index, digest) in results.into_inner().unwrap_or_default() {
        digests[index] = Some(digest);
    }
    Ok(digests)
}

fn hash_file(path: &Path, buffer: &mut [u8]) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = Sha256::new();
    // Bounded by the file's size.
    loop {
        let read = file.read(buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(path: &Path) -> Fingerprint {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        fingerprint_tree(&fd).unwrap()
    }

    // Two templates that differ only in one file's content, written in the
    // same second with the same size, have different fingerprints; equal
    // trees have equal ones; a mode, a name or a link target changes it.
    #[test]
    fn fingerprints_follow_content() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, version: &str| {
            let root = dir.path().join(name);
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("VERSION"), version).unwrap();
            std::fs::write(root.join("etc/rc.conf"), "sshd_enable=YES\n").unwrap();
            std::os::unix::fs::symlink("s/etc", root.join("link")).unwrap();
            root
        };
        let a = make("a", "14.1\n");
        let b = make("b", "14.2\n");
        let c = make("c", "14.1\n");
        let (fa, fb, fc) = (fingerprint(&a), fingerprint(&b), fingerprint(&c));
        assert_eq!(fa.entries, 4);
        assert_ne!(fa, fb);
        assert_eq!(fa, fc);
        std::fs::set_permissions(c.join("VERSION"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert_ne!(fingerprint(&c), fa);
        std::fs::remove_file(a.join("link")).unwrap();
        std::os::unix::fs::symlink("s/other", a.join("link")).unwrap();
        assert_ne!(fingerprint(&a), fa);
    }

    use std::os::unix::fs::PermissionsExt;
}
