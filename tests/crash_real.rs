//! Crash consistency on real mounts: jailswap is killed with SIGKILL at
//! every journal commit of an upgrade and of a rollback (before and after
//! the commit), at timed moments inside slow steps, and during recovery;
//! each time `recover` must restore the whole invariant of SPEC.md.

mod common;

use common::{Arrangement, Env};
use jailswap::sandbox::SandboxOptions;
use std::time::Duration;

/// The journal commits of a clean run, in order, as `NAME:N`.
fn commit_points(env: &Env, arguments: &[&str]) -> Vec<String> {
    // Learn the sequence from a clean run's journal: begin, the state
    // change, an intent and a completion per wave, finish.
    let output = env.run(
        &["--json"]
            .iter()
            .chain(arguments)
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        common::describe(&output)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let waves: std::collections::BTreeSet<u64> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "done")
        .filter_map(|s| s["wave"].as_u64())
        .collect();
    let mut points = vec!["begin:1".to_string(), "state:1".to_string()];
    for index in 1..=waves.len() {
        points.push(format!("intent:{index}"));
        points.push(format!("completion:{index}"));
    }
    points.push("finish:1".to_string());
    points
}

fn sweep(kind: &str) -> usize {
    // A throwaway sandbox to learn the commit sequence of this transaction.
    let points = {
        let env = Env::standard();
        if kind == "rollback" {
            assert_eq!(
                env.run(&["upgrade", "--to", "mroot.2"]).status.code(),
                Some(0)
            );
            commit_points(&env, &["rollback"])
        } else {
            commit_points(&env, &["upgrade", "--to", "mroot.2"])
        }
    };
    let mut covered = 0;
    let mut seen = std::collections::BTreeSet::new();
    for point in &points {
        for when in ["before", "after"] {
            if point == "begin:1" && when == "before" {
                continue; // Nothing has happened yet: covered by the bad-input tests.
            }
            let kill_at = format!("{point}:{when}");
            let env = Env::standard();
            let arguments: Vec<String> = if kind == "rollback" {
                assert_eq!(
                    env.run(&["upgrade", "--to", "mroot.2"]).status.code(),
                    Some(0)
                );
                vec!["rollback".into()]
            } else {
                vec!["upgrade".into(), "--to".into(), "mroot.2".into()]
            };
            let target = if kind == "rollback" {
                env.last_archive_name().unwrap()
            } else {
                "mroot.2".to_string()
            };
            let before = env.before(&target);
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            let arrangement = env.kill_and_recover(&arguments, Some(&kill_at), None, &before);
            assert!(arrangement.is_some(), "{kind} {kill_at}: not killed");
            seen.insert(arrangement);
            covered += 1;
        }
    }
    // Both directions were exercised: early kills roll back, late ones forward.
    assert!(
        seen.contains(&Some(Arrangement::Old)) && seen.contains(&Some(Arrangement::New)),
        "{kind}: {seen:?}"
    );
    covered
}

// SIGKILL at every journal commit of an upgrade, then recover.
#[test]
fn upgrade_killed_at_every_commit() {
    let covered = sweep("upgrade");
    eprintln!("upgrade: {covered} kill points covered");
    assert!(covered >= 20, "{covered}");
}

// SIGKILL at every journal commit of a rollback, then recover.
#[test]
fn rollback_killed_at_every_commit() {
    let covered = sweep("rollback");
    eprintln!("rollback: {covered} kill points covered");
    assert!(covered >= 20, "{covered}");
}

// SIGKILL at timed moments inside slow stops and starts, then recover.
#[test]
fn upgrade_killed_at_timed_moments() {
    let mut killed = 0;
    // Dense around 30-50 ms, where the stop commands are being spawned.
    for milliseconds in [
        5u64, 20, 30, 34, 38, 40, 42, 46, 50, 60, 80, 110, 140, 170, 200, 260, 320, 380,
    ] {
        let env = Env::new(SandboxOptions {
            start_delay: "150ms".into(),
            ..SandboxOptions::default()
        });
        std::fs::write(env.dir.path().join("stop-delay"), "0.1").unwrap();
        let before = env.before("mroot.2");
        if env
            .kill_and_recover(
                &["upgrade", "--to", "mroot.2"],
                None,
                Some(Duration::from_millis(milliseconds)),
                &before,
            )
            .is_some()
        {
            killed += 1;
        }
    }
    eprintln!("timed kills that hit a running upgrade: {killed}");
    assert!(
        killed >= 8,
        "only {killed} timed kills hit the upgrade while it ran"
    );
}

// A recovery killed at its own commits is finished by the next recovery.
#[test]
fn recovery_killed_then_recovered_again() {
    for recovery_kill in [
        "recovery_count:1:after",
        "observed:1:after",
        "intent:1:after",
        "completion:1:after",
        "finish:1:before",
    ] {
        let env = Env::standard();
        let before = env.before("mroot.2");
        // Die just after the swap, so the recovery has real work to do.
        let first = env.spawn(
            &["upgrade", "--to", "mroot.2"],
            &[("JAILSWAP_KILL_AT", "completion:5:after")],
        );
        assert_eq!(first.wait_with_output().unwrap().status.code(), None);
        let second = env.spawn(&["recover"], &[("JAILSWAP_KILL_AT", recovery_kill)]);
        let output = second.wait_with_output().unwrap();
        if output.status.code().is_some() {
            // The recovery finished before reaching that commit.
            env.assert_invariant(&before, &format!("recovery not killed at {recovery_kill}"));
            continue;
        }
        let recovered = env.run(&["recover"]);
        assert!(
            matches!(recovered.status.code(), Some(0 | 1)),
            "{recovery_kill}: {}",
            common::describe(&recovered)
        );
        env.assert_invariant(
            &before,
            &format!("recovery killed at {recovery_kill}, then recovered"),
        );
    }
}

// Two interrupted recoveries: the third rolls back, whatever the swap did.
#[test]
fn third_recovery_rolls_back() {
    let env = Env::standard();
    let before = env.before("mroot.2");
    let first = env.spawn(
        &["upgrade", "--to", "mroot.2"],
        &[("JAILSWAP_KILL_AT", "completion:6:after")],
    );
    assert_eq!(first.wait_with_output().unwrap().status.code(), None);
    for _ in 0..2 {
        let recovery = env.spawn(
            &["recover"],
            &[("JAILSWAP_KILL_AT", "recovery_count:1:after")],
        );
        assert_eq!(recovery.wait_with_output().unwrap().status.code(), None);
    }
    let status = env.json(&["status"]);
    assert!(
        status["pending_detail"]["direction"]
            .as_str()
            .unwrap_or("")
            .starts_with("back"),
        "{status}"
    );
    let recovered = env.run(&["recover"]);
    assert_eq!(
        recovered.status.code(),
        Some(1),
        "{}",
        common::describe(&recovered)
    );
    assert_eq!(
        env.assert_invariant(&before, "third recovery"),
        Arrangement::Old
    );
}
