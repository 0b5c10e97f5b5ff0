//! The template mount: each jail's mounts as jail(8) would make them
//! (`mount.fstab` and `mount`), and which of them puts a read-only template
//! from the store at the jail's root.
//!
//! Both importers share the test that recognises the live template and the
//! rule that every jail mounts the same one, since jailswap swaps one.

use std::path::PathBuf;

use crate::fstab::Entry;

use super::expand::ConfiguredJail;
use super::files::SourceFiles;
use super::{fstab_error, normalize, shown, ImportError, Origin, Store};

/// A jail's mounts as jail(8) would make them, each with where it was written.
pub(super) struct JailMounts {
    pub(super) entries: Vec<(Entry, Origin)>,
    /// The `mount.fstab` file that could not be read.
    pub(super) unread_fstab: Option<PathBuf>,
}

pub(super) fn jail_mounts(
    jail: &ConfiguredJail,
    files: &dyn SourceFiles,
) -> Result<JailMounts, ImportError> {
    let mut mounts = JailMounts {
        entries: Vec::new(),
        unread_fstab: None,
    };
    if let Some(fstab) = &jail.mount_fstab {
        // An unreadable file is noted rather than refused: the import is
        // still useful, and the note says the template was not checked.
        match files.read(fstab) {
            Ok(text) => {
                for entry in crate::fstab::entries(&text, fstab)
                    .map_err(|error| fstab_error(fstab, error))?
                {
                    let origin = Origin {
                        file: fstab.clone(),
                        line: entry.line,
                    };
                    mounts.entries.push((entry, origin));
                }
            }
            Err(_) => mounts.unread_fstab = Some(fstab.clone()),
        }
    }
    for (text, origin) in &jail.mount_lines {
        let parsed = crate::fstab::entry(text, &origin.file, origin.line).map_err(|error| {
            ImportError::new(
                &origin.file,
                origin.line,
                format!("in `mount` of jail \"{}\": {}", jail.name, error.message),
            )
        })?;
        if let Some(entry) = parsed {
            mounts.entries.push((entry, origin.clone()));
        }
    }
    Ok(mounts)
}

/// What is mounted at a jail's root.
pub(super) enum Root<'a> {
    Template {
        name: String,
        origin: Origin,
        entry: &'a Entry,
    },
    Foreign {
        origin: Origin,
        entry: &'a Entry,
    },
    NotFound,
}

pub(super) fn find_root<'a>(entries: &'a [(Entry, Origin)], path: &str, store: &Store) -> Root<'a> {
    let root = normalize(path);
    let Some((entry, origin)) = entries
        .iter()
        .find(|(entry, _)| normalize(&entry.mountpoint) == root)
    else {
        return Root::NotFound;
    };
    match template_name(entry, store) {
        Some(name) => Root::Template {
            name,
            origin: origin.clone(),
            entry,
        },
        None => Root::Foreign {
            origin: origin.clone(),
            entry,
        },
    }
}

/// The template name when `entry` mounts a direct child of the store read-only.
pub(super) fn template_name(entry: &Entry, store: &Store) -> Option<String> {
    if !entry.options.iter().any(|option| option == "ro") {
        return None;
    }
    let source = normalize(&entry.source);
    if source.parent()? != store.path {
        return None;
    }
    source.file_name()?.to_str().map(str::to_owned)
}

/// Records the first live template found, or refuses one that differs: jailswap
/// swaps one live template, so jails mounting different ones cannot share it.
pub(super) fn check_same_live(
    live: &mut Option<(String, Origin)>,
    name: &str,
    origin: &Origin,
    source_path: &str,
) -> Result<(), ImportError> {
    match live {
        Some((first, first_origin)) if first != name => Err(ImportError::new(
            &origin.file,
            origin.line,
            format!(
                "found a mount of template \"{}\" ({}); expected every jail to mount the \
                 same live template, and {} mounts \"{first}\"",
                shown(name),
                shown(source_path),
                first_origin.describe()
            ),
        )),
        Some(_) => Ok(()),
        None if !crate::config::valid_name(name) => Err(ImportError::new(
            &origin.file,
            origin.line,
            format!(
                "found a mount of template \"{}\" ({}); expected a template name of letters, \
                 digits, '_', '.' or '-', starting with a letter or digit, as jailswap requires \
                 of `live`",
                shown(name),
                shown(source_path)
            ),
        )),
        None => {
            *live = Some((name.to_owned(), origin.clone()));
            Ok(())
        }
    }
}
