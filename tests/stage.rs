//! `stage` end to end on a directory store, with real bind mounts and the
//! real executable: the faithful copy, what `show`, `status` and
//! `history` record, commands that fail or break the template, requests
//! refused before anything runs, and SIGKILL at every journal commit (and
//! in the middle of a copy) followed by `recover`.
//!
//! The file is longer than 600 lines because the tree comparison the copy
//! is checked with lives here with the only tests that use it.

mod common;

use common::{code, describe, Env};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Everything the copy must keep of one entry, read without following links.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    modified: (i64, i64),
    device: u64,
    target: Option<PathBuf>,
    content: Option<Vec<u8>>,
    xattrs: BTreeMap<String, Vec<u8>>,
    links: u64,
}

/// What identifies an entry as a file of its own, and when it last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Own {
    inode: u64,
    changed: (i64, i64),
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        "link"
    } else if kind.is_dir() {
        "dir"
    } else if kind.is_file() {
        "file"
    } else if kind.is_fifo() {
        "fifo"
    } else if kind.is_char_device() {
        "char"
    } else if kind.is_block_device() {
        "block"
    } else {
        "socket"
    }
}

/// Every entry below `root` (and `root` itself as ""), not following links.
fn tree(root: &Path) -> BTreeMap<PathBuf, (Kept, Own)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let path = root.join(&relative);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = kind_of(&meta);
        if kind == "dir" {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(relative.join(entry.unwrap().file_name()));
            }
        }
        let xattrs = if kind == "link" {
            BTreeMap::new()
        } else {
            xattr::list(&path)
                .unwrap()
                .map(|name| {
                    let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
                    (name.to_string_lossy().into_owned(), value)
                })
                .collect()
        };
        let kept = Kept {
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: if kind == "dir" { 0 } else { meta.size() },
            modified: (meta.mtime(), meta.mtime_nsec()),
            device: meta.rdev(),
            target: (kind == "link").then(|| std::fs::read_link(&path).unwrap()),
            content: (kind == "file").then(|| std::fs::read(&path).unwrap()),
            xattrs,
            links: if kind == "dir" { 0 } else { meta.nlink() },
        };
        let own = Own {
            inode: meta.ino(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        };
        found.insert(relative, (kept, own));
    }
    found
}

