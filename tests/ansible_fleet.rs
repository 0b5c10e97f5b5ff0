//! Ansible over a fleet: the collection jailswap.jailswap (its modules and
//! its rolling_upgrade playbook), run by real ansible-core against
//! simulated hosts. Each host is a sandbox of its own (real bind mounts,
//! jails running the built-in service, its own configuration and journal)
//! reached with `ansible_connection=local`; the inventory gives each host
//! its configuration file.
//!
//! The test thread enters one private mount namespace before it mounts
//! anything; the ansible processes it starts, and the jailswap they run,
//! inherit it. The modules find jailswap through PATH, which starts with
//! the directory of the executable under test. ansible-core is taken from
//! PATH, else from target/ci-venv (which `.ci/run` creates).

mod common;
mod fleet;

use common::{Arrangement, Before};
use fleet::{history, snapshot, Fleet, Snapshot, TARGET};
use serde_json::{json, Value};
use std::time::Instant;

const HOSTS: usize = 5;
/// The host whose staged template has no VERSION: its service answers 500,
/// so the health checks fail and the upgrade rolls back.
const BROKEN: usize = 2;
const REASON: &str = "fleet rollout of 20240601";

// Rolling a template over five hosts one at a time: check mode plans every
// host and changes none; the real run commits the hosts before the broken
// one, rolls the broken one back, never touches the hosts after it and
// fails; a second run over the committed hosts changes nothing.
#[test]
fn rolling_upgrade_over_a_fleet_stops_at_the_first_failure() {
    let started = Instant::now();
    let mut fleet = Fleet::new(HOSTS, |index| (index != BROKEN).then(|| "2.0".to_string()));
    let variables = json!({"jailswap_to": TARGET, "jailswap_serial": 1, "jailswap_reason": REASON});
    let before: Vec<Before> = fleet.hosts.iter().map(|h| h.before(TARGET)).collect();
    let initial: Vec<Snapshot> = fleet.hosts.iter().map(snapshot).collect();
    for (index, snapshot) in initial.iter().enumerate() {
        assert!(
            snapshot.answers.iter().all(|a| a.as_deref() == Ok("1.0")),
            "host{index} does not start on 1.0: {snapshot:?}"
        );
    }

    // Check mode: every host reports the upgrade it would make, none changes.
    let check = fleet.playbook(&["--check", "--diff"], variables.clone());
    assert_eq!(check.code, 0, "check mode failed:\n{}", check.output);
    for (index, host) in fleet.hosts.iter().enumerate() {
        let name = Fleet::name(index);
        let result = check.one(&name, "jailswap.jailswap.upgrade");
        assert_eq!(result["status"], "ok", "{name}: {result}");
        let result = &result["result"];
        assert_eq!(result["changed"], true, "{name}: {result}");
        assert_eq!(result["outcome"], "planned", "{name}: {result}");
        assert_eq!(result["to"], TARGET, "{name}: {result}");
        assert_eq!(result["id"], Value::Null, "{name}: {result}");
        let from = result["from"].as_str().unwrap_or("");
        assert!(
            from.starts_with("mroot.") && from != TARGET,
            "{name}: {result}"
        );
        assert_eq!(
            result["diff"]["before"],
            format!("live: {from}\n"),
            "{name}"
        );
        assert_eq!(
            result["diff"]["after"],
            format!("live: {TARGET}\n"),
            "{name}"
        );
        let steps = result["diff"]["prepared"].as_str().unwrap_or("");
        assert!(
            steps.contains("stop jail0")
                && steps.contains("rename")
                && steps.contains("start jail1"),
            "{name}: the diff lacks the plan's steps: {steps}"
        );
        assert_eq!(
            snapshot(host),
            initial[index],
            "{name}: check mode changed the host"
        );
        assert_eq!(history(host), Vec::<Value>::new(), "{name}: journal");
    }

    // The real run, one host at a time.
    let run = fleet.playbook(&[], variables.clone());
    assert_ne!(
        run.code, 0,
        "the rollout did not fail at host{BROKEN}:\n{}",
        run.output
    );
    for (index, host) in fleet.hosts.iter().enumerate() {
        let name = Fleet::name(index);
        let context = format!("{name} after the rollout");
        if index < BROKEN {
            let result = &run.one(&name, "jailswap.jailswap.upgrade")["result"];
            assert_eq!(result["changed"], true, "{context}: {result}");
            assert_eq!(result["outcome"], "committed", "{context}: {result}");
            assert_eq!(result["rc"], 0, "{context}: {result}");
            assert_eq!(result["to"], TARGET, "{context}: {result}");
            assert!(
                result["downtime_ms"].as_i64().is_some(),
                "{context}: {result}"
            );
            assert_eq!(
                host.assert_invariant(&before[index], &context),
                Arrangement::New
            );
            let status = host.json(&["status"]);
            assert_eq!(status["live"], TARGET, "{context}: {status}");
            assert_eq!(
                host.store_entries()
                    .get(status["previous"].as_str().unwrap_or("")),
                Some(&before[index].live_inode),
                "{context}: the outgoing template is not the previous one: {status}"
            );
            let history = history(host);
            assert_eq!(history.len(), 1, "{context}: {history:?}");
            assert_eq!(history[0]["outcome"], "committed", "{context}");
            assert_eq!(history[0]["to"], TARGET, "{context}");
            assert_eq!(history[0]["reason"], REASON, "{context}");
            assert_eq!(history[0]["id"], result["id"], "{context}");
        } else if index == BROKEN {
            let record = run.one(&name, "jailswap.jailswap.upgrade");
            assert_eq!(record["status"], "failed", "{context}: {record}");
            let result = &record["result"];
            assert_eq!(result["outcome"], "rolled_back", "{context}: {result}");
            assert_eq!(result["rc"], 1, "{context}: {result}");
            assert_eq!(result["changed"], false, "{context}: {result}");
            let msg = result["msg"].as_str().unwrap_or("");
            let config = host.sandbox.config.display();
            for expected in [
                "rolled back",
                "answered 500",
                &format!("jailswap -c {config} status"),
                &format!("jailswap -c {config} show {}", result["id"]),
            ] {
                assert!(
                    msg.contains(expected),
                    "{context}: {expected:?} not in {msg:?}"
                );
            }
            assert_eq!(
                host.assert_invariant(&before[index], &context),
                Arrangement::Old
            );
            let history = history(host);
            assert_eq!(history.len(), 1, "{context}: {history:?}");
            assert_eq!(history[0]["outcome"], "rolled_back", "{context}");
            assert_eq!(history[0]["to"], TARGET, "{context}");
        } else {
            assert!(
                !run.touched(&name),
                "{context}: the rollout went on past the failed batch:\n{}",
                run.output
            );
            assert_eq!(history(host), Vec::<Value>::new(), "{context}: journal");
            assert_eq!(
                snapshot(host),
                initial[index],
                "{context}: an untouched host changed"
            );
            assert_eq!(
                host.assert_invariant(&before[index], &context),
                Arrangement::Old
            );
        }
    }

    // Again over the committed hosts: nothing to do, nothing restarted.
    let committed: Vec<Snapshot> = fleet.hosts[..BROKEN].iter().map(snapshot).collect();
    let limit = (0..BROKEN).map(Fleet::name).collect::<Vec<_>>().join(",");
    let again = fleet.playbook(&["--limit", &limit, "--diff"], variables);
    assert_eq!(again.code, 0, "second run failed:\n{}", again.output);
    for (index, host) in fleet.hosts[..BROKEN].iter().enumerate() {
        let name = Fleet::name(index);
        let result = &again.one(&name, "jailswap.jailswap.upgrade")["result"];
        assert_eq!(result["changed"], false, "{name}: {result}");
        assert_eq!(result["outcome"], "already_live", "{name}: {result}");
        assert_eq!(result["rc"], 0, "{name}: {result}");
        let now = snapshot(host);
        assert_eq!(now.pids, committed[index].pids, "{name}: jails restarted");
        assert_eq!(now.store, committed[index].store, "{name}: store changed");
        assert_eq!(history(host).len(), 1, "{name}: journal");
    }

    // The info module reports each host as jailswap status does.
    let info = fleet.ansible(
        "ansible",
        &[
            "fleet",
            "-m",
            "jailswap.jailswap.info",
            "-a",
            "config={{ jailswap_config }}",
        ],
    );
    assert_eq!(info.code, 0, "info failed:\n{}", info.output);
    for (index, host) in fleet.hosts.iter().enumerate() {
        let name = Fleet::name(index);
        let result = &info.one(&name, "jailswap.jailswap.info")["result"];
        assert_eq!(result["changed"], false, "{name}: {result}");
        let status = host.json(&["status"]);
        assert_eq!(
            result["jailswap"]["live"], status["live"],
            "{name}: {result}"
        );
        assert_eq!(
            result["jailswap"]["live"] == TARGET,
            index < BROKEN,
            "{name}: {result}"
        );
        assert_eq!(result["jailswap"]["pending"], Value::Null, "{name}");
        assert_eq!(
            result["jailswap"]["jails"].as_array().map(Vec::len),
            Some(2),
            "{name}: {result}"
        );
    }
    eprintln!(
        "fleet of {HOSTS} hosts: {} ansible runs in {:.1} s",
        fleet.runs,
        started.elapsed().as_secs_f64()
    );
}

