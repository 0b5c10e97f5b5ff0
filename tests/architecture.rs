//! The architecture, checked from the sources: which room may use which,
//! no import cycles between rooms, and no renaming, deleting or mounting
//! outside the host backends. docs/design.md draws the same picture.
//!
//! A room is a top-level module of `src/` (`src/plan/` and `src/plan.rs`
//! are the room `plan`). A file uses a room when it names `crate::ROOM`
//! (or `jailswap::ROOM` in `main.rs`). Comments are skipped, so prose that
//! mentions a room does not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The room a source file belongs to.
fn room_of(path: &Path) -> String {
    let relative = path.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap();
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file without its comments (line comments and doc comments).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string is rare in this code base; a string
            // that holds one (a URL) is kept whole by looking for quotes.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rooms a file names, from `crate::ROOM` and `use crate::{ROOM, ..}`.
fn uses(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    rooms.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                rooms.insert(name);
            }
        }
    }
    rooms
}

/// Room -> the rooms it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let rooms: BTreeSet<String> = sources(&src()).iter().map(|p| room_of(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in sources(&src()) {
        let room = room_of(&path);
        let prefix = if room == "main" {
            "jailswap::"
        } else {
            "crate::"
        };
        let used = uses(&code(&path), prefix);
        let entry = graph.entry(room.clone()).or_default();
        for other in used {
            if other != room && rooms.contains(&other) {
                entry.insert(other);
            }
        }
    }
    graph
}

// The arrows that must never exist.
#[test]
fn forbidden_dependencies() {
    let graph = graph();
    let forbidden: [(&str, &[&str], &str); 7] = [
        (
            "plan",
            &["journal", "host", "executor", "commands"],
            "the plan is pure: configuration and observations in, steps out",
        ),
        (
            "host",
            &[
                "journal",
                "executor",
                "recover",
                "transaction",
                "commands",
                "plan",
            ],
            "hosts act; they do not record or decide",
        ),
        (
            "journal",
            &["host", "executor", "recover", "commands"],
            "the journal records; it does not act",
        ),
        (
            "executor",
            &["commands", "transaction"],
            "the engine does not know the commands",
        ),
        (
            "recover",
            &["commands", "transaction"],
            "the engine does not know the commands",
        ),
        (
            "config",
            &["host", "journal", "executor", "commands", "plan"],
            "the configuration is read before anything else",
        ),
        (
            "template",
            &["host", "plan", "journal", "config"],
            "the template vocabulary is a leaf",
        ),
    ];
    let mut violations = Vec::new();
    for (room, never, why) in forbidden {
        for other in never {
            if graph.get(room).is_some_and(|uses| uses.contains(*other)) {
                violations.push(format!("{room} uses {other}: {why}"));
            }
        }
    }
    // Only the commands (and the executable) know the commands.
    for (room, uses) in &graph {
        if uses.contains("commands") && room != "main" && room != "commands" {
            violations.push(format!(
                "{room} uses commands: only main dispatches to them"
            ));
        }
    }
    assert!(violations.is_empty(), "{violations:#?}\n{graph:#?}");
}

// No two rooms use each other, directly or through others.
#[test]
fn no_import_cycles() {
    let graph = graph();
    // Depth-first search for a back edge, reporting the cycle.
    fn visit(
        room: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == room) {
            let mut cycle = path[at..].to_vec();
            cycle.push(room.to_string());
            return Some(cycle);
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_string());
        for next in graph.get(room).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(room.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for room in graph.keys() {
        if let Some(cycle) = visit(room, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

// Renaming, deleting and mounting happen in the host backends only; the
// few files elsewhere that replace their own files say why here.
#[test]
fn only_hosts_rename_delete_or_mount() {
    let patterns = [
        "fs::rename(",
        "remove_dir_all(",
        "renameat(",
        "renameat2(",
        "mount(",
        "umount",
    ];
    let allowed: [(&str, &str, &str); 4] = [
        (
            "journal/mod.rs",
            "fs::rename(",
            "replaces its own backup copy atomically",
        ),
        (
            "metrics.rs",
            "fs::rename(",
            "replaces its own textfile atomically for the collector",
        ),
        (
            "service.rs",
            "fs::rename(",
            "the demo service publishes its own pidfile atomically",
        ),
        (
            "sandbox.rs",
            "mount(",
            "makes the sandbox's mount namespace private; jail mounts go through the host",
        ),
    ];
    let mut violations = Vec::new();
    for path in sources(&src()) {
        let relative = path
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.starts_with("host/") {
            continue;
        }
        let text = code(&path);
        for pattern in patterns {
            // A method of the host (`host.mount(`) is the door, not a system call.
            let calls = text
                .match_indices(pattern)
                .filter(|(at, _)| {
                    let before = &text[..*at];
                    !(pattern == "mount("
                        && (before.ends_with('.')
                            || before.ends_with("_")
                            || before.ends_with("un")))
                })
                .count();
            let excused = allowed
                .iter()
                .any(|(file, allowed, _)| relative == *file && *allowed == pattern);
            if calls > 0 && !excused {
                violations.push(format!("src/{relative}: {pattern}"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

// The checks above can fail: they find what they look for in a sample.
#[test]
fn the_checks_can_fail() {
    let sample = "use crate::{host, journal::Journal};\nfn f() { crate::executor::run(); std::fs::rename(a, b); }\n// crate::commands in a comment\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.rs");
    std::fs::write(&file, sample).unwrap();
    let used = uses(&code(&file), "crate::");
    assert_eq!(
        used,
        ["executor", "host", "journal"].map(String::from).into()
    );
    assert!(code(&file).contains("std::fs::rename"));
    assert!(!code(&file).contains("commands"));
}

// No source file grows past about 600 lines without saying why at its top.
#[test]
fn files_stay_small_or_say_why() {
    let mut long = Vec::new();
    for path in sources(&src()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = text.lines().count();
        let head: String = text.lines().take(30).collect::<Vec<_>>().join("\n");
        if lines > 650 && !head.contains("longer than") {
            long.push(format!("{} ({lines} lines)", path.display()));
        }
    }
    assert!(
        long.is_empty(),
        "split these by what they own, or say at the top why not (\"longer than ...\"): {long:#?}"
    );
}
