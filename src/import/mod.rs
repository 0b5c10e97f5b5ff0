//! Import of the jails a host already has: `jailswap init --from-jail-conf`
//! and `jailswap init --from-fstab` print a complete jailswap.toml.
//!
//! This module owns reading the two files FreeBSD administrators already keep
//! their jails in, and nothing else: it is pure (text in, text out), so the
//! command line decides where files come from and tests need no disk.
//!
//! The jail.conf path runs `lexer` (text to tokens), `parser` (tokens to
//! blocks and statements), `expand` (each jail's parameters, variables
//! substituted), `mounts` (each jail's mounts and its template) and
//! `render` (the TOML). The fstab path is `fstab`, which shares `mounts`
//! and `render`. fstab lines are read by the crate's own [`crate::fstab`], and
//! dependencies are ordered by [`crate::order`], as for the configuration.
//!
//! # From jail.conf
//!
//! [`from_jail_conf`] follows jail.conf(5) and the parser of jail(8) itself:
//! `key = value;`, `key += value;`, `key value;`, `key;`, comma-separated
//! lists, bare words, `"..."` strings (which expand variables) and `'...'`
//! strings (which do not), backslash escapes, and `#`, `//` and `/* */`
//! comments. Parameters outside any block and in wildcard blocks (`*`, `web.*`)
//! apply to every matching jail in the order jail(8) applies them: those
//! written before a jail's block come first and its own parameters override
//! them, those written after it override the block.
//!
//! For each jail it resolves `path`, `mount.fstab`, `mount` and `depend`,
//! substituting `$name`, `${name}`, `$path` and any `$variable` the file
//! defines. Only these parameters are expanded: a variable that is not set
//! in, say, `exec.start` is left alone, because jailswap never uses that value
//! and the operator's own jail(8) runs report it. A variable that one of these
//! parameters needs and that is not set, refers to itself, or is a list used
//! inside a longer string is an error, exactly as jail(8) would refuse it.
//! Expansion is bounded (depth, substitutions, length) so that no file can
//! make it run away. A block's name is the jail's name, even when it is all
//! digits (which jail(8) would read as a jid): jailswap needs a name.
//! `.include` is refused: the included files cannot be followed without
//! reading directories, and silently missing jails would be worse.
//!
//! Each jail's `mount.fstab` file (read through the caller's `read_file`) and
//! `mount` lines are searched for the mount of the jail's root: a read-only
//! mount of `<store>/<name>` there names the live template. A jail whose root
//! is mounted from somewhere else does not share the template and is listed in
//! a comment instead of a `[[jail]]` table.
//!
//! A jail with `mount.fstab` gets **no** `fstab` key, deliberately: jail(8)
//! mounts that file when the jail starts and unmounts it when the jail stops,
//! and SPEC.md says a jail without `fstab` manages its own mounts. Pointing
//! jailswap at the same file would mount everything twice. The file is named
//! in the jail's comment instead.
//!
//! # From a system fstab
//!
//! [`from_fstab`] reads a Handbook-style /etc/fstab. A line that mounts
//! `<store>/<live>` read-only (`ro`) identifies a jail: its mount point is the
//! jail's root and its last component the jail's name (`/home/j/ns` is `ns`).
//! Every line whose mount point is that root or below it belongs to the jail,
//! in file order (a line below two roots belongs to the deeper one). Lines
//! below the store that belong to no jail are listed in a comment; other lines
//! (the host's `/`, swap, `/proc`) are ignored.
//!
//! jailswap's `fstab` key names a file, so each jail gets
//! `fstab = "/etc/fstab.<name>"`, and right under its `[[jail]]` keys a
//! comment block holds the lines that file must contain, copied verbatim from
//! the source and each prefixed with `#     `:
//!
//! ```text
//! [[jail]]
//! name = "ns"
//! path = "/home/j/ns"
//! fstab = "/etc/fstab.ns"
//! # Create /etc/fstab.ns with these lines, in this order (/etc/fstab lines 11, 14):
//! #     /home/j/mroot   /home/j/ns     nullfs  ro  0   0
//! #     /home/js/ns     /home/j/ns/s   nullfs  rw  0   0
//! ```
//!
//! Keeping them next to the jail they belong to makes the review one read, and
//! `sed -n 's/^#     //p'` over one jail's block recovers the file. The lines
//! may stay in /etc/fstab so the host still mounts them at boot.
//!
//! fstab lines are `source mountpoint type options [dump [pass]]`; blank lines
//! and lines starting with `#` are skipped, a field starting with `#` starts a
//! trailing comment, and `\NNN` (octal, such as `\040` for a space) escapes a
//! byte in a path, as FreeBSD's fstab(5) allows. A jail whose own lines mount
//! a directory before a later line mounts one of its parents is refused:
//! `mount -a` would hide the first mount under the second.
//!
//! # Output
//!
//! `store`, `live` (the detected template name, or `mroot`), a `[defaults]`
//! table running `service jail` and `jls`, and one `[[jail]]` table per jail,
//! each preceded by a comment naming the file and line it came from. Strings
//! go through the toml crate's serializer, and comments have their control
//! characters escaped, so any input yields valid TOML.
//!
//! # Errors
//!
//! Every error is an [`ImportError`] naming the file and line (line 0, printed
//! without a line, when the problem is the whole file, such as no jail at
//! all) and saying what was found and what was expected. No input panics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::order::{Node, OrderError};

