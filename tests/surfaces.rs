//! What an operator reads: `status` (a transaction in progress or
//! interrupted, every template and its role, the exit code of a broken
//! store), `history` after a recovery, `check` refusing what `upgrade`
//! would refuse, and the small answers of the command line (limits, exit
//! codes, hints, quoting, help, completions, plan notes, the demo).

mod common;

use common::{code, describe, Env, PROGRAM};
use jailswap::sandbox::SandboxOptions;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The demo chooses free ports for its jails as the sandboxes here do, and a
/// port whose service a test has just stopped looks free: the sandboxes of
/// this file share the ports among themselves, the demo runs alone.
static PORTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A sandbox, with a share of the ports; the guard outlives the sandbox
/// when bound first: `let (_ports, env) = sandbox(...)`.
fn sandbox(options: SandboxOptions) -> (std::sync::RwLockReadGuard<'static, ()>, Env) {
    let ports = PORTS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (ports, Env::new(options))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `status --json` until `condition` holds (bounded by `limit`).
fn status_until(env: &Env, limit: Duration, condition: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = env.json(&["status"]);
        if condition(&status) {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "status never got there: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops one jail's service by hand, as an administrator would.
fn stop_by_hand(env: &Env, name: &str) {
    let output = Command::new(env.dir.path().join("svc"))
        .args(["stop", name, "0", "-"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

/// Replaces `from` with `to` in the sandbox's configuration.
fn edit_config(env: &Env, from: &str, to: &str) {
    let text = std::fs::read_to_string(&env.sandbox.config).unwrap();
    assert!(text.contains(from), "{from:?} not in the configuration");
    std::fs::write(&env.sandbox.config, text.replacen(from, to, 1)).unwrap();
}

// While an upgrade runs (slow stops), `status` names it in progress with its
// pid, command line, time and step, and `recover` is busy; once it is killed
// with SIGKILL, `status` says it was interrupted and what `recover` will do;
// after the recovery, `history` tells the downtime and the cause.
#[test]
fn status_tells_in_progress_from_interrupted() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    std::fs::write(env.dir.path().join("stop-delay"), "3").unwrap();
    let mut upgrade = env.spawn(
        &["upgrade", "--to", "mroot.2", "--reason", "slow stops"],
        &[],
    );
    let running = status_until(&env, Duration::from_secs(20), |status| {
        status["pending_detail"]["step"]
            .as_str()
            .is_some_and(|step| step.contains("stop jail"))
    });
    let detail = &running["pending_detail"];
    assert_eq!(detail["in_progress"], true, "{running}");
    assert_eq!(detail["pid"], upgrade.id(), "{running}");
    assert!(
        detail["command_line"]
            .as_str()
            .is_some_and(|line| line.contains("upgrade --to mroot.2 --reason 'slow stops'")),
        "{running}"
    );
    assert!(detail["run"].is_null(), "{running}");
    let text = env.run(&["status"]);
    assert_eq!(code(&text), 0, "{}", describe(&text));
    let shown = stdout(&text);
    assert!(
        shown.contains("in progress")
            && shown.contains(&format!("pid {}", upgrade.id()))
            && shown.contains("running `")
            && shown.contains(" s\n")
            && !shown.contains("jailswap recover"),
        "{shown}"
    );
    let busy = env.run(&["recover"]);
    assert_eq!(code(&busy), 75, "{}", describe(&busy));

    upgrade.kill().unwrap();
    assert_eq!(upgrade.wait().unwrap().code(), None);
    std::fs::remove_file(env.dir.path().join("stop-delay")).unwrap();
    let status = env.json(&["status"]);
    let detail = &status["pending_detail"];
    assert_eq!(detail["in_progress"], false, "{status}");
    assert!(detail["pid"].is_null(), "{status}");
    assert_eq!(detail["run"], "jailswap recover", "{status}");
    assert!(
        detail["direction"]
            .as_str()
            .is_some_and(|why| why.starts_with("back") && why.contains("swap")),
        "{status}"
    );
    let text = env.run(&["status"]);
    let shown = stdout(&text);
    assert!(
        shown.contains("interrupted")
            && shown.contains("direction: back")
            && shown.contains("run: jailswap recover"),
        "{shown}"
    );

    // Slow enough that the outage is plainly longer than the stops took.
    std::thread::sleep(Duration::from_millis(500));
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 1, "{}", describe(&recovered));
    let history = env.json(&["history"]);
    let record = &history[0];
    assert_eq!(record["outcome"], "rolled_back", "{record}");
    let downtime = record["downtime_ms"].as_i64().unwrap_or(0);
    assert!(downtime >= 500, "{record}");
    let cause = record["error"].as_str().unwrap_or("");
    assert!(
        cause.starts_with("interrupted during step") && cause.contains("recovery went back"),
        "{record}"
    );
    let text = stdout(&env.run(&["history"]));
    let row = text.lines().nth(1).unwrap_or("");
    assert!(
        row.contains(&format!("{downtime} ms")) && row.contains("interrupted during step"),
        "{text}"
    );
}

// A transaction killed after the swap and recovered forward keeps its
// story: `history` shows its downtime, and the interruption as its cause.
#[test]
fn history_tells_a_recovered_commit() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let killed = env.spawn(
        &["upgrade", "--to", "mroot.2", "--reason", "routine"],
        &[("JAILSWAP_KILL_AT", "completion:5:after")],
    );
    assert_eq!(killed.wait_with_output().unwrap().status.code(), None);
    let recovered = env.run(&["recover"]);
    assert_eq!(code(&recovered), 0, "{}", describe(&recovered));
    let record = &env.json(&["history"])[0];
    assert_eq!(record["outcome"], "committed", "{record}");
    let downtime = record["downtime_ms"].as_i64().expect("a downtime");
    let text = stdout(&env.run(&["history"]));
    let row = text.lines().nth(1).unwrap_or("");
    assert!(
        row.contains(&format!("{downtime} ms"))
            && row.contains("interrupted during step")
            && row.contains("recovery went forward"),
        "{text}"
    );
}

// A store without its live template is an error in the exit code too (2),
// and `check` refuses with the code `upgrade` gives.
#[test]
fn status_exits_2_when_the_live_template_is_missing() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    env.sandbox.tear_down();
    std::fs::rename(env.store().join("mroot"), env.store().join("mroot.moved")).unwrap();
    let output = env.run(&["status"]);
    assert_eq!(code(&output), 2, "{}", describe(&output));
    assert!(
        stdout(&output).contains("live      MISSING"),
        "{}",
        describe(&output)
    );
    let json = env.run(&["--json", "status"]);
    assert_eq!(code(&json), 2);
    let status: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(status["live"].is_null(), "{status}");
    let upgrade = env.run(&["upgrade", "--to", "mroot.2"]);
    let check = env.run(&["check"]);
    assert_eq!(code(&upgrade), 65, "{}", describe(&upgrade));
    assert_eq!(code(&check), code(&upgrade), "{}", describe(&check));
    assert!(
        stdout(&check).contains("FAILED  live template"),
        "{}",
        describe(&check)
    );
}

// `status` lists every template with its role; a template archived under
// another name is the previous one, `rollback` goes to it, and each jail's
// template is the label it went live under.
#[test]
fn status_lists_every_template_and_labels() {
    let (_ports, env) = sandbox(SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("3.0".into())),
        ],
        ..SandboxOptions::default()
    });
    let output = env.run(&["upgrade", "--to", "mroot.2", "--archive-as", "other.V5"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let roles = |status: &Value| -> Vec<(String, String, String)> {
        let mut found: Vec<_> = status["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["role"].as_str().unwrap().to_string(),
                    t["label"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let labelled = |status: &Value| -> Vec<String> {
        status["jails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["template"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    let triple = |name: &str, role: &str, label: &str| (name.into(), role.into(), label.into());
    let status = env.json(&["status"]);
    assert_eq!(status["live"], "mroot.2", "{status}");
    assert_eq!(status["previous"], "other.V5", "{status}");
    assert_eq!(status["store_kind"], "directory", "{status}");
    assert_eq!(
        roles(&status),
        vec![
            triple("mroot", "live", "mroot.2"),
            triple("mroot.3", "staged", "mroot.3"),
            triple("other.V5", "previous", "other.V5"),
        ],
        "{status}"
    );
    assert_eq!(labelled(&status), vec!["mroot.2"; 3], "{status}");
    for template in status["templates"].as_array().unwrap() {
        assert!(
            template["age_days"].as_i64().is_some_and(|days| days >= 0)
                && template["modified"].is_string()
                && template["id"].is_string(),
            "{template}"
        );
    }
    let live = status["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "live")
        .unwrap();
    assert!(
        live["fingerprint"]
            .as_str()
            .is_some_and(|f| f.contains("sha256 ")),
        "{live}"
    );
    let text = stdout(&env.run(&["status"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("other.V5") && l.contains("previous")),
        "{text}"
    );
    assert!(text.contains("previous  other.V5"), "{text}");

    let output = env.run(&["--json", "rollback"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["to"], "other.V5");
    let output = env.run(&["upgrade", "--to", "mroot.3"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let status = env.json(&["status"]);
    assert_eq!(
        roles(&status),
        vec![
            triple("mroot", "live", "mroot.3"),
            triple("mroot.2", "archived", "mroot.2"),
            triple("other.V5", "previous", "other.V5"),
        ],
        "{status}"
    );
    assert_eq!(labelled(&status), vec!["mroot.3"; 3], "{status}");
}

// `check` runs the preflight that needs no target and exits as `upgrade`
// would: a journal that cannot be created (74), a pending transaction (75),
// a status command that does not answer (65); a healthy host passes (0).
#[test]
fn check_refuses_what_upgrade_refuses() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let healthy = env.run(&["check"]);
    assert_eq!(code(&healthy), 0, "{}", describe(&healthy));

    let both = |what: &str, expected: i32| {
        let upgrade = env.run(&["upgrade", "--to", "mroot.2"]);
        let check = env.run(&["check"]);
        assert_eq!(code(&upgrade), expected, "{what}: {}", describe(&upgrade));
        assert_eq!(code(&check), expected, "{what}: {}", describe(&check));
        assert!(
            stdout(&check).contains("FAILED"),
            "{what}: {}",
            describe(&check)
        );
    };

    // The journal's directory would be made below a regular file.
    let blocker = env.dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let journal = env.sandbox.journal.display().to_string();
    let elsewhere = blocker.join("journal.sqlite").display().to_string();
    edit_config(&env, &journal, &elsewhere);
    both("journal under a file", 74);
    edit_config(&env, &elsewhere, &journal);

    // A jail's status command that outlives its timeout.
    let original = std::fs::read_to_string(&env.sandbox.config).unwrap();
    let status_line = original
        .lines()
        .find(|line| line.starts_with("status = "))
        .unwrap();
    edit_config(&env, status_line, "status = \"sleep 30\"\ntimeout = \"1s\"");
    both("status command hangs", 65);
    std::fs::write(&env.sandbox.config, &original).unwrap();

    // A transaction killed half-way is pending.
    let killed = env.spawn(
        &["upgrade", "--to", "mroot.2"],
        &[("JAILSWAP_KILL_AT", "completion:2:after")],
    );
    assert_eq!(killed.wait_with_output().unwrap().status.code(), None);
    let check = env.run(&["check"]);
    let upgrade = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&upgrade), 75, "{}", describe(&upgrade));
    assert_eq!(code(&check), 75, "{}", describe(&check));
    assert!(
        stdout(&check).contains("is pending"),
        "{}",
        describe(&check)
    );
}

// `history --limit 0` with transactions recorded says how many there are
// rather than that there are none.
#[test]
fn history_limit_zero_counts_what_it_hides() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let none = env.run(&["history", "--limit", "0"]);
    assert_eq!(stdout(&none).trim(), "no transactions recorded yet");
    for arguments in [&["upgrade", "--to", "mroot.2"][..], &["rollback"]] {
        let output = env.run(arguments);
        assert_eq!(code(&output), 0, "{}", describe(&output));
    }
    let output = env.run(&["history", "--limit", "0"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    assert_eq!(
        stdout(&output).trim(),
        "2 transaction(s) recorded; --limit 0 shows none of them"
    );
    assert_eq!(env.json(&["history", "--limit", "0"]), Value::Array(vec![]));
}

// A user who may not read the configuration gets 77 (permission), not 66
// (missing); a configuration that really is missing still gets 66.
#[test]
fn unreadable_config_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("jailswap.toml");
    std::fs::write(&config, "store = \"/nonexistent\"\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let as_nobody = |path: &std::path::Path| {
        Command::new(PROGRAM)
            .arg("-c")
            .arg(path)
            .arg("status")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let denied = as_nobody(&config);
    assert_eq!(code(&denied), 77, "{}", describe(&denied));
    assert!(
        stderr(&denied).contains("ermission"),
        "{}",
        describe(&denied)
    );
    let missing = as_nobody(&dir.path().join("absent.toml"));
    assert_eq!(code(&missing), 66, "{}", describe(&missing));
}

// A zero duration is a duration out of range, not "not a duration".
#[test]
fn zero_timeout_is_out_of_range() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    edit_config(
        &env,
        "[defaults]\ntimeout = \"20s\"",
        "[defaults]\ntimeout = \"0s\"",
    );
    let output = env.run(&["check"]);
    assert_eq!(code(&output), 78, "{}", describe(&output));
    let said = stderr(&output);
    assert!(
        said.contains("timeout")
            && said.contains("\"0s\" is out of range")
            && !said.contains("not a duration"),
        "{said}"
    );
}

// A configuration that is not text (a binary, a file in another encoding)
// is an invalid configuration (78) named as such, not a missing one.
#[test]
fn config_that_is_not_utf8_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jailswap.toml");
    std::fs::write(&config, b"store = \"/home/j\"\n# caf\xe9\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = Command::new(PROGRAM)
        .arg("-c")
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(code(&output), 78, "{}", describe(&output));
    assert!(
        stderr(&output).contains("is not UTF-8 text"),
        "{}",
        describe(&output)
    );
}

// `rollback --to` a name that is not in the store points at the archived
// templates, not at staging a new one.
#[test]
fn rollback_to_a_missing_template_hints_at_rollback() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let rollback = env.run(&["rollback", "--to", "mroot.NOPE"]);
    assert_eq!(code(&rollback), 65, "{}", describe(&rollback));
    let said = stderr(&rollback);
    assert!(
        said.contains("mroot.NOPE")
            && said.contains("archived template")
            && !said.contains("stage"),
        "{said}"
    );
    let live = env.run(&["rollback", "--to", "mroot"]);
    assert_eq!(code(&live), 65, "{}", describe(&live));
    let said = stderr(&live);
    assert!(
        said.contains("live template itself")
            && said.contains("archived template")
            && !said.contains("staged"),
        "{said}"
    );
    let upgrade = env.run(&["upgrade", "--to", "mroot.NOPE"]);
    assert_eq!(code(&upgrade), 65);
    assert!(
        stderr(&upgrade).contains("jailswap stage"),
        "{}",
        describe(&upgrade)
    );
}

// The command line `show` prints pastes back into a shell as the same words.
#[test]
fn show_quotes_command_lines() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let reason = "it's the \"13.3\" fix; $HOME stays";
    let output = env.run(&["upgrade", "--to", "mroot.2", "--reason", reason]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = stdout(&env.run(&["show", "1"]));
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("command"))
        .unwrap_or_else(|| panic!("no command line: {text}"))
        .trim();
    let words = Command::new("sh")
        .arg("-c")
        .arg(format!("set -- {line}; printf '%s\\n' \"$@\""))
        .output()
        .unwrap();
    let words: Vec<String> = stdout(&words).lines().map(str::to_string).collect();
    let config = env.sandbox.config.display().to_string();
    assert_eq!(
        words,
        vec![PROGRAM, "-c", &config, "upgrade", "--to", "mroot.2", "--reason", reason],
        "{line}"
    );
}

// After a committed transaction, the health checks kept for a rollback that
// never came are listed as skipped, not as planned.
#[test]
fn show_lists_unneeded_rollback_checks_as_skipped() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let shown = env.json(&["show", "1"]);
    let after: Vec<u64> = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "after_rollback")
        .map(|s| s["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(after.len(), env.sandbox.jails.len(), "{shown}");
    let skipped: Vec<u64> = shown["skipped_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(skipped, after);
    let text = stdout(&env.run(&["show", "1"]));
    for seq in &after {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&seq.to_string()))
            .unwrap();
        assert!(row.contains("skipped") && row.contains("health"), "{row}");
    }
    assert!(!text.contains("planned"), "{text}");
}

// Every subcommand's help lists -c, --json, -v and -q under "Global
// options", apart from its own options.
#[test]
fn global_options_have_their_own_heading() {
    let help = Command::new(PROGRAM).arg("--help").output().unwrap();
    let commands: Vec<String> = stdout(&help)
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for name in commands {
        let output = Command::new(PROGRAM)
            .args([&name, "--help"])
            .output()
            .unwrap();
        assert_eq!(code(&output), 0, "{name}");
        let text = stdout(&output);
        let (own, global) = text
            .split_once("Global options:\n")
            .unwrap_or_else(|| panic!("{name}: no Global options heading:\n{text}"));
        for option in ["--config <FILE>", "--json", "--verbose", "--quiet"] {
            assert!(
                global.contains(option),
                "{name}: {option} not global:\n{text}"
            );
            let defined = own
                .lines()
                .filter(|line| line.trim_start().starts_with('-'))
                .any(|line| line.contains(option));
            assert!(!defined, "{name}: {option} among its own:\n{text}");
        }
    }
}

// `init`, `completions` and `demo` read no configuration and print no JSON:
// they refuse -c and --json with 64 instead of ignoring them.
#[test]
fn commands_without_configuration_refuse_its_options() {
    let refusals: [&[&str]; 6] = [
        &[
            "-c",
            "/etc/x.toml",
            "init",
            "--from-fstab",
            "/etc/fstab",
            "--store",
            "/home/j",
        ],
        &[
            "--json",
            "init",
            "--from-fstab",
            "/etc/fstab",
            "--store",
            "/home/j",
        ],
        &["-c", "/etc/x.toml", "completions", "bash"],
        &["completions", "bash", "--json"],
        &["-c", "/etc/x.toml", "demo"],
        &["demo", "--json"],
    ];
    for arguments in refusals {
        let output = Command::new(PROGRAM).args(arguments).output().unwrap();
        assert_eq!(code(&output), 64, "{arguments:?}: {}", describe(&output));
        assert!(output.stdout.is_empty(), "{arguments:?}");
        let said = stderr(&output);
        assert!(said.contains("takes no"), "{arguments:?}: {said}");
    }
}

// `completions` knows bash, zsh and fish, and says so for any other shell.
#[test]
fn completions_take_three_shells() {
    for shell in ["elvish", "powershell"] {
        let output = Command::new(PROGRAM)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&output), 64, "{shell}: {}", describe(&output));
        assert!(
            stderr(&output).contains("[possible values: bash, zsh, fish]"),
            "{}",
            describe(&output)
        );
    }
    let help = Command::new(PROGRAM)
        .args(["completions", "--help"])
        .output()
        .unwrap();
    assert!(
        stdout(&help).contains("[possible values: bash, zsh, fish]"),
        "{}",
        describe(&help)
    );
}

// A dry run says which jails are not running (they are left stopped), in
// text and in JSON.
#[test]
fn dry_run_notes_jails_not_running() {
    let (_ports, env) = sandbox(SandboxOptions::default());
    stop_by_hand(&env, "jail1");
    let output = env.run(&["upgrade", "--to", "mroot.2", "--dry-run"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = stdout(&output);
    let notes: Vec<&str> = text.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 1, "{text}");
    assert!(
        notes[0].contains("jail1") && notes[0].contains("not running"),
        "{text}"
    );
    let plan = env.json(&["upgrade", "--to", "mroot.2", "--dry-run"]);
    assert_eq!(plan["notes"].as_array().map(Vec::len), Some(1), "{plan}");
    let untouched = env.json(&["upgrade", "--to", "mroot.2", "--dry-run"]);
    assert!(untouched["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["jail"] != "jail1" || !matches!(s["action"].as_str(), Some("stop" | "start"))));
}

// The demo's template in service is dated 2024-01-01, so its upgrade reads
// forward in time: mroot.20240101 -> mroot.20240601.
#[test]
fn demo_upgrade_reads_forward() {
    let _alone = PORTS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = Command::new(PROGRAM)
        .arg("demo")
        .env_remove("JAILSWAP_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("mroot.20240101 -> mroot.20240601"), "{text}");
    assert!(
        !text.contains(&format!("mroot.{}", chrono::Utc::now().format("%Y%m%d"))),
        "{text}"
    );
}

// Two templates that differ only in one file's content (same names, sizes,
// modes and times) get different fingerprints in the journal.
#[test]
fn fingerprints_follow_content() {
    let (_ports, env) = sandbox(SandboxOptions {
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.3".into(), Some("2.0".into())),
        ],
        ..SandboxOptions::default()
    });
    let (two, three) = (env.store().join("mroot.2"), env.store().join("mroot.3"));
    std::fs::write(two.join("usr/payload"), "AAAA").unwrap();
    std::fs::write(three.join("usr/payload"), "AAAB").unwrap();
    let stamp = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_717_200_000);
    for template in [&two, &three] {
        for path in ["usr/payload", "VERSION", "usr", "s", "."] {
            let file = std::fs::File::open(template.join(path)).unwrap();
            file.set_times(
                std::fs::FileTimes::new()
                    .set_modified(stamp)
                    .set_accessed(stamp),
            )
            .unwrap();
        }
    }
    for target in ["mroot.2", "mroot.3"] {
        let output = env.run(&["upgrade", "--to", target]);
        assert_eq!(code(&output), 0, "{}", describe(&output));
    }
    let first = env.json(&["show", "1"]);
    let second = env.json(&["show", "2"]);
    let sha = |value: &Value| -> String {
        let text = value.as_str().unwrap_or("");
        text.split("sha256 ").nth(1).unwrap_or("").to_string()
    };
    let (of_two, of_three) = (
        sha(&first["to_fingerprint"]),
        sha(&second["to_fingerprint"]),
    );
    assert_eq!(of_two.len(), 64, "{first}");
    assert_ne!(of_two, of_three);
    // The same template keeps its fingerprint from one transaction to the next.
    assert_eq!(sha(&second["from_fingerprint"]), of_two);
}

/// Writes a template of `files` regular files (in directories of 100, two
/// levels deep) with sizes from 256 B to 64 KiB and content that differs
/// from file to file; returns the number of bytes written.
fn large_template(root: &std::path::Path, files: usize) -> u64 {
    const SIZES: [usize; 8] = [256, 512, 1024, 2048, 4096, 8192, 16384, 65536];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buffer = vec![0u8; 65536];
    let mut written = 0;
    for index in 0..files {
        let directory = root.join(format!(
            "d{:02}/e{:03}",
            index / 10_000,
            (index / 100) % 100
        ));
        if index % 100 == 0 {
            std::fs::create_dir_all(&directory).unwrap();
        }
        // xorshift: cheap bytes that differ from file to file.
        for chunk in buffer.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let size = SIZES[(state as usize) % SIZES.len()];
        std::fs::write(directory.join(format!("f{index}")), &buffer[..size]).unwrap();
        written += size as u64;
    }
    written
}

// The fingerprint of a 100,000-file template (JAILSWAP_BENCH_FILES to
// change): wall time and files per second with a warm page cache, and with
// a cold one where the kernel lets the caches be dropped; one changed byte
// changes it. A measurement, run by hand (docs/performance.md):
//     cargo test --release --test surfaces -- --ignored --nocapture fingerprint_of_a_large_template
#[test]
#[ignore]
fn fingerprint_of_a_large_template() {
    use jailswap::host::Host;
    let files: usize = std::env::var("JAILSWAP_BENCH_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::Builder::new()
        .prefix("jailswap-fingerprint.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let store = dir.path().join("j");
    let template = store.join("mroot");
    let started = Instant::now();
    let bytes = large_template(&template, files);
    nix::unistd::sync();
    eprintln!(
        "wrote {files} files, {:.0} MiB, in {:.1} s",
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let host = jailswap::host::system(
        jailswap::config::Backend::native(),
        &store,
        jailswap::config::StoreKind::Directory,
    );
    let measure = |what: &str| {
        let started = Instant::now();
        let fingerprint = host.fingerprint("mroot").unwrap();
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "{what}: {took:.2} s, {:.0} files/s, {:.0} MiB/s ({} entries)",
            files as f64 / took,
            bytes as f64 / 1048576.0 / took,
            fingerprint.entries
        );
        fingerprint
    };
    let first = measure("warm cache, 1st");
    for round in 2..=3 {
        assert_eq!(measure(&format!("warm cache, run {round}")), first);
    }
    // What a cache of file digests would leave to do on a hit: the walk and
    // a stat of every entry.
    let started = Instant::now();
    let mut pending = vec![template.clone()];
    let mut entries = 0u64;
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            }
            entries += 1;
        }
    }
    eprintln!(
        "walk and stat alone: {:.2} s ({entries} entries)",
        started.elapsed().as_secs_f64()
    );
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    if dropped {
        assert_eq!(measure("cold cache"), first);
    } else {
        eprintln!("cold cache: not measured (the page cache cannot be dropped here)");
    }
    assert!(first.entries >= files as u64, "{first}");
    // One byte, same size, same times: another fingerprint.
    let victim = template.join("d00/e050/f5000");
    let modified = std::fs::metadata(&victim).unwrap().modified().unwrap();
    let mut content = std::fs::read(&victim).unwrap();
    content[0] ^= 1;
    std::fs::write(&victim, &content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_ne!(host.fingerprint("mroot").unwrap().sha256, first.sha256);
}
