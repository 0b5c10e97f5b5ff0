//! Import of the jails a host already has: `jailswap init --from-jail-conf`
//! and `jailswap init --from-fstab` print a complete jailswap.toml.
//!
//! This module owns reading the two files FreeBSD administrators already keep
//! their jails in, and nothing else: it is pure (text in, text out), so the
//! command line decides where files come from and tests need no disk.
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The live template's name when no jail's mounts show it (SPEC.md's default).
pub const DEFAULT_LIVE: &str = "mroot";

/// How deep variables may refer to variables; jail.conf files use two or
/// three levels, and the bound keeps recursion from exhausting the stack.
const VARIABLE_DEPTH_LIMIT: usize = 32;

/// How many substitutions one parameter may take, and how long one value may
/// grow: variables that each use another twice double the work per level,
/// and these bounds keep such a file from exhausting time or memory.
const SUBSTITUTION_LIMIT: usize = 10_000;
const VALUE_LENGTH_LIMIT: usize = 1 << 20;

/// The commands every imported jail inherits: the rc(8) service that already
/// starts the host's jails, and jls(8), which exits 0 only for a running jail.
const DEFAULT_START: &str = "service jail start ${name}";
const DEFAULT_STOP: &str = "service jail stop ${name}";
const DEFAULT_STATUS: &str = "jls -j ${name}";

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
    let tokens = Lexer::new(text, source).tokenize()?;
    let sections = Parser::new(tokens, source).parse()?;
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
    check_no_cycle(&imported, &jails, source)?;

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
    let store = Store::new(store, source)?;
    let entries = parse_fstab(text, source)?;

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
        let members: Vec<&FstabEntry> = jail
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

// ---------------------------------------------------------------------------
// Store and paths
// ---------------------------------------------------------------------------

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

/// Records the first live template found, or refuses one that differs: jailswap
/// swaps one live template, so jails mounting different ones cannot share it.
fn check_same_live(
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

// ---------------------------------------------------------------------------
// fstab(5)
// ---------------------------------------------------------------------------

/// One mount line of an fstab file.
#[derive(Debug, Clone)]
struct FstabEntry {
    line: usize,
    /// The line as written, trimmed, for copying into a per-jail file.
    text: String,
    /// The first field with `\NNN` escapes decoded.
    source: String,
    /// The second field with `\NNN` escapes decoded.
    mountpoint: String,
    options: Vec<String>,
}

fn parse_fstab(text: &str, file: &Path) -> Result<Vec<FstabEntry>, ImportError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(entry) = parse_fstab_line(line, file, index + 1)? {
            entries.push(entry);
        }
    }
    Ok(entries)
}

const FSTAB_FORM: &str = "`source mountpoint type options [dump [pass]]`";

/// Parses one line; `None` for a blank or comment line.
fn parse_fstab_line(
    text: &str,
    file: &Path,
    line: usize,
) -> Result<Option<FstabEntry>, ImportError> {
    let fields: Vec<&str> = text
        .split([' ', '\t', '\r'])
        .filter(|field| !field.is_empty())
        .take_while(|field| !field.starts_with('#'))
        .collect();
    match fields.len() {
        0 => return Ok(None),
        1..=3 => {
            return Err(ImportError::new(
                file,
                line,
                format!(
                    "found {} field{} ({}); expected {FSTAB_FORM}",
                    fields.len(),
                    if fields.len() == 1 { "" } else { "s" },
                    quoted_list(&fields)
                ),
            ))
        }
        4..=6 => {}
        count => {
            return Err(ImportError::new(
                file,
                line,
                format!("found {count} fields; expected at most 6: {FSTAB_FORM}"),
            ))
        }
    }
    for (name, field) in ["dump", "pass"].iter().zip(fields.iter().skip(4)) {
        if !field.chars().all(|character| character.is_ascii_digit()) {
            return Err(ImportError::new(
                file,
                line,
                format!(
                    "found {name} field \"{}\"; expected a number such as 0",
                    field.escape_debug()
                ),
            ));
        }
    }
    let field = |position: usize| fields.get(position).copied().unwrap_or_default();
    Ok(Some(FstabEntry {
        line,
        text: text.trim().to_owned(),
        source: decode_fstab_field(field(0), file, line)?,
        mountpoint: decode_fstab_field(field(1), file, line)?,
        options: field(3).split(',').map(str::to_owned).collect(),
    }))
}

