//! Rolling upgrades on real bind mounts: the real `jailswap` executable
//! restarts the sandbox's jails a batch at a time, each jail running the
//! built-in HTTP service, in the test thread's private mount namespace.
//!
//! What a client would see is checked with the services themselves: the
//! VERSION each answers (the template it runs on), and the pid each writes
//! to `run/<jail>.pid`, which changes when, and only when, the jail
//! restarts. Kills at the batch boundaries use `JAILSWAP_KILL_AT`; the
//! simulated enumeration (tests/rolling_simulated.rs) covers every other
//! crash point at far less cost.
//!
//! The file is long because its checks of a paused host (`assert_paused`)
//! and its kills at the batch boundaries serve every test in it.

mod common;

use common::{code, describe, Arrangement, Before, Env};
use jailswap::sandbox::SandboxOptions;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

const TARGET: &str = "mroot.2";

fn sandbox(jails: usize, staged: Option<&str>) -> Env {
    Env::new(SandboxOptions {
        jails,
        health_timeout: "2s".into(),
        staged: vec![(TARGET.into(), staged.map(str::to_string))],
        ..SandboxOptions::default()
    })
}

fn names(jails: &[&str]) -> Vec<String> {
    jails.iter().map(|jail| jail.to_string()).collect()
}

/// Runs jailswap with `--json` and returns its exit code and its JSON.
fn json_run(env: &Env, arguments: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["--json"];
    all.extend_from_slice(arguments);
    let output = env.run(&all);
    let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (code(&output), value, describe(&output))
}

/// Whether a rolling upgrade is pending and paused.
fn still_paused(env: &Env) -> bool {
    env.json(&["status"])["pending_detail"]["state"] == "paused"
}

/// What each jail's service answers now.
fn answers(env: &Env) -> BTreeMap<String, Result<String, String>> {
    env.sandbox
        .jails
        .iter()
        .map(|(name, port)| (name.clone(), env.sandbox.ask(*port)))
        .collect()
}

/// The pids of the jails in `jails`.
fn pids_of(env: &Env, jails: &[String]) -> BTreeMap<String, u32> {
    env.sandbox
        .pids()
        .into_iter()
        .filter(|(name, _)| jails.contains(name))
        .collect()
}

