//! fstab files in FreeBSD's format, turned into the mounts of one jail.
//!
//! A line is `source mountpoint type options [dump [pass]]`; `#` starts a
//! comment, and spaces inside paths are written `\040`, as FreeBSD's
//! `mount -p` prints them. Type `nullfs` is a bind mount on Linux; the
//! option `ro` makes a mount read-only. Parsing is total: every input yields
//! mounts or an error naming the line, never a panic. As in FreeBSD, `#`
//! starts a comment only at the beginning of a field.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One mount of a jail, as its fstab line describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: PathBuf,
    pub fstype: String,
    pub options: Vec<String>,
}

impl MountSpec {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|option| option == "ro")
    }

    /// The options other than `ro`/`rw`, which the bind backend applies itself.
    pub fn other_options(&self) -> Vec<&str> {
        self.options
            .iter()
            .map(String::as_str)
            .filter(|option| *option != "ro" && *option != "rw")
            .collect()
    }

    /// The line as it would stand in an fstab file.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} {}",
            escape(&self.source.to_string_lossy()),
            escape(&self.target.to_string_lossy()),
            escape(&self.fstype),
            if self.options.is_empty() {
                "rw".to_string()
            } else {
                escape(&self.options.join(","))
            }
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}:{line}: {message}")]
pub struct FstabError {
    pub path: String,
    pub line: usize,
    pub message: String,
}

/// Parses the text of an fstab file; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<MountSpec>, FstabError> {
    let mut mounts = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        // As in FreeBSD, `#` starts a comment only at the start of a field.
        let fields: Vec<&str> = raw_line
            .split_whitespace()
            .take_while(|field| !field.starts_with('#'))
            .collect();
        if fields.is_empty() {
            continue;
        }
        let error = |message: String| FstabError {
            path: path.display().to_string(),
            line: index + 1,
            message,
        };
        if fields.len() < 4 || fields.len() > 6 {
            return Err(error(format!(
                "expected `source mountpoint type options [dump [pass]]`, found {} field{}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" }
            )));
        }
        let source = unescape(fields[0]);
        let target = unescape(fields[1]);
        if !target.starts_with('/') {
            return Err(error(format!(
                "mount point {target:?} is not an absolute path"
            )));
        }
        for number in fields.iter().skip(4) {
            if number.parse::<u32>().is_err() {
                return Err(error(format!(
                    "dump and pass must be numbers, found {number:?}"
                )));
            }
        }
        mounts.push(MountSpec {
            source: PathBuf::from(source),
            target: PathBuf::from(target),
            fstype: fields[2].to_string(),
            options: fields[3]
                .split(',')
                .filter(|option| !option.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(mounts)
}

/// Decodes FreeBSD's octal escapes (`\040` for a space) in an fstab field.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4);
        if bytes[index] == b'\\' {
            if let Some(digits) = digits.filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b))) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(value) = u8::try_from(value) {
                    out.push(value);
                    index += 4;
                    continue;
                }
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes white space and backslashes the way `mount -p` prints them.
pub fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            '#' => out.push_str("\\043"),
            other => out.push(other),
        }
    }
    out
}

/// One line of an fstab file as written: where it stands, its text and its
/// fields with `\NNN` escapes decoded. `jailswap init` copies such lines into
/// per-jail files and names them in its comments, so it needs both the text
/// and the line number. Unlike [`parse`], which reads a jail's mounts, this
/// accepts any mount point: a host's /etc/fstab mounts swap on `none`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The 1-based line number.
    pub line: usize,
    /// The line as written, without surrounding white space.
    pub text: String,
    pub source: String,
    pub mountpoint: String,
    pub fstype: String,
    /// The options as written, split at commas (empty ones kept).
    pub options: Vec<String>,
}

impl Entry {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|option| option == "ro")
    }
}

/// The form of a line, for messages.
const LINE_FORM: &str = "`source mountpoint type options [dump [pass]]`";

/// Reads every entry of an fstab file, with its line number; `path` only
/// names the file in errors.
pub fn entries(text: &str, path: &Path) -> Result<Vec<Entry>, FstabError> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(entry) = entry(line, path, index + 1)? {
            found.push(entry);
        }
    }
    Ok(found)
}

