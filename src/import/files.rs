//! Where the importer's files come from: the [`SourceFiles`] trait the
//! caller supplies, its adapter for the host's file system, and glob(3)
//! matching over it for `.include "/etc/jail.conf.d/*.conf";`.
//!
//! The importer itself never touches the disk: `jailswap init` passes
//! [`HostFiles`], tests pass a map of paths to texts. Globbing is done here
//! over [`SourceFiles::list`] rather than by the system, so that it behaves
//! the same on every host and in tests, and so that it follows FreeBSD's
//! glob(3) as jail(8) calls it (`GLOB_NOCHECK` only):
//!
//! - `*` matches any run of characters within one path component, `?` one
//!   character, `[...]` one character of a set (`a-z` ranges, `!` negates);
//!   a `[` without a closing `]` is an ordinary character;
//! - a backslash makes the next character ordinary;
//! - a name starting with `.` is matched only by a component that starts
//!   with a literal `.`;
//! - a directory that does not exist matches nothing, and the matches are
//!   sorted byte by byte (the C locale rc(8) runs jail(8) in).

use std::io;
use std::path::{Path, PathBuf};

/// Read access to the files an import needs besides the one it was given:
/// included files, per-jail files and each jail's `mount.fstab`.
pub trait SourceFiles {
    /// The text of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<String>;

    /// The names of the entries of the directory at `directory`, in any
    /// order, without `.` and `..`.
    fn list(&self, directory: &Path) -> io::Result<Vec<String>>;
}

/// The host's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFiles;

impl SourceFiles for HostFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(directory)? {
            let name = entry?.file_name();
            // A name that is not UTF-8 cannot be matched against a pattern
            // from jail.conf, nor printed into TOML; saying so beats silently
            // leaving the file out.
            let name = name.into_string().map_err(|name| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds a file name that is not UTF-8: {:?}",
                        directory.display(),
                        name
                    ),
                )
            })?;
            names.push(name);
        }
        Ok(names)
    }
}

/// Whether `pattern` holds glob characters (glob(3)'s `GLOB_MAGCHAR`): an
/// unescaped `*`, `?`, or `[` with a closing `]`.
pub(super) fn has_magic(pattern: &str) -> bool {
    pattern
        .split('/')
        .any(|component| parse_component(component).magic)
}

/// A directory that could not be listed while matching a pattern.
#[derive(Debug)]
pub(super) struct ListError {
    pub(super) directory: PathBuf,
    pub(super) error: io::Error,
}

/// The paths matching `pattern`, sorted. A directory that does not exist
/// matches nothing, as in glob(3); any other listing error is returned, since
/// files jail(8) would read must not be left out silently.
pub(super) fn glob(pattern: &str, files: &dyn SourceFiles) -> Result<Vec<String>, ListError> {
    let components: Vec<Component> = pattern.split('/').map(parse_component).collect();
    // Each candidate is a path built so far, written as the pattern writes it.
    let mut candidates: Vec<String> = vec![String::new()];
    let mut seen_magic = false;
    for (position, component) in components.iter().enumerate() {
        seen_magic |= component.magic;
        let mut next = Vec::new();
        for prefix in &candidates {
            let join = |name: &str| {
                if position == 0 {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                }
            };
            // Before the first glob character a component is taken as
            // written, as glob(3) does; an empty one comes from `//` or the
            // leading `/` and stays empty.
            if !seen_magic || component.tokens.is_empty() {
                next.push(join(&component.literal()));
                continue;
            }
            let directory = match (position, prefix.is_empty()) {
                (0, _) => PathBuf::from("."),
                (_, true) => PathBuf::from("/"),
                (_, false) => PathBuf::from(prefix),
            };
            let names = match files.list(&directory) {
                Ok(names) => names,
                Err(error) if absent(&error) => continue,
                Err(error) => return Err(ListError { directory, error }),
            };
            for name in names {
                if component.matches(&name) {
                    next.push(join(&name));
                }
            }
        }
        candidates = next;
    }
    if !seen_magic {
        candidates.clear();
    }
    candidates.sort_unstable_by(|left, right| left.as_bytes().cmp(right.as_bytes()));
    candidates.dedup();
    Ok(candidates)
}

