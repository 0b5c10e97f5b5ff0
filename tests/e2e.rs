//! End-to-end: the real executable on real bind mounts, each scenario
//! checked against the whole invariant of SPEC.md.

mod common;

use common::{code, describe, Arrangement, Env};
use jailswap::sandbox::SandboxOptions;
use serde_json::Value;
use std::time::Duration;

// A committed upgrade: the new template is live, jails answer its VERSION.
#[test]
fn upgrade_commits() {
    let env = Env::standard();
    let before = env.before("mroot.2");
    let output = env.run(&["--json", "upgrade", "--to", "mroot.2", "--reason", "test"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["outcome"], "committed");
    assert_eq!(result["to"], "mroot.2");
    assert!(
        result["downtime_ms"].as_i64().is_some_and(|ms| ms > 0),
        "{result}"
    );
    assert_eq!(
        env.assert_invariant(&before, "committed upgrade"),
        Arrangement::New
    );
    let history = env.json(&["history"]);
    assert_eq!(history[0]["reason"], "test");
    assert_eq!(
        history[0]["user"].as_str().map(|u| u.starts_with("root")),
        Some(true)
    );
    let status = env.json(&["status"]);
    assert_eq!(status["live"], "mroot.2");
    assert_eq!(status["previous"], result["from"]);
}

// `rollback` after a committed upgrade brings the old template back, and a
// second rollback goes forward again (dual-slice switching).
#[test]
fn rollback_after_upgrade() {
    let env = Env::standard();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let archived = env.last_archive_name().expect("archive name");
    let before = env.before(&archived);
    let output = env.run(&["--json", "rollback"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["kind"], "rollback");
    assert_eq!(result["to"], archived.as_str());
    assert_eq!(env.assert_invariant(&before, "rollback"), Arrangement::New);
    for (_, port) in &env.sandbox.jails {
        assert_eq!(env.sandbox.ask(*port).as_deref(), Ok("1.0"));
    }
    let before = env.before("mroot.2");
    let output = env.run(&["rollback"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    assert_eq!(
        env.assert_invariant(&before, "second rollback"),
        Arrangement::New
    );
}

// A template whose service fails its health check rolls back by itself (exit 1).
#[test]
fn failed_health_check_rolls_back() {
    let env = Env::new(SandboxOptions {
        health_timeout: "1s".into(),
        staged: vec![("mroot.broken".into(), None)],
        ..SandboxOptions::default()
    });
    let before = env.before("mroot.broken");
    let output = env.run(&["--json", "upgrade", "--to", "mroot.broken"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(
        env.assert_invariant(&before, "failed health check"),
        Arrangement::Old
    );
    let shown = env.json(&["show", &result["id"].to_string()]);
    assert!(
        shown["error"]
            .as_str()
            .unwrap_or("")
            .contains("answered 500"),
        "{shown}"
    );
}

// A start that fails on the new template rolls back (exit 1).
#[test]
fn failing_start_rolls_back() {
    let env = Env::standard();
    std::fs::write(env.store().join("mroot.2/FAIL_START"), "").unwrap();
    let before = env.before("mroot.2");
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("cannot start"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        env.assert_invariant(&before, "failing start"),
        Arrangement::Old
    );
}

// A dry run prints every step with its undo and changes and records nothing.
#[test]
fn dry_run_changes_nothing() {
    let env = Env::standard();
    let before = env.before("mroot.2");
    let mounts = env.mounts();
    let output = env.run(&["upgrade", "--to", "mroot.2", "--dry-run"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("rename mroot.2 -> mroot") && text.contains("undo: rename mroot -> mroot.2"),
        "{text}"
    );
    assert!(
        text.contains("stop jail jail0") && text.contains("undo: start jail jail0"),
        "{text}"
    );
    assert_eq!(env.mounts(), mounts);
    assert_eq!(env.store_entries(), before.store);
    assert_eq!(env.json(&["history"]), Value::Array(vec![]));
    assert!(
        !env.sandbox.journal.exists(),
        "a dry run created the journal"
    );
    let plan = env.json(&["upgrade", "--to", "mroot.2", "--dry-run"]);
    assert_eq!(plan["outcome"], "planned");
    assert!(plan["steps"].as_array().is_some_and(|s| s.len() > 10));
    assert_eq!(env.assert_invariant(&before, "dry run"), Arrangement::Old);
}

// A second upgrade while one runs is refused with 75 and changes nothing.
#[test]
fn concurrent_upgrade_is_busy() {
    let env = Env::new(SandboxOptions {
        start_delay: "1500ms".into(),
        ..SandboxOptions::default()
    });
    let before = env.before("mroot.2");
    let mut first = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(env.wait_for_step(1, Duration::from_secs(20), |steps| steps
        .iter()
        .any(|s| s["action"] == "start" && s["state"] == "started")));
    let second = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&second), 75, "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another jailswap is running"),
        "{}",
        describe(&second)
    );
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        env.assert_invariant(&before, "concurrent upgrade"),
        Arrangement::New
    );
    assert_eq!(env.json(&["history"]).as_array().map(Vec::len), Some(1));
}

/// Kills jailswap with SIGKILL at a journal commit, recovers, and checks.
fn kill_and_recover(kill_at: &str, options: SandboxOptions, expected: Option<Arrangement>) {
    let env = Env::new(options);
    let before = env.before("mroot.2");
    let arrangement = env.kill_and_recover(
        &["upgrade", "--to", "mroot.2"],
        Some(kill_at),
        None,
        &before,
    );
    assert_eq!(arrangement, expected, "{kill_at}");
    let again = env.run(&["recover"]);
    assert_eq!(code(&again), 0, "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"));
}

// kill -9 during stop: recovery rolls back.
#[test]
fn kill_during_stop_then_recover() {
    kill_and_recover(
        "intent:1:after",
        SandboxOptions::default(),
        Some(Arrangement::Old),
    );
}

// kill -9 right after the first rename: recovery rolls back (before the swap).
#[test]
fn kill_after_first_rename_then_recover() {
    // Waves: stop, unmount, verify, rename, rename: the 4th completion is the first rename.
    kill_and_recover(
        "completion:4:after",
        SandboxOptions::default(),
        Some(Arrangement::Old),
    );
}

// kill -9 during start: the swap happened, so recovery rolls forward.
#[test]
fn kill_during_start_then_recover() {
    kill_and_recover(
        "intent:7:after",
        SandboxOptions::default(),
        Some(Arrangement::New),
    );
}

// kill -9 before the swap's completion was recorded: recovery observes the
// rename took effect and rolls forward.
#[test]
fn kill_after_swap_before_its_record() {
    kill_and_recover(
        "completion:5:before",
        SandboxOptions::default(),
        Some(Arrangement::New),
    );
}

// `status` answers for every jail from its status command: a jail stopped
// by hand, one whose pidfile names a zombie, one whose status command hangs
// past its timeout (shown as unknown, without holding up the others).
#[test]
fn status_reports_each_jail() {
    let env = Env::new(SandboxOptions {
        jails: 4,
        ..SandboxOptions::default()
    });
    let dir = env.dir.path();
    let stop = |name: &str| {
        let output = std::process::Command::new(dir.join("svc"))
            .args(["stop", name, "0", "-"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    };
    stop("jail1");
    stop("jail2");
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let zombie_stat = format!("/proc/{}/stat", zombie.id());
    while !std::fs::read_to_string(&zombie_stat)
        .unwrap()
        .contains(") Z ")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(dir.join("run/jail2.pid"), zombie.id().to_string()).unwrap();
    let running = |status: &Value| -> Vec<Value> {
        let jails = status["jails"].as_array().unwrap();
        jails.iter().map(|j| j["running"].clone()).collect()
    };
    let status = env.json(&["status"]);
    assert_eq!(
        running(&status),
        [true, false, false, true].map(Value::from),
        "{status}"
    );

    // jail0's status command now hangs; its timeout is 1 s.
    let config = std::fs::read_to_string(&env.sandbox.config).unwrap();
    let (head, tail) = config.split_once("name = \"jail0\"").unwrap();
    let (line_start, rest) = tail.split_once("\nstatus = ").unwrap();
    let (_, after) = rest.split_once('\n').unwrap();
    std::fs::write(
        &env.sandbox.config,
        format!(
            "{head}name = \"jail0\"{line_start}\nstatus = \"sleep 30\"\ntimeout = \"1s\"\n{after}"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let status = env.json(&["status"]);
    let took = started.elapsed();
    assert_eq!(
        running(&status),
        [Value::Null, false.into(), false.into(), true.into()],
        "{status}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let output = env.run(&["status"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for (jail, shown) in [
        ("jail0", "?"),
        ("jail1", "no"),
        ("jail2", "no"),
        ("jail3", "yes"),
    ] {
        assert!(
            text.lines().any(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.first() == Some(&jail) && words.get(1) == Some(&shown)
            }),
            "{jail} should show {shown}:\n{text}"
        );
    }
    zombie.wait().unwrap();
}