/// Reads one line numbered `line`; `None` for a blank or comment line.
/// Fields are separated by spaces and tabs (and a stray carriage return),
/// as FreeBSD's getfsent(3) separates them.
pub fn entry(text: &str, path: &Path, line: usize) -> Result<Option<Entry>, FstabError> {
    let error = |message: String| FstabError {
        path: path.display().to_string(),
        line,
        message,
    };
    let fields: Vec<&str> = text
        .split([' ', '\t', '\r'])
        .filter(|field| !field.is_empty())
        .take_while(|field| !field.starts_with('#'))
        .collect();
    match fields.len() {
        0 => return Ok(None),
        1..=3 => {
            let quoted: Vec<String> = fields
                .iter()
                .map(|field| format!("\"{}\"", field.escape_debug()))
                .collect();
            return Err(error(format!(
                "found {} field{} ({}); expected {LINE_FORM}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" },
                quoted.join(", ")
            )));
        }
        4..=6 => {}
        count => {
            return Err(error(format!(
                "found {count} fields; expected at most 6: {LINE_FORM}"
            )))
        }
    }
    for (name, field) in ["dump", "pass"].iter().zip(fields.iter().skip(4)) {
        if !field.chars().all(|character| character.is_ascii_digit()) {
            return Err(error(format!(
                "found {name} field \"{}\"; expected a number such as 0",
                field.escape_debug()
            )));
        }
    }
    let field = |position: usize| fields.get(position).copied().unwrap_or_default();
    let decoded = |position: usize| {
        decode(field(position)).ok_or_else(|| {
            error(format!(
                "found \"{}\", whose escapes decode to bytes that are not UTF-8; expected a path a TOML file can hold",
                field(position).escape_debug()
            ))
        })
    };
    Ok(Some(Entry {
        line,
        text: text.trim().to_owned(),
        source: decoded(0)?,
        mountpoint: decoded(1)?,
        fstype: field(2).to_owned(),
        options: field(3).split(',').map(str::to_owned).collect(),
    }))
}

/// Decodes `\NNN` octal escapes like [`unescape`], but refuses (`None`) a
/// field whose decoded bytes are not UTF-8 instead of replacing them, so that
/// a path is never silently changed.
pub fn decode(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        if byte == b'\\' {
            if let Some(&[a, b, c]) = bytes.get(position + 1..position + 4) {
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
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Handbook's lines parse into read-only template and read-write part.
    #[test]
    fn handbook_lines() {
        let text = "# ns\n/home/j/mroot /home/j/ns nullfs ro 0 0\n\n/home/js/ns /home/j/ns/s nullfs rw 0 0 # data\n";
        let mounts = parse(text, Path::new("/etc/fstab.ns")).unwrap();
        assert_eq!(mounts.len(), 2);
        assert!(mounts[0].read_only());
        assert!(!mounts[1].read_only());
        assert_eq!(mounts[1].target, PathBuf::from("/home/j/ns/s"));
    }

    // Too few or too many fields name the line.
    #[test]
    fn field_count_errors_name_the_line() {
        let error = parse("/a /b nullfs ro\n/a /b nullfs\n", Path::new("f")).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("found 3 fields"), "{error}");
        let error = parse("/a /b nullfs ro 0 0 7\n", Path::new("f")).unwrap_err();
        assert_eq!(error.line, 1);
    }

    // Escaped spaces survive a round trip.
    #[test]
    fn escapes_round_trip() {
        let mounts = parse("/a\\040b /j/x\\040y nullfs ro\n", Path::new("f")).unwrap();
        assert_eq!(mounts[0].source, PathBuf::from("/a b"));
        assert_eq!(escape("/j/x y"), "/j/x\\040y");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("a\\04"), "a\\04");
    }

    // Entries keep their line number and text, accept a host's swap line,
    // and refuse escapes that would not survive as UTF-8.
    #[test]
    fn entries_keep_line_numbers_and_text() {
        let text = "# host\n/dev/ada0p3 none swap sw 0 0\n\n  /a\\040b /j/x nullfs ro # template\n";
        let found = entries(text, Path::new("/etc/fstab")).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].line, 2);
        assert_eq!(found[0].mountpoint, "none");
        assert_eq!(found[1].line, 4);
        assert_eq!(found[1].text, "/a\\040b /j/x nullfs ro # template");
        assert_eq!(found[1].source, "/a b");
        assert!(found[1].read_only());
        let error = entries("\n/a\\377 /b nullfs ro\n", Path::new("f")).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("not UTF-8"), "{error}");
        let error = entries("/a /b nullfs ro 0 x\n", Path::new("f")).unwrap_err();
        assert!(error.message.contains("found pass field \"x\""), "{error}");
    }
}
