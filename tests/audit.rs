//! The audit trail and the operations around it: the hash chain that
//! `verify` checks, fingerprints, the timeline (every step visible, undos,
//! batches, outages, interruptions), `prune`, and `carry`.

mod common;

use common::{code, describe, Arrangement, Env};
use jailswap::sandbox::{make_template, SandboxOptions};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

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
    let (text, chart) = draw(&env, 1);
    for (name, _) in &env.sandbox.jails {
        let row = row_of(&text, name);
        assert!(in_order(&row, "SUMTH"), "{row}\n{text}\n{chart}");
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

// ---------------------------------------------------------------- timeline

/// The row of `name` in a drawn chart, without its name.
fn row_of(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .map(|rest| rest.trim_start().to_string())
        })
        .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
}

/// Whether `row` shows each of `letters`, in that order.
fn in_order(row: &str, letters: &str) -> bool {
    let mut rest = row;
    letters.chars().all(|letter| match rest.find(letter) {
        Some(at) => {
            rest = &rest[at..];
            true
        }
        None => false,
    })
}

/// `show ID --timeline` as text and as data, checked against each other and
/// against the journal: every step that ran (and every undo) has columns of
/// its own, inside the chart, showing its letter, never shared with another
/// step of the same row.
fn draw(env: &Env, id: i64) -> (String, Value) {
    let id = id.to_string();
    let output = env.run(&["show", &id, "--timeline"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let chart = env.json(&["show", &id, "--timeline"]);
    let width = chart["width"].as_u64().unwrap() as usize;
    assert!(width >= 64, "{chart}");
    let rows: Vec<(String, Vec<char>)> = chart["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let name = row["name"].as_str().unwrap().to_string();
            let cells: Vec<char> = row["cells"].as_str().unwrap().chars().collect();
            assert_eq!(cells.len(), width, "{row}");
            // The text draws the same row.
            assert_eq!(
                row_of(&text, &name),
                row["cells"].as_str().unwrap(),
                "{text}"
            );
            (name, cells)
        })
        .collect();
    let shown = env.json(&["show", &id]);
    let mut ran = 0;
    for step in shown["steps"].as_array().unwrap() {
        let forward = step["started_at"].is_string() && step["state"] != "planned";
        let undone = step["undo_started_at"].is_string()
            && matches!(
                step["state"].as_str(),
                Some("undoing" | "undone" | "undo_failed")
            );
        ran += usize::from(forward) + usize::from(undone);
    }
    let spans = chart["spans"].as_array().unwrap();
    assert_eq!(
        spans.len(),
        ran,
        "one span per step and undo that ran: {chart}"
    );
    let mut taken: std::collections::BTreeMap<(String, usize), u64> = Default::default();
    for span in spans {
        let row = span["row"].as_str().unwrap().to_string();
        let (from, to) = (
            span["columns"][0].as_u64().unwrap() as usize,
            span["columns"][1].as_u64().unwrap() as usize,
        );
        assert!(from < to && to <= width, "{span}");
        let letter = span["letter"].as_str().unwrap().chars().next().unwrap();
        assert_eq!(letter.is_lowercase(), span["undo"] == true, "{span}");
        let cells = &rows.iter().find(|(name, _)| *name == row).unwrap().1;
        for (column, cell) in cells.iter().enumerate().take(to).skip(from) {
            assert_eq!(*cell, letter, "{span}\n{text}");
            let seq = span["seq"].as_u64().unwrap();
            let before = taken.insert((row.clone(), column), seq);
            assert!(before.is_none(), "column {column} of {row} shared: {span}");
        }
    }
    (text, chart)
}

// With 2 s stops, every jail's row still shows its 0 ms unmounts and mounts,
// its start and its health check, in order; a rollback shows its undos in
// lower case (the renames' too, on the store's row).
#[test]
fn timeline_keeps_every_step_visible() {
    let env = Env::new(SandboxOptions {
        health_timeout: "1s".into(),
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.broken".into(), None),
        ],
        ..SandboxOptions::default()
    });
    std::fs::write(env.dir.path().join("stop-delay"), "2").unwrap();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let (text, _) = draw(&env, 1);
    for (name, _) in &env.sandbox.jails {
        let row = row_of(&text, name);
        assert!(in_order(&row, "SUUMMTH"), "{name}: {row}\n{text}");
    }
    assert!(
        in_order(&row_of(&text, "(store)"), "VRRC") || in_order(&row_of(&text, "(store)"), "VRR"),
        "{text}"
    );

    std::fs::write(env.dir.path().join("stop-delay"), "0.2").unwrap();
    let output = env.run(&["upgrade", "--to", "mroot.broken"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    let (text, _) = draw(&env, 2);
    for (name, _) in &env.sandbox.jails {
        let row = row_of(&text, name);
        assert!(in_order(&row, "SUMTHtmus"), "{name}: {row}\n{text}");
    }
    assert!(in_order(&row_of(&text, "(store)"), "VRRrr"), "{text}");
    // Two outages: the upgrade's stop, and the rollback's stop again.
    let outage = text
        .lines()
        .find_map(|line| line.strip_prefix("outage"))
        .unwrap();
    let runs = outage
        .trim()
        .split(' ')
        .filter(|run| !run.is_empty() && run.chars().all(|c| c == '='))
        .count();
    assert_eq!(runs, 2, "{text}");
    assert!(text.contains("(lower case: undo"), "{text}");
}

// A rolling upgrade's chart marks its batches, one after another; an
// interrupted and recovered transaction shows the stretch with nothing
// recorded, and its outage, as long as `history` says.
#[test]
fn timeline_marks_batches_and_interruptions() {
    let env = Env::standard();
    let output = env.run(&["upgrade", "--to", "mroot.2", "--rolling", "--batch", "1"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let (text, chart) = draw(&env, 1);
    let batches = chart["batches"].as_array().unwrap();
    assert_eq!(batches.len(), env.sandbox.jails.len(), "{chart}");
    for pair in batches.windows(2) {
        assert!(
            pair[0]["columns"][1].as_u64() <= pair[1]["columns"][0].as_u64(),
            "{chart}"
        );
    }
    let marks = row_of(&text, "batch");
    assert!(in_order(&marks, "123"), "{text}");

    // Killed after the stops: recovery goes back, the jails down meanwhile.
    let killed = env.spawn(&["rollback"], &[("JAILSWAP_KILL_AT", "completion:1:after")]);
    assert_eq!(killed.wait_with_output().unwrap().status.code(), None);
    std::thread::sleep(Duration::from_millis(1200));
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 1, "{}", describe(&recovered));
    assert_eq!(env.json(&["status"])["live"], "mroot.2");
    let (text, chart) = draw(&env, 2);
    let gap = &chart["interruption"];
    let (from, to) = (
        gap["start_ms"].as_i64().unwrap(),
        gap["end_ms"].as_i64().unwrap(),
    );
    assert!(to - from >= 1200, "{chart}");
    assert!(
        gap["columns"][0].as_u64() < gap["columns"][1].as_u64(),
        "{chart}"
    );
    for (name, _) in &env.sandbox.jails {
        assert!(row_of(&text, name).contains('~'), "{text}");
    }
    assert!(text.contains("interrupted: nothing was recorded"), "{text}");
    let history = env.json(&["history", "--limit", "1"]);
    let downtime = history[0]["downtime_ms"].as_i64().unwrap();
    assert!(downtime >= 1200, "{history}");
    assert_eq!(chart["outage"]["downtime_ms"], downtime, "{chart}");
    let outage = chart["outage"]["cells"].as_str().unwrap();
    let gap_columns = gap["columns"][0].as_u64().unwrap() as usize;
    assert_eq!(outage.chars().nth(gap_columns), Some('='), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("outage") && line.ends_with(&format!("{downtime} ms"))),
        "{text}"
    );
}

// A transaction killed between its first intent and its first action did
// nothing to the jails: once recovered, its chart draws no stop and no
// outage, though the intent recorded when the stops were to begin.
#[test]
fn timeline_of_a_transaction_killed_before_it_acted() {
    let env = Env::standard();
    let killed = env.spawn(
        &["upgrade", "--to", "mroot.2"],
        &[("JAILSWAP_KILL_AT", "intent:1:after")],
    );
    assert_eq!(killed.wait_with_output().unwrap().status.code(), None);
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 1, "{}", describe(&recovered));
    let shown = env.json(&["show", "1"]);
    let stops: Vec<&Value> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "stop")
        .collect();
    assert!(
        stops
            .iter()
            .all(|s| s["state"] == "planned" && s["started_at"].is_string()),
        "the intent's time stays, the state says the stop never ran: {shown}"
    );
    let (text, chart) = draw(&env, 1);
    for (name, _) in &env.sandbox.jails {
        assert!(!row_of(&text, name).contains(['S', 's']), "{text}");
    }
    assert!(chart["outage"].is_null(), "{chart}");
    assert!(!text.contains("outage"), "{text}");
}
