//! The Ansible fleet harness of tests/ansible_fleet.rs: simulated hosts
//! (one sandbox each, in the test thread's private mount namespace), an
//! inventory that reaches them with `ansible_connection=local`, ansible
//! commands bounded in time whose task results are read as JSON, and a
//! snapshot of everything an upgrade could change on a host.

use crate::common::{Env, PROGRAM};
use jailswap::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The staged template every host is upgraded to.
pub const TARGET: &str = "mroot.20240601";
/// Bound on one ansible command; a run of the whole fleet takes seconds.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The directory holding ansible-playbook: on PATH first, else
/// target/ci-venv/bin of the repository.
fn ansible_directory() -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|dir| dir.join("ansible-playbook").is_file())
    }) {
        return found;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin");
    if venv.join("ansible-playbook").is_file() {
        return venv;
    }
    panic!(
        "ansible-core is not installed: ansible-playbook is neither on PATH nor in {}. \
         Run `bash .ci/run` (it installs ansible-core into target/ci-venv) or `pip install ansible-core`.",
        venv.display()
    );
}

/// What one ansible command did: its exit code, its output (for failure
/// messages) and every task result it reported, through the
/// record_results callback of tests/fixtures/ansible.
pub struct Run {
    pub code: i32,
    pub output: String,
    pub results: Vec<Value>,
}

impl Run {
    /// The results of one module on one host.
    pub fn of(&self, host: &str, action: &str) -> Vec<&Value> {
        self.results
            .iter()
            .filter(|r| r["host"] == host && r["action"] == action)
            .collect()
    }

    /// The single result of `action` on `host`.
    pub fn one(&self, host: &str, action: &str) -> &Value {
        let found = self.of(host, action);
        assert_eq!(
            found.len(),
            1,
            "{host}: expected one {action} result: {found:?}\n{}",
            self.output
        );
        found[0]
    }

    pub fn touched(&self, host: &str) -> bool {
        self.results.iter().any(|r| r["host"] == host)
    }
}

/// The simulated hosts, and the directory that holds the inventory,
/// Ansible's configuration and its scratch space. Dropping it tears every
/// sandbox down (each `Env` stops its jails and unmounts them), also when
/// the test fails.
pub struct Fleet {
    pub hosts: Vec<Env>,
    work: tempfile::TempDir,
    ansible: PathBuf,
    pub runs: usize,
}

impl Fleet {
    /// `staged(index)` is the VERSION of host `index`'s staged template
    /// (None: a template whose service cannot serve).
    pub fn new(count: usize, staged: impl Fn(usize) -> Option<String>) -> Fleet {
        let ansible = ansible_directory();
        jailswap::sandbox::enter_private_mount_namespace()
            .expect("tests run as root and need a private mount namespace");
        let work = tempfile::Builder::new()
            .prefix("jailswap-fleet.")
            .tempdir()
            .expect("temporary directory");
        let mut fleet = Fleet {
            hosts: Vec::new(),
            work,
            ansible,
            runs: 0,
        };
        for index in 0..count {
            let dir = tempfile::Builder::new()
                .prefix(&format!("jailswap-host{index}."))
                .tempdir()
                .expect("temporary directory");
            let options = SandboxOptions {
                jails: 2,
                health_timeout: "2s".into(),
                staged: vec![(TARGET.into(), staged(index))],
                ..SandboxOptions::default()
            };
            let sandbox = Sandbox::create(dir.path(), Path::new(PROGRAM), &options)
                .unwrap_or_else(|e| panic!("sandbox of host{index}: {e}"));
            fleet.hosts.push(Env { sandbox, dir });
        }
        let mut inventory = String::from("[fleet]\n");
        for (index, host) in fleet.hosts.iter().enumerate() {
            inventory += &format!(
                "host{index} jailswap_config={}\n",
                host.sandbox.config.display()
            );
        }
        inventory += "\n[fleet:vars]\nansible_connection=local\nansible_python_interpreter={{ ansible_playbook_python }}\n";
        std::fs::write(fleet.work.path().join("inventory"), inventory).expect("inventory");
        std::fs::write(
            fleet.work.path().join("ansible.cfg"),
            "[defaults]\nretry_files_enabled = False\nhost_key_checking = False\n",
        )
        .expect("ansible.cfg");
        fleet
    }

    pub fn name(index: usize) -> String {
        format!("host{index}")
    }

