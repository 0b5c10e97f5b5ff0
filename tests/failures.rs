//! Every failure during a transaction rolls back to a healthy host (exit 1)
//! with the whole invariant intact, or, when even the rollback cannot be
//! completed, stops at `needs_operator` (exit 2) without deleting anything.

mod common;

use common::{code, describe, Arrangement, Env};
use jailswap::host::Host;
use jailswap::sandbox::SandboxOptions;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// A stop command that fails: rollback, exit 1.
#[test]
fn failing_stop_rolls_back() {
    let env = Env::standard();
    let marker = env.dir.path().join("fail-stop.jail1");
    std::fs::write(&marker, "").unwrap();
    let before = env.before("mroot.2");
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert!(
        stdout(&output).contains("stop of jail1 refused"),
        "{}",
        describe(&output)
    );
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        env.assert_invariant(&before, "failing stop"),
        Arrangement::Old
    );
}

// A stop command that hangs past its timeout is ended (TERM, then KILL) and
// the transaction rolls back.
#[test]
fn hanging_stop_rolls_back() {
    let env = Env::new(SandboxOptions {
        command_timeout: "1s".into(),
        ..SandboxOptions::default()
    });
    let marker = env.dir.path().join("hang-stop.jail0");
    std::fs::write(&marker, "").unwrap();
    let before = env.before("mroot.2");
    let started = Instant::now();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert!(
        stdout(&output).contains("timed out after 1s"),
        "{}",
        describe(&output)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(
        env.assert_invariant(&before, "hanging stop"),
        Arrangement::Old
    );
}

// A jail that ignores TERM does not stop; jailswap rolls back and the jail
// keeps running on the old template.
#[test]
fn jail_ignoring_term_rolls_back() {
    let env = Env::standard();
    let marker = env.dir.path().join("ignore-term.jail2");
    std::fs::write(&marker, "").unwrap();
    // Restart jail2 so that its service ignores TERM from now on.
    let config = jailswap::config::Config::load(&env.sandbox.config).unwrap();
    let jail = config.jail("jail2").unwrap();
    let host = jailswap::commands::host(&config);
    host.stop_jail(jail).unwrap();
    host.start_jail(jail).unwrap();
    let before = env.before("mroot.2");
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert!(
        stdout(&output).contains("did not stop"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        env.assert_invariant(&before, "jail ignoring TERM"),
        Arrangement::Old
    );
    // Let the harness stop it at the end.
    std::fs::remove_file(&marker).unwrap();
    let pid = std::fs::read_to_string(env.dir.path().join("run/jail2.pid")).unwrap();
    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
}

// A health check that hangs is bounded by the health timeout and rolls back.
#[test]
fn hanging_health_check_rolls_back() {
    let env = Env::new(SandboxOptions {
        health_timeout: "1s".into(),
        extra_jail_toml: "[[jail.health]]\ncmd = \"if test -f ${path}/HANG; then sleep 60; fi\"\n"
            .into(),
        ..SandboxOptions::default()
    });
    std::fs::write(env.store().join("mroot.2/HANG"), "").unwrap();
    let before = env.before("mroot.2");
    let started = Instant::now();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stdout(&output).contains("not healthy after 1s"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        env.assert_invariant(&before, "hanging health check"),
        Arrangement::Old
    );
}

// An unmount refused with EBUSY names the process that holds the jail,
// and the transaction rolls back.
#[test]
fn busy_unmount_names_the_holder_and_rolls_back() {
    let env = Env::standard();
    let jail_root = env.store().join("jail1");
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(&jail_root)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let before = env.before("mroot.2");
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&output), 1, "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("device busy") && text.contains(&format!("pid {} (sleep)", holder.id())),
        "{}",
        describe(&output)
    );
    assert_eq!(
        env.assert_invariant(&before, "busy unmount"),
        Arrangement::Old
    );
}