fn quoted_list(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|field| format!("\"{}\"", field.escape_debug()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes fstab(5)'s `\NNN` octal escapes (`\040` is a space); any other
/// backslash stays as written.
fn decode_fstab_field(field: &str, file: &Path, line: usize) -> Result<String, ImportError> {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        let digits = bytes.get(position + 1..position + 4);
        if byte == b'\\' {
            if let Some(&[a, b, c]) = digits {
                if [a, b, c].iter().all(|digit| (b'0'..=b'7').contains(digit)) {
                    let value =
                        u32::from(a - b'0') * 64 + u32::from(b - b'0') * 8 + u32::from(c - b'0');
                    if let Ok(value) = u8::try_from(value) {
                        decoded.push(value);
                        position += 4;
                        continue;
                    }
                }
            }
        }
        decoded.push(byte);
        position += 1;
    }
    String::from_utf8(decoded).map_err(|_| {
        ImportError::new(
            file,
            line,
            format!(
                "found \"{}\", whose escapes decode to bytes that are not UTF-8; expected a path a TOML file can hold",
                field.escape_debug()
            ),
        )
    })
}

/// The template name when `entry` mounts a direct child of the store read-only.
fn template_name(entry: &FstabEntry, store: &Store) -> Option<String> {
    if !entry.options.iter().any(|option| option == "ro") {
        return None;
    }
    let source = normalize(&entry.source);
    if source.parent()? != store.path {
        return None;
    }
    source.file_name()?.to_str().map(str::to_owned)
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
fn check_mount_order(members: &[&FstabEntry], file: &Path) -> Result<(), ImportError> {
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

// ---------------------------------------------------------------------------
// jail.conf(5): lexer
// ---------------------------------------------------------------------------

/// Part of a word: literal text, or a variable to substitute later.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(String),
}

/// A string as jail(8) sees it: adjacent bare words, quoted strings and
/// variables with no space between them join into one value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    pieces: Vec<Piece>,
    line: usize,
}

impl Word {
    fn push_character(&mut self, character: char) {
        if let Some(Piece::Text(text)) = self.pieces.last_mut() {
            text.push(character);
        } else {
            self.pieces.push(Piece::Text(character.to_string()));
        }
    }

    /// Records an empty quoted string, which is still a value (`path = "";`).
    fn push_empty_text(&mut self) {
        if self.pieces.is_empty() {
            self.pieces.push(Piece::Text(String::new()));
        }
    }

    fn plain_text(&self) -> Option<String> {
        let mut text = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(_) => return None,
            }
        }
        Some(text)
    }

    /// The word as it could be written back, for messages.
    fn describe(&self) -> String {
        let mut text = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(name) => {
                    text.push_str("${");
                    text.push_str(name);
                    text.push('}');
                }
            }
        }
        text.escape_debug().to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    Word(Word),
    Semicolon,
    Comma,
    Equals,
    PlusEquals,
    OpenBrace,
    CloseBrace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    kind: TokenKind,
    line: usize,
}

fn describe_token(token: Option<&Token>) -> String {
    match token.map(|token| &token.kind) {
        None => "end of file".to_owned(),
        Some(TokenKind::Word(word)) => format!("\"{}\"", word.describe()),
        Some(TokenKind::Semicolon) => "';'".to_owned(),
        Some(TokenKind::Comma) => "','".to_owned(),
        Some(TokenKind::Equals) => "'='".to_owned(),
        Some(TokenKind::PlusEquals) => "'+='".to_owned(),
        Some(TokenKind::OpenBrace) => "'{'".to_owned(),
        Some(TokenKind::CloseBrace) => "'}'".to_owned(),
    }
}

/// Characters jail(8) accepts in a bare word (jaillex.l's atomic strings).
fn bare_word_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "_!%&()-.:<>?@[]^`|~*+/".contains(character)
}

fn variable_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_'
}

fn variable_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_'
}