/// Whether an error means the path is not there (glob(3) then matches
/// nothing), rather than that it could not be read.
pub(super) fn absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Character(char),
    Any,
    One,
    Set {
        negated: bool,
        members: Vec<(char, char)>,
    },
}

/// One path component of a pattern, parsed.
struct Component {
    tokens: Vec<Token>,
    magic: bool,
}

fn parse_component(text: &str) -> Component {
    let characters: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut magic = false;
    let mut position = 0;
    while let Some(&character) = characters.get(position) {
        position += 1;
        match character {
            '\\' => match characters.get(position) {
                Some(&escaped) => {
                    tokens.push(Token::Character(escaped));
                    position += 1;
                }
                None => tokens.push(Token::Character('\\')),
            },
            '*' => {
                magic = true;
                tokens.push(Token::Any);
            }
            '?' => {
                magic = true;
                tokens.push(Token::One);
            }
            '[' => match parse_set(&characters, position) {
                Some((set, after)) => {
                    magic = true;
                    tokens.push(set);
                    position = after;
                }
                None => tokens.push(Token::Character('[')),
            },
            other => tokens.push(Token::Character(other)),
        }
    }
    Component { tokens, magic }
}

/// Parses a set starting after its `[`; `None` when no `]` closes it, in
/// which case glob(3) reads the `[` as an ordinary character. A `]` right
/// after `[` or `[!` is a member.
fn parse_set(characters: &[char], start: usize) -> Option<(Token, usize)> {
    let mut position = start;
    let negated = characters.get(position) == Some(&'!');
    if negated {
        position += 1;
    }
    let mut members = Vec::new();
    let mut first = true;
    loop {
        let mut low = *characters.get(position)?;
        if low == ']' && !first {
            return Some((Token::Set { negated, members }, position + 1));
        }
        first = false;
        position += 1;
        if low == '\\' {
            low = *characters.get(position)?;
            position += 1;
        }
        let mut high = low;
        if characters.get(position) == Some(&'-') {
            if let Some(&end) = characters.get(position + 1) {
                if end != ']' {
                    high = end;
                    position += 2;
                }
            }
        }
        members.push((low, high));
    }
}

impl Component {
    /// The component with escapes removed, for one with no glob characters.
    fn literal(&self) -> String {
        self.tokens
            .iter()
            .map(|token| match token {
                Token::Character(character) => *character,
                Token::Any => '*',
                Token::One => '?',
                Token::Set { .. } => '[',
            })
            .collect()
    }

    fn matches(&self, name: &str) -> bool {
        // glob(3) without GLOB_PERIOD: a hidden name needs a literal dot.
        if name.starts_with('.') && self.tokens.first() != Some(&Token::Character('.')) {
            return false;
        }
        let name: Vec<char> = name.chars().collect();
        matches_from(&self.tokens, &name)
    }
}

