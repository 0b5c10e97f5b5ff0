//! The audit trail and the operations around it: the hash chain that
//! `verify` checks, fingerprints, the timeline, `prune`, and `carry`.

mod common;

use common::{code, describe, Arrangement, Env};
use jailswap::sandbox::{make_template, SandboxOptions};
use std::process::Command;

fn sqlite(env: &Env, sql: &str) {
    let status = Command::new("sqlite3")
        .arg(&env.sandbox.journal)
        .arg(sql)
        .status()
        .expect("sqlite3 is required (apt-get install sqlite3)");
    assert!(status.success(), "{sql}");
}

fn three_templates() -> SandboxOptions {
    SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("3.0".into())),
            ("mroot.4".into(), Some("4.0".into())),
        ],
        ..SandboxOptions::default()
    }
}

// `verify` passes on an untouched journal and names the first record that
// was edited behind jailswap's back (with the sqlite3 tool), or removed.
#[test]
fn verify_catches_edits() {
    let env = Env::new(three_templates());
    for target in ["mroot.2", "mroot.3"] {
        assert_eq!(
            code(&env.run(&["upgrade", "--to", target, "--reason", "audit"])),
            0
        );
    }
    assert_eq!(code(&env.run(&["rollback"])), 0);
    let intact = env.run(&["verify"]);
    assert_eq!(code(&intact), 0, "{}", describe(&intact));
    assert!(String::from_utf8_lossy(&intact.stdout).contains("3 finished transactions chained"));

    // Someone rewrites who did the second upgrade and why.
    sqlite(
        &env,
        "UPDATE txn SET reason = 'routine', user = 'nobody' WHERE id = 2",
    );
    let edited = env.run(&["verify"]);
    assert_eq!(code(&edited), 74, "{}", describe(&edited));
    let text = String::from_utf8_lossy(&edited.stderr);
    assert!(
        text.contains("transaction 2") && text.contains("edited"),
        "{text}"
    );
    let json = env.json(&["verify"]);
    assert_eq!(json["first_mismatch"], 2);

    // Editing a step is caught too.
    sqlite(
        &env,
        "UPDATE txn SET reason = 'audit', user = (SELECT user FROM txn WHERE id = 1) WHERE id = 2",
    );
    assert_eq!(
        code(&env.run(&["verify"])),
        0,
        "restoring the fields restores the chain"
    );
    sqlite(&env, "UPDATE step SET error = NULL, finished_at = '2020-01-01T00:00:00.000Z' WHERE txn_id = 1 AND seq = 1");
    let step_edit = env.run(&["verify"]);
    assert_eq!(code(&step_edit), 74);
    assert!(String::from_utf8_lossy(&step_edit.stderr).contains("transaction 1"));

    // Removing a whole record breaks the next link.
    let env = Env::new(three_templates());
    for target in ["mroot.2", "mroot.3"] {
        assert_eq!(code(&env.run(&["upgrade", "--to", target])), 0);
    }
    sqlite(
        &env,
        "DELETE FROM step WHERE txn_id = 1; DELETE FROM txn WHERE id = 1",
    );
    let removed = env.run(&["verify"]);
    assert_eq!(code(&removed), 74, "{}", describe(&removed));
    assert!(
        String::from_utf8_lossy(&removed.stderr).contains("transaction 2"),
        "{}",
        describe(&removed)
    );
}

// `show` records who, from where, why, and fingerprints of both templates;
// `--timeline` draws a row per jail and the outage.
#[test]
fn show_and_timeline() {
    let env = Env::standard();
    let output = env
        .command(&["upgrade", "--to", "mroot.2", "--reason", "security fix"])
        .env("SUDO_USER", "alice")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let shown = env.json(&["show", "1"]);
    assert_eq!(shown["reason"], "security fix");
    assert!(shown["user"].as_str().unwrap().contains("alice"), "{shown}");
    assert!(shown["command_line"]
        .as_str()
        .unwrap()
        .contains("upgrade --to mroot.2"));
    for key in ["from_fingerprint", "to_fingerprint"] {
        let fingerprint = shown[key].as_str().unwrap_or("");
        assert!(
            fingerprint.starts_with("inode ") && fingerprint.contains("sha256 "),
            "{key}: {fingerprint}"
        );
    }
    assert_ne!(shown["from_fingerprint"], shown["to_fingerprint"]);
    let forward: Vec<_> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "forward")
        .collect();
    assert!(
        !forward.is_empty()
            && forward.iter().all(|s| s["state"] == "done"
                && s["started_at"].is_string()
                && s["finished_at"].is_string()),
        "{shown}"
    );
    let timeline = env.run(&["show", "1", "--timeline"]);
    let text = String::from_utf8_lossy(&timeline.stdout);
    for (name, _) in &env.sandbox.jails {
        let row = text
            .lines()
            .find(|line| line.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        assert!(
            row.contains('S') && row.contains('T') && row.contains('M'),
            "{row}"
        );
    }
    assert!(
        text.lines()
            .any(|line| line.starts_with("outage") && line.contains('=')),
        "{text}"
    );
    let history = env.run(&["history"]);
    let lines: Vec<String> = String::from_utf8_lossy(&history.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("DOWNTIME") && lines[1].starts_with("1 "),
        "{lines:?}"
    );
    assert_eq!(
        lines[0].find("KIND"),
        lines[1].find("upgrade"),
        "columns are aligned: {lines:?}"
    );
}

