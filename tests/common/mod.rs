//! The end-to-end harness: a Handbook-style sandbox on real bind mounts in a
//! private mount namespace, the real `jailswap` executable, and a check of
//! the whole invariant of SPEC.md.
//!
//! Each test thread enters its own mount namespace before it mounts
//! anything, so tests run in parallel without seeing each other's mounts
//! and nothing reaches the host. Processes the test starts (jailswap, the
//! jails' services) inherit the namespace.

#![allow(dead_code)]

use jailswap::host::Host;
use jailswap::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PROGRAM: &str = env!("CARGO_BIN_EXE_jailswap");

pub struct Env {
    pub sandbox: Sandbox,
    pub dir: tempfile::TempDir,
}

/// What the host looked like before a transaction, to compare against.
#[derive(Clone, Debug)]
pub struct Before {
    pub live_inode: u64,
    pub live_version: String,
    pub target: String,
    pub target_inode: u64,
    pub target_version: String,
    pub store: BTreeMap<String, u64>,
    pub data: BTreeMap<String, String>,
}

/// Which arrangement the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arrangement {
    Old,
    New,
}

impl Env {
    pub fn new(options: SandboxOptions) -> Env {
        jailswap::sandbox::enter_private_mount_namespace()
            .expect("tests run as root and need a private mount namespace");
        let dir = tempfile::Builder::new()
            .prefix("jailswap-test.")
            .tempdir()
            .expect("temporary directory");
        let sandbox = Sandbox::create(dir.path(), Path::new(PROGRAM), &options).expect("sandbox");
        Env { sandbox, dir }
    }

    pub fn standard() -> Env {
        Env::new(SandboxOptions::default())
    }