use expand::{resolve_jails, ConfiguredJail};
use mounts::{check_same_live, find_root, jail_mounts, Root};
use render::{Configuration, JailEntry};

mod expand;
mod fstab;
mod lexer;
mod mounts;
mod parser;
mod render;

/// The live template's name when no jail's mounts show it (SPEC.md's default).
pub const DEFAULT_LIVE: &str = "mroot";

/// What a line of a source file holds that jailswap cannot import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}", location = location(.file, *.line))]
pub struct ImportError {
    /// The file the problem is in (the jail.conf, an fstab, or a jail's
    /// `mount.fstab` file).
    pub file: PathBuf,
    /// The 1-based line, or 0 when the problem concerns the whole file.
    pub line: usize,
    /// What was found and what was expected.
    pub message: String,
}

impl ImportError {
    fn new(file: &Path, line: usize, message: impl Into<String>) -> Self {
        ImportError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

fn location(file: &Path, line: usize) -> String {
    if line == 0 {
        file.display().to_string()
    } else {
        format!("{}:{}", file.display(), line)
    }
}

/// Prints a jailswap.toml for the jails defined in a jail.conf(5) file.
///
/// `text` is the file's content and `source` its path, used in messages and
/// comments. `store` is the directory holding the live template. `read_file`
/// returns the content of a jail's `mount.fstab` file, or `None` when it
/// cannot be read; it is a parameter so that the caller owns all I/O.
pub fn from_jail_conf(
    text: &str,
    source: &Path,
    store: &Path,
    read_file: &dyn Fn(&Path) -> Option<String>,
) -> Result<String, ImportError> {
    let store = Store::new(store, source)?;
    let tokens = lexer::Lexer::new(text, source).tokenize()?;
    let sections = parser::Parser::new(tokens, source).parse()?;
    let jails = resolve_jails(&sections, source)?;
    if jails.is_empty() {
        return Err(ImportError::new(
            source,
            0,
            "found no jail block; expected at least one, such as `ns { path = \"/home/j/ns\"; }`",
        ));
    }

    let mut live: Option<(String, Origin)> = None;
    let mut imported: Vec<JailEntry> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for jail in &jails {
        let mounts = jail_mounts(jail, source, read_file)?;
        let mut notes = vec![format!(
            "{}: {} line {}.",
            jail.name,
            source.display(),
            jail.line
        )];
        match find_root(&mounts.entries, &jail.path, &store) {
            Root::Template {
                name,
                origin,
                entry,
            } => {
                check_same_live(&mut live, &name, &origin, &entry.source)?;
                notes.push(format!(
                    "Template: {} mounts {} read-only at {}.",
                    origin.describe(),
                    entry.source,
                    entry.mountpoint
                ));
            }
            Root::Foreign { origin, entry } => {
                skipped.push(format!(
                    "{} ({} line {}): {} mounts {} at its root, not a read-only template from {}.",
                    jail.name,
                    source.display(),
                    jail.line,
                    origin.describe(),
                    entry.source,
                    store.text
                ));
                continue;
            }
            Root::NotFound => {
                if let Some(unread) = &mounts.unread_fstab {
                    notes.push(format!(
                        "mount.fstab {} could not be read, so the template mount was not checked.",
                        unread.display()
                    ));
                } else {
                    notes.push(
                        "No mount of the template at this jail's root was found; if /etc/fstab \
                         mounts it, import with --from-fstab, which also sets the jail's fstab."
                            .to_owned(),
                    );
                }
            }
        }
        if let Some(fstab) = &jail.mount_fstab {
            notes.push(format!(
                "No fstab key: jail(8) mounts {} (mount.fstab) when the jail starts and \
                 unmounts it when it stops, so jailswap only checks that nothing still \
                 mounts the template.",
                fstab.display()
            ));
        }
        imported.push(JailEntry {
            name: jail.name.clone(),
            path: jail.path.clone(),
            fstab: None,
            depends: Vec::new(),
            notes_before: notes,
            notes_after: Vec::new(),
        });
    }

    if imported.is_empty() {
        let reason = skipped.first().cloned().unwrap_or_default();
        return Err(ImportError::new(
            source,
            0,
            format!(
                "found no jail that mounts a template from \"{}\" ({reason}); expected \
                 --store to be the directory that holds the live template",
                store.text
            ),
        ));
    }

    attach_dependencies(&jails, &mut imported, source)?;
    check_order(&imported, &jails, source)?;

    let live_note = match &live {
        Some((name, origin)) => format!(
            "The jails mount {}/{name} read-only ({}).",
            store.text,
            origin.describe()
        ),
        None => format!(
            "No jail's mounts showed the template; \"{DEFAULT_LIVE}\" is the default, check it."
        ),
    };
    let configuration = Configuration {
        command: format!("--from-jail-conf {}", source.display()),
        store: store.text,
        live: live
            .map(|(name, _)| name)
            .unwrap_or_else(|| DEFAULT_LIVE.to_owned()),
        live_note,
        jails: imported,
        notes: skipped
            .into_iter()
            .map(|reason| format!("Not imported: {reason}"))
            .collect(),
    };
    Ok(configuration.render())
}

/// Prints a jailswap.toml for the jails a system fstab(5) mounts the
/// template for, as in the FreeBSD Handbook's "Updating Multiple Jails".
///
/// `text` is the file's content and `source` its path, used in messages and
/// comments; `store` is the directory holding the live template.
pub fn from_fstab(text: &str, source: &Path, store: &Path) -> Result<String, ImportError> {
    fstab::import(text, source, store)
}

/// The store directory, normalized for comparisons and as printed.
struct Store {
    path: PathBuf,
    text: String,
}

impl Store {
    fn new(store: &Path, source: &Path) -> Result<Self, ImportError> {
        if !store.is_absolute() {
            return Err(ImportError::new(
                source,
                0,
                format!(
                    "found store \"{}\", a relative path; expected an absolute directory such as \"/home/j\"",
                    store.display()
                ),
            ));
        }
        let path: PathBuf = store.components().collect();
        let Some(text) = path.to_str().map(str::to_owned) else {
            return Err(ImportError::new(
                source,
                0,
                format!(
                    "found store \"{}\", which is not valid UTF-8; expected a path a TOML file can hold",
                    store.display()
                ),
            ));
        };
        Ok(Store { path, text })
    }
}

/// Drops trailing slashes, repeated slashes and `.` so that `/home/j/` and
/// `/home/j` compare equal, as the kernel would resolve them.
fn normalize(path: &str) -> PathBuf {
    Path::new(path).components().collect()
}

/// Paths here are built from `&str`, so they are always valid UTF-8.
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where a fact was read: a file and a 1-based line.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    line: usize,
}

impl Origin {
    fn describe(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{} line {}", self.file.display(), self.line)
        }
    }
}