// `prune --keep N` deletes archived templates beyond the N newest, never the
// live one, the rollback target or a staged one; it is journaled.
#[test]
fn prune_keeps_what_matters() {
    let env = Env::new(SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("3.0".into())),
            ("mroot.4".into(), Some("4.0".into())),
            ("mroot.staged".into(), Some("5.0".into())),
        ],
        ..SandboxOptions::default()
    });
    let original = env.last_archive_name();
    assert!(original.is_none());
    for target in ["mroot.2", "mroot.3", "mroot.4"] {
        assert_eq!(code(&env.run(&["upgrade", "--to", target])), 0);
    }
    let first_archive = env.json(&["show", "1"])["archive_as"]
        .as_str()
        .unwrap()
        .to_string();
    let before = env.store_entries();
    let dry = env.run(&["prune", "--keep", "1", "--dry-run"]);
    assert_eq!(code(&dry), 0, "{}", describe(&dry));
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains(&first_archive)
            && text.contains("mroot.2")
            && !text.contains("mroot.3")
            && !text.contains("mroot.staged"),
        "{text}"
    );
    assert_eq!(env.store_entries(), before, "a dry run deleted something");
    let pruned = env.run(&["--json", "prune", "--keep", "1"]);
    assert_eq!(code(&pruned), 0, "{}", describe(&pruned));
    let store = env.store_entries();
    assert!(
        !store.contains_key(&first_archive) && !store.contains_key("mroot.2"),
        "{store:?}"
    );
    assert!(
        store.contains_key("mroot")
            && store.contains_key("mroot.3")
            && store.contains_key("mroot.staged"),
        "{store:?}"
    );
    assert_eq!(env.json(&["history"])[0]["kind"], "prune");
    assert_eq!(code(&env.run(&["verify"])), 0);
    // The rollback target survives even --keep 0, and rollback still works.
    assert_eq!(code(&env.run(&["prune", "--keep", "0"])), 0);
    assert!(env.store_entries().contains_key("mroot.3"));
    let before = env.before("mroot.3");
    assert_eq!(code(&env.run(&["rollback"])), 0);
    assert_eq!(
        env.assert_invariant(&before, "rollback after prune"),
        Arrangement::New
    );
}

// `carry` moves usr/ports from the outgoing template into the incoming one,
// and a rollback moves it back.
#[test]
fn carry_moves_paths_and_back() {
    let env = Env::standard();
    let config = std::fs::read_to_string(&env.sandbox.config)
        .unwrap()
        .replacen(
            "live = \"mroot\"\n",
            "live = \"mroot\"\ncarry = [\"usr/ports\"]\n",
            1,
        );
    std::fs::write(&env.sandbox.config, config).unwrap();
    let ports = env.store().join("mroot/usr/ports");
    std::fs::create_dir_all(ports.join("distfiles")).unwrap();
    std::fs::write(ports.join("INDEX"), "ports tree\n").unwrap();
    let inode = std::fs::metadata(&ports)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let archive = env.last_archive_name().unwrap();
    assert_eq!(
        std::fs::read_to_string(env.store().join("mroot/usr/ports/INDEX")).unwrap(),
        "ports tree\n"
    );
    assert_eq!(
        std::fs::metadata(env.store().join("mroot/usr/ports"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap(),
        inode
    );
    assert!(!env.store().join(&archive).join("usr/ports").exists());
    let output = env.run(&["rollback"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    assert!(env.store().join("mroot/usr/ports/INDEX").exists());
    assert!(!env.store().join("mroot.2/usr/ports").exists());
    // A staged template that already has the path is refused before anything stops.
    make_template(&env.store().join("mroot.9"), Some("9.0")).unwrap();
    std::fs::create_dir_all(env.store().join("mroot.9/usr/ports")).unwrap();
    let refused = env.run(&["upgrade", "--to", "mroot.9"]);
    assert_eq!(code(&refused), 65, "{}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("jailswap deletes nothing"));
}