// When the rollback itself fails (the old template's jail cannot start
// either), jailswap stops at needs_operator (exit 2), deletes nothing,
// status says what is wrong and what to run, and recover finishes once the
// cause is fixed.
#[test]
fn failing_rollback_needs_operator_then_recovers() {
    let env = Env::standard();
    let marker = env.dir.path().join("fail-start.jail0");
    std::fs::write(&marker, "").unwrap();
    let before = env.before("mroot.2");
    let output = env.run(&["--json", "upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 2, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["outcome"], "needs_operator");
    // Nothing was deleted: both templates are still in the store.
    assert_eq!(env.store_entries(), before.store);
    assert_eq!(env.data(), before.data);
    let status = env.run(&["status"]);
    let text = stdout(&status);
    assert!(
        text.contains("needs_operator")
            && text.contains("start jail jail0")
            && text.contains("jailswap recover"),
        "{text}"
    );
    let refused = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&refused), 75, "{}", describe(&refused));
    // Still broken: recover says so again, without looping.
    let again = env.run(&["recover"]);
    assert_eq!(code(&again), 2, "{}", describe(&again));
    std::fs::remove_file(&marker).unwrap();
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 1, "{}", describe(&recovered));
    assert_eq!(
        env.assert_invariant(&before, "recovered after needs_operator"),
        Arrangement::Old
    );
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

// SIGINT mid-transaction: the running step finishes, then jailswap rolls back (exit 1).
#[test]
fn sigint_rolls_back() {
    let env = Env::new(SandboxOptions {
        start_delay: "1s".into(),
        ..SandboxOptions::default()
    });
    let before = env.before("mroot.2");
    let child = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(env.wait_for_step(1, Duration::from_secs(20), |steps| steps
        .iter()
        .any(|s| s["action"] == "start" && s["state"] == "started")));
    signal(child.id(), "INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stdout(&output).contains("interrupted by SIGINT"),
        "{}",
        describe(&output)
    );
    assert_eq!(env.assert_invariant(&before, "SIGINT"), Arrangement::Old);
}

// A second SIGTERM ends jailswap at once; the transaction stays pending
// and `recover` finishes it.
#[test]
fn second_sigterm_leaves_pending_for_recover() {
    let env = Env::new(SandboxOptions {
        start_delay: "1s".into(),
        ..SandboxOptions::default()
    });
    let before = env.before("mroot.2");
    let child = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(env.wait_for_step(1, Duration::from_secs(20), |steps| steps
        .iter()
        .any(|s| s["action"] == "start" && s["state"] == "started")));
    signal(child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(50));
    signal(child.id(), "TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(75), "{}", describe(&output));
    let status = env.json(&["status"]);
    assert_eq!(status["pending"], 1, "{status}");
    let recovered = env.run(&["recover"]);
    assert!(
        matches!(code(&recovered), 0 | 1),
        "{}",
        describe(&recovered)
    );
    env.assert_invariant(
        &before,
        &format!("second SIGTERM, then recover: {}", describe(&recovered)),
    );
}

// The journal and its directory are created 0600 and 0700.
#[test]
fn journal_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::standard();
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let file = std::fs::metadata(&env.sandbox.journal)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let directory = std::fs::metadata(env.sandbox.journal.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((file, directory), (0o600, 0o700));
}

// A store renamed by hand is refused (65) with a description; --adopt accepts it.
#[test]
fn drift_is_refused_unless_adopted() {
    let env = Env::new(SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("3.0".into())),
        ],
        ..SandboxOptions::default()
    });
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    // Someone swaps templates by hand while the jails are stopped.
    env.tear_down_for_manual_change(|store| {
        std::fs::rename(store.join("mroot"), store.join("mroot.manual")).unwrap();
        std::fs::rename(store.join("mroot.3"), store.join("mroot")).unwrap();
    });
    let before = env.before("mroot.manual");
    let refused = env.run(&["upgrade", "--to", "mroot.manual"]);
    assert_eq!(code(&refused), 65, "{}", describe(&refused));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("changed by hand") && text.contains("--adopt"),
        "{text}"
    );
    assert_eq!(env.store_entries(), before.store);
    let adopted = env.run(&["upgrade", "--to", "mroot.manual", "--adopt"]);
    assert_eq!(code(&adopted), 0, "{}", describe(&adopted));
    assert_eq!(env.assert_invariant(&before, "adopted"), Arrangement::New);
}