// The upgrade module fails with what to run when a transaction needs an
// operator, with jailswap's own message when jailswap refuses (a pending
// transaction, a template that is not there), and refuses a batch size
// without a rolling upgrade before running jailswap at all.
#[test]
fn upgrade_module_reports_what_jailswap_refuses() {
    let mut fleet = Fleet::new(1, |_| Some("2.0".to_string()));
    let config = fleet.hosts[0].sandbox.config.display().to_string();
    let upgrade = |to: &str, extra: Value| {
        let mut arguments = json!({"to": to, "config": config});
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            arguments[key] = value;
        }
        arguments.to_string()
    };

    // The jail cannot start on either template: neither direction completes.
    let marker = fleet.hosts[0].dir.path().join("fail-start.jail0");
    std::fs::write(&marker, "").expect("marker");
    let stuck_arguments = upgrade(TARGET, json!({}));
    let stuck = fleet.ansible(
        "ansible",
        &[
            "host0",
            "-m",
            "jailswap.jailswap.upgrade",
            "-a",
            &stuck_arguments,
        ],
    );
    assert_ne!(stuck.code, 0, "{}", stuck.output);
    let record = stuck.one("host0", "jailswap.jailswap.upgrade");
    assert_eq!(record["status"], "failed", "{record}");
    let result = &record["result"];
    assert_eq!(result["outcome"], "needs_operator", "{result}");
    assert_eq!(result["rc"], 2, "{result}");
    let msg = result["msg"].as_str().unwrap_or("");
    for expected in [
        "needs operator",
        "start jail jail0",
        &format!("jailswap -c {config} status"),
        &format!("jailswap -c {config} recover"),
    ] {
        assert!(msg.contains(expected), "{expected:?} not in {msg:?}");
    }
    let status = fleet.hosts[0].json(&["status"]);
    assert_eq!(status["pending"], result["id"], "{status}");

    // While it is pending, jailswap refuses (75) and the task says why.
    let busy = fleet.ansible(
        "ansible",
        &[
            "host0",
            "-m",
            "jailswap.jailswap.upgrade",
            "-a",
            &stuck_arguments,
        ],
    );
    let result = &busy.one("host0", "jailswap.jailswap.upgrade")["result"];
    assert_eq!(result["rc"], 75, "{result}");
    assert_eq!(result["outcome"], Value::Null, "{result}");
    let msg = result["msg"].as_str().unwrap_or("");
    assert!(
        msg.contains("exit 75") && msg.contains("is pending") && msg.contains("jailswap recover"),
        "{msg}"
    );

    // Once the cause is fixed, recover finishes it (rolled back).
    std::fs::remove_file(&marker).expect("marker");
    let recovered = fleet.hosts[0].run(&["recover"]);
    assert_eq!(
        common::code(&recovered),
        1,
        "{}",
        common::describe(&recovered)
    );
    let before = fleet.hosts[0].before(TARGET);
    let journal_before = history(&fleet.hosts[0]);

    // A template that is not in the store: jailswap's message, nothing changed.
    let missing_arguments = upgrade("mroot.missing", json!({}));
    let missing = fleet.ansible(
        "ansible",
        &[
            "host0",
            "-m",
            "jailswap.jailswap.upgrade",
            "-a",
            &missing_arguments,
        ],
    );
    let result = &missing.one("host0", "jailswap.jailswap.upgrade")["result"];
    assert_eq!(result["rc"], 65, "{result}");
    assert_eq!(result["changed"], false, "{result}");
    let msg = result["msg"].as_str().unwrap_or("");
    assert!(
        msg.contains("exit 65") && msg.contains("there is no template \"mroot.missing\""),
        "{msg}"
    );

    // A batch size without a rolling upgrade is refused by the module.
    let batch_arguments = upgrade(TARGET, json!({"batch": "2"}));
    let batch = fleet.ansible(
        "ansible",
        &[
            "host0",
            "-m",
            "jailswap.jailswap.upgrade",
            "-a",
            &batch_arguments,
        ],
    );
    let record = batch.one("host0", "jailswap.jailswap.upgrade");
    assert_eq!(record["status"], "failed", "{record}");
    let result = &record["result"];
    assert!(
        result["msg"]
            .as_str()
            .unwrap_or("")
            .contains("rolling=true"),
        "{result}"
    );
    assert_eq!(
        history(&fleet.hosts[0]),
        journal_before,
        "the journal changed"
    );
    assert_eq!(
        fleet.hosts[0].assert_invariant(&before, "after the refusals"),
        Arrangement::Old
    );
}

