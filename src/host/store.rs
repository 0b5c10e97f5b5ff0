//! Operations on the store through a file descriptor of it.
//!
//! Every path below the store is walked one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, and the final entry is renamed or
//! examined relative to its parent's descriptor without following links.
//! A template name replaced by a symbolic link between the check and the
//! rename therefore cannot redirect the rename elsewhere. Renames never
//! replace an existing entry, and the parent directories are fsynced before
//! the rename is reported done, so the new names survive a power loss.

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode};
use std::os::fd::OwnedFd;
use std::path::Path;

fn plain_components(relative: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = relative.split('/').collect();
    let plain = !relative.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..");
    plain.then_some(parts)
}

fn open_directory(store: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        store,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the parent directory of `store/relative` without following links
/// and returns it with the final component.
fn open_parent<'a>(store: &Path, relative: &'a str) -> std::io::Result<(OwnedFd, &'a str)> {
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
        directory = openat(
            &directory,
            *part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok((directory, last))
}

/// What an entry of the store is, seen without following links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub inode: u64,
    pub device: u64,
    pub is_directory: bool,
    pub is_symlink: bool,
    pub mtime: i64,
}

/// Examines `store/relative` without following links; `None` when absent.
pub fn entry(store: &Path, relative: &str) -> std::io::Result<Option<EntryInfo>> {
    let (parent, name) = match open_parent(store, relative) {
        Ok(found) => found,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(error),
    };
    match fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let kind = stat.st_mode & libc::S_IFMT;
            Ok(Some(EntryInfo {
                inode: stat.st_ino,
                device: stat.st_dev,
                is_directory: kind == libc::S_IFDIR,
                is_symlink: kind == libc::S_IFLNK,
                mtime: stat.st_mtime,
            }))
        }
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Renames `store/from` to `store/to` without replacing anything, then
/// fsyncs both parent directories.
pub fn rename(store: &Path, from: &str, to: &str) -> std::io::Result<()> {
    let (from_parent, from_name) = open_parent(store, from)?;
    let (to_parent, to_name) = open_parent(store, to)?;
    rename_no_replace(&from_parent, from_name, &to_parent, to_name)?;
    nix::unistd::fsync(&from_parent)?;
    // A template rename stays in one directory: one fsync makes it durable.
    let same_parent = Path::new(from).parent() == Path::new(to).parent();
    if !same_parent {
        nix::unistd::fsync(&to_parent)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn rename_no_replace(
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
fn rename_no_replace(
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

/// Deletes a template directory of the store and everything in it. The
/// name is checked to be a plain entry that is a directory, not a link;
/// the removal itself does not follow links inside the tree.
pub fn remove_template(store: &Path, name: &str) -> std::io::Result<()> {
    match entry(store, name)? {
        Some(found) if found.is_directory && !name.contains('/') => {
            std::fs::remove_dir_all(store.join(name))
        }
        Some(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a template directory"),
        )),
        None => Ok(()),
    }
}

/// The names of the top-level symbolic links of a template.
pub fn top_level_symlinks(store: &Path, template: &str) -> std::io::Result<Vec<String>> {
    let mut links = Vec::new();
    let (parent, name) = open_parent(store, template)?;
    let fd = openat(
        &parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut directory = nix::dir::Dir::from_fd(fd)?;
    for entry in directory.iter() {
        let entry = entry?;
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name == "." || entry_name == ".." {
            continue;
        }
        let is_link = match entry.file_type() {
            Some(kind) => kind == nix::dir::Type::Symlink,
            None => false,
        };
        if is_link {
            links.push(entry_name);
        }
    }
    links.sort();
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A rename never replaces, and a symlinked parent is not followed.
    #[test]
    fn rename_refuses_to_replace_and_to_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        std::fs::create_dir(store.join("a")).unwrap();
        std::fs::create_dir(store.join("b")).unwrap();
        assert!(rename(store, "a", "b").is_err());
        std::os::unix::fs::symlink(store.join("b"), store.join("link")).unwrap();
        std::fs::create_dir(store.join("b/inner")).unwrap();
        assert!(rename(store, "link/inner", "moved").is_err());
        assert!(store.join("b/inner").is_dir());
        rename(store, "a", "c").unwrap();
        assert!(store.join("c").is_dir() && !store.join("a").exists());
        let info = entry(store, "link").unwrap().unwrap();
        assert!(info.is_symlink && !info.is_directory);
        assert_eq!(entry(store, "missing").unwrap(), None);
        assert!(entry(store, "../etc").is_err());
    }
}