/// Turns jail.conf text into tokens, following jaillex.l: whitespace and
/// comments separate words, anything else adjacent joins into one word.
struct Lexer<'a> {
    characters: Vec<char>,
    position: usize,
    line: usize,
    file: &'a Path,
    tokens: Vec<Token>,
    /// The word being built; adjacent strings and variables extend it.
    pending: Option<Word>,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, file: &'a Path) -> Self {
        Lexer {
            characters: text.chars().collect(),
            position: 0,
            line: 1,
            file,
            tokens: Vec::new(),
            pending: None,
        }
    }

    fn peek(&self, offset: usize) -> Option<char> {
        self.characters.get(self.position + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let character = self.peek(0)?;
        self.position += 1;
        if character == '\n' {
            self.line += 1;
        }
        Some(character)
    }

    /// Ends the current word: whitespace, comments and punctuation separate words.
    fn separate(&mut self) {
        if let Some(word) = self.pending.take() {
            let line = word.line;
            self.tokens.push(Token {
                kind: TokenKind::Word(word),
                line,
            });
        }
    }

    fn punctuation(&mut self, kind: TokenKind) {
        self.separate();
        self.tokens.push(Token {
            kind,
            line: self.line,
        });
    }

    fn word(&mut self) -> &mut Word {
        let line = self.line;
        self.pending.get_or_insert_with(|| Word {
            pieces: Vec::new(),
            line,
        })
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        ImportError::new(self.file, line, message)
    }

    fn tokenize(mut self) -> Result<Vec<Token>, ImportError> {
        while let Some(character) = self.peek(0) {
            match character {
                ' ' | '\t' | '\r' | '\n' => {
                    self.separate();
                    self.bump();
                }
                '#' => self.skip_line_comment(),
                '/' if self.peek(1) == Some('/') => self.skip_line_comment(),
                '/' if self.peek(1) == Some('*') => self.skip_block_comment()?,
                '+' if self.peek(1) == Some('=') => {
                    self.punctuation(TokenKind::PlusEquals);
                    self.bump();
                    self.bump();
                }
                ';' | ',' | '=' | '{' | '}' => {
                    let kind = match character {
                        ';' => TokenKind::Semicolon,
                        ',' => TokenKind::Comma,
                        '=' => TokenKind::Equals,
                        '{' => TokenKind::OpenBrace,
                        _ => TokenKind::CloseBrace,
                    };
                    self.punctuation(kind);
                    self.bump();
                }
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '$' => {
                    self.word();
                    self.bump();
                    self.variable(false)?;
                }
                '\\' => {
                    self.word();
                    self.bump();
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                character if bare_word_character(character) => {
                    self.bump();
                    self.word().push_character(character);
                }
                other => {
                    return Err(self.error(
                        self.line,
                        format!(
                            "found unexpected character '{}'; expected a parameter, a value, \
                             a quoted string, or one of ; , = += {{ }}",
                            other.escape_debug()
                        ),
                    ))
                }
            }
        }
        self.separate();
        Ok(self.tokens)
    }

    fn skip_line_comment(&mut self) {
        self.separate();
        while let Some(character) = self.peek(0) {
            if character == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn skip_block_comment(&mut self) -> Result<(), ImportError> {
        self.separate();
        let start = self.line;
        self.bump();
        self.bump();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        start,
                        "found an unterminated comment: end of file before '*/'; expected '*/' \
                         to close the '/*' opened here",
                    ))
                }
                Some('*') if self.peek(0) == Some('/') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
        }
    }

    /// Decodes the character after a backslash as jail(8)'s text2lval does;
    /// `None` for an escaped newline, which continues the line.
    fn escape(&mut self) -> Option<char> {
        let Some(character) = self.bump() else {
            return Some('\\');
        };
        let decoded = match character {
            '0'..='7' => {
                let mut value = character.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek(0).and_then(|next| next.to_digit(8)) {
                        Some(digit) => {
                            value = value * 8 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                // jail(8) stores the value in a C char, so it keeps the low byte.
                char::from((value & 0xff) as u8)
            }
            'x' => {
                let mut value = 0;
                for _ in 0..2 {
                    match self.peek(0).and_then(|next| next.to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                char::from((value & 0xff) as u8)
            }
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\n' => return None,
            other => other,
        };
        Some(decoded)
    }

    /// Reads a variable reference after its `$`: `$name` or `${any.thing}`.
    /// A `$` that starts neither is a literal dollar sign.
    fn variable(&mut self, inside_double_quotes: bool) -> Result<(), ImportError> {
        match self.peek(0) {
            Some('{') => {
                let start = self.line;
                self.bump();
                let mut name = String::new();
                loop {
                    match self.peek(0) {
                        Some('}') => {
                            self.bump();
                            break;
                        }
                        Some('\\') => {
                            self.bump();
                            if let Some(escaped) = self.escape() {
                                name.push(escaped);
                            }
                        }
                        Some(character)
                            if character != '\n'
                                && character != '{'
                                && !(inside_double_quotes && character == '"') =>
                        {
                            self.bump();
                            name.push(character);
                        }
                        found => {
                            let found = match found {
                                None => "end of file".to_owned(),
                                Some(character) => format!("'{}'", character.escape_debug()),
                            };
                            return Err(self.error(
                                start,
                                format!(
                                    "found an unterminated variable \"${{{}\" followed by {found}; expected '}}'",
                                    name.escape_debug()
                                ),
                            ));
                        }
                    }
                }
                self.word().pieces.push(Piece::Variable(name));
            }
            Some(first) if variable_start(first) => {
                let mut name = String::new();
                while let Some(character) = self.peek(0) {
                    if !variable_character(character) {
                        break;
                    }
                    self.bump();
                    name.push(character);
                }
                self.word().pieces.push(Piece::Variable(name));
            }
            _ => self.word().push_character('$'),
        }
        Ok(())
    }

    fn single_quoted(&mut self) -> Result<(), ImportError> {
        let start = self.line;
        self.word().push_empty_text();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated_string(start, '\'')),
                Some('\'') => return Ok(()),
                Some('\\') => {
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                Some(character) => self.word().push_character(character),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<(), ImportError> {
        let start = self.line;
        self.word().push_empty_text();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated_string(start, '"')),
                Some('"') => return Ok(()),
                Some('\\') => {
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                Some('$') => self.variable(true)?,
                Some(character) => self.word().push_character(character),
            }
        }
    }

    fn unterminated_string(&self, start: usize, quote: char) -> ImportError {
        self.error(
            start,
            format!(
                "found an unterminated string: end of file before the closing {quote}; expected \
                 {quote} to close the string opened here"
            ),
        )
    }
}

// ---------------------------------------------------------------------------
// jail.conf(5): parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `key = value;` or `key value;`: replaces earlier values.
    Set,
    /// `key += value;`: appends to earlier values.
    Append,
    /// `key;`: a boolean set true, with no value.
    Flag,
}

#[derive(Debug, Clone)]
struct Statement {
    name: String,
    /// Defines `$name` rather than a jail parameter.
    variable: bool,
    operator: Operator,
    values: Vec<Word>,
    line: usize,
}

/// A jail block, a wildcard block, or a run of parameters outside any block
/// (which jail(8) treats as a block named `*`).
#[derive(Debug, Clone)]
struct Section {
    name: String,
    line: usize,
    statements: Vec<Statement>,
}

impl Section {
    fn wildcard(&self) -> bool {
        wildcard_name(&self.name)
    }
}

/// jail(8)'s wild_jail_name: a `*` forming a whole dot-separated component.
fn wildcard_name(name: &str) -> bool {
    name.split('.').any(|component| component == "*")
}

/// jail(8)'s wild_jail_match: a `*` component matches one component of the
/// jail's name, a final `*` matches all the rest.
fn wildcard_matches(jail: &str, pattern: &str) -> bool {
    let mut jail_rest = jail;
    let mut pattern_rest = pattern;
    while let (Some(jail_dot), Some(pattern_dot)) = (jail_rest.find('.'), pattern_rest.find('.')) {
        let jail_component = jail_rest.get(..=jail_dot).unwrap_or_default();
        if !pattern_rest.starts_with(jail_component) && !pattern_rest.starts_with("*.") {
            return false;
        }
        jail_rest = jail_rest.get(jail_dot + 1..).unwrap_or_default();
        pattern_rest = pattern_rest.get(pattern_dot + 1..).unwrap_or_default();
    }
    jail_rest == pattern_rest || pattern_rest == "*"
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    file: &'a Path,
}

impl<'a> Parser<'a> {
    fn new(tokens: Vec<Token>, file: &'a Path) -> Self {
        Parser {
            tokens,
            position: 0,
            file,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        ImportError::new(self.file, line, message)
    }

    fn parse(mut self) -> Result<Vec<Section>, ImportError> {
        let mut sections: Vec<Section> = Vec::new();
        while let Some(token) = self.next() {
            match token.kind {
                TokenKind::Semicolon => {}
                TokenKind::Word(word) => {
                    if matches!(
                        self.peek().map(|next| &next.kind),
                        Some(TokenKind::OpenBrace)
                    ) {
                        self.next();
                        sections.push(self.block(word)?);
                    } else {
                        let statement = self.statement(word)?;
                        // Consecutive global parameters join the previous `*`
                        // section, as jail(8) does; order is what matters.
                        match sections.last_mut() {
                            Some(section) if section.name == "*" => {
                                section.statements.push(statement)
                            }
                            _ => sections.push(Section {
                                name: "*".to_owned(),
                                line: statement.line,
                                statements: vec![statement],
                            }),
                        }
                    }
                }
                TokenKind::CloseBrace => {
                    return Err(self.error(
                        token.line,
                        "found '}' with no open block; expected a parameter or a jail block",
                    ))
                }
                TokenKind::OpenBrace => {
                    return Err(self.error(
                        token.line,
                        "found '{' with no jail name before it; expected `name {`",
                    ))
                }
                TokenKind::Comma | TokenKind::Equals | TokenKind::PlusEquals => {
                    return Err(self.error(
                        token.line,
                        format!(
                            "found {}; expected a parameter name or a jail block",
                            describe_token(Some(&token))
                        ),
                    ))
                }
            }
        }
        Ok(sections)
    }

    fn block(&mut self, name_word: Word) -> Result<Section, ImportError> {
        let Some(name) = name_word.plain_text() else {
            return Err(self.error(
                name_word.line,
                format!(
                    "found jail name \"{}\" containing a variable; expected a plain name before '{{'",
                    name_word.describe()
                ),
            ));
        };
        let mut section = Section {
            name,
            line: name_word.line,
            statements: Vec::new(),
        };
        loop {
            let Some(token) = self.next() else {
                return Err(self.error(
                    section.line,
                    format!(
                        "found an unterminated block \"{}\": end of file before its '}}'; expected \
                         '}}' to close the block opened here",
                        section.name.escape_debug()
                    ),
                ));
            };
            match token.kind {
                TokenKind::CloseBrace => return Ok(section),
                TokenKind::Semicolon => {}
                TokenKind::Word(word) => {
                    if matches!(
                        self.peek().map(|next| &next.kind),
                        Some(TokenKind::OpenBrace)
                    ) {
                        return Err(self.error(
                            word.line,
                            format!(
                                "found block \"{}\" inside block \"{}\"; expected blocks only at \
                                 the top level (is the '}}' of \"{}\" missing?)",
                                word.describe(),
                                section.name.escape_debug(),
                                section.name.escape_debug()
                            ),
                        ));
                    }
                    let statement = self.statement(word)?;
                    section.statements.push(statement);
                }
                _ => {
                    return Err(self.error(
                        token.line,
                        format!(
                            "found {} in block \"{}\"; expected a parameter or '}}'",
                            describe_token(Some(&token)),
                            section.name.escape_debug()
                        ),
                    ))
                }
            }
        }
    }

    fn statement(&mut self, name_word: Word) -> Result<Statement, ImportError> {
        let line = name_word.line;
        let (name, variable) = match name_word.pieces.as_slice() {
            [Piece::Variable(name)] => (name.clone(), true),
            _ => match name_word.plain_text() {
                Some(name) => (name, false),
                None => {
                    return Err(self.error(
                        line,
                        format!(
                            "found parameter name \"{}\" mixing text and variables; expected a \
                             name such as `path` or a variable such as `$net`",
                            name_word.describe()
                        ),
                    ))
                }
            },
        };
        if name == ".include" {
            return Err(self.error(
                line,
                "found `.include`, which jailswap init does not follow; expected one \
                 self-contained file (concatenate them: cat /etc/jail.conf /etc/jail.conf.d/*.conf)",
            ));
        }
        let parameter_name = if variable {
            format!("${name}")
        } else {
            name.clone()
        };
        let mut last_line = line;
        let operator = match self.peek().map(|token| &token.kind) {
            Some(TokenKind::Semicolon) => {
                self.next();
                return Ok(Statement {
                    name,
                    variable,
                    operator: Operator::Flag,
                    values: Vec::new(),
                    line,
                });
            }
            Some(TokenKind::Equals) => {
                if let Some(token) = self.next() {
                    last_line = token.line;
                }
                Operator::Set
            }
            Some(TokenKind::PlusEquals) => {
                if let Some(token) = self.next() {
                    last_line = token.line;
                }
                Operator::Append
            }
            // jail.conf also accepts `key value;` without '='.
            Some(TokenKind::Word(_)) => Operator::Set,
            _ => {
                return Err(self.error(
                    line,
                    format!(
                        "found {} after \"{}\"; expected ';', '=' or '+='",
                        describe_token(self.peek()),
                        shown(&parameter_name)
                    ),
                ))
            }
        };

        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token {
                    kind: TokenKind::Word(word),
                    line: word_line,
                }) => {
                    last_line = word_line;
                    values.push(word);
                }
                other => {
                    return Err(self.error(
                        last_line,
                        format!(
                            "found {} where a value of \"{}\" belongs; expected a value",
                            describe_token(other.as_ref()),
                            shown(&parameter_name)
                        ),
                    ))
                }
            }
            match self.peek().map(|token| &token.kind) {
                Some(TokenKind::Comma) => {
                    if let Some(token) = self.next() {
                        last_line = token.line;
                    }
                }
                Some(TokenKind::Semicolon) => {
                    self.next();
                    return Ok(Statement {
                        name,
                        variable,
                        operator,
                        values,
                        line,
                    });
                }
                _ => {
                    let found = match self.peek() {
                        Some(token) if token.line != last_line => {
                            format!("{} on line {}", describe_token(Some(token)), token.line)
                        }
                        other => describe_token(other),
                    };
                    return Err(self.error(
                        last_line,
                        format!(
                            "found {found} after the value of \"{}\"; expected ';' (or ',' \
                             before another value)",
                            shown(&parameter_name)
                        ),
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// jail.conf(5): each jail's parameters
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Parameter {
    variable: bool,
    values: Vec<Word>,
}

type Parameters = BTreeMap<String, Parameter>;

/// What jailswap needs of one jail, with variables substituted.
struct ConfiguredJail {
    name: String,
    line: usize,
    path: String,
    mount_fstab: Option<PathBuf>,
    /// Values of `mount`, each a full fstab line, with their jail.conf line.
    mount_lines: Vec<(String, usize)>,
    /// Values of `depend`, with their jail.conf line.
    depends: Vec<(String, usize)>,
}

fn resolve_jails(sections: &[Section], file: &Path) -> Result<Vec<ConfiguredJail>, ImportError> {
    let mut jails: Vec<ConfiguredJail> = Vec::new();
    for (sequence, section) in sections.iter().enumerate() {
        if section.wildcard() {
            continue;
        }
        if !crate::config::valid_name(&section.name) {
            return Err(ImportError::new(
                file,
                section.line,
                invalid_name_message(&section.name),
            ));
        }
        if let Some(first) = jails.iter().find(|jail| jail.name == section.name) {
            return Err(ImportError::new(
                file,
                section.line,
                format!(
                    "found a second block for jail \"{}\"; expected one, and line {} already defines it",
                    section.name, first.line
                ),
            ));
        }
        let parameters = effective_parameters(sections, sequence, section, file)?;
        let expander = Expander {
            parameters: &parameters,
            jail: &section.name,
            file,
        };

        let Some((path, path_line)) = expander
            .list("path")?
            .pop()
            .filter(|(path, _)| !path.is_empty())
        else {
            return Err(ImportError::new(
                file,
                section.line,
                format!(
                    "found jail \"{}\" without a path; expected `path = \"/directory\";` in its \
                     block or before it",
                    section.name
                ),
            ));
        };
        if !Path::new(&path).is_absolute() {
            return Err(ImportError::new(
                file,
                path_line,
                format!(
                    "found path \"{}\" for jail \"{}\"; expected an absolute path",
                    path.escape_debug(),
                    section.name
                ),
            ));
        }
        let mount_fstab = expander
            .list("mount.fstab")?
            .pop()
            .map(|(fstab, _)| fstab)
            .filter(|fstab| !fstab.is_empty())
            .map(PathBuf::from);
        jails.push(ConfiguredJail {
            name: section.name.clone(),
            line: section.line,
            path: path_text(&normalize(&path)),
            mount_fstab,
            mount_lines: expander.list("mount")?,
            depends: expander.list("depend")?,
        });
    }
    Ok(jails)
}

/// Collects one jail's parameters in jail(8)'s order (config.c load_config):
/// global and wildcard sections written before the jail's block apply first,
/// then the block itself, then those written after it.
fn effective_parameters(
    sections: &[Section],
    jail_sequence: usize,
    jail: &Section,
    file: &Path,
) -> Result<Parameters, ImportError> {
    let mut parameters = Parameters::new();
    // The block's name is the jail's `name` parameter, so `$name` works.
    parameters.insert(
        "name".to_owned(),
        Parameter {
            variable: false,
            values: vec![Word {
                pieces: vec![Piece::Text(jail.name.clone())],
                line: jail.line,
            }],
        },
    );
    let mut applied_own = false;
    for (sequence, section) in sections.iter().enumerate() {
        if !section.wildcard() {
            continue;
        }
        if jail_sequence < sequence && !applied_own {
            apply_all(&mut parameters, jail, &jail.name, file)?;
            applied_own = true;
        }
        if wildcard_matches(&jail.name, &section.name) {
            apply_all(&mut parameters, section, &jail.name, file)?;
        }
    }
    if !applied_own {
        apply_all(&mut parameters, jail, &jail.name, file)?;
    }
    Ok(parameters)
}

fn apply_all(
    parameters: &mut Parameters,
    section: &Section,
    jail: &str,
    file: &Path,
) -> Result<(), ImportError> {
    for statement in &section.statements {
        apply(parameters, statement, jail, file)?;
    }
    Ok(())
}

fn apply(
    parameters: &mut Parameters,
    statement: &Statement,
    jail: &str,
    file: &Path,
) -> Result<(), ImportError> {
    if !statement.variable && statement.name == "name" {
        return Err(ImportError::new(
            file,
            statement.line,
            format!(
                "found `name` set for jail \"{jail}\"; expected the name to come only from the \
                 block name, as jail(8) cannot redefine it"
            ),
        ));
    }
    match parameters.get_mut(&statement.name) {
        Some(existing) => {
            if existing.variable != statement.variable {
                return Err(ImportError::new(
                    file,
                    statement.line,
                    format!(
                        "found variable \"${}\" and parameter \"{}\" for jail \"{jail}\"; expected \
                         different names, as jail(8) refuses both",
                        shown(&statement.name),
                        shown(&statement.name)
                    ),
                ));
            }
            match statement.operator {
                Operator::Append => existing.values.extend(statement.values.iter().cloned()),
                Operator::Set | Operator::Flag => existing.values = statement.values.clone(),
            }
        }
        None => {
            parameters.insert(
                statement.name.clone(),
                Parameter {
                    variable: statement.variable,
                    values: statement.values.clone(),
                },
            );
        }
    }
    Ok(())
}

/// Substitutes variables in the values of one jail's parameters.
struct Expander<'a> {
    parameters: &'a Parameters,
    jail: &'a str,
    file: &'a Path,
}

/// The progress of expanding one parameter: the variables being expanded,
/// outermost first, to detect loops, and how many substitutions were made.
struct Expansion {
    chain: Vec<String>,
    substitutions: usize,
}

impl Expander<'_> {
    /// Every value of `key` with variables substituted, each with the line of
    /// the word it came from; empty when the parameter is not set.
    fn list(&self, key: &str) -> Result<Vec<(String, usize)>, ImportError> {
        let Some(parameter) = self.parameters.get(key) else {
            return Ok(Vec::new());
        };
        let mut state = Expansion {
            chain: vec![key.to_owned()],
            substitutions: 0,
        };
        let mut values = Vec::new();
        for word in &parameter.values {
            for value in self.expand_word(word, key, &mut state)? {
                values.push((value, word.line));
            }
        }
        Ok(values)
    }

    fn expand_word(
        &self,
        word: &Word,
        key: &str,
        state: &mut Expansion,
    ) -> Result<Vec<String>, ImportError> {
        // A word that is only a variable takes all of the variable's values,
        // so `depend = $backends;` can name several jails.
        if let [Piece::Variable(name)] = word.pieces.as_slice() {
            return self.expand_variable(name, word, key, state);
        }
        let mut text = String::new();
        for piece in &word.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(name) => {
                    let values = self.expand_variable(name, word, key, state)?;
                    match values.as_slice() {
                        [single] => text.push_str(single),
                        _ => {
                            return Err(ImportError::new(
                                self.file,
                                word.line,
                                format!(
                                    "found list variable \"${}\" inside \"{}\" of \"{key}\" for \
                                     jail \"{}\"; expected a variable with one value, as jail(8) \
                                     cannot substitute a list inline",
                                    shown(name),
                                    word.describe(),
                                    self.jail
                                ),
                            ))
                        }
                    }
                }
            }
        }
        if text.len() > VALUE_LENGTH_LIMIT {
            return Err(ImportError::new(
                self.file,
                word.line,
                format!(
                    "found \"{key}\" of jail \"{}\" expanding to more than {VALUE_LENGTH_LIMIT} \
                     bytes; expected a path or a name",
                    self.jail
                ),
            ));
        }
        Ok(vec![text])
    }

    fn expand_variable(
        &self,
        name: &str,
        word: &Word,
        key: &str,
        state: &mut Expansion,
    ) -> Result<Vec<String>, ImportError> {
        let printed = shown(name);
        if state.chain.iter().any(|seen| seen == name) {
            return Err(ImportError::new(
                self.file,
                word.line,
                format!(
                    "found variable \"${printed}\" referring to itself ({} -> {printed}) for jail \
                     \"{}\"; expected a value that does not depend on itself",
                    shown(&state.chain.join(" -> ")),
                    self.jail
                ),
            ));
        }
        state.substitutions += 1;
        if state.substitutions > SUBSTITUTION_LIMIT {
            return Err(ImportError::new(
                self.file,
                word.line,
                format!(
                    "found more than {SUBSTITUTION_LIMIT} variable substitutions in \"{key}\" \
                     for jail \"{}\"; expected variables that expand to a few values",
                    self.jail
                ),
            ));
        }
        if state.chain.len() >= VARIABLE_DEPTH_LIMIT {
            return Err(ImportError::new(
                self.file,
                word.line,
                format!(
                    "found variables nested more than {VARIABLE_DEPTH_LIMIT} deep in \"{key}\" for \
                     jail \"{}\"; expected a shallower chain",
                    self.jail
                ),
            ));
        }
        let Some(parameter) = self
            .parameters
            .get(name)
            .filter(|parameter| !parameter.values.is_empty())
        else {
            return Err(ImportError::new(
                self.file,
                word.line,
                format!(
                    "found variable \"${printed}\" in \"{key}\" of jail \"{}\", which is not set; \
                     expected `${printed} = value;` or a parameter named \"{printed}\"",
                    self.jail
                ),
            ));
        };
        state.chain.push(name.to_owned());
        let mut values = Vec::new();
        for inner in &parameter.values {
            values.extend(self.expand_word(inner, key, state)?);
        }
        state.chain.pop();
        Ok(values)
    }
}

// ---------------------------------------------------------------------------
// jail.conf(5): mounts and dependencies
// ---------------------------------------------------------------------------

/// A jail's mounts as jail(8) would make them, each with where it was written.
struct JailMounts {
    entries: Vec<(FstabEntry, Origin)>,
    /// The `mount.fstab` file `read_file` could not return.
    unread_fstab: Option<PathBuf>,
}

fn jail_mounts(
    jail: &ConfiguredJail,
    source: &Path,
    read_file: &dyn Fn(&Path) -> Option<String>,
) -> Result<JailMounts, ImportError> {
    let mut mounts = JailMounts {
        entries: Vec::new(),
        unread_fstab: None,
    };
    if let Some(fstab) = &jail.mount_fstab {
        match read_file(fstab) {
            Some(text) => {
                for entry in parse_fstab(&text, fstab)? {
                    let origin = Origin {
                        file: fstab.clone(),
                        line: entry.line,
                    };
                    mounts.entries.push((entry, origin));
                }
            }
            None => mounts.unread_fstab = Some(fstab.clone()),
        }
    }
    for (text, line) in &jail.mount_lines {
        let parsed = parse_fstab_line(text, source, *line).map_err(|error| {
            ImportError::new(
                source,
                *line,
                format!("in `mount` of jail \"{}\": {}", jail.name, error.message),
            )
        })?;
        if let Some(mut entry) = parsed {
            entry.line = *line;
            let origin = Origin {
                file: source.to_path_buf(),
                line: *line,
            };
            mounts.entries.push((entry, origin));
        }
    }
    Ok(mounts)
}

/// What is mounted at a jail's root.
enum Root<'a> {
    Template {
        name: String,
        origin: Origin,
        entry: &'a FstabEntry,
    },
    Foreign {
        origin: Origin,
        entry: &'a FstabEntry,
    },
    NotFound,
}

fn find_root<'a>(entries: &'a [(FstabEntry, Origin)], path: &str, store: &Store) -> Root<'a> {
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