// With two hosts a batch, a batch that half failed stops the rollout at
// the default jailswap_max_fail_percentage of 0, and does not at 50; the
// hosts outside jailswap_hosts are never touched.
#[test]
fn max_fail_percentage_decides_whether_the_rollout_goes_on() {
    let mut fleet = Fleet::new(HOSTS, |index| (index != BROKEN).then(|| "2.0".to_string()));
    let before: Vec<Before> = fleet.hosts.iter().map(|h| h.before(TARGET)).collect();
    let last = HOSTS - 1;

    // Batches host0+host1, host2+host3, host4: the second half failed.
    let strict = fleet.playbook(&[], json!({"jailswap_to": TARGET, "jailswap_serial": 2}));
    assert_ne!(strict.code, 0, "{}", strict.output);
    for (index, host) in fleet.hosts.iter().enumerate() {
        let context = format!("host{index} at max_fail_percentage 0");
        let expected = match index {
            BROKEN => Arrangement::Old,
            i if i == last => Arrangement::Old,
            _ => Arrangement::New,
        };
        assert_eq!(host.assert_invariant(&before[index], &context), expected);
    }
    assert!(
        !strict.touched(&Fleet::name(last)),
        "the rollout went on past a batch that half failed:\n{}",
        strict.output
    );
    assert_eq!(history(&fleet.hosts[last]), Vec::<Value>::new());

    // Again at 50%, without host0 and host1: host2 fails again, host4 goes on.
    let tolerant = fleet.playbook(
        &[],
        json!({"jailswap_to": TARGET, "jailswap_serial": 2, "jailswap_max_fail_percentage": 50,
               "jailswap_hosts": "host2:host3:host4"}),
    );
    assert_ne!(
        tolerant.code, 0,
        "a failed host must fail the run:\n{}",
        tolerant.output
    );
    for index in 0..BROKEN {
        assert!(
            !tolerant.touched(&Fleet::name(index)),
            "{}",
            tolerant.output
        );
    }
    assert_eq!(
        tolerant.one("host3", "jailswap.jailswap.upgrade")["result"]["outcome"],
        "already_live"
    );
    let result = &tolerant.one(&Fleet::name(last), "jailswap.jailswap.upgrade")["result"];
    assert_eq!(result["outcome"], "committed", "{result}");
    for (index, host) in fleet.hosts.iter().enumerate() {
        let context = format!("host{index} at max_fail_percentage 50");
        let expected = if index == BROKEN {
            Arrangement::Old
        } else {
            Arrangement::New
        };
        assert_eq!(host.assert_invariant(&before[index], &context), expected);
        let outcomes: Vec<Value> = history(host).iter().map(|t| t["outcome"].clone()).collect();
        let wanted = if index == BROKEN {
            vec![json!("rolled_back"), json!("rolled_back")]
        } else {
            vec![json!("committed")]
        };
        assert_eq!(outcomes, wanted, "{context}");
    }
}