/// Matches with one backtracking point for the last `*`, which is enough:
/// a later `*` can absorb whatever an earlier one would have taken.
fn matches_from(tokens: &[Token], name: &[char]) -> bool {
    let (mut token, mut character) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while character < name.len() {
        match tokens.get(token) {
            Some(Token::Any) => {
                backtrack = Some((token, character));
                token += 1;
                continue;
            }
            Some(single) if single_matches(single, name[character]) => {
                token += 1;
                character += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((star, start)) => {
                token = star + 1;
                character = start + 1;
                backtrack = Some((star, start + 1));
            }
            None => return false,
        }
    }
    tokens[token..].iter().all(|rest| *rest == Token::Any)
}

fn single_matches(token: &Token, character: char) -> bool {
    match token {
        Token::Character(expected) => *expected == character,
        Token::One => true,
        Token::Set { negated, members } => {
            members
                .iter()
                .any(|(low, high)| (*low..=*high).contains(&character))
                != *negated
        }
        Token::Any => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Tree(BTreeMap<&'static str, Vec<&'static str>>);

    impl SourceFiles for Tree {
        fn read(&self, path: &Path) -> io::Result<String> {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                path.display().to_string(),
            ))
        }

        fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
            match directory.to_str() {
                Some("/locked") => Err(io::Error::new(io::ErrorKind::PermissionDenied, "denied")),
                Some(directory) => self
                    .0
                    .get(directory)
                    .map(|names| names.iter().map(|name| (*name).to_owned()).collect())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, directory.to_owned())),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "")),
            }
        }
    }

    fn tree() -> Tree {
        Tree(BTreeMap::from([
            ("/", vec!["etc"]),
            (
                "/etc",
                vec!["jail.conf", "jail.conf.d", "jail.www.conf", "jail.db.conf"],
            ),
            (
                "/etc/jail.conf.d",
                vec![
                    "b.conf",
                    "a.conf",
                    ".hidden.conf",
                    "notes.txt",
                    "[x].conf",
                    "ab",
                ],
            ),
            (".", vec!["local.conf", "other"]),
        ]))
    }

    fn matched(pattern: &str) -> Vec<String> {
        glob(pattern, &tree()).unwrap()
    }

    // `*`, `?` and sets match within a component, sorted, hidden names left out.
    #[test]
    fn patterns_match_like_glob3() {
        assert_eq!(
            matched("/etc/jail.conf.d/*.conf"),
            [
                "/etc/jail.conf.d/[x].conf",
                "/etc/jail.conf.d/a.conf",
                "/etc/jail.conf.d/b.conf"
            ]
        );
        assert_eq!(
            matched("/etc/jail.*.conf"),
            ["/etc/jail.db.conf", "/etc/jail.www.conf"]
        );
        assert_eq!(matched("/etc/jail[.]conf"), ["/etc/jail.conf"]);
        assert_eq!(
            matched("/etc/jail.conf.d/[!a]?conf"),
            ["/etc/jail.conf.d/b.conf"]
        );
        assert_eq!(matched("/etc/jail.conf.d/[!ab]?conf"), Vec::<String>::new());
        assert_eq!(
            matched("/etc/jail.conf.d/[a-b].conf"),
            ["/etc/jail.conf.d/a.conf", "/etc/jail.conf.d/b.conf"]
        );
        assert_eq!(
            matched("/etc/jail.conf.d/.*.conf"),
            ["/etc/jail.conf.d/.hidden.conf"]
        );
        assert_eq!(matched("/*/jail.conf"), ["/etc/jail.conf"]);
        assert_eq!(matched("*.conf"), ["local.conf"]);
        assert_eq!(matched("/etc/jail.conf.d/\\[x].conf"), Vec::<String>::new());
        assert_eq!(matched("/nowhere/*.conf"), Vec::<String>::new());
        assert_eq!(matched("/etc/*/missing.conf"), Vec::<String>::new());
    }

    // Only unescaped `*`, `?` and closed `[` sets make a pattern a glob.
    #[test]
    fn magic_characters_are_recognised() {
        assert!(has_magic("/etc/jail.conf.d/*.conf"));
        assert!(has_magic("/etc/jail[.]conf"));
        assert!(!has_magic("/etc/jail.conf"));
        assert!(!has_magic("/etc/jail\\*.conf"));
        assert!(!has_magic("/etc/jail[.conf"));
    }

    // A directory that cannot be listed for another reason than absence is an error.
    #[test]
    fn unreadable_directories_are_reported() {
        let error = glob("/locked/*.conf", &tree()).unwrap_err();
        assert_eq!(error.directory, PathBuf::from("/locked"));
        assert_eq!(error.error.kind(), io::ErrorKind::PermissionDenied);
    }
}
