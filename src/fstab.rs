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
}