// The upgrade module with rolling=true restarts a host's jails a batch at a
// time: on a good template every batch commits; on a broken one the canary
// fails and only the canary restarts.
#[test]
fn upgrade_module_rolls_a_hosts_jails_a_batch_at_a_time() {
    let mut fleet = Fleet::new(2, |index| (index == 0).then(|| "2.0".to_string()));
    let before: Vec<Before> = fleet.hosts.iter().map(|h| h.before(TARGET)).collect();
    let pids: Vec<_> = fleet.hosts.iter().map(|h| h.sandbox.pids()).collect();
    let arguments =
        json!({"to": TARGET, "config": "{{ jailswap_config }}", "rolling": true, "batch": "1"})
            .to_string();
    let run = fleet.ansible(
        "ansible",
        &["fleet", "-m", "jailswap.jailswap.upgrade", "-a", &arguments],
    );
    assert_ne!(
        run.code, 0,
        "the broken host must fail the run:\n{}",
        run.output
    );

    let good = &fleet.hosts[0];
    let record = run.one("host0", "jailswap.jailswap.upgrade");
    assert_eq!(record["status"], "ok", "{record}");
    let result = &record["result"];
    assert_eq!(result["outcome"], "committed", "{result}");
    assert_eq!(result["rc"], 0, "{result}");
    let shown = good.json(&["show", &result["id"].to_string()]);
    assert!(
        shown["command_line"]
            .as_str()
            .is_some_and(|line| line.contains("--rolling --batch 1")),
        "{shown}"
    );
    let batches: Vec<(String, u64)> = shown["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["action"] == "start" && step["phase"] == "forward")
        .map(|step| {
            (
                step["jail"].as_str().unwrap_or("").to_string(),
                step["batch"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        batches,
        vec![("jail0".to_string(), 1), ("jail1".to_string(), 2)],
        "{shown}"
    );
    assert_eq!(
        good.assert_invariant(&before[0], "host0 after the rolling upgrade"),
        Arrangement::New
    );

    let broken = &fleet.hosts[1];
    let record = run.one("host1", "jailswap.jailswap.upgrade");
    assert_eq!(record["status"], "failed", "{record}");
    let result = &record["result"];
    assert_eq!(result["outcome"], "rolled_back", "{result}");
    assert_eq!(result["rc"], 1, "{result}");
    assert_eq!(
        broken.assert_invariant(&before[1], "host1 after its canary failed"),
        Arrangement::Old
    );
    let now = broken.sandbox.pids();
    assert_ne!(now["jail0"], pids[1]["jail0"], "the canary did not restart");
    assert_eq!(
        now["jail1"], pids[1]["jail1"],
        "a jail outside the canary restarted"
    );
}
