//! Bad input of every kind is refused before anything stops, with the
//! documented exit code, a message naming what is wrong and what to do,
//! and the host exactly as it was: same processes, mounts, store, data,
//! and nothing recorded in the journal.

mod common;

use common::{describe, Env};
use jailswap::sandbox::SandboxOptions;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Everything a refused command must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    store: BTreeMap<String, u64>,
    mounts: Vec<(PathBuf, PathBuf, bool)>,
    pids: BTreeMap<String, String>,
    data: BTreeMap<String, String>,
    transactions: usize,
}

fn snapshot(env: &Env) -> Snapshot {
    let mut pids = BTreeMap::new();
    for (name, _) in &env.sandbox.jails {
        let pid = std::fs::read_to_string(env.dir.path().join("run").join(format!("{name}.pid")))
            .unwrap_or_default();
        assert!(env.running(name), "jail {name} is not running");
        pids.insert(name.clone(), pid);
    }
    let transactions = env.json(&["history"]).as_array().map(Vec::len).unwrap_or(0);
    Snapshot {
        store: env.store_entries(),
        mounts: env.mounts(),
        pids,
        data: env.data(),
        transactions,
    }
}

/// Writes a configuration variant next to the real one (root-owned, 0600).
fn variant(env: &Env, name: &str, text: &str) -> String {
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

struct Case {
    name: &'static str,
    arguments: Vec<String>,
    code: i32,
    /// Every one of these must appear in stderr.
    says: Vec<&'static str>,
}

fn case(name: &'static str, arguments: &[&str], code: i32, says: &[&'static str]) -> Case {
    Case {
        name,
        arguments: arguments.iter().map(|s| s.to_string()).collect(),
        code,
        says: says.to_vec(),
    }
}