    /// Runs one ansible command (`ansible-playbook` or `ansible`) with the
    /// collection from the source tree, bounded by RUN_LIMIT.
    pub fn ansible(&mut self, program: &str, arguments: &[&str]) -> Run {
        self.runs += 1;
        let work = self.work.path();
        let results = work.join(format!("results.{}.jsonl", self.runs));
        let log = work.join(format!("output.{}.txt", self.runs));
        let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
        let program_dir = Path::new(PROGRAM).parent().expect("executable directory");
        let mut path = vec![program_dir.to_path_buf(), self.ansible.clone()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let mut command = Command::new(self.ansible.join(program));
        command
            .args(arguments)
            .arg("-i")
            .arg(work.join("inventory"))
            .current_dir(work)
            .env("PATH", std::env::join_paths(path).expect("PATH"))
            .env("ANSIBLE_CONFIG", work.join("ansible.cfg"))
            .env("ANSIBLE_HOME", work.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", work.join("tmp"))
            .env("ANSIBLE_REMOTE_TEMP", work.join("remote-tmp"))
            .env(
                "ANSIBLE_COLLECTIONS_PATH",
                repository.join("packaging/ansible"),
            )
            .env("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
            .env(
                "ANSIBLE_CALLBACK_PLUGINS",
                repository.join("tests/fixtures/ansible"),
            )
            .env("ANSIBLE_CALLBACKS_ENABLED", "record_results")
            .env("ANSIBLE_LOAD_CALLBACK_PLUGINS", "true")
            .env("ANSIBLE_NOCOLOR", "true")
            .env("JAILSWAP_TEST_RESULTS", &results)
            .env_remove("JAILSWAP_CONFIG")
            .stdin(Stdio::null())
            // Its own process group, so that a run past RUN_LIMIT is killed
            // with every worker it forked.
            .process_group(0);
        // stdout and stderr share one file, in the order they are written.
        let file = std::fs::File::create(&log).expect("log");
        command.stdout(file.try_clone().expect("log")).stderr(file);
        let started = Instant::now();
        let mut child = command.spawn().expect("start ansible");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for ansible") {
                break status;
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                panic!(
                    "{program} {arguments:?} did not finish within {RUN_LIMIT:?}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let results = std::fs::read_to_string(&results)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a result line is JSON"))
            .collect();
        eprintln!(
            "{program} {arguments:?}: exit {:?} after {:.1} s",
            status.code(),
            started.elapsed().as_secs_f64()
        );
        Run {
            code: status.code().unwrap_or(-1),
            output,
            results,
        }
    }

    pub fn playbook(&mut self, extra: &[&str], variables: Value) -> Run {
        let variables = variables.to_string();
        let mut arguments = vec!["jailswap.jailswap.rolling_upgrade", "-e", &variables];
        arguments.extend_from_slice(extra);
        self.ansible("ansible-playbook", &arguments)
    }
}

impl Drop for Fleet {
    /// Each host's own teardown (the Drop of `Env`) is a single best-effort
    /// pass, and a service that was just stopped can still hold its jail's
    /// mount for a moment (a process that has released its memory but not
    /// yet its working directory). Tear down again until nothing is mounted,
    /// within a bound, so that the temporary directories can be removed.
    fn drop(&mut self) {
        for host in &self.hosts {
            let deadline = Instant::now() + Duration::from_secs(10);
            host.sandbox.tear_down();
            while !host.mounts().is_empty() {
                if Instant::now() > deadline {
                    eprintln!(
                        "{}: still mounted after teardown: {:?}",
                        host.dir.path().display(),
                        host.mounts()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                host.sandbox.tear_down();
            }
        }
    }
}

/// Everything of a host that an upgrade could change: the store by inode,
/// the mounts, every file of the journal's directory, the pid of each
/// jail's service (a restarted jail has a new one) and what each answers.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub store: BTreeMap<String, u64>,
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    pub journal: BTreeMap<String, Vec<u8>>,
    pub pids: BTreeMap<String, String>,
    pub answers: Vec<Result<String, String>>,
}

pub fn snapshot(host: &Env) -> Snapshot {
    let journal = std::fs::read_dir(host.dir.path().join("db"))
        .expect("journal directory")
        .flatten()
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap_or_default(),
            )
        })
        .collect();
    let pids = host
        .sandbox
        .jails
        .iter()
        .map(|(name, _)| {
            let pidfile = host.dir.path().join("run").join(format!("{name}.pid"));
            (
                name.clone(),
                std::fs::read_to_string(pidfile).unwrap_or_default(),
            )
        })
        .collect();
    Snapshot {
        store: host.store_entries(),
        mounts: host.mounts(),
        journal,
        pids,
        answers: host
            .sandbox
            .jails
            .iter()
            .map(|(_, port)| host.sandbox.ask(*port))
            .collect(),
    }
}

pub fn history(host: &Env) -> Vec<Value> {
    host.json(&["history"])
        .as_array()
        .cloned()
        .expect("history is an array")
}
