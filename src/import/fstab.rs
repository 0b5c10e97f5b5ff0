//! `jailswap init --from-fstab`: the jails of a Handbook-style /etc/fstab.
//!
//! A line that mounts `<store>/<live>` read-only at a jail's root announces
//! the jail; every line whose mount point is that root or below it belongs
//! to the jail, in file order (to the deeper root when two contain it).

use std::path::{Path, PathBuf};

use crate::fstab::Entry;

use super::mounts::{check_same_live, template_name};
use super::render::{Configuration, JailEntry};
use super::{fstab_error, normalize, path_text, shown, ImportError, Origin, Store, DEFAULT_LIVE};

/// The jailswap.toml for the jails a system fstab mounts the template for;
/// see [`super::from_fstab`].
pub(super) fn import(text: &str, source: &Path, store: &Path) -> Result<String, ImportError> {
    let store = Store::new(store, source)?;
    let entries =
        crate::fstab::entries(text, source).map_err(|error| fstab_error(source, error))?;

    // A jail is announced by the read-only mount of a template at its root.
    let mut roots: Vec<FstabJail> = Vec::new();
    let mut live: Option<(String, Origin)> = None;
    for (index, entry) in entries.iter().enumerate() {
        let Some(template) = template_name(entry, &store) else {
            continue;
        };
        let root = normalize(&entry.mountpoint);
        let Some(name) = root.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if root == store.path {
            continue;
        }
        if !crate::config::valid_name(name) {
            return Err(ImportError::new(
                source,
                entry.line,
                format!(
                    "found jail name \"{}\" (the last component of \"{}\"); expected \
                     letters, digits, '_', '.' or '-', starting with a letter or digit",
                    shown(name),
                    shown(&entry.mountpoint)
                ),
            ));
        }
        if let Some(first) = roots.iter().find(|jail| jail.name == name) {
            return Err(ImportError::new(
                source,
                entry.line,
                format!(
                    "found a second template mount for jail \"{name}\" at \"{}\"; expected \
                     one per jail, and line {} already mounts one at \"{}\"",
                    shown(&entry.mountpoint),
                    entries
                        .get(first.root_entry)
                        .map_or(0, |first_entry| first_entry.line),
                    first.root.display()
                ),
            ));
        }
        let origin = Origin {
            file: source.to_path_buf(),
            line: entry.line,
        };
        check_same_live(&mut live, &template, &origin, &entry.source)?;
        roots.push(FstabJail {
            name: name.to_owned(),
            root,
            root_entry: index,
            members: Vec::new(),
        });
    }
    if roots.is_empty() {
        return Err(ImportError::new(
            source,
            0,
            format!(
                "found no line that mounts a template from \"{store}\" read-only at a jail's \
                 root; expected one such as `{store}/{DEFAULT_LIVE} {store}/ns nullfs ro 0 0`",
                store = store.text
            ),
        ));
    }

    // Each line goes to the jail whose root is the deepest one above its mount point.
    let mut unclaimed: Vec<String> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let mountpoint = normalize(&entry.mountpoint);
        let owner = roots
            .iter_mut()
            .filter(|jail| mountpoint.starts_with(&jail.root))
            .max_by_key(|jail| jail.root.components().count());
        match owner {
            Some(jail) => jail.members.push(index),
            None if mountpoint.starts_with(&store.path) && mountpoint != store.path => {
                unclaimed.push(format!(
                    "Not imported: {} line {} mounts {} below the store, but no line mounts \
                     a template read-only at a jail root above it.",
                    source.display(),
                    entry.line,
                    entry.mountpoint
                ));
            }
            None => {}
        }
    }

    let mut jails = Vec::new();
    for jail in &roots {
        let members: Vec<&Entry> = jail
            .members
            .iter()
            .filter_map(|index| entries.get(*index))
            .collect();
        check_mount_order(&members, source)?;
        let fstab = format!("/etc/fstab.{}", jail.name);
        let lines: Vec<String> = members.iter().map(|entry| entry.line.to_string()).collect();
        let root_line = entries.get(jail.root_entry).map_or(0, |entry| entry.line);
        let mut notes_after = vec![format!(
            "Create {fstab} with these lines, in this order ({} line{} {}):",
            source.display(),
            if lines.len() == 1 { "" } else { "s" },
            lines.join(", ")
        )];
        notes_after.extend(members.iter().map(|entry| format!("    {}", entry.text)));
        jails.push(JailEntry {
            name: jail.name.clone(),
            path: path_text(&jail.root),
            fstab: Some(fstab),
            depends: Vec::new(),
            notes_before: vec![format!(
                "{}: {} line {root_line} mounts the template at its root.",
                jail.name,
                source.display()
            )],
            notes_after,
        });
    }

    let (live, origin) = match live {
        Some(found) => found,
        // Every root passed `check_same_live`, so a root implies a live name;
        // the fallback only keeps this function free of panics.
        None => (
            DEFAULT_LIVE.to_owned(),
            Origin {
                file: source.to_path_buf(),
                line: 0,
            },
        ),
    };
    let mut notes = vec![format!(
        "Each jail's mounts move to the file its fstab key names; the lines may stay in \
         {} so the host still mounts them at boot. Keep both copies identical.",
        source.display()
    )];
    notes.extend(unclaimed);
    let configuration = Configuration {
        command: format!("--from-fstab {}", source.display()),
        live_note: format!(
            "The jails mount {}/{live} read-only ({}).",
            store.text,
            origin.describe()
        ),
        store: store.text,
        live,
        jails,
        notes,
    };
    Ok(configuration.render())
}

/// A jail found in a system fstab: its root and the entries (by index) it owns.
struct FstabJail {
    name: String,
    root: PathBuf,
    root_entry: usize,
    members: Vec<usize>,
}

/// Refuses a jail whose lines mount a directory before a later line mounts
/// one of its parents: jailswap, like `mount -a`, mounts in file order, and
/// the later mount would hide the earlier one.
fn check_mount_order(members: &[&Entry], file: &Path) -> Result<(), ImportError> {
    let points: Vec<PathBuf> = members
        .iter()
        .map(|entry| normalize(&entry.mountpoint))
        .collect();
    for (position, (later, later_point)) in members.iter().zip(&points).enumerate() {
        for (earlier, earlier_point) in members.iter().zip(&points).take(position) {
            if earlier_point != later_point && earlier_point.starts_with(later_point) {
                return Err(ImportError::new(
                    file,
                    later.line,
                    format!(
                        "found a mount on \"{}\" after line {} mounted \"{}\" inside it, which \
                         it would hide; expected \"{}\" to be mounted first",
                        shown(&later.mountpoint),
                        earlier.line,
                        shown(&earlier.mountpoint),
                        shown(&later.mountpoint)
                    ),
                ));
            }
        }
    }
    Ok(())
}
