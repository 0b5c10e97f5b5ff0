//! Import of the jails a host already has: `jailswap init --from-jail-conf`
//! and `jailswap init --from-fstab` print a complete jailswap.toml.
//!
//! This module owns reading the two files FreeBSD administrators already keep
//! their jails in, and nothing else. It is pure: the text of the given file
//! comes in as an argument and every other file (included, per-jail,
//! `mount.fstab`) through the caller's [`SourceFiles`], so the command line
//! decides where files come from ([`HostFiles`]) and tests need no disk.
//!
//! The jail.conf path runs `include` (the file and everything read with it,
//! through `lexer`, text to tokens, and `parser`, tokens to blocks,
//! statements and includes), `expand` (each jail's parameters, variables
//! substituted), `mounts` (each jail's mounts and its template), `depends`
//! and `render` (the TOML); `files` holds the file access and glob(3). The
//! fstab path is `fstab`, which shares `mounts` and `render`. fstab lines
//! are read by the crate's own [`crate::fstab`], and dependencies are
//! ordered by [`crate::order`], as for the configuration.
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
//!
//! This grammar is that of jail(8) up to FreeBSD 13, plus `.include`. The
//! current jail(8) sources (jailparse.y) also accept a block inside a block,
//! for a jail named `parent.child`, and gather every parameter outside
//! blocks into one global section, so that a global written after a block
//! no longer overrides it. jailswap refuses nested blocks, with the line,
//! and keeps the earlier order; only files that place globals after blocks
//! see a difference, and the generated paths show it for review.
//!
//! # Includes
//!
//! `.include "file";` is followed as FreeBSD 14's jail(8) follows it
//! (config.c `include_config`): the file is read where the line stands, so
//! at the top level it adds blocks and parameters, and inside a block it
//! adds parameters to that jail (a block there is refused, as nesting is).
//! Only that form is an include: with `=`, without a file, with a variable
//! in the name or with an empty name it is refused at its line, since jail(8)
//! would pass the first two to the kernel and refuses the others. A
//! relative name is resolved against the directory of the file that holds
//! the line, taken from that file's name as given (so `-f jail.conf` leaves
//! it relative to the current directory), exactly as jail(8) prefixes it.
//!
//! A name with glob characters (`*`, `?`, `[...]`) is matched as glob(3)
//! matches it for jail(8) (see `files`), and the matches are read in sorted
//! order; a glob that matches nothing is not an error, only noted, since
//! `.include "/usr/local/etc/jail.conf.d/*.conf";` is meant to be optional.
//! A name without glob characters must exist for jail(8), which stops with
//! an error otherwise; jailswap notes the missing file in a comment of the
//! output rather than refusing, so that the operator sees the rest and
//! learns that jail(8) itself will stop there. A file that exists but cannot
//! be read, or a directory that cannot be listed, is an error: jails must not
//! go missing silently. Includes nest at most 32 deep (jail(8)'s own limit);
//! an include that leads back to a file being read is refused with the chain
//! of files (jail(8) only hits its depth limit there); and at most 1,000
//! files are read in all. Every error names the file it is in, the included
//! one where it applies, and its line.
//!
//! # Per-jail files
//!
//! FreeBSD's rc.d/jail starts a named jail (`service jail start NAME`, which
//! is the `start` command the import writes) from the first of
//! `/etc/jail.NAME.conf`, `/etc/jail.conf.d/NAME.conf` and `/etc/jail.conf`
//! that is readable, where the second is skipped when `/etc/jail.conf`
//! already has an `.include` of `/etc/jail.conf.d/` (and `NAME` has `.` and
//! `/` turned into `_`). It runs `jail -f FILE -c NAME`, so a per-jail file
//! stands alone: the parameters of `/etc/jail.conf` do not apply to it.
//!
//! jailswap reads `jail.conf.d/*.conf` next to the given jail.conf the same
//! way, unless a file of the import already includes that directory: each
//! `NAME.conf` is loaded on its own (with its own includes) and its jail
//! `NAME` is imported, replacing a block of that name in the jail.conf;
//! anything else it holds is noted and left out, since rc.d/jail would not
//! start it from there, and a file whose name has a `.` is noted as never
//! read. Without this, a host that keeps one file per jail, as the Handbook
//! suggests, would import none of them, although the generated `start`
//! command starts each from its file. The directory is taken next to the
//! given file rather than fixed at /etc, so that a copy of a host's /etc
//! imports as the host would read it. Two of rc.d/jail's rules are not
//! followed: it looks for the include of `/etc/jail.conf.d/` only in the text
//! of /etc/jail.conf (jailswap looks at every file read, so that no jail is
//! read twice), and `/etc/jail.NAME.conf`, which it would prefer, is not read.
//!
//! Each jail's `mount.fstab` file (read through the caller's `SourceFiles`) and
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
//! A header of notes (the files read, includes that matched nothing or named
//! a missing file, jails left out and why), `store`, `live` (the detected
//! template name, or `mroot`), a `[defaults]` table running `service jail`
//! and `jls`, and one `[[jail]]` table per jail, each preceded by a comment
//! naming the file and line it came from. Strings
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
use std::rc::Rc;

use depends::{attach_dependencies, check_order};
use expand::{resolve_jails, ConfiguredJail};
use mounts::{check_same_live, find_root, jail_mounts, Root};
use render::{Configuration, JailEntry};

pub use files::{HostFiles, SourceFiles};