/// Text from a source file as it may appear in a message: control
/// characters, quotes and backslashes escaped, so a message stays one line.
fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

fn invalid_name_message(name: &str) -> String {
    format!(
        "found jail name \"{}\"; expected letters, digits, '_', '.' or '-', starting with a letter or digit",
        name.escape_debug()
    )
}

/// An error of the shared fstab parser, reported in `file`.
fn fstab_error(file: &Path, error: crate::fstab::FstabError) -> ImportError {
    ImportError::new(file, error.line, error.message)
}

/// Copies each imported jail's `depend` values into `depends`, refusing a
/// jail the file does not define and dropping, with a note, one that was
/// not imported (jailswap does not stop or start it, so it cannot wait on it).
fn attach_dependencies(
    jails: &[ConfiguredJail],
    imported: &mut [JailEntry],
    file: &Path,
) -> Result<(), ImportError> {
    let imported_names: BTreeSet<String> = imported.iter().map(|jail| jail.name.clone()).collect();
    for entry in imported.iter_mut() {
        let Some(jail) = jails.iter().find(|jail| jail.name == entry.name) else {
            continue;
        };
        for (dependency, line) in &jail.depends {
            if dependency.is_empty() || entry.depends.contains(dependency) {
                continue;
            }
            if !jails.iter().any(|other| &other.name == dependency) {
                return Err(ImportError::new(
                    file,
                    *line,
                    format!(
                        "found jail \"{}\" depending on \"{}\"; expected a jail this file defines",
                        jail.name,
                        dependency.escape_debug()
                    ),
                ));
            }
            if imported_names.contains(dependency) {
                entry.depends.push(dependency.clone());
            } else {
                entry.notes_before.push(format!(
                    "Its dependency on \"{dependency}\" is left out: \"{dependency}\" is not imported."
                ));
            }
        }
    }
    Ok(())
}