fn config_case(
    env: &Env,
    name: &'static str,
    text: &str,
    code: i32,
    says: &[&'static str],
) -> Case {
    let path = variant(env, &format!("{name}.toml"), text);
    Case {
        name,
        arguments: vec![
            "-c".into(),
            path,
            "upgrade".into(),
            "--to".into(),
            "mroot.2".into(),
        ],
        code,
        says: says.to_vec(),
    }
}

#[test]
fn refused_inputs_change_nothing() {
    let env = Env::standard();
    let store = env.store().to_path_buf();
    let good = std::fs::read_to_string(&env.sandbox.config).unwrap();

    // Templates that preflight must refuse.
    std::os::unix::fs::symlink("mroot.2", store.join("mroot.link")).unwrap();
    std::fs::write(store.join("mroot.file"), "not a directory").unwrap();
    jailswap::sandbox::make_template(&store.join("mroot.nolink"), Some("3.0")).unwrap();
    std::fs::remove_file(store.join("mroot.nolink/etc")).unwrap();
    jailswap::sandbox::make_template(&store.join("mroot.nos"), Some("3.0")).unwrap();
    std::fs::remove_dir(store.join("mroot.nos/s")).unwrap();
    std::fs::create_dir(store.join("mroot.tmpfs")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &store.join("mroot.tmpfs"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    jailswap::sandbox::make_template(&store.join("mroot.tmpfs"), Some("3.0")).unwrap();

    let jail_block = |name: &str| {
        format!(
            "[[jail]]\nname = \"{name}\"\npath = \"{}/{name}\"\n",
            store.display()
        )
    };
    let fstab0 = env.dir.path().join("fstab.jail0").display().to_string();
    let short_fstab = env.dir.path().join("fstab.short");
    std::fs::write(&short_fstab, "/a /b nullfs\n").unwrap();
    let store_line = format!("store = \"{}\"\n", store.display());

    let mut cases = vec![
        // 64: usage.
        case("no command", &[], 64, &["Usage"]),
        case(
            "unknown option",
            &["upgrade", "--to", "mroot.2", "--bogus"],
            64,
            &["--bogus"],
        ),
        case("upgrade without --to", &["upgrade"], 64, &["--to"]),
        case(
            "limit not a number",
            &["history", "--limit", "many"],
            64,
            &["many"],
        ),
        case(
            "recover both ways",
            &["recover", "--resume", "--rollback"],
            64,
            &["cannot be used with"],
        ),
        // 65: bad --to / --archive-as, preflight.
        case("--to empty", &["upgrade", "--to", ""], 65, &["is empty"]),
        case(
            "--to absolute",
            &["upgrade", "--to", "/tmp/mroot.2"],
            65,
            &["absolute path"],
        ),
        case(
            "--to with ..",
            &["upgrade", "--to", "../j/mroot.2"],
            65,
            &["is a path"],
        ),
        case(
            "--to with a slash",
            &["upgrade", "--to", "x/mroot.2"],
            65,
            &["is a path"],
        ),
        case(
            "--to dot-dot",
            &["upgrade", "--to", ".."],
            65,
            &["is a path"],
        ),
        case(
            "--to shell metacharacters",
            &["upgrade", "--to", "mroot.2;reboot"],
            65,
            &["characters other than"],
        ),
        case(
            "--to missing",
            &["upgrade", "--to", "mroot.nothere"],
            65,
            &["no template", "mroot.nothere"],
        ),
        case(
            "--to a symlink",
            &["upgrade", "--to", "mroot.link"],
            65,
            &["symbolic link"],
        ),
        case(
            "--to a file",
            &["upgrade", "--to", "mroot.file"],
            65,
            &["not a directory"],
        ),
        case(
            "--to the live template",
            &["upgrade", "--to", "mroot"],
            65,
            &["live template itself"],
        ),
        case(
            "--to on another file system",
            &["upgrade", "--to", "mroot.tmpfs"],
            65,
            &["another file system", "would not be atomic"],
        ),
        case(
            "--to lacks top-level symlinks",
            &["upgrade", "--to", "mroot.nolink"],
            65,
            &["lacks top-level symbolic links", "etc", "--force"],
        ),
        case(
            "--to lacks the jails' mount point s",
            &["upgrade", "--to", "mroot.nos"],
            65,
            &["has no directory \"s\"", "mkdir"],
        ),
        case(
            "--archive-as taken",
            &["upgrade", "--to", "mroot.2", "--archive-as", "mroot.nolink"],
            65,
            &["already taken"],
        ),
        case(
            "--archive-as a path",
            &["upgrade", "--to", "mroot.2", "--archive-as", "old/x"],
            65,
            &["--archive-as", "is a path"],
        ),
        case(
            "--archive-as the target",
            &["upgrade", "--to", "mroot.2", "--archive-as", "mroot.2"],
            65,
            &["--archive-as"],
        ),
        case(
            "rollback with no history",
            &["rollback"],
            65,
            &["nothing to roll back to"],
        ),
        case(
            "show unknown transaction",
            &["show", "42"],
            65,
            &["no transaction 42"],
        ),
        // 66: configuration missing.
        case(
            "configuration missing",
            &["-c", "/nonexistent/jailswap.toml", "status"],
            66,
            &["does not exist", "/nonexistent/jailswap.toml"],
        ),
    ];
    // 78: configuration invalid.
    cases.push(config_case(
        &env,
        "syntax error",
        &format!("{store_line}[[jail]\n"),
        78,
        &["TOML parse error", "line"],
    ));
    cases.push(config_case(
        &env,
        "unknown key",
        &format!("{store_line}colour = 1\n{}", jail_block("a")),
        78,
        &["unknown field", "colour"],
    ));
    cases.push(config_case(
        &env,
        "no jails",
        &store_line,
        78,
        &["no [[jail]]"],
    ));
    cases.push(config_case(
        &env,
        "duplicate jails",
        &format!("{store_line}{}{}", jail_block("a"), jail_block("a")),
        78,
        &["defined twice"],
    ));
    cases.push(config_case(
        &env,
        "dependency cycle",
        &format!(
            "{store_line}{}depends = [\"b\"]\n{}depends = [\"a\"]\n",
            jail_block("a"),
            jail_block("b")
        ),
        78,
        &["cycle"],
    ));
    cases.push(config_case(
        &env,
        "unknown dependency",
        &format!("{store_line}{}depends = [\"zz\"]\n", jail_block("a")),
        78,
        &["not configured"],
    ));
    cases.push(config_case(
        &env,
        "jail name with metacharacters",
        &format!("{store_line}{}", jail_block("a;rm -rf /")),
        78,
        &["not a valid jail name"],
    ));
    cases.push(config_case(
        &env,
        "missing store",
        &format!("store = \"/nonexistent/store\"\n{}", jail_block("a")),
        78,
        &["store", "/nonexistent/store"],
    ));
    cases.push(config_case(
        &env,
        "missing fstab",
        &format!(
            "{store_line}{}fstab = \"/nonexistent/fstab.a\"\n",
            jail_block("a")
        ),
        78,
        &["fstab", "/nonexistent/fstab.a"],
    ));
    cases.push(config_case(
        &env,
        "fstab line with too few fields",
        &format!(
            "{store_line}{}fstab = \"{}\"\n",
            jail_block("a"),
            short_fstab.display()
        ),
        78,
        &["fstab.short:1", "found 3 fields"],
    ));
    cases.push(config_case(
        &env,
        "bad duration",
        &format!(
            "{store_line}[health]\ntimeout = \"soon\"\n{}",
            jail_block("a")
        ),
        78,
        &["health.timeout", "soon"],
    ));
    cases.push(config_case(
        &env,
        "live not a name",
        &format!("{store_line}live = \"../x\"\n{}", jail_block("a")),
        78,
        &["live"],
    ));
    cases.push(config_case(
        &env,
        "health check without kind",
        &format!(
            "{store_line}{}[[jail.health]]\ncontains = \"x\"\n",
            jail_block("a")
        ),
        78,
        &["exactly one of"],
    ));
    let _ = fstab0;
    let writable = variant(&env, "writable.toml", &good);
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    cases.push(Case {
        name: "world-writable configuration",
        arguments: vec![
            "-c".into(),
            writable,
            "upgrade".into(),
            "--to".into(),
            "mroot.2".into(),
        ],
        code: 78,
        says: vec!["writable by group or others", "chmod go-w"],
    });
    let foreign = variant(&env, "foreign.toml", &good);
    nix::unistd::chown(
        Path::new(&foreign),
        Some(nix::unistd::Uid::from_raw(1000)),
        None,
    )
    .unwrap();
    cases.push(Case {
        name: "configuration not owned by root",
        arguments: vec![
            "-c".into(),
            foreign,
            "upgrade".into(),
            "--to".into(),
            "mroot.2".into(),
        ],
        code: 78,
        says: vec!["not root", "chown root"],
    });

    // Preflight asks every jail whether it runs; a status command that
    // hangs past its timeout refuses the upgrade before anything stops.
    let (head, tail) = good.split_once("name = \"jail1\"").unwrap();
    let (jail_keys, rest) = tail.split_once("\nstatus = ").unwrap();
    let (_, after) = rest.split_once('\n').unwrap();
    cases.push(config_case(
        &env,
        "status command hangs",
        &format!(
            "{head}name = \"jail1\"{jail_keys}\nstatus = \"sleep 30\"\ntimeout = \"1s\"\n{after}"
        ),
        65,
        &[
            "status of jail jail1",
            "`sleep 30` timed out after 1s",
            "fix the jail's `status` command",
        ],
    ));

    let before = snapshot(&env);
    let mut failures = Vec::new();
    for case in &cases {
        let mut arguments: Vec<&str> = Vec::new();
        let mut command = if case.arguments.first().map(String::as_str) == Some("-c") {
            let mut command = std::process::Command::new(common::PROGRAM);
            command.env_remove("JAILSWAP_CONFIG");
            command
        } else {
            env.command(&[])
        };
        arguments.extend(case.arguments.iter().map(String::as_str));
        let output = command.args(&arguments).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code().unwrap_or(-1);
        if code != case.code {
            failures.push(format!(
                "{}: exit {code}, expected {}: {}",
                case.name,
                case.code,
                describe(&output)
            ));
        }
        for text in &case.says {
            if !stderr.contains(text) {
                failures.push(format!(
                    "{}: stderr does not say {text:?}: {stderr}",
                    case.name
                ));
            }
        }
        if case.code != 64 && !stderr.contains("help:") {
            failures.push(format!("{}: no help line: {stderr}", case.name));
        }
        let after = snapshot(&env);
        if after != before {
            failures.push(format!(
                "{}: the host changed:\nbefore {before:?}\nafter  {after:?}",
                case.name
            ));
        }
    }
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    nix::mount::umount(&store.join("mroot.tmpfs")).unwrap();
}

// A second jailswap while another holds the lock is refused with 75.
#[test]
fn locked_journal_is_busy() {
    let env = Env::standard();
    let directory = env.sandbox.journal.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&directory).unwrap();
    let lock = std::fs::File::open(&directory).unwrap();
    lock.try_lock().unwrap();
    let before = snapshot(&env);
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(output.status.code(), Some(75), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("another jailswap is running"));
    assert_eq!(snapshot(&env), before);
}

// A corrupt journal: every command exits 74 naming the file, changes
// nothing, and status still shows the host.
#[test]
fn corrupt_journal_is_refused() {
    let env = Env::standard();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let journal = env.sandbox.journal.clone();
    let _ = std::fs::remove_file(journal.with_extension("sqlite-wal"));
    let _ = std::fs::remove_file(journal.with_extension("sqlite-shm"));
    let mut bytes = std::fs::read(&journal).unwrap();
    for byte in bytes.iter_mut().skip(100).take(4000) {
        *byte = 0xA5;
    }
    std::fs::write(&journal, &bytes).unwrap();
    let store = env.store_entries();
    let mounts = env.mounts();
    for arguments in [
        vec!["upgrade", "--to", "mroot.20261124"],
        vec!["rollback"],
        vec!["recover"],
        vec!["history"],
        vec!["show", "1"],
    ] {
        let output = env.run(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(74),
            "{arguments:?}: {}",
            describe(&output)
        );
        assert!(
            stderr.contains(&journal.display().to_string())
                && stderr.contains("corrupt")
                && stderr.contains("help:"),
            "{arguments:?}: {stderr}"
        );
        assert_eq!(env.store_entries(), store);
        assert_eq!(env.mounts(), mounts);
    }
    let status = env.run(&["status"]);
    assert_eq!(status.status.code(), Some(74), "{}", describe(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("jail0  yes"),
        "{}",
        describe(&status)
    );
}

/// Runs every journal-touching command against a damaged journal: each must
/// exit 74 naming the journal with a help line, change nothing on the host,
/// and `status` must still show the host.
fn refuses_damaged_journal(env: &Env, damage: &str) {
    let journal = env.sandbox.journal.display().to_string();
    let store = env.store_entries();
    let mounts = env.mounts();
    for arguments in [
        vec!["upgrade", "--to", "mroot.2"],
        vec!["rollback"],
        vec!["recover"],
        vec!["history"],
        vec!["verify"],
    ] {
        let output = env.run(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(74),
            "{damage}: {arguments:?}: {}",
            describe(&output)
        );
        assert!(
            stderr.contains(&journal) && stderr.contains("help:"),
            "{damage}: {arguments:?}: {stderr}"
        );
        assert_eq!(env.store_entries(), store, "{damage}: {arguments:?}");
        assert_eq!(env.mounts(), mounts, "{damage}: {arguments:?}");
    }
    let status = env.run(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(74),
        "{damage}: {}",
        describe(&status)
    );
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("jail0  yes"),
        "{damage}: {}",
        describe(&status)
    );
}

/// A sandbox with a journal that holds one committed upgrade (so a backup
/// copy exists) and a second staged template to try.
fn upgraded_env() -> Env {
    let env = Env::new(SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("3.0".into())),
        ],
        ..SandboxOptions::default()
    });
    assert_eq!(
        env.run(&["upgrade", "--to", "mroot.3"]).status.code(),
        Some(0)
    );
    env
}