mod depends;
mod expand;
mod files;
mod fstab;
mod include;
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
    /// The file the problem is in: the jail.conf, a file it includes, a
    /// per-jail file, an fstab, or a jail's `mount.fstab` file.
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

/// Prints a jailswap.toml for the jails defined in a jail.conf(5) file and
/// the files read with it (its includes, and rc.d/jail's per-jail files).
///
/// `text` is the file's content and `source` its path, used in messages and
/// comments and to resolve relative includes. `store` is the directory
/// holding the live template. `files` reads every other file (included and
/// per-jail files, each jail's `mount.fstab`): it is a parameter so that the
/// caller owns all I/O.
pub fn from_jail_conf(
    text: &str,
    source: &Path,
    store: &Path,
    files: &dyn SourceFiles,
) -> Result<String, ImportError> {
    let store = Store::new(store, source)?;
    let main = include::load(text, source, files)?;
    let mut jails = resolve_jails(&main.sections)?;
    let mut header = Vec::new();
    if let Some((_, included)) = main
        .files
        .split_first()
        .filter(|(_, rest)| !rest.is_empty())
    {
        header.push(format!(
            "Read {} and the files it includes: {}.",
            source.display(),
            list_paths(included)
        ));
    }
    header.extend(main.notes.iter().cloned());
    let per_jail = include::per_jail(source, &main, files)?;
    let from_per_jail = merge_per_jail(&mut jails, per_jail, source, &mut header)?;
    if jails.is_empty() {
        return Err(ImportError::new(
            source,
            0,
            "found no jail block (in this file, the files it includes, or jail.conf.d/NAME.conf \
             beside it); expected at least one, such as `ns { path = \"/home/j/ns\"; }`",
        ));
    }

    let mut live: Option<(String, Origin)> = None;
    let mut imported: Vec<JailEntry> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for jail in &jails {
        let mounts = jail_mounts(jail, files)?;
        let mut notes = vec![format!(
            "{}: {} line {}.",
            jail.name,
            jail.file.display(),
            jail.line
        )];
        if from_per_jail.contains(&jail.name) {
            notes.push(format!(
                "`service jail start {name}` reads this per-jail file on its own (rc.d/jail), \
                 not {}.",
                source.display(),
                name = jail.name
            ));
        }
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
                    jail.file.display(),
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

    attach_dependencies(&jails, &mut imported)?;
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
    header.extend(
        skipped
            .into_iter()
            .map(|reason| format!("Not imported: {reason}")),
    );
    let configuration = Configuration {
        command: format!("--from-jail-conf {}", source.display()),
        store: store.text,
        live: live
            .map(|(name, _)| name)
            .unwrap_or_else(|| DEFAULT_LIVE.to_owned()),
        live_note,
        jails: imported,
        notes: header,
    };
    Ok(configuration.render())
}

/// Adds the jail each per-jail file defines for its name, in place of a
/// block of the same name in the main file (rc.d/jail prefers the per-jail
/// file), and returns the names so added. Everything else such a file
/// holds, and a file that defines no jail of its name, is noted.
fn merge_per_jail(
    jails: &mut Vec<ConfiguredJail>,
    per_jail: include::PerJail,
    source: &Path,
    header: &mut Vec<String>,
) -> Result<BTreeSet<String>, ImportError> {
    let mut added = BTreeSet::new();
    if !per_jail.files.is_empty() {
        let paths: Vec<Rc<Path>> = per_jail
            .files
            .iter()
            .flat_map(|file| file.tree.files.iter().cloned())
            .collect();
        header.push(format!(
            "Read the per-jail files {}: `service jail start NAME` reads {}/NAME.conf on its own \
             (rc.d/jail), since {} does not include that directory.",
            list_paths(&paths),
            per_jail.directory.display(),
            source.display()
        ));
    }
    header.extend(per_jail.notes);
    for file in per_jail.files {
        header.extend(file.tree.notes.iter().cloned());
        let resolved = resolve_jails(&file.tree.sections).map_err(|mut error| {
            if error.message.contains("without a path") || error.message.contains("not set") {
                error.message.push_str(&format!(
                    " (rc.d/jail reads {} on its own, without the parameters of {})",
                    file.path.display(),
                    source.display()
                ));
            }
            error
        })?;
        let mut own = None;
        for jail in resolved {
            if jail.name == file.name {
                own = Some(jail);
            } else {
                header.push(format!(
                    "Not imported: {} ({} line {}): `service jail start {}` reads only \
                     jail.conf.d/{}.conf, not this file.",
                    jail.name,
                    jail.file.display(),
                    jail.line,
                    jail.name,
                    jail.name
                ));
            }
        }
        let Some(jail) = own else {
            header.push(format!(
                "Not imported: {} defines no jail \"{}\", so `service jail start {}` starts \
                 nothing from it.",
                file.path.display(),
                shown(&file.name),
                shown(&file.name)
            ));
            continue;
        };
        if let Some(position) = jails.iter().position(|other| other.name == jail.name) {
            let shadowed = jails.remove(position);
            header.push(format!(
                "Not imported: {} line {} also defines jail {}; `service jail start {}` reads {} \
                 instead.",
                shadowed.file.display(),
                shadowed.line,
                jail.name,
                jail.name,
                file.path.display()
            ));
        }
        added.insert(jail.name.clone());
        jails.push(jail);
    }
    Ok(added)
}

/// Paths joined for a note.
fn list_paths(paths: &[Rc<Path>]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
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