/// Refuses a dependency cycle, which jailswap (like jail(8)) cannot order.
fn check_no_cycle(
    imported: &[JailEntry],
    jails: &[ConfiguredJail],
    file: &Path,
) -> Result<(), ImportError> {
    // Kahn's algorithm: repeatedly remove jails whose dependencies are all removed.
    let mut remaining: Vec<&JailEntry> = imported.iter().collect();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = remaining.len();
        remaining.retain(|jail| {
            let ready = jail
                .depends
                .iter()
                .all(|dependency| removed.contains(dependency.as_str()));
            if ready {
                removed.insert(jail.name.as_str());
            }
            !ready
        });
        if remaining.is_empty() {
            return Ok(());
        }
        if remaining.len() == before {
            break;
        }
    }
    // Every remaining jail waits on another remaining one; follow the waits
    // from the first until a name repeats to name the cycle.
    let mut cycle: Vec<&str> = Vec::new();
    let mut current = remaining.first().map(|jail| jail.name.as_str());
    while let Some(name) = current {
        if let Some(start) = cycle.iter().position(|seen| *seen == name) {
            cycle.drain(..start);
            cycle.push(name);
            break;
        }
        cycle.push(name);
        current = remaining
            .iter()
            .find(|jail| jail.name == name)
            .and_then(|jail| {
                jail.depends
                    .iter()
                    .find(|dependency| !removed.contains(dependency.as_str()))
            })
            .map(String::as_str);
        if cycle.len() > imported.len() {
            break;
        }
    }
    let first = cycle.first().copied().unwrap_or_default();
    let line = jails
        .iter()
        .find(|jail| jail.name == first)
        .map_or(0, |jail| jail.line);
    Err(ImportError::new(
        file,
        line,
        format!(
            "found jails depending on each other in a cycle ({}); expected an order in which \
             they can start",
            cycle.join(" -> ")
        ),
    ))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// One `[[jail]]` table and the comments around it.