    pub fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(PROGRAM);
        command
            .arg("-c")
            .arg(&self.sandbox.config)
            .args(arguments)
            .env_remove("JAILSWAP_CONFIG")
            .env_remove("JAILSWAP_KILL_AT");
        command.stdin(Stdio::null());
        command
    }

    /// Runs jailswap to the end and returns its output.
    pub fn run(&self, arguments: &[&str]) -> Output {
        self.command(arguments).output().expect("run jailswap")
    }

    pub fn spawn(&self, arguments: &[&str], environment: &[(&str, &str)]) -> Child {
        let mut command = self.command(arguments);
        for (key, value) in environment {
            command.env(key, value);
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jailswap")
    }

    pub fn json(&self, arguments: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(arguments);
        let output = self.run(&all);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "jailswap {arguments:?} printed no JSON ({e}): {}",
                describe(&output)
            )
        })
    }

    pub fn store(&self) -> &Path {
        &self.sandbox.store
    }

    pub fn inode(&self, name: &str) -> Option<u64> {
        std::fs::symlink_metadata(self.store().join(name))
            .ok()
            .map(|m| m.ino())
    }

    /// Every template in the store by inode (jail roots are mount points,
    /// whose inode is the mounted template's, so they are left out).
    pub fn store_entries(&self) -> BTreeMap<String, u64> {
        std::fs::read_dir(self.store())
            .expect("store")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("mroot"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map(|m| m.ino()).unwrap_or(0),
                )
            })
            .collect()
    }

    /// A fingerprint of every jail's own data (paths, sizes, contents).
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut result = BTreeMap::new();
        for (name, _) in &self.sandbox.jails {
            let mut lines = Vec::new();
            walk(&self.dir.path().join("js").join(name), &mut lines);
            lines.sort();
            result.insert(name.clone(), lines.join("\n"));
        }
        result
    }

    pub fn before(&self, target: &str) -> Before {
        Before {
            live_inode: self.inode("mroot").expect("live template"),
            live_version: std::fs::read_to_string(self.store().join("mroot/VERSION"))
                .unwrap_or_default()
                .trim()
                .to_string(),
            target: target.to_string(),
            target_inode: self.inode(target).unwrap_or(0),
            target_version: std::fs::read_to_string(self.store().join(target).join("VERSION"))
                .unwrap_or_default()
                .trim()
                .to_string(),
            store: self.store_entries(),
            data: self.data(),
        }
    }

    /// The mount table of this test's namespace: mount point -> (root, read-only), in order.
    pub fn mounts(&self) -> Vec<(PathBuf, PathBuf, bool)> {
        let text = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
        jailswap::host::linux::parse_mountinfo(&text)
            .into_iter()
            .filter(|m| m.mount_point.starts_with(self.store()))
            .map(|m| (m.mount_point, m.root, m.read_only))
            .collect()
    }

    pub fn running(&self, name: &str) -> bool {
        let pidfile = self.dir.path().join("run").join(format!("{name}.pid"));
        let Ok(pid) = std::fs::read_to_string(pidfile) else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
            Ok(stat) => stat.split(' ').nth(2).is_some_and(|state| state != "Z"),
            Err(_) => false,
        }
    }

    /// Asserts the whole invariant of SPEC.md and returns the arrangement.
    /// `context` is printed with every failure so it can be replayed.
    pub fn assert_invariant(&self, before: &Before, context: &str) -> Arrangement {
        let store = self.store_entries();
        let live = store.get("mroot").copied();
        let archive = self.last_archive_name();
        let arrangement = if live == Some(before.live_inode)
            && store.get(&before.target) == Some(&before.target_inode)
        {
            Arrangement::Old
        } else if live == Some(before.target_inode)
            && archive.as_ref().and_then(|a| store.get(a)) == Some(&before.live_inode)
            && !store.contains_key(&before.target)
        {
            Arrangement::New
        } else {
            panic!("{context}: the store holds neither arrangement: {store:?} (before: {:?}, archive {archive:?})", before.store);
        };
        // Nothing else in the store changed.
        let mut expected = before.store.clone();
        if arrangement == Arrangement::New {
            expected.remove(&before.target);
            expected.insert("mroot".into(), before.target_inode);
            expected.insert(archive.clone().unwrap_or_default(), before.live_inode);
        }
        assert_eq!(store, expected, "{context}: store entries");
        let live_version = if arrangement == Arrangement::New {
            &before.target_version
        } else {
            &before.live_version
        };

        // Each jail's mounts are exactly its fstab, the template read-only,
        // and the jail sees the live template.
        let mounts = self.mounts();
        for (name, port) in &self.sandbox.jails {
            let root = self.store().join(name);
            let data = root.join("s");
            let at_root: Vec<_> = mounts
                .iter()
                .filter(|(point, _, _)| *point == root)
                .collect();
            let at_data: Vec<_> = mounts
                .iter()
                .filter(|(point, _, _)| *point == data)
                .collect();
            assert_eq!(
                at_root.len(),
                1,
                "{context}: jail {name}: mounts at its root: {at_root:?}"
            );
            assert_eq!(
                at_data.len(),
                1,
                "{context}: jail {name}: mounts at its data: {at_data:?}"
            );
            assert!(
                at_root[0].2,
                "{context}: jail {name}: template is not read-only"
            );
            assert!(!at_data[0].2, "{context}: jail {name}: data is read-only");
            let seen = std::fs::metadata(&root).map(|m| m.ino()).ok();
            assert_eq!(
                seen, live,
                "{context}: jail {name} does not see the live template"
            );
            assert!(self.running(name), "{context}: jail {name} is not running");
            let answer = self.sandbox.ask(*port);
            assert_eq!(
                answer.as_deref(),
                Ok(live_version.as_str()),
                "{context}: jail {name} answers"
            );
        }
        assert_eq!(
            mounts.len(),
            2 * self.sandbox.jails.len(),
            "{context}: unexpected mounts: {mounts:?}"
        );
        assert_eq!(self.data(), before.data, "{context}: per-jail data changed");

        // The journal has nothing pending, and its last word matches.
        let status = self.json(&["status"]);
        assert_eq!(
            status["pending"],
            Value::Null,
            "{context}: pending transaction: {status}"
        );
        let history = self.json(&["history"]);
        if let Some(last) = history.as_array().and_then(|h| h.first()) {
            let outcome = last["outcome"].as_str().unwrap_or("");
            match arrangement {
                Arrangement::New => assert_eq!(outcome, "committed", "{context}: {last}"),
                Arrangement::Old => assert!(
                    outcome == "rolled_back" || last["to"] != Value::String(before.target.clone()),
                    "{context}: {last}"
                ),
            }
        }
        arrangement
    }

    /// The archive name of the newest transaction, from the journal.
    pub fn last_archive_name(&self) -> Option<String> {
        let history = self.json(&["history", "--limit", "1"]);
        history.as_array()?.first()?["archive_as"]
            .as_str()
            .map(str::to_string)
    }

    /// Waits until `condition` holds for the transaction's steps (bounded).
    pub fn wait_for_step(
        &self,
        id: i64,
        limit: Duration,
        condition: impl Fn(&[Value]) -> bool,
    ) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let output = self.run(&["--json", "show", &id.to_string()]);
            if let Ok(value) = serde_json::from_slice::<Value>(&output.stdout) {
                if let Some(steps) = value["steps"].as_array() {
                    if condition(steps) {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.sandbox.tear_down();
    }
}

fn walk(path: &Path, lines: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let child = entry.path();
        if child.is_dir() {
            walk(&child, lines);
        } else {
            let content = std::fs::read(&child).unwrap_or_default();
            lines.push(format!(
                "{} {} {:?}",
                child.display(),
                content.len(),
                String::from_utf8_lossy(&content)
            ));
        }
    }
}

pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Env {
    /// Stops and unmounts every jail, lets `change` edit the store by hand,
    /// then mounts and starts the jails again, as an administrator would.
    pub fn tear_down_for_manual_change(&self, change: impl FnOnce(&Path)) {
        self.sandbox.tear_down();
        change(self.store());
        let config = jailswap::config::Config::load(&self.sandbox.config).unwrap();
        let host = jailswap::commands::host(&config);
        for jail in &config.jails {
            for mount in &jail.mounts {
                host.mount(mount).unwrap();
            }
            host.start_jail(jail).unwrap();
        }
    }
}

impl Env {
    /// Runs `arguments` (an upgrade or rollback) with jailswap killed by
    /// SIGKILL at the journal commit `kill_at`, or after `after` when given,
    /// then recovers and checks the whole invariant. Returns the
    /// arrangement, or `None` when the command finished before the kill.
    pub fn kill_and_recover(
        &self,
        arguments: &[&str],
        kill_at: Option<&str>,
        after: Option<Duration>,
        before: &Before,
    ) -> Option<Arrangement> {
        let environment: Vec<(&str, &str)> = kill_at
            .map(|k| vec![("JAILSWAP_KILL_AT", k)])
            .unwrap_or_default();
        let context = format!("{arguments:?} killed at {kill_at:?}{after:?}");
        let mut child = self.spawn(arguments, &environment);
        if let Some(after) = after {
            std::thread::sleep(after);
            let _ = child.kill();
        }
        let output = child.wait_with_output().expect("wait for jailswap");
        if output.status.code().is_some() {
            assert!(
                after.is_some(),
                "{context}: jailswap was not killed: {}",
                describe(&output)
            );
            self.assert_invariant(before, &format!("{context} (finished before the kill)"));
            return None;
        }
        let status = self.json(&["status"]);
        if status["pending"].is_null() {
            // Killed after the transaction became final: nothing to recover.
            let recovered = self.run(&["--json", "recover"]);
            assert_eq!(
                recovered.status.code(),
                Some(0),
                "{context}: {}",
                describe(&recovered)
            );
            assert!(
                String::from_utf8_lossy(&recovered.stdout).contains("nothing_pending"),
                "{context}"
            );
            return Some(self.assert_invariant(
                before,
                &format!("{context} (killed after the final commit)"),
            ));
        }
        assert!(
            status["pending_detail"]["step"].is_string()
                || status["pending_detail"]["direction"].is_string(),
            "{context}: {status}"
        );
        let refused = self.run(&["upgrade", "--to", &before.target]);
        assert_eq!(
            refused.status.code(),
            Some(75),
            "{context}: {}",
            describe(&refused)
        );
        let recovered = self.run(&["--json", "recover"]);
        let result: Value = serde_json::from_slice(&recovered.stdout).unwrap_or(Value::Null);
        let arrangement = self.assert_invariant(
            before,
            &format!("{context}, then recovered: {}", describe(&recovered)),
        );
        let (code, outcome) = match arrangement {
            Arrangement::New => (0, "committed"),
            Arrangement::Old => (1, "rolled_back"),
        };
        assert_eq!(
            recovered.status.code(),
            Some(code),
            "{context}: {}",
            describe(&recovered)
        );
        assert_eq!(result["outcome"], outcome, "{context}");
        Some(arrangement)
    }
}