/// Refuses dependencies that leave no order in which the jails can start:
/// a jail waiting on itself, or jails waiting on each other in a cycle.
fn check_order(
    imported: &[JailEntry],
    jails: &[ConfiguredJail],
    file: &Path,
) -> Result<(), ImportError> {
    let nodes: Vec<Node<'_>> = imported
        .iter()
        .map(|jail| Node {
            name: &jail.name,
            depends: &jail.depends,
        })
        .collect();
    let block_line = |name: &str| {
        jails
            .iter()
            .find(|jail| jail.name == name)
            .map_or(0, |jail| jail.line)
    };
    match crate::order::levels(&nodes) {
        Ok(_) => Ok(()),
        Err(OrderError::Cycle { cycle }) => Err(ImportError::new(
            file,
            block_line(cycle.first().map_or("", String::as_str)),
            format!(
                "found jails depending on each other in a cycle ({}); expected an order in \
                 which they can start",
                cycle.join(" -> ")
            ),
        )),
        Err(OrderError::SelfDependency { jail }) => {
            let line = jails
                .iter()
                .find(|configured| configured.name == jail)
                .and_then(|configured| {
                    configured
                        .depends
                        .iter()
                        .find(|(dependency, _)| *dependency == jail)
                })
                .map_or_else(|| block_line(&jail), |(_, line)| *line);
            Err(ImportError::new(
                file,
                line,
                format!(
                    "found jail \"{jail}\" depending on itself; expected `depend` to name \
                     other jails"
                ),
            ))
        }
        // `attach_dependencies` keeps only names of imported jails, so this
        // is reported rather than assumed impossible.
        Err(OrderError::Unknown { jail, dependency }) => Err(ImportError::new(
            file,
            block_line(&jail),
            format!(
                "found jail \"{jail}\" depending on \"{}\"; expected a jail this file defines",
                shown(&dependency)
            ),
        )),
    }
}