struct JailEntry {
    name: String,
    path: String,
    fstab: Option<String>,
    depends: Vec<String>,
    /// Comment lines written before `[[jail]]`.
    notes_before: Vec<String>,
    /// Comment lines written after the jail's keys.
    notes_after: Vec<String>,
}

struct Configuration {
    /// The `init` arguments, for the header.
    command: String,
    store: String,
    live: String,
    live_note: String,
    jails: Vec<JailEntry>,
    /// Comment lines for the header, such as jails that were not imported.
    notes: Vec<String>,
}

impl Configuration {
    fn render(&self) -> String {
        let mut out = String::new();
        prose(
            &mut out,
            &format!(
                "jailswap configuration generated by `jailswap init {}`. Review it before \
                 use, and add [[jail.health]] checks so that an upgrade is judged by each \
                 jail's services, not only by its start command.",
                self.command
            ),
        );
        for note in &self.notes {
            prose(&mut out, note);
        }
        out.push('\n');
        key(&mut out, "store", &toml_string(&self.store));
        prose(&mut out, &self.live_note);
        key(&mut out, "live", &toml_string(&self.live));
        out.push_str("\n[defaults]\n");
        key(&mut out, "start", &toml_string(DEFAULT_START));
        key(&mut out, "stop", &toml_string(DEFAULT_STOP));
        key(&mut out, "status", &toml_string(DEFAULT_STATUS));
        for jail in &self.jails {
            out.push('\n');
            for note in &jail.notes_before {
                prose(&mut out, note);
            }
            out.push_str("[[jail]]\n");
            key(&mut out, "name", &toml_string(&jail.name));
            key(&mut out, "path", &toml_string(&jail.path));
            if let Some(fstab) = &jail.fstab {
                key(&mut out, "fstab", &toml_string(fstab));
            }
            if !jail.depends.is_empty() {
                let list = toml::Value::Array(
                    jail.depends
                        .iter()
                        .map(|name| toml::Value::String(name.clone()))
                        .collect(),
                );
                key(&mut out, "depends", &list.to_string());
            }
            for note in &jail.notes_after {
                comment(&mut out, note);
            }
        }
        out
    }
}

fn key(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(" = ");
    out.push_str(value);
    out.push('\n');
}

/// A TOML string, escaped by the toml crate's serializer.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Writes a note as comment lines of at most [`COMMENT_WIDTH`] characters,
/// breaking at spaces; a word longer than that gets a line of its own.
fn prose(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > COMMENT_WIDTH {
            comment(out, &line);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    comment(out, &line);
}

/// The width of wrapped comment text, so that `# ` and the text fit in 80 columns.
const COMMENT_WIDTH: usize = 78;

/// Writes one comment line, as it is: used for lines copied from a source. TOML forbids control characters other than tab
/// in comments, and a newline would end the comment, so they are escaped.
fn comment(out: &mut String, text: &str) {
    out.push('#');
    if !text.is_empty() {
        out.push(' ');
    }
    for character in text.chars() {
        if character.is_control() && character != '\t' {
            out.extend(character.escape_debug());
        } else {
            out.push(character);
        }
    }
    out.push('\n');
}