/// Checks a paused rolling upgrade on the real host: pending as `paused`;
/// the store swapped; each jail running, its template read-only and its
/// data read-write, on the new template if it is in `moved` and on the old
/// one otherwise, answering that template's VERSION; `status` naming the
/// archived template for exactly the jails that did not move.
fn assert_paused(env: &Env, before: &Before, moved: &[String], context: &str) {
    let status = env.json(&["status"]);
    assert_eq!(
        status["pending_detail"]["state"], "paused",
        "{context}: {status}"
    );
    assert_eq!(
        env.inode("mroot"),
        Some(before.target_inode),
        "{context}: the names are swapped while paused"
    );
    let archive = env
        .store_entries()
        .into_iter()
        .find(|(_, inode)| *inode == before.live_inode)
        .map(|(name, _)| name)
        .unwrap_or_else(|| panic!("{context}: the old template is gone"));
    // status names each template as the upgrade will leave it, and each
    // jail by the template it runs on.
    assert_eq!(status["live"], before.target, "{context}: {status}");
    assert_eq!(status["previous"], archive.as_str(), "{context}: {status}");
    assert!(status["drift"].is_null(), "{context}: {status}");
    for jail in status["jails"].as_array().unwrap() {
        let name = jail["name"].as_str().unwrap().to_string();
        let expected = if moved.contains(&name) {
            before.target.as_str()
        } else {
            archive.as_str()
        };
        assert_eq!(jail["template"], expected, "{context}: {jail}");
    }
    let mounts = env.mounts();
    assert_eq!(
        mounts.len(),
        2 * env.sandbox.jails.len(),
        "{context}: {mounts:?}"
    );
    let answers = answers(env);
    for (name, _) in &env.sandbox.jails {
        let root = env.store().join(name);
        let moved = moved.contains(name);
        let (inode, version) = if moved {
            (before.target_inode, &before.target_version)
        } else {
            (before.live_inode, &before.live_version)
        };
        assert_eq!(
            std::fs::metadata(&root).map(|m| m.ino()).ok(),
            Some(inode),
            "{context}: jail {name} runs on the wrong template (moved: {moved})"
        );
        assert!(
            mounts.iter().any(|(point, _, ro)| *point == root && *ro),
            "{context}: {name}: template not mounted read-only"
        );
        assert!(
            mounts
                .iter()
                .any(|(point, _, ro)| *point == root.join("s") && !*ro),
            "{context}: {name}: data not mounted read-write"
        );
        assert!(env.running(name), "{context}: jail {name} is not running");
        assert_eq!(
            answers[name].as_deref(),
            Ok(version.as_str()),
            "{context}: jail {name} answers"
        );
        let listed = status["jails"]
            .as_array()
            .and_then(|jails| jails.iter().find(|jail| jail["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{context}: status lists no {name}: {status}"));
        assert_eq!(
            listed["template"] == archive.as_str(),
            !moved,
            "{context}: status names the template {name} runs on: {status}"
        );
    }
    assert_eq!(env.data(), before.data, "{context}: per-jail data changed");
}

/// Waits until the jail's service no longer runs.
fn wait_stopped(env: &Env, jail: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.running(jail) {
        assert!(Instant::now() < deadline, "jail {jail} did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a jail's service with SIGKILL, as a crash inside the jail would.
fn kill_service(env: &Env, jail: &str) {
    let pid = env.sandbox.pids()[jail];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the service");
    wait_stopped(env, jail);
}

// The canary fails its health check: only the canary restarts (twice), every other service keeps its pid.
#[test]
fn a_failing_canary_restarts_only_the_canary() {
    let env = sandbox(4, None);
    let before = env.before(TARGET);
    let others = names(&["jail1", "jail2", "jail3"]);
    let pids = env.sandbox.pids();
    let (exit, result, output) = json_run(&env, &["upgrade", "--to", TARGET, "--rolling"]);
    assert_eq!(exit, 1, "{output}");
    assert_eq!(result["outcome"], "rolled_back", "{output}");
    assert_eq!(
        env.assert_invariant(&before, "after the canary failed"),
        Arrangement::Old
    );
    let after = env.sandbox.pids();
    assert_ne!(after["jail0"], pids["jail0"], "the canary did not restart");
    assert_eq!(
        pids_of(&env, &others),
        others.iter().map(|j| (j.clone(), pids[j])).collect(),
        "a jail outside the canary restarted"
    );
    // The journal: only the canary's steps ran, and the rollback restarted
    // only the canary.
    let steps = result["steps"].as_array().expect("steps");
    for step in steps {
        let jail = step["jail"].as_str();
        if step["state"] != "planned" {
            assert!(
                jail.is_none() || jail == Some("jail0"),
                "a step of another jail ran: {step}"
            );
        }
    }
    let downtime = &result["downtime_jails"];
    assert_eq!(
        downtime
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["jail0".to_string()]),
        "only the canary was down: {downtime}"
    );
}

/// Starts a rolling upgrade of three batches (jail0, then jail1 and jail2,
/// then jail3) that pauses after the canary, and checks the pause.
fn paused_after_the_canary(env: &Env) -> (Before, BTreeMap<String, u32>) {
    let before = env.before(TARGET);
    let pids = env.sandbox.pids();
    let (exit, result, output) = json_run(
        env,
        &[
            "upgrade",
            "--to",
            TARGET,
            "--rolling",
            "--batch",
            "1,50%",
            "--pause-after",
            "1",
        ],
    );
    assert_eq!(exit, 0, "{output}");
    assert_eq!(result["outcome"], "paused", "{output}");
    let batches: BTreeMap<String, u64> = result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["action"] == "stop" && step["phase"] == "forward")
        .map(|step| {
            (
                step["jail"].as_str().unwrap_or("").to_string(),
                step["batch"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        batches,
        [("jail0", 1), ("jail1", 2), ("jail2", 2), ("jail3", 3)]
            .into_iter()
            .map(|(jail, batch)| (jail.to_string(), batch))
            .collect(),
        "{output}"
    );
    assert_paused(env, &before, &names(&["jail0"]), "paused after the canary");
    let unmoved = names(&["jail1", "jail2", "jail3"]);
    let after = env.sandbox.pids();
    assert_ne!(after["jail0"], pids["jail0"], "the canary did not restart");
    for jail in &unmoved {
        assert_eq!(after[jail], pids[jail], "{jail} restarted before its batch");
    }
    (before, pids)
}

// Paused after the canary, a bare recover changes nothing (75), upgrades refuse (75); --resume commits.
#[test]
fn pause_then_resume() {
    let env = sandbox(4, Some("2.0"));
    let (before, pids) = paused_after_the_canary(&env);
    let canary = env.sandbox.pids()["jail0"];

    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 75, "{}", describe(&recovered));
    let stderr = String::from_utf8_lossy(&recovered.stderr);
    assert!(
        stderr.contains("recover --resume") && stderr.contains("recover --rollback"),
        "a bare recover says how to continue or undo: {stderr}"
    );
    let refused = env.run(&["upgrade", "--to", TARGET]);
    assert_eq!(code(&refused), 75, "{}", describe(&refused));
    let refused = env.run(&["rollback"]);
    assert_eq!(code(&refused), 75, "{}", describe(&refused));
    assert_paused(
        &env,
        &before,
        &names(&["jail0"]),
        "after a bare recover and refused commands",
    );
    assert_eq!(env.sandbox.pids()["jail0"], canary, "the canary restarted");

    let (exit, result, output) = json_run(&env, &["recover", "--resume"]);
    assert_eq!(exit, 0, "{output}");
    assert_eq!(result["outcome"], "committed", "{output}");
    assert_eq!(
        env.assert_invariant(&before, "after --resume"),
        Arrangement::New
    );
    let after = env.sandbox.pids();
    assert_eq!(
        after["jail0"], canary,
        "--resume restarted the canary again"
    );
    for jail in ["jail1", "jail2", "jail3"] {
        assert_ne!(after[jail], pids[jail], "{jail} did not restart");
    }
}

// Paused after the canary, --rollback restarts the canary on the old template; the others never restart.
#[test]
fn pause_then_roll_back() {
    let env = sandbox(4, Some("2.0"));
    let (before, pids) = paused_after_the_canary(&env);
    let canary = env.sandbox.pids()["jail0"];
    let (exit, result, output) = json_run(&env, &["recover", "--rollback"]);
    assert_eq!(exit, 1, "{output}");
    assert_eq!(result["outcome"], "rolled_back", "{output}");
    // history's cause says who undid it.
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|cause| cause.contains("recover --rollback")),
        "{output}"
    );
    assert_eq!(
        env.assert_invariant(&before, "after --rollback"),
        Arrangement::Old
    );
    let after = env.sandbox.pids();
    assert_ne!(after["jail0"], canary, "the canary did not go back");
    for jail in ["jail1", "jail2", "jail3"] {
        assert_eq!(after[jail], pids[jail], "{jail} restarted");
    }
}

// Paused, then a jail dies (one that moved, or one that did not): a bare recover rolls back, every jail on the old template.
#[test]
fn pause_then_a_jail_dies_then_recover_rolls_back() {
    for dead in ["jail0", "jail2"] {
        let env = sandbox(4, Some("2.0"));
        let (before, pids) = paused_after_the_canary(&env);
        kill_service(&env, dead);
        let (exit, result, output) = json_run(&env, &["recover"]);
        let context = format!("paused, {dead} died, then recover");
        assert_eq!(exit, 1, "{context}: {output}");
        assert_eq!(result["outcome"], "rolled_back", "{context}: {output}");
        // history's cause names the jail that disturbed the pause.
        assert!(
            result["error"]
                .as_str()
                .is_some_and(|cause| cause.contains("paused upgrade was disturbed")
                    && cause.contains(&format!("jail {dead} "))),
            "{context}: {output}"
        );
        assert_eq!(env.assert_invariant(&before, &context), Arrangement::Old);
        // The jails that neither moved nor died kept running throughout.
        let after = env.sandbox.pids();
        for jail in ["jail1", "jail2", "jail3"] {
            if jail != dead {
                assert_eq!(after[jail], pids[jail], "{context}: {jail} restarted");
            }
        }
    }
}

/// Makes the sandbox's jails a chain: jail1 depends on jail0, jail2 on jail1.
fn chain(env: &Env) {
    let path = &env.sandbox.config;
    let mut text = std::fs::read_to_string(path).expect("configuration");
    for (jail, on) in [("jail1", "jail0"), ("jail2", "jail1")] {
        let line = format!("name = \"{jail}\"\n");
        assert!(text.contains(&line), "{text}");
        text = text.replace(&line, &format!("{line}depends = [\"{on}\"]\n"));
    }
    std::fs::write(path, text).expect("configuration");
}

/// The steps of `kind` that ran forward, as (jail, started, finished).
fn times(result: &Value, kind: &str) -> Vec<(String, String, String)> {
    result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["action"] == kind && step["phase"] == "forward")
        .map(|step| {
            (
                step["jail"].as_str().unwrap_or("").to_string(),
                step["started_at"].as_str().unwrap_or("").to_string(),
                step["finished_at"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Asserts that the steps of `kind` of `jails` ran one after another in
/// that order, each finished before the next began.
fn assert_in_order(result: &Value, kind: &str, jails: &[&str]) {
    let steps = times(result, kind);
    let ordered: Vec<&(String, String, String)> = jails
        .iter()
        .map(|jail| {
            steps
                .iter()
                .find(|(name, _, _)| name == jail)
                .unwrap_or_else(|| panic!("no {kind} of {jail}: {steps:?}"))
        })
        .collect();
    for pair in ordered.windows(2) {
        assert!(
            pair[0].2 <= pair[1].1,
            "{kind} of {} must finish before {kind} of {} begins: {steps:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

// A two-level dependency chain: in one batch dependants stop first and start last; batch by batch, dependencies go first.
#[test]
fn a_dependency_chain_restarts_in_dependency_order() {
    let env = sandbox(3, Some("2.0"));
    chain(&env);
    let before = env.before(TARGET);
    let (exit, result, output) = json_run(
        &env,
        &["upgrade", "--to", TARGET, "--rolling", "--batch", "100%"],
    );
    assert_eq!(exit, 0, "{output}");
    assert_in_order(&result, "stop", &["jail2", "jail1", "jail0"]);
    assert_in_order(&result, "start", &["jail0", "jail1", "jail2"]);
    assert_eq!(env.assert_invariant(&before, "one batch"), Arrangement::New);

    // Back, one jail a batch: the dependency's batch comes first, and its
    // dependants keep serving while it restarts.
    let env = sandbox(3, Some("2.0"));
    chain(&env);
    let before = env.before(TARGET);
    let pids = env.sandbox.pids();
    let (exit, result, output) = json_run(
        &env,
        &[
            "upgrade",
            "--to",
            TARGET,
            "--rolling",
            "--batch",
            "1",
            "--pause-after",
            "1",
        ],
    );
    assert_eq!(exit, 0, "{output}");
    assert_paused(&env, &before, &names(&["jail0"]), "chain, after jail0");
    let after = env.sandbox.pids();
    assert_eq!(
        (after["jail1"], after["jail2"]),
        (pids["jail1"], pids["jail2"]),
        "the dependants restarted with their dependency"
    );
    let (exit, result_resumed, output) = json_run(&env, &["recover", "--resume"]);
    assert_eq!(exit, 0, "{output}");
    let mut batches: Vec<(u64, String)> = result_resumed["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["action"] == "start" && step["phase"] == "forward")
        .map(|step| {
            (
                step["batch"].as_u64().unwrap_or(0),
                step["jail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    batches.sort();
    assert_eq!(
        batches,
        vec![
            (1, "jail0".to_string()),
            (2, "jail1".to_string()),
            (3, "jail2".to_string())
        ]
    );
    assert_in_order(&result_resumed, "start", &["jail0", "jail1", "jail2"]);
    assert_eq!(
        env.assert_invariant(&before, "chain, resumed"),
        Arrangement::New
    );
    drop(result);
}

/// The journal commits of a clean run of `arguments` that lie at the batch
/// boundaries: the two renames' (the swap is the first boundary), each
/// batch's first intent and last completion, the pause and the final
/// commit; as `NAME:N`.
fn boundary_commits(arguments: &[&str]) -> Vec<String> {
    let env = sandbox(3, Some("2.0"));
    let mut all = vec!["--json"];
    all.extend_from_slice(arguments);
    let output = env.run(&all);
    let result: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", describe(&output)));
    // The waves that ran, in order, with their batch.
    let mut waves: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    for step in result["steps"].as_array().expect("steps") {
        if step["state"] == "done" {
            waves.insert(step["wave"].as_u64().expect("wave"), step["batch"].as_u64());
        }
    }
    let batches: Vec<Option<u64>> = waves.into_values().collect();
    // The two renames: before the swap, and the swap itself.
    let mut points = vec![
        "intent:1".to_string(),
        "completion:1".to_string(),
        "intent:2".to_string(),
        "completion:2".to_string(),
    ];
    for (index, batch) in batches.iter().enumerate() {
        let commit = index + 1;
        let first_of_batch = batch.is_some() && (index == 0 || batches[index - 1] != *batch);
        let last_of_batch = batch.is_some() && batches.get(index + 1) != Some(batch);
        if first_of_batch {
            points.push(format!("intent:{commit}"));
            if index > 0 {
                points.push(format!("completion:{}", commit - 1));
            }
        }
        if last_of_batch {
            points.push(format!("completion:{commit}"));
        }
    }
    points.push(match result["outcome"].as_str() {
        Some("paused") => "state:2".to_string(),
        _ => "finish:1".to_string(),
    });
    points.sort();
    points.dedup();
    points
}

/// Kills `arguments` at `kill_at`, recovers (resuming a pause), and
/// checks the paused invariant on the way and the whole invariant at the
/// end. Returns the arrangement and whether recovery left it paused.
fn kill_then_recover(
    arguments: &[&str],
    kill_at: &str,
    moved_at_pause: &[String],
) -> (Arrangement, bool) {
    let env = sandbox(3, Some("2.0"));
    let before = env.before(TARGET);
    let context = format!("{arguments:?} killed at {kill_at}");
    let child = env.spawn(arguments, &[("JAILSWAP_KILL_AT", kill_at)]);
    let output = child.wait_with_output().expect("wait for jailswap");
    assert_eq!(
        output.status.code(),
        None,
        "{context}: not killed: {}",
        describe(&output)
    );
    let status = env.json(&["status"]);
    if status["pending"].is_null() {
        let (exit, result, output) = json_run(&env, &["recover"]);
        assert_eq!(
            (exit, &result["outcome"]),
            (0, &Value::from("nothing_pending")),
            "{context}: {output}"
        );
        return (env.assert_invariant(&before, &context), false);
    }
    let refused = env.run(&["upgrade", "--to", TARGET]);
    assert_eq!(code(&refused), 75, "{context}: {}", describe(&refused));
    let (exit, _, output) = json_run(&env, &["recover"]);
    let paused = still_paused(&env);
    match exit {
        // Recovery finished the batches up to the pause and stopped there,
        // as the killed run would have (exit 0, outcome paused, as an
        // upgrade that pauses); or the pause was recorded already, and a
        // bare recover leaves it as it is (75).
        0 | 75 if paused => {
            assert_paused(
                &env,
                &before,
                moved_at_pause,
                &format!("{context}, recovered"),
            );
            let resumed = env.run(&["recover", "--resume"]);
            assert_eq!(code(&resumed), 0, "{context}: {}", describe(&resumed));
        }
        0 | 1 => {}
        other => panic!("{context}: recover exited {other}: {output}"),
    }
    (
        env.assert_invariant(&before, &format!("{context}, then recovered")),
        paused,
    )
}

// SIGKILL at every batch boundary of a rolling upgrade (before and after each commit), then recover.
#[test]
fn a_rolling_upgrade_killed_at_its_batch_boundaries_recovers() {
    let arguments = ["upgrade", "--to", TARGET, "--rolling", "--batch", "1"];
    let points = boundary_commits(&arguments);
    let mut seen = BTreeMap::new();
    for point in &points {
        for when in ["before", "after"] {
            let kill_at = format!("{point}:{when}");
            let (arrangement, paused) = kill_then_recover(&arguments, &kill_at, &[]);
            assert!(!paused, "{kill_at}: an upgrade without a pause paused");
            *seen.entry(format!("{arrangement:?}")).or_insert(0) += 1;
        }
    }
    eprintln!(
        "rolling upgrade: {} kill points at {points:?}: {seen:?}",
        2 * points.len()
    );
    // Before the swap it rolls back, after it forward.
    assert!(
        seen.contains_key("Old") && seen.contains_key("New"),
        "{seen:?}"
    );
    assert!(points.len() >= 7, "{points:?}");
}

// SIGKILL at the batch boundaries of a rolling upgrade that pauses after the canary, then recover (pausing again), then resume.
#[test]
fn a_paused_rolling_upgrade_killed_at_its_batch_boundaries_recovers() {
    let arguments = [
        "upgrade",
        "--to",
        TARGET,
        "--rolling",
        "--batch",
        "1",
        "--pause-after",
        "1",
    ];
    let points = boundary_commits(&arguments);
    let mut paused = 0;
    for point in &points {
        for when in ["before", "after"] {
            let kill_at = format!("{point}:{when}");
            let (_, stopped) = kill_then_recover(&arguments, &kill_at, &names(&["jail0"]));
            paused += usize::from(stopped);
        }
    }
    eprintln!(
        "paused rolling upgrade: {} kill points at {points:?}, {paused} recovered to the pause",
        2 * points.len()
    );
    assert!(paused >= 2, "no recovery stopped at the pause");
}

// SIGKILL of `recover --resume` at the boundaries of the batches it runs, then a bare recover finishes.
#[test]
fn a_resume_killed_at_its_batch_boundaries_recovers() {
    // The resume's commits: it counts itself, records what it observed,
    // sets the state, re-checks the canary (intent:1, completion:1), then
    // the second batch's six waves (intent:2 to completion:7).
    for kill_at in [
        "intent:1:after",
        "completion:1:after",
        "intent:2:before",
        "intent:2:after",
        "completion:7:after",
        "intent:8:after",
    ] {
        let env = sandbox(3, Some("2.0"));
        let before = env.before(TARGET);
        let output = env.run(&[
            "upgrade",
            "--to",
            TARGET,
            "--rolling",
            "--batch",
            "1",
            "--pause-after",
            "1",
        ]);
        assert_eq!(code(&output), 0, "{}", describe(&output));
        let context = format!("--resume killed at {kill_at}");
        let child = env.spawn(&["recover", "--resume"], &[("JAILSWAP_KILL_AT", kill_at)]);
        let output = child.wait_with_output().expect("wait for jailswap");
        assert_eq!(
            output.status.code(),
            None,
            "{context}: {}",
            describe(&output)
        );
        let recovered = env.run(&["recover"]);
        match code(&recovered) {
            0 if !still_paused(&env) => {}
            // Killed before the second batch began: still at the pause
            // (recovered to it, or left there).
            0 | 75 => {
                assert_paused(&env, &before, &names(&["jail0"]), &context);
                let resumed = env.run(&["recover", "--resume"]);
                assert_eq!(code(&resumed), 0, "{context}: {}", describe(&resumed));
            }
            other => panic!(
                "{context}: recover exited {other}: {}",
                describe(&recovered)
            ),
        }
        assert_eq!(
            env.assert_invariant(&before, &context),
            Arrangement::New,
            "{context}"
        );
    }
}