/// Adds to the live template one of everything a faithful copy must keep.
fn add_special_entries(template: &Path) {
    let path = |relative: &str| template.join(relative);
    for directory in ["bin", "lib", "usr/bin", "var", "dev", "private"] {
        std::fs::create_dir_all(path(directory)).unwrap();
    }
    std::fs::write(path("bin/sh"), "a shell\n").unwrap();
    std::fs::hard_link(path("bin/sh"), path("bin/rsh")).unwrap();
    std::os::unix::fs::symlink("../bin/sh", path("lib/sh-link")).unwrap();
    std::os::unix::fs::symlink("nowhere", path("lib/dangling")).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &path("lib/dangling"),
        Some(nix::unistd::Uid::from_raw(1234)),
        Some(nix::unistd::Gid::from_raw(1234)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    std::fs::write(path("usr/bin/su"), "setuid program\n").unwrap();
    std::os::unix::fs::chown(path("usr/bin/su"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(path("usr/bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(path("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(path("private"), Some(1234), Some(1234)).unwrap();
    nix::unistd::mkfifo(
        &path("var/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &path("dev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    std::fs::write(path("var/labelled"), "with an extended attribute\n").unwrap();
    xattr::set(path("var/labelled"), "user.jailswap.label", b"kept").unwrap();
    xattr::set(path("var"), "user.jailswap.directory", b"too").unwrap();
    // A time in the past, with nanoseconds.
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 123_456_789);
    for relative in ["bin/sh", "var/labelled", "lib/sh-link"] {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &path(relative),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

fn stage_id(env: &Env) -> String {
    let history = env.json(&["history", "--limit", "1"]);
    assert_eq!(history[0]["kind"], "stage", "{history}");
    history[0]["id"].to_string()
}

fn step_result(shown: &Value, action: &str) -> Value {
    shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["action"] == action)
        .map(|step| step["result"].clone())
        .unwrap_or(Value::Null)
}

fn staging_left(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.store())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".jailswap-stage"))
        .collect()
}

// The directory copy keeps a hard-linked pair, links (one dangling, owned by
// another uid), a setuid file of another owner, a fifo, a device node,
// extended attributes, modes, owners and times to the nanosecond; the
// source is unchanged; the copy's time is printed and recorded.
#[test]
fn the_directory_copy_is_faithful() {
    let env = Env::standard();
    let live = env.store().join("mroot");
    add_special_entries(&live);
    let source_before = tree(&live);

    let output = env.run(&["stage", "--as", "mroot.3"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let printed = stderr
        .lines()
        .find(|line| line.contains("copied mroot to .jailswap-stage.mroot.3 in "))
        .unwrap_or_else(|| panic!("the copy's time is printed: {stderr}"));
    let shown = env.json(&["show", &stage_id(&env)]);
    let took_ms = step_result(&shown, "copy")["took_ms"]
        .as_u64()
        .expect("took_ms");
    assert!(
        printed.contains(&format!(" in {took_ms} ms")),
        "{printed} / {took_ms}"
    );
    eprintln!(
        "directory copy of {} entries: {took_ms} ms",
        source_before.len()
    );

    let copy = tree(&env.store().join("mroot.3"));
    let source_after = tree(&live);
    // The source is unchanged: every entry the same file, with the same
    // contents and metadata, not even its change time moved.
    assert_eq!(source_after, source_before);
    // The copy keeps everything, in files of its own. Access times are not
    // compared: reading a tree (the jails serving VERSION, the copy, the
    // stage's fingerprint) moves them.
    assert_eq!(
        copy.keys().collect::<Vec<_>>(),
        source_before.keys().collect::<Vec<_>>()
    );
    for (path, (kept, own)) in &source_before {
        let (copied, copied_own) = &copy[path];
        assert_eq!(copied, kept, "{}", path.display());
        assert_ne!(
            copied_own.inode,
            own.inode,
            "{} is not a copy",
            path.display()
        );
    }
    // One inode stays one inode.
    assert_eq!(
        copy[Path::new("bin/sh")].1.inode,
        copy[Path::new("bin/rsh")].1.inode
    );
    assert_eq!(copy[Path::new("bin/sh")].0.links, 2);
    // Spot checks of what the comparison covers, so that it cannot pass
    // on an empty tree.
    let su = &copy[Path::new("usr/bin/su")].0;
    assert_eq!((su.mode & 0o7777, su.uid, su.gid), (0o4755, 1234, 5678));
    assert_eq!(copy[Path::new("var/fifo")].0.kind, "fifo");
    let null = &copy[Path::new("dev/null")].0;
    assert_eq!(
        (null.kind, null.device),
        ("char", nix::sys::stat::makedev(1, 3))
    );
    assert_eq!(
        copy[Path::new("var/labelled")]
            .0
            .xattrs
            .get("user.jailswap.label")
            .map(Vec::as_slice),
        Some(&b"kept"[..])
    );
    assert_eq!(copy[Path::new("lib/dangling")].0.uid, 1234);
    assert_eq!(
        copy[Path::new("bin/sh")].0.modified,
        (1_000_000_000, 123_456_789)
    );
    assert!(staging_left(&env).is_empty());
}

// A stage that passes: the command's exit status and output tail, the copy's
// time and the new template's fingerprint are recorded; status lists it as
// staged and history shows the stage; an upgrade onto it then works and
// fingerprints it the same way.
#[test]
fn a_stage_is_recorded_and_can_be_upgraded_to() {
    let env = Env::standard();
    let mut before = env.before("mroot.2");
    let output = env.run(&[
        "--json",
        "stage",
        "--as",
        "mroot.3",
        "--reason",
        "weekly base",
        "--run",
        "echo 3.0 > ${dir}/VERSION && echo \"built from ${from}\" && echo done",
    ]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["outcome"], "staged", "{result}");
    assert_eq!(
        std::fs::read_to_string(env.store().join("mroot.3/VERSION")).unwrap(),
        "3.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.store().join("mroot/VERSION")).unwrap(),
        "1.0\n"
    );

    let id = stage_id(&env);
    let shown = env.json(&["show", &id]);
    assert_eq!(shown["kind"], "stage");
    assert_eq!(shown["outcome"], "staged");
    assert_eq!(shown["reason"], "weekly base");
    let run = step_result(&shown, "run");
    assert_eq!(run["status"], 0, "{shown}");
    let tail = run["output_tail"].as_str().unwrap();
    assert!(
        tail.ends_with("done") || tail.ends_with("done\n"),
        "{tail:?}"
    );
    assert!(
        tail.contains(&format!(
            "built from {}",
            env.store().join("mroot").display()
        )),
        "${{from}} is the source's path: {tail:?}"
    );
    let fingerprint = step_result(&shown, "fingerprint")["fingerprint"].clone();
    let sha = fingerprint["sha256"]
        .as_str()
        .expect("a fingerprint")
        .to_string();
    assert!(
        fingerprint["entries"].as_u64().unwrap() >= 4,
        "{fingerprint}"
    );
    assert!(step_result(&shown, "copy")["took_ms"].is_u64(), "{shown}");
    let text = env.run(&["show", &id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("command   exit status 0") && text.contains("| done"),
        "{text}"
    );
    assert!(text.contains(&sha), "{text}");

    let status = env.json(&["status"]);
    let roles: BTreeMap<String, String> = status["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles.get("mroot.3").map(String::as_str),
        Some("staged"),
        "{status}"
    );
    assert_eq!(status["store_kind"], "directory");
    // status shows the fingerprint the stage recorded for its template.
    let listed = status["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mroot.3")
        .and_then(|t| t["fingerprint"].as_str())
        .unwrap_or_default();
    assert!(listed.contains(&sha), "{status}");
    let history = env.json(&["history"]);
    assert_eq!(
        (
            history[0]["kind"].as_str(),
            history[0]["outcome"].as_str(),
            history[0]["from"].as_str(),
            history[0]["to"].as_str()
        ),
        (
            Some("stage"),
            Some("staged"),
            Some("mroot"),
            Some("mroot.3")
        ),
        "{history}"
    );
    before
        .store
        .insert("mroot.3".into(), env.inode("mroot.3").unwrap());
    env.assert_invariant(&before, "after a stage");
    assert!(staging_left(&env).is_empty());

    // The staged template goes live like any other, with the fingerprint
    // the stage recorded.
    let upgraded = env.run(&["upgrade", "--to", "mroot.3"]);
    assert_eq!(code(&upgraded), 0, "{}", describe(&upgraded));
    let history = env.json(&["history", "--limit", "1"]);
    let recorded = history[0]["to_fingerprint"].as_str().unwrap_or_default();
    assert!(recorded.contains(&sha), "{recorded} / {sha}");
    for (name, port) in &env.sandbox.jails {
        assert_eq!(env.sandbox.ask(*port).as_deref(), Ok("3.0"), "jail {name}");
    }
}

/// Runs a stage that must roll back, and checks that nothing was kept.
fn assert_stage_fails(env: &Env, arguments: &[&str], why: &str) -> Value {
    let before = env.before("mroot.2");
    let started = Instant::now();
    let output = env.run(arguments);
    assert_eq!(code(&output), 1, "{arguments:?}: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("stage mroot.3 failed; nothing was kept"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(why), "{arguments:?}: {stderr}");
    assert!(!env.store().join("mroot.3").exists());
    assert!(staging_left(env).is_empty(), "{:?}", staging_left(env));
    env.assert_invariant(&before, &format!("{arguments:?}"));
    eprintln!("{arguments:?} failed in {:?}", started.elapsed());
    env.json(&["show", &stage_id(env)])
}

// A command that fails, one that hangs past --timeout, and one that removes
// a top-level link: exit 1, no NAME and no staging copy left.
#[test]
fn a_failing_stage_leaves_nothing() {
    let env = Env::standard();
    let shown = assert_stage_fails(
        &env,
        &[
            "stage",
            "--as",
            "mroot.3",
            "--run",
            "touch ${dir}/half-done; echo 'pkg: no space left' >&2; exit 3",
        ],
        "exited with status 3: pkg: no space left",
    );
    assert_eq!(shown["outcome"], "rolled_back");
    let run = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "run")
        .unwrap();
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{run}"
    );
    assert_eq!(
        shown["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["action"] == "copy")
            .unwrap()["state"],
        "undone"
    );

    assert_stage_fails(
        &env,
        &[
            "stage",
            "--as",
            "mroot.3",
            "--timeout",
            "1s",
            "--run",
            "sleep 30",
        ],
        "timed out after 1s",
    );
    assert_stage_fails(
        &env,
        &["stage", "--as", "mroot.3", "--run", "rm ${dir}/etc"],
        "lacks top-level symbolic links that mroot has: etc",
    );
}

// Requests that are refused change nothing and never run the command: the
// name taken, the live name, names that are not plain, a source that is
// missing or not a template, and a staging copy left by hand: 65.
#[test]
fn refused_stages_never_run_the_command() {
    let env = Env::standard();
    let marker = env.dir.path().join("command-ran");
    let command = format!("touch {}", marker.display());
    std::fs::write(env.store().join("a-file"), "not a template").unwrap();
    std::os::unix::fs::symlink("mroot", env.store().join("alias")).unwrap();
    let history = env.json(&["history"]);
    let before = env.before("mroot.2");
    let cases: [(&[&str], &str); 11] = [
        (&["--as", "mroot.2"], "already taken"),
        (&["--as", "mroot"], "already taken"),
        (&["--as", "../mroot.3"], "is a path"),
        (&["--as", ".hidden"], "contains characters"),
        (&["--as", ""], "is empty"),
        (&["--as", "/tmp/x"], "is an absolute path"),
        (&["--as", "a-file"], "already taken"),
        (
            &["--as", "mroot.3", "--from", "missing"],
            "there is no template \"missing\"",
        ),
        (&["--as", "mroot.3", "--from", "../j/mroot"], "is a path"),
        (
            &["--as", "mroot.3", "--from", "a-file"],
            "not a template directory",
        ),
        (
            &["--as", "mroot.3", "--from", "alias"],
            "not a template directory",
        ),
    ];
    for (arguments, why) in cases {
        let mut all = vec!["stage"];
        all.extend_from_slice(arguments);
        all.extend_from_slice(&["--run", &command]);
        let output = env.run(&all);
        assert_eq!(code(&output), 65, "{all:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{all:?}: {stderr}");
        assert!(!marker.exists(), "{all:?}: the command ran");
    }
    // A staging copy someone left: refused, and left where it is.
    std::fs::create_dir(env.store().join(".jailswap-stage.mroot.3")).unwrap();
    let output = env.run(&["stage", "--as", "mroot.3", "--run", &command]);
    assert_eq!(code(&output), 65, "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("remove"),
        "{}",
        describe(&output)
    );
    assert!(!marker.exists());
    assert!(env.store().join(".jailswap-stage.mroot.3").is_dir());
    std::fs::remove_dir(env.store().join(".jailswap-stage.mroot.3")).unwrap();

    assert_eq!(env.json(&["history"]), history, "nothing was recorded");
    assert!(!env.store().join("mroot.3").exists());
    env.assert_invariant(&before, "after the refusals");
    // The same request with a free name runs the command.
    let output = env.run(&["stage", "--as", "mroot.3", "--run", &command]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    assert!(marker.exists(), "the marker shows when the command runs");
}

/// A recursive listing of a template: path, type, mode and content.
fn listing(root: &Path) -> BTreeMap<PathBuf, (Kept, ())> {
    tree(root)
        .into_iter()
        .map(|(path, (kept, _))| (path, (kept, ())))
        .collect()
}

/// After a stage of mroot.3 was killed and recovered: either no mroot.3 and
/// no staging copy, or a complete mroot.3 (the source with VERSION 3.0).
/// Returns whether mroot.3 is there.
fn assert_nothing_or_complete(
    env: &Env,
    source: &BTreeMap<PathBuf, (Kept, ())>,
    before: &common::Before,
    context: &str,
) -> bool {
    assert!(
        staging_left(env).is_empty(),
        "{context}: {:?}",
        staging_left(env)
    );
    let made = env.store().join("mroot.3");
    let mut before = before.clone();
    let complete = made.exists();
    if complete {
        let mut expected = source.clone();
        let version = expected.get_mut(Path::new("VERSION")).unwrap();
        version.0.content = Some(b"3.0\n".to_vec());
        version.0.size = 4;
        let mut found = listing(&made);
        // Times and the root's own entry follow the copy and the command.
        for tree in [&mut expected, &mut found] {
            for (kept, _) in tree.values_mut() {
                kept.modified = (0, 0);
            }
        }
        assert_eq!(found, expected, "{context}: mroot.3 is incomplete");
        before
            .store
            .insert("mroot.3".into(), env.inode("mroot.3").unwrap());
    }
    env.assert_invariant(&before, context);
    complete
}

// SIGKILL at every journal commit of a stage, then recover: either no NAME
// and no staging copy, or a complete NAME.
#[test]
fn stage_killed_at_every_commit() {
    // begin, the state change, an intent and a completion for each of the
    // five waves (copy, run, check links, fingerprint, publish), finish.
    let mut points = vec!["begin:1".to_string(), "state:1".to_string()];
    for wave in 1..=5 {
        points.push(format!("intent:{wave}"));
        points.push(format!("completion:{wave}"));
    }
    points.push("finish:1".into());
    let mut ends = BTreeMap::new();
    for point in &points {
        for when in ["before", "after"] {
            if point == "begin:1" && when == "before" {
                continue; // Nothing has happened yet: the refusals cover it.
            }
            let env = Env::standard();
            let source = listing(&env.store().join("mroot"));
            let before = env.before("mroot.2");
            let kill_at = format!("{point}:{when}");
            let child = env.spawn(
                &[
                    "stage",
                    "--as",
                    "mroot.3",
                    "--run",
                    "echo 3.0 > ${dir}/VERSION",
                ],
                &[("JAILSWAP_KILL_AT", &kill_at)],
            );
            let output = child.wait_with_output().unwrap();
            assert_eq!(
                output.status.code(),
                None,
                "{kill_at}: not killed: {}",
                describe(&output)
            );
            let recovered = env.run(&["recover"]);
            assert!(
                matches!(code(&recovered), 0 | 1),
                "{kill_at}: {}",
                describe(&recovered)
            );
            let complete = assert_nothing_or_complete(
                &env,
                &source,
                &before,
                &format!(
                    "killed at {kill_at}, then recovered: {}",
                    describe(&recovered)
                ),
            );
            *ends.entry(complete).or_insert(0) += 1;
        }
    }
    eprintln!(
        "stage killed at {} commit points: {ends:?} (true: mroot.3 complete)",
        points.len() * 2 - 1
    );
    assert_eq!(ends.len(), 2, "both ends reached: {ends:?}");
}

// SIGKILL in the middle of a directory copy, then recover: the half copy is
// removed, and nothing else.
#[test]
fn stage_killed_in_the_middle_of_a_copy() {
    let env = Env::standard();
    let live = env.store().join("mroot");
    // Enough files that the copy takes a while.
    for directory in 0..40 {
        let path = live.join(format!("usr/share/{directory}"));
        std::fs::create_dir_all(&path).unwrap();
        for file in 0..250 {
            std::fs::write(
                path.join(format!("{file}")),
                format!("{directory}/{file}\n"),
            )
            .unwrap();
        }
    }
    let source = listing(&live);
    let before = env.before("mroot.2");
    let mut child = env.spawn(&["stage", "--as", "mroot.3"], &[]);
    let staging = env.store().join(".jailswap-stage.mroot.3/usr/share");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Kill once the copy is under way, not finished.
    while !staging.join("1").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        None,
        "not killed: {}",
        describe(&output)
    );
    let copied = walk_count(&env.store().join(".jailswap-stage.mroot.3"));
    assert!(
        copied > 0 && copied < source.len(),
        "killed with {copied} of {} entries copied",
        source.len()
    );
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 1, "{}", describe(&recovered));
    eprintln!(
        "killed with {copied} of {} entries copied; recovery removed them",
        source.len()
    );
    assert!(!assert_nothing_or_complete(
        &env,
        &source,
        &before,
        "killed mid-copy"
    ));
    assert_eq!(listing(&live), source, "the source is unchanged");
}

fn walk_count(root: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            count += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    count
}

// With `carry` configured, a stage leaves the carried path out of its copy
// (the upgrade moves it rather than copies it), and an upgrade onto the
// staged template commits with the carried path moved into it, unchanged.
#[test]
fn a_stage_leaves_the_carried_paths_to_the_upgrade() {
    let env = Env::standard();
    let ports = env.store().join("mroot/usr/ports");
    std::fs::create_dir_all(ports.join("www/nginx")).unwrap();
    std::fs::write(ports.join("www/nginx/Makefile"), "PORTNAME= nginx\n").unwrap();
    let ports_inode = std::fs::metadata(&ports).unwrap().ino();
    let text = std::fs::read_to_string(&env.sandbox.config).unwrap();
    std::fs::write(
        &env.sandbox.config,
        format!("carry = [\"usr/ports\"]\n{text}"),
    )
    .unwrap();

    let staged = env.run(&["stage", "--as", "mroot.next"]);
    assert_eq!(code(&staged), 0, "{}", describe(&staged));
    let next = env.store().join("mroot.next");
    assert!(
        next.join("usr").is_dir(),
        "the carried path's parent is copied"
    );
    assert!(
        !next.join("usr/ports").exists(),
        "the carried path was copied"
    );
    assert!(
        ports.join("www/nginx/Makefile").is_file(),
        "the source lost its ports"
    );

    let before = env.before("mroot.next");
    let upgraded = env.run(&["upgrade", "--to", "mroot.next"]);
    assert_eq!(code(&upgraded), 0, "{}", describe(&upgraded));
    assert_eq!(
        env.assert_invariant(&before, "upgrade onto a stage"),
        common::Arrangement::New
    );
    // The same tree, by inode, now in the live template; gone from the old.
    let carried = env.store().join("mroot/usr/ports");
    assert_eq!(std::fs::metadata(&carried).unwrap().ino(), ports_inode);
    assert_eq!(
        std::fs::read_to_string(carried.join("www/nginx/Makefile")).unwrap(),
        "PORTNAME= nginx\n"
    );
    let archive = env.last_archive_name().unwrap();
    assert!(!env.store().join(archive).join("usr/ports").exists());
}