// A truncated journal is refused with 74, and the backup copy is named.
#[test]
fn truncated_journal_is_refused() {
    let env = upgraded_env();
    let journal = &env.sandbox.journal;
    let _ = std::fs::remove_file(journal.with_extension("sqlite-wal"));
    let _ = std::fs::remove_file(journal.with_extension("sqlite-shm"));
    let length = std::fs::metadata(journal).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(journal)
        .unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);
    refuses_damaged_journal(&env, "truncated");
    let output = env.run(&["history"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("journal.sqlite.backup"),
        "{}",
        describe(&output)
    );
}

// A journal that cannot be read (a directory where the file should be).
#[test]
fn unreadable_journal_is_refused() {
    let env = Env::standard();
    std::fs::create_dir_all(&env.sandbox.journal).unwrap();
    refuses_damaged_journal(&env, "unreadable");
}

// A journal on a read-only file system: reading works, changing is refused.
#[test]
fn journal_on_read_only_file_system() {
    let env = upgraded_env();
    let directory = env.sandbox.journal.parent().unwrap().to_path_buf();
    use nix::mount::{mount, umount, MsFlags};
    mount(
        Some(&directory),
        &directory,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        &directory,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let store = env.store_entries();
    let mounts = env.mounts();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{}", describe(&output));
    assert!(
        stderr.contains(&env.sandbox.journal.display().to_string()) && stderr.contains("help:"),
        "{stderr}"
    );
    assert_eq!(env.store_entries(), store);
    assert_eq!(env.mounts(), mounts);
    let status = env.run(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("jail0  yes"),
        "{}",
        describe(&status)
    );
    umount(&directory).unwrap();
}
