//! A faithful copy of a template tree, for `stage` on a directory store.
//!
//! Everything `pkg -r` or `freebsd-update -b` relies on survives: owners,
//! modes (setuid included: the mode is set after the owner, which would
//! clear it), access and modification times to the nanosecond, hard links
//! (one inode stays one inode), symbolic links (never followed), devices and
//! fifos, and extended attributes. File contents are reflinked where the
//! file system offers it (XFS, btrfs, bcachefs: no data copied) and copied
//! otherwise. File flags (chflags(2)) are not copied: Linux has no portable
//! interface for them and FreeBSD's base holds `schg` files that the copy
//! must be able to replace later, as `cp -a` would.
//!
//! The copy is made under its final name's parent, entry by entry; the
//! caller (stage) makes it under a temporary name and renames it only when
//! the whole transaction passed, so a half copy is never a template.

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies the tree at `source` (a directory descriptor opened without
/// following links) to `store/to`, which must not exist yet.
/// Paths in `exclude` (relative to the template) are left out.
pub fn copy_tree(
    source: &std::os::fd::OwnedFd,
    store: &Path,
    to: &str,
    exclude: &[String],
) -> std::io::Result<()> {
    let source = super::fd_path(source)?;
    let target = store.join(to);
    std::fs::create_dir(&target)?;
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut directories = Vec::new();
    let excluded: Vec<std::path::PathBuf> = exclude.iter().map(|path| source.join(path)).collect();
    copy_directory(&source, &target, &excluded, &mut links, &mut directories)?;
    // Directory times last, once nothing more is written into them.
    for (path, meta) in directories.iter().rev() {
        set_times(path, meta)?;
    }
    Ok(())
}

fn copy_directory(
    source: &Path,
    target: &Path,
    excluded: &[std::path::PathBuf],
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    directories: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(source)?;
    set_owner_and_mode(target, &meta)?;
    copy_xattrs(source, target)?;
    directories.push((target.to_path_buf(), meta));
    let mut entries: Vec<_> = std::fs::read_dir(source)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    // Bounded by the size of the tree; recursion depth by its depth.
    for entry in entries {
        let from = entry.path();
        if excluded.contains(&from) {
            continue;
        }
        let to = target.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&to)?;
            copy_directory(&from, &to, excluded, links, directories)?;
            continue;
        }
        if meta.nlink() > 1 && !kind.is_symlink() {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                std::fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            fchownat(
                nix::fcntl::AT_FDCWD,
                &to,
                Some(Uid::from_raw(meta.uid())),
                Some(Gid::from_raw(meta.gid())),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            set_times(&to, &meta)?;
            continue;
        }
        if kind.is_file() {
            reflink_copy::reflink_or_copy(&from, &to)?;
        } else if kind.is_fifo()
            || kind.is_char_device()
            || kind.is_block_device()
            || kind.is_socket()
        {
            let file_kind = nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            nix::sys::stat::mknod(
                &to,
                file_kind,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev() as nix::sys::stat::dev_t,
            )?;
        }
        set_owner_and_mode(&to, &meta)?;
        copy_xattrs(&from, &to)?;
        set_times(&to, &meta)?;
    }
    Ok(())
}

fn set_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    // After the owner: chown clears setuid and setgid.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

fn set_times(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let accessed = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let modified = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &accessed,
        &modified,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

fn copy_xattrs(from: &Path, to: &Path) -> std::io::Result<()> {
    let names = match xattr::list(from) {
        Ok(names) => names,
        // A file system without extended attributes has none to copy.
        Err(error) if error.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(error) => return Err(error),
    };
    for name in names {
        if let Some(value) = xattr::get(from, &name)? {
            xattr::set(to, &name, &value)?;
        }
    }
    Ok(())
}
