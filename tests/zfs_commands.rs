//! The ZFS store (`store_kind = "zfs"`) end to end: the real `jailswap`
//! binary, run as a child process with `backend = "commands"`, stages,
//! upgrades, rolls back and prunes templates that are ZFS datasets, and
//! recovers from a crash at every journal commit and after every zfs(8)
//! command it runs.
//!
//! There is no ZFS here (no kernel module; zfs-fuse is not reliable enough
//! to test against), so zfs(8) is the stateful fake `tests/fakes/zfs`, beside
//! the FreeBSD fakes of `tests/freebsd_commands.rs` (mount(8), umount(8),
//! jls(8), service(8)), all first on jailswap's PATH. The fake keeps
//! datasets, snapshots, clones, GUIDs and mountpoints, and a mounted
//! dataset is a real directory at its mountpoint, so jailswap reads real
//! files through it. It fails as zfs(8) does: a dataset that a nullfs mount
//! uses is busy, a file system with snapshots has children, a snapshot with
//! clones has dependent clones, a name that exists already exists. Every
//! call's argv is logged; the tests assert the exact zfs(8) commands that
//! change the pool, in order, and the fake's state after each command.
//!
//! The file is longer than most because each transaction kind has its
//! crash enumeration here, next to the harness they share.

use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const JAILS: [&str; 3] = ["ns", "mail", "www"];
/// The pool's dataset that is mounted at the store.
const STORE_DATASET: &str = "tank/j";
/// A template made by hand (`zfs create`), not a clone.
const STAGED: &str = "mroot.20240601";
const ARCHIVE: &str = "mroot.20240101";

/// One line of the fake's state: a dataset or a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dataset {
    name: String,
    kind: String,
    guid: String,
    origin: String,
    defer_destroy: String,
}

/// A fake FreeBSD host with ZFS, in a temporary directory D:
///
/// ```text
/// D/tank                     the pool's root dataset `tank`
/// D/home/j                   tank/j, the store
/// D/home/j/mroot             tank/j/mroot: VERSION 1.0, s/, usr/, etc -> s/etc
/// D/home/j/mroot.20240601    tank/j/mroot.20240601, of the same shape, VERSION 2.0
/// D/home/j/<jail>/s          each jail's root: plain directories of tank/j
/// D/home/js/<jail>           each jail's own read-write part
/// D/fstab.<jail>             its two Handbook lines
/// D/bin/                     the fakes; D/state/ their state
/// D/jailswap.toml            the configuration; D/db/ the journal
/// ```
struct ZfsHost {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    data: PathBuf,
    state: PathBuf,
    bin: PathBuf,
    config: PathBuf,
}

/// What to change in the standard configuration.
#[derive(Clone, Copy, Default)]
struct Setup<'a> {
    /// `store_kind`, or none for the default (`auto`).
    store_kind: Option<&'a str>,
    /// Extra top-level configuration lines.
    extra: &'a str,
    /// A command run after ns's stop command, during the downtime.
    after_ns_stop: Option<&'a str>,
}

const ZFS: Setup<'static> = Setup {
    store_kind: Some("zfs"),
    extra: "",
    after_ns_stop: None,
};

/// One argument as the fakes log it.
fn arg(path: &Path) -> String {
    let text = path.display().to_string();
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        format!("'{text}'")
    } else {
        text
    }
}

fn stop(jail: &str) -> String {
    format!("service jail stop {jail}")
}

fn start(jail: &str) -> String {
    format!("service jail start {jail}")
}

fn dataset(name: &str) -> String {
    format!("{STORE_DATASET}/{name}")
}

fn zfs_rename(from: &str, to: &str) -> String {
    format!("zfs rename {} {}", dataset(from), dataset(to))
}

/// The query jailswap makes right before it renames or destroys `name`.
fn identity_query(name: &str) -> String {
    format!(
        "zfs get -H -p -o property,value,source guid,mountpoint,mounted,origin {}",
        dataset(name)
    )
}

fn stage_snapshot(from: &str, name: &str) -> String {
    format!("{}@jailswap-stage-{name}", dataset(from))
}

fn staging(name: &str) -> String {
    format!(".jailswap-stage.{name}")
}

impl ZfsHost {
    fn new(setup: Setup) -> ZfsHost {
        let temp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(temp.path()).unwrap();
        let host = ZfsHost {
            _temp: temp,
            store: dir.join("home/j"),
            data: dir.join("home/js"),
            state: dir.join("state"),
            bin: dir.join("bin"),
            config: dir.join("jailswap.toml"),
            dir,
        };
        for sub in ["state/zfs", "bin", "db", "tank"] {
            std::fs::create_dir_all(host.dir.join(sub)).unwrap();
        }
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
        for name in ["fake-lib.sh", "mount", "umount", "jls", "service", "zfs"] {
            let copy = host.bin.join(name);
            std::fs::copy(fakes.join(name), &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The pool's root dataset, as `zpool create` would leave it.
        std::fs::write(
            host.state.join("zfs/datasets"),
            format!(
                "tank\tfilesystem\t17\t1\t-\t{}\tyes\t-\t1717200000\n",
                host.dir.join("tank").display()
            ),
        )
        .unwrap();
        host.zfs(&[
            "create",
            "-o",
            &format!("mountpoint={}", host.store.display()),
            STORE_DATASET,
        ]);
        host.make_template("mroot", "1.0");
        host.make_template(STAGED, "2.0");

        let mut config = format!(
            "store = {:?}\nlive = \"mroot\"\njournal = {:?}\nparallel = 1\nbackend = \"commands\"\n{}{}\n\
             [defaults]\nstart = \"service jail start ${{name}}\"\nstop = \"service jail stop ${{name}}\"\n\
             status = \"jls -j ${{name}}\"\ntimeout = \"20s\"\n\n\
             [health]\ntimeout = \"1s\"\ninterval = \"50ms\"\n",
            host.store.display().to_string(),
            host.dir.join("db/journal.sqlite").display().to_string(),
            setup
                .store_kind
                .map(|kind| format!("store_kind = \"{kind}\"\n"))
                .unwrap_or_default(),
            setup.extra,
        );
        for jail in JAILS {
            std::fs::create_dir_all(host.root(jail).join("s")).unwrap();
            std::fs::create_dir_all(host.own(jail).join("etc")).unwrap();
            std::fs::write(
                host.own(jail).join("etc/rc.conf"),
                format!("hostname=\"{jail}.example.org\"\n"),
            )
            .unwrap();
            let fstab = host.dir.join(format!("fstab.{jail}"));
            std::fs::write(
                &fstab,
                format!(
                    "{} {} nullfs ro 0 0\n{} {} nullfs rw 0 0\n",
                    host.live().display(),
                    host.root(jail).display(),
                    host.own(jail).display(),
                    host.part(jail).display(),
                ),
            )
            .unwrap();
            config.push_str(&format!(
                "\n[[jail]]\nname = \"{jail}\"\npath = {:?}\nfstab = {:?}\n",
                host.root(jail).display().to_string(),
                fstab.display().to_string(),
            ));
            if jail != "ns" {
                config.push_str("depends = [\"ns\"]\n");
            } else if let Some(command) = setup.after_ns_stop {
                config.push_str(&format!(
                    "stop = {:?}\n",
                    format!("service jail stop ${{name}} && {command}")
                ));
            }
            // Healthy: the jail runs, and the live template has a VERSION.
            config.push_str(
                "[[jail.health]]\ncmd = 'jls -j ${name} >/dev/null && test -f \"${path}/../mroot/VERSION\"'\n",
            );
        }
        std::fs::write(&host.config, config).unwrap();
        std::fs::set_permissions(&host.config, std::fs::Permissions::from_mode(0o600)).unwrap();
        host
    }

    /// A template dataset of the Handbook's shape.
    fn make_template(&self, name: &str, version: &str) {
        self.zfs(&["create", &dataset(name)]);
        let root = self.store.join(name);
        std::fs::create_dir_all(root.join("s")).unwrap();
        std::fs::create_dir_all(root.join("usr/ports")).unwrap();
        std::os::unix::fs::symlink("s/etc", root.join("etc")).unwrap();
        std::fs::write(root.join("VERSION"), format!("{version}\n")).unwrap();
    }

    fn live(&self) -> PathBuf {
        self.store.join("mroot")
    }
    fn root(&self, jail: &str) -> PathBuf {
        self.store.join(jail)
    }
    fn part(&self, jail: &str) -> PathBuf {
        self.store.join(jail).join("s")
    }
    fn own(&self, jail: &str) -> PathBuf {
        self.data.join(jail)
    }

    fn command(&self, program: &Path) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let mut command = Command::new(program);
        command
            .env("PATH", path)
            .env("FAKE_STATE", &self.state)
            .env("NO_COLOR", "1")
            .env_remove("JAILSWAP_CONFIG")
            .env_remove("JAILSWAP_KILL_AT")
            .env_remove("JAILSWAP_FAIL_AT")
            .env_remove("JAILSWAP_LOG");
        command
    }

    /// Runs one of the fakes, as the administrator or the boot would.
    fn tool(&self, program: &str, arguments: &[&str]) -> Output {
        // A fake just copied into place can be busy for a moment: a process
        // that another test thread forked meanwhile holds it open for
        // writing until that process execs (ETXTBSY).
        let mut attempts = 0;
        let output = loop {
            match self
                .command(&self.bin.join(program))
                .args(arguments)
                .output()
            {
                Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                result => break result.unwrap(),
            }
        };
        assert!(
            output.status.success(),
            "{program} {arguments:?}: {}",
            explain(&output)
        );
        output
    }

    fn zfs(&self, arguments: &[&str]) -> Output {
        self.tool("zfs", arguments)
    }

    /// Boots the host: `mount -a` over the jails' fstab lines, then
    /// `service jail start`; the log starts empty afterwards.
    fn boot(&self) {
        for jail in JAILS {
            let (live, root) = (self.live(), self.root(jail));
            let (own, part) = (self.own(jail), self.part(jail));
            self.tool(
                "mount",
                &["-t", "nullfs", "-o", "ro", path(&live), path(&root)],
            );
            self.tool(
                "mount",
                &["-t", "nullfs", "-o", "rw", path(&own), path(&part)],
            );
        }
        for jail in JAILS {
            self.tool("service", &["jail", "start", jail]);
        }
        self.clear_log();
    }

    fn jailswap(&self, arguments: &[&str]) -> Output {
        self.command(Path::new(env!("CARGO_BIN_EXE_jailswap")))
            .arg("-c")
            .arg(&self.config)
            .args(arguments)
            .output()
            .unwrap()
    }

    /// Runs jailswap, which SIGKILLs itself at the journal commit `point`.
    fn jailswap_killed_at(&self, point: &str, arguments: &[&str]) -> Output {
        self.command(Path::new(env!("CARGO_BIN_EXE_jailswap")))
            .env("JAILSWAP_KILL_AT", point)
            .arg("-c")
            .arg(&self.config)
            .args(arguments)
            .output()
            .unwrap()
    }

    /// Runs a transaction that must succeed.
    fn ok(&self, arguments: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(arguments);
        let output = self.jailswap(&all);
        assert_eq!(
            code(&output),
            Some(0),
            "{arguments:?}: {}",
            explain(&output)
        );
        json(&output)
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.state.join("calls"));
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The calls that change the host, in order: not `mount -p`, `jls`,
    /// `zfs list` or `zfs get`.
    fn changes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| {
                call != "mount -p"
                    && !call.starts_with("jls ")
                    && !call.starts_with("zfs list ")
                    && !call.starts_with("zfs get ")
            })
            .collect()
    }

    /// The zfs(8) commands that change the pool, in order.
    fn zfs_changes(&self) -> Vec<String> {
        self.changes()
            .into_iter()
            .filter(|call| call.starts_with("zfs "))
            .collect()
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.state.join(file), text).unwrap();
    }

    /// The fake's datasets and snapshots, in name order.
    fn datasets(&self) -> Vec<Dataset> {
        let mut all: Vec<Dataset> = std::fs::read_to_string(self.state.join("zfs/datasets"))
            .unwrap()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 9, "{line:?}");
                Dataset {
                    name: fields[0].into(),
                    kind: fields[1].into(),
                    guid: fields[2].into(),
                    origin: fields[4].into(),
                    defer_destroy: fields[7].into(),
                }
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn find(&self, name: &str) -> Option<Dataset> {
        self.datasets().into_iter().find(|d| d.name == name)
    }

    /// The GUID of a template's dataset.
    fn guid(&self, name: &str) -> Option<String> {
        self.find(&dataset(name)).map(|d| d.guid)
    }

    /// Name -> GUID of every dataset and snapshot.
    fn guids(&self) -> BTreeMap<String, String> {
        self.datasets()
            .into_iter()
            .map(|d| (d.name, d.guid))
            .collect()
    }

    /// The VERSION of a template in the store; None when it is missing.
    fn version(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.store.join(name).join("VERSION"))
            .ok()
            .map(|text| text.trim().to_string())
    }

    /// The names in the store directory, sorted.
    fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.store)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mounts(&self) -> Vec<String> {
        let mut table: Vec<String> = std::fs::read_to_string(self.state.join("mounts"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        table.sort();
        table
    }

    /// The mount table the fstabs describe, each line once, template read-only.
    fn expected_mounts(&self) -> Vec<String> {
        let mut table = Vec::new();
        for jail in JAILS {
            table.push(format!(
                "{}\t{}\tnullfs\tro",
                self.live().display(),
                self.root(jail).display()
            ));
            table.push(format!(
                "{}\t{}\tnullfs\trw",
                self.own(jail).display(),
                self.part(jail).display()
            ));
        }
        table.sort();
        table
    }

    fn running(&self) -> Vec<String> {
        let mut jails: Vec<String> = std::fs::read_to_string(self.state.join("running"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        jails.sort();
        jails
    }

    fn all_running(&self) -> Vec<String> {
        let mut jails: Vec<String> = JAILS.iter().map(|j| j.to_string()).collect();
        jails.sort();
        jails
    }

    fn status(&self) -> Value {
        let output = self.jailswap(&["--json", "status"]);
        assert_eq!(code(&output), Some(0), "{}", explain(&output));
        json(&output)
    }

    // The calls of each phase of the Handbook's procedure, in jailswap's order.

    fn stops(&self) -> Vec<String> {
        vec![stop("mail"), stop("www"), stop("ns")]
    }
    fn unmounts(&self) -> Vec<String> {
        JAILS
            .iter()
            .flat_map(|jail| {
                [
                    format!("umount {}", arg(&self.part(jail))),
                    format!("umount {}", arg(&self.root(jail))),
                ]
            })
            .collect()
    }
    fn mounts_in_order(&self) -> Vec<String> {
        JAILS
            .iter()
            .flat_map(|jail| [self.mount_root(jail), self.mount_part(jail)])
            .collect()
    }
    fn mount_root(&self, jail: &str) -> String {
        format!(
            "mount -t nullfs -o ro {} {}",
            arg(&self.live()),
            arg(&self.root(jail))
        )
    }
    fn mount_part(&self, jail: &str) -> String {
        format!(
            "mount -t nullfs -o rw {} {}",
            arg(&self.own(jail)),
            arg(&self.part(jail))
        )
    }
    fn starts(&self) -> Vec<String> {
        vec![start("ns"), start("mail"), start("www")]
    }

    /// The complete forward procedure of an upgrade or rollback that
    /// archives the live template as `archive` and makes `target` live.
    fn swap(&self, target: &str, archive: &str) -> Vec<String> {
        [
            self.stops(),
            self.unmounts(),
            vec![zfs_rename("mroot", archive), zfs_rename(target, "mroot")],
            self.mounts_in_order(),
            self.starts(),
        ]
        .concat()
    }

    /// Every `zfs rename` and `zfs destroy` of a template came after
    /// jailswap read that template's GUID again, with no rename or destroy
    /// of another template in between (a promote and the deferred destroy
    /// of its origin snapshot belong to the same deletion).
    fn assert_identity_checked(&self) {
        let subject = |call: &str| -> Option<String> {
            let name = if let Some(rest) = call.strip_prefix("zfs rename ") {
                rest.split(' ').next()?
            } else {
                let rest = call.strip_prefix("zfs destroy ")?;
                Some(rest).filter(|name| !name.contains('@') && !name.starts_with('-'))?
            };
            Some(name.strip_prefix(&format!("{STORE_DATASET}/"))?.to_string())
        };
        let calls = self.calls();
        for (index, call) in calls.iter().enumerate() {
            let Some(name) = subject(call) else { continue };
            let checked = calls[..index]
                .iter()
                .rev()
                .take_while(|earlier| subject(earlier).is_none())
                .any(|earlier| *earlier == identity_query(&name));
            assert!(checked, "{call} without a GUID check before it: {calls:#?}");
        }
    }
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn explain(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The failed steps' errors of a transaction's JSON result.
fn failures(result: &Value) -> Vec<String> {
    result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["state"] == "failed")
        .map(|step| step["error"].as_str().unwrap_or("").to_string())
        .collect()
}

// An upgrade stops and unmounts the jails, then renames the datasets with `zfs rename` (each after a GUID check), remounts and starts: the mountpoints follow the names.
#[test]
fn upgrade_renames_the_datasets() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let (live, staged) = (host.guid("mroot").unwrap(), host.guid(STAGED).unwrap());
    let result = host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(result["outcome"], "committed");
    assert_eq!(host.changes(), host.swap(STAGED, ARCHIVE));
    host.assert_identity_checked();
    // The datasets moved, GUIDs and all, and so did their mountpoints.
    assert_eq!(host.guid("mroot"), Some(staged));
    assert_eq!(host.guid(ARCHIVE), Some(live));
    assert_eq!(host.guid(STAGED), None);
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
    assert!(!host.store.join(STAGED).exists());
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());

    let status = host.status();
    assert_eq!(status["store_kind"], "zfs", "{status:#}");
    assert_eq!(status["live"], STAGED, "{status:#}");
    assert_eq!(status["previous"], ARCHIVE, "{status:#}");
    for jail in status["jails"].as_array().unwrap() {
        assert_eq!(jail["template"], STAGED, "{status:#}");
    }
}

// A rollback after an upgrade renames the datasets back, each after a GUID check, and commits.
#[test]
fn rollback_renames_them_back() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let (live, staged) = (host.guid("mroot").unwrap(), host.guid(STAGED).unwrap());
    host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    host.clear_log();
    let result = host.ok(&["rollback"]);
    assert_eq!(result["kind"], "rollback");
    assert_eq!(result["outcome"], "committed");
    assert_eq!(host.changes(), host.swap(ARCHIVE, STAGED));
    host.assert_identity_checked();
    assert_eq!(host.guid("mroot"), Some(live));
    assert_eq!(host.guid(STAGED), Some(staged));
    assert_eq!(host.guid(ARCHIVE), None);
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// `upgrade --rolling` is refused (65) on a zfs store, with the reason, before anything changes.
#[test]
fn rolling_upgrade_is_refused() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let before = host.guids();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--rolling"]);
    assert_eq!(code(&output), Some(65), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a rolling upgrade cannot run on a zfs store: a mounted template cannot change its name under running jails"),
        "{stderr}"
    );
    assert_eq!(host.changes(), Vec::<String>::new());
    assert_eq!(host.guids(), before);
    assert_eq!(host.mounts(), host.expected_mounts());
}

// `stage` is `zfs snapshot` + `zfs clone` under the staging name, the command runs in the clone, and `zfs rename` publishes it: no data copied, the snapshot stays as its origin, the source is unchanged.
#[test]
fn stage_is_a_snapshot_and_a_clone() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let before = host.guids();
    let name = "mroot.20240701";
    let result = host.ok(&[
        "stage",
        "--as",
        name,
        "--run",
        "test \"$(cat ${from}/VERSION)\" = 1.0 && echo 3.0 > ${dir}/VERSION",
    ]);
    assert_eq!(result["outcome"], "staged", "{result:#}");
    let snapshot = stage_snapshot("mroot", name);
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs snapshot {snapshot}"),
            format!("zfs clone {snapshot} {}", dataset(&staging(name))),
            zfs_rename(&staging(name), name),
        ]
    );
    host.assert_identity_checked();
    // The command ran in the clone, at its staging mountpoint.
    assert!(host
        .calls()
        .iter()
        .all(|call| !call.contains("service jail")));
    let staged = host.find(&dataset(name)).unwrap();
    assert_eq!(staged.origin, snapshot);
    assert_eq!(host.find(&snapshot).unwrap().kind, "snapshot");
    assert!(!before.values().any(|guid| *guid == staged.guid));
    assert_eq!(host.version(name).as_deref(), Some("3.0"));
    assert!(host.store.join(name).join("etc").is_symlink());
    // The source and every other dataset are as they were.
    let mut after = host.guids();
    after.remove(&dataset(name));
    after.remove(&snapshot);
    assert_eq!(after, before);
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert!(!host.store.join(staging(name)).exists());
    assert_eq!(host.mounts(), host.expected_mounts());
    let status = host.status();
    let roles: BTreeMap<String, String> = status["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles.get(name).map(String::as_str),
        Some("staged"),
        "{status:#}"
    );
}

// A stage whose command fails is rolled back (1): the clone is destroyed, and its snapshot with it (deferred destroy), leaving the pool as it was.
#[test]
fn failed_stage_leaves_nothing_behind() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let before = host.guids();
    let names = host.store_names();
    let name = "mroot.20240701";
    let output = host.jailswap(&[
        "--json",
        "stage",
        "--as",
        name,
        "--run",
        "echo no network; exit 3",
    ]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let result = json(&output);
    assert!(
        failures(&result)[0].contains("exited with status 3"),
        "{result:#}"
    );
    let snapshot = stage_snapshot("mroot", name);
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs snapshot {snapshot}"),
            format!("zfs clone {snapshot} {}", dataset(&staging(name))),
            format!("zfs destroy -d {snapshot}"),
            format!("zfs destroy {}", dataset(&staging(name))),
        ]
    );
    host.assert_identity_checked();
    assert_eq!(host.guids(), before);
    assert_eq!(host.store_names(), names);
}

// When `zfs clone` fails, the snapshot taken for it is destroyed at once and the stage rolls back (1) with zfs's message.
#[test]
fn failed_clone_destroys_its_snapshot() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let before = host.guids();
    let name = "mroot.20240701";
    let snapshot = stage_snapshot("mroot", name);
    let clone = format!("zfs clone {snapshot} {}", dataset(&staging(name)));
    host.set(
        "fail-at",
        &format!(
            "{clone}\ncannot create '{}': out of space\n",
            dataset(&staging(name))
        ),
    );
    let output = host.jailswap(&["--json", "stage", "--as", name]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert!(
        failures(&json(&output))[0].contains("out of space"),
        "{}",
        explain(&output)
    );
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs snapshot {snapshot}"),
            clone,
            format!("zfs destroy {snapshot}"),
        ]
    );
    assert_eq!(host.guids(), before);
}

/// Stages `name` from `from` with a VERSION of its own, and checks it.
fn stage(host: &ZfsHost, name: &str, from: &str, version: &str) {
    host.ok(&[
        "stage",
        "--as",
        name,
        "--from",
        from,
        "--run",
        &format!("echo {version} > ${{dir}}/VERSION"),
    ]);
    assert_eq!(
        host.find(&dataset(name)).unwrap().origin,
        stage_snapshot(from, name)
    );
}

// Prune of a template that a later stage was cloned from promotes that clone first, then destroys the template, and the snapshot it held goes with it (deferred destroy); the clone keeps its GUID and its files.
#[test]
fn prune_promotes_a_dependent_clone() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let first = "mroot.20240701";
    let second = "mroot.20240801";
    stage(&host, first, "mroot", "3.0");
    host.ok(&["upgrade", "--to", first, "--archive-as", ARCHIVE]);
    // Staged from the live template, itself a clone of the archived one.
    stage(&host, second, "mroot", "4.0");
    host.ok(&["upgrade", "--to", second]);
    // ARCHIVE holds the snapshot `first` was cloned from; `first` is the
    // rollback target (kept), ARCHIVE is beyond --keep 0.
    assert_eq!(
        host.find(&dataset(first)).unwrap().origin,
        stage_snapshot(ARCHIVE, first)
    );
    let before = host.guids();
    host.clear_log();

    let result = host.ok(&["prune", "--keep", "0"]);
    assert_eq!(
        (&result["kind"], &result["from"]),
        (&Value::from("prune"), &Value::from(ARCHIVE)),
        "{result:#}"
    );
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs promote {}", dataset(first)),
            format!("zfs destroy -d {}", stage_snapshot(first, first)),
            format!("zfs destroy {}", dataset(ARCHIVE)),
        ]
    );
    host.assert_identity_checked();
    // The archive and the snapshot are gone; the promoted clone is a
    // dataset of its own now, and the live template still its clone.
    let mut expected = before.clone();
    expected.remove(&dataset(ARCHIVE));
    expected.remove(&stage_snapshot(ARCHIVE, first));
    assert_eq!(host.guids(), expected);
    assert_eq!(host.find(&dataset(first)).unwrap().origin, "-");
    assert_eq!(
        host.find(&dataset("mroot")).unwrap().origin,
        stage_snapshot(first, second)
    );
    assert!(!host.store.join(ARCHIVE).exists());
    assert_eq!(host.version(first).as_deref(), Some("3.0"));
    assert_eq!(host.version("mroot").as_deref(), Some("4.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
}

// Prune of a staged template nothing depends on marks its origin snapshot for deferred destroy and destroys it: both are gone, the template it was staged from keeps its other snapshots.
#[test]
fn prune_takes_the_stage_snapshot_along() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let name = "mroot.20240701";
    stage(&host, name, STAGED, "3.0");
    host.ok(&["upgrade", "--to", name, "--archive-as", ARCHIVE]);
    host.ok(&["upgrade", "--to", STAGED]);
    // A third upgrade, so that `name` is no longer the rollback target.
    host.ok(&["upgrade", "--to", ARCHIVE]);
    let before = host.guids();
    host.clear_log();

    let result = host.ok(&["prune", "--keep", "0"]);
    assert_eq!(
        (&result["kind"], &result["from"]),
        (&Value::from("prune"), &Value::from(name)),
        "{result:#}"
    );
    let snapshot = stage_snapshot(STAGED, name);
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs destroy -d {snapshot}"),
            format!("zfs destroy {}", dataset(name)),
        ]
    );
    host.assert_identity_checked();
    let mut expected = before.clone();
    expected.remove(&dataset(name));
    expected.remove(&snapshot);
    assert_eq!(host.guids(), expected);
    assert!(!host.store.join(name).exists());
}

// A dataset zfs cannot unmount (a devfs mounted inside the live template) makes `zfs rename` fail with "pool or dataset is busy": the upgrade rolls back (1) and the pool is as it was.
#[test]
fn busy_dataset_rolls_back() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    let before = host.guids();
    let dev = host.live().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let mut table = std::fs::read_to_string(host.state.join("mounts")).unwrap();
    table.push_str(&format!("devfs\t{}\tdevfs\trw\n", dev.display()));
    host.set("mounts", &table);

    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let result = json(&output);
    assert_eq!(
        failures(&result),
        [format!(
            "`{}` failed: cannot unmount '{}': pool or dataset is busy",
            zfs_rename("mroot", ARCHIVE),
            host.live().display()
        )],
        "{result:#}"
    );
    let expected = [
        host.stops(),
        host.unmounts(),
        vec![
            zfs_rename("mroot", ARCHIVE), // busy
            // Undone newest first: each jail's fstab mounted again, started.
            host.mount_root("www"),
            host.mount_part("www"),
            host.mount_root("mail"),
            host.mount_part("mail"),
            host.mount_root("ns"),
            host.mount_part("ns"),
            start("ns"),
            start("www"),
            start("mail"),
        ],
    ]
    .concat();
    assert_eq!(host.changes(), expected);
    assert_eq!(host.guids(), before);
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.running(), host.all_running());
}

// A staged dataset destroyed and recreated during the downtime has another GUID: jailswap does not rename it, rolls back (1), and leaves the new one untouched.
#[test]
fn replaced_dataset_is_left_alone() {
    let host = ZfsHost::new(Setup {
        after_ns_stop: Some(&format!(
            "zfs destroy {0} && zfs create {0}",
            dataset(STAGED)
        )),
        ..ZFS
    });
    host.boot();
    let live = host.guid("mroot").unwrap();
    let staged = host.guid(STAGED).unwrap();
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let replacement = host.guid(STAGED).unwrap();
    assert_ne!(replacement, staged);
    let errors = failures(&json(&output));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!(
            "it is no longer the dataset recorded before the first stop (expected dataset guid {staged}, found dataset guid {replacement})"
        )),
        "{errors:?}"
    );
    // The live template was renamed and renamed back; the replacement never.
    assert_eq!(
        host.zfs_changes(),
        [
            format!("zfs destroy {}", dataset(STAGED)),
            format!("zfs create {}", dataset(STAGED)),
            zfs_rename("mroot", ARCHIVE),
            zfs_rename(ARCHIVE, "mroot"),
        ]
    );
    assert_eq!(host.guid("mroot"), Some(live));
    assert_eq!(host.guid(STAGED), Some(replacement));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// An archive name taken during the downtime by a dataset mounted elsewhere: `zfs rename` refuses ("dataset already exists"), nothing is replaced, the upgrade rolls back (1).
#[test]
fn rename_onto_an_existing_dataset_is_refused() {
    let elsewhere = tempfile::tempdir().unwrap();
    let host = ZfsHost::new(Setup {
        after_ns_stop: Some(&format!(
            "zfs create -o mountpoint={} {}",
            elsewhere.path().join("x").display(),
            dataset(ARCHIVE)
        )),
        ..ZFS
    });
    host.boot();
    let live = host.guid("mroot").unwrap();
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert_eq!(
        failures(&json(&output)),
        [format!(
            "`{}` failed: cannot rename '{}': dataset already exists",
            zfs_rename("mroot", ARCHIVE),
            dataset("mroot")
        )]
    );
    assert_eq!(host.guid("mroot"), Some(live));
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.version(STAGED).as_deref(), Some("2.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
}

// An archive name taken during the downtime by a directory that holds files: jailswap refuses to rename onto it (zfs would hide them under the mount) before running zfs, and rolls back (1).
#[test]
fn rename_onto_an_existing_path_is_refused() {
    let host = ZfsHost::new(Setup {
        after_ns_stop: Some("mkdir -p ${path}/../mroot.20240101/etc"),
        ..ZFS
    });
    host.boot();
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let errors = failures(&json(&output));
    assert!(
        errors.len() == 1
            && errors[0]
                .contains("\"mroot.20240101\" already exists in the store; not replacing it"),
        "{errors:?}"
    );
    assert_eq!(host.zfs_changes(), Vec::<String>::new());
    assert!(host.store.join(ARCHIVE).join("etc").is_dir());
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
}

// An empty directory where a renamed dataset will be mounted (a mountpoint zfs left behind) is mounted over, as zfs does: the upgrade commits.
#[test]
fn rename_onto_an_empty_directory_mounts_over_it() {
    let host = ZfsHost::new(Setup {
        after_ns_stop: Some("mkdir ${path}/../mroot.20240101"),
        ..ZFS
    });
    host.boot();
    let live = host.guid("mroot").unwrap();
    host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(host.guid(ARCHIVE), Some(live));
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
}

// `carry` is refused (65) on a zfs store before anything stops: a move between two datasets is not one atomic rename.
#[test]
fn carry_is_refused() {
    let host = ZfsHost::new(Setup {
        extra: "carry = [\"usr/ports\"]\n",
        ..ZFS
    });
    // The Handbook moves the ports tree into a new template that has none.
    std::fs::remove_dir(host.store.join(STAGED).join("usr/ports")).unwrap();
    host.boot();
    let before = host.guids();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(65), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("carry cannot move \"usr/ports\" on a zfs store"),
        "{stderr}"
    );
    assert_eq!(host.changes(), Vec::<String>::new());
    assert_eq!(host.guids(), before);
    assert!(host.store.join("mroot/usr/ports").is_dir());
}

// `store_kind = "auto"` finds zfs when the live template is a dataset of its own, and directory when it is a directory inside the store's dataset.
#[test]
fn auto_detects_datasets() {
    let host = ZfsHost::new(Setup {
        store_kind: None,
        ..ZFS
    });
    host.boot();
    assert_eq!(host.status()["store_kind"], "zfs");
    let output = host.jailswap(&["check"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("zfs"),
        "{}",
        explain(&output)
    );
    // The same store with a plain directory as its live template.
    host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    std::fs::rename(host.store.join(ARCHIVE), host.dir.join("kept")).unwrap();
    let text = std::fs::read_to_string(&host.config).unwrap();
    let other = host.dir.join("other.toml");
    std::fs::write(&other, text.replace("live = \"mroot\"", "live = \"plain\"")).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(host.store.join("plain")).unwrap();
    let output = host
        .command(Path::new(env!("CARGO_BIN_EXE_jailswap")))
        .args(["--json", "-c", path(&other), "status"])
        .output()
        .unwrap();
    assert_eq!(
        json(&output)["store_kind"],
        "directory",
        "{}",
        explain(&output)
    );
}

// A template holding a snapshot of the administrator's cannot be pruned: zfs refuses ("filesystem has children"), the prune stops (1), and the template and the snapshot stay.
#[test]
fn prune_keeps_a_template_with_snapshots_of_yours() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    stage(&host, "mroot.20240701", "mroot", "3.0");
    host.ok(&["upgrade", "--to", "mroot.20240701"]);
    let mine = format!("{}@before-cleanup", dataset(ARCHIVE));
    host.zfs(&["snapshot", &mine]);
    let before = host.guids();
    host.clear_log();

    let output = host.jailswap(&["--json", "prune", "--keep", "0"]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert_eq!(
        failures(&json(&output)),
        [format!(
            "`zfs destroy {0}` failed: cannot destroy '{0}': filesystem has children; use '-r' to destroy the following datasets:; {mine}",
            dataset(ARCHIVE)
        )]
    );
    assert_eq!(
        host.zfs_changes(),
        [format!("zfs destroy {}", dataset(ARCHIVE))]
    );
    assert_eq!(host.guids(), before);
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
}

// `store_kind = "zfs"` on a store that is not where a dataset is mounted is refused (65), naming the dataset it lies in and how to make one.
#[test]
fn zfs_store_must_be_a_dataset() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    // The same templates, seen from a directory of the store's dataset.
    let inner = host.store.join("templates");
    std::fs::create_dir(&inner).unwrap();
    let text = std::fs::read_to_string(&host.config).unwrap();
    let other = host.dir.join("other.toml");
    std::fs::write(
        &other,
        text.replacen(
            &format!("store = {:?}", host.store.display().to_string()),
            &format!("store = {:?}", inner.display().to_string()),
            1,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = host
        .command(Path::new(env!("CARGO_BIN_EXE_jailswap")))
        .args(["-c", path(&other), "upgrade", "--to", STAGED])
        .output()
        .unwrap();
    assert_eq!(code(&output), Some(65), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "the store {:?} is not where a ZFS dataset is mounted (it lies in {STORE_DATASET}, mounted at {})",
            inner.display().to_string(),
            host.store.display()
        )),
        "{stderr}"
    );
    assert_eq!(host.changes(), Vec::<String>::new());
}

// A target that is not a dataset of its own, or whose mountpoint would not follow a rename, is refused (65) before anything stops, saying what to do.
#[test]
fn templates_must_be_datasets_that_follow_their_name() {
    let host = ZfsHost::new(ZFS);
    host.boot();
    // A directory of the store's dataset.
    let plain = host.store.join("mroot.plain");
    std::fs::create_dir_all(plain.join("s")).unwrap();
    std::os::unix::fs::symlink("s/etc", plain.join("etc")).unwrap();
    // A dataset whose mountpoint is set on itself.
    let pinned = "mroot.pinned";
    host.zfs(&[
        "create",
        "-o",
        &format!("mountpoint={}", host.store.join(pinned).display()),
        &dataset(pinned),
    ]);
    for (target, why) in [
        (
            "mroot.plain",
            format!(
                "it is a directory of the store's dataset, not a ZFS dataset of its own (create templates with `zfs create {}` or `jailswap stage`)",
                dataset("mroot.plain")
            ),
        ),
        (
            pinned,
            format!(
                "dataset {0} has its mountpoint set on itself ({1}, local), so it would not follow a rename; run `zfs inherit mountpoint {0}`",
                dataset(pinned),
                host.store.join(pinned).display()
            ),
        ),
    ] {
        host.clear_log();
        let output = host.jailswap(&["upgrade", "--to", target]);
        assert_eq!(code(&output), Some(65), "{}", explain(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{target:?} cannot be swapped in: {why}")),
            "{stderr}"
        );
        assert_eq!(host.changes(), Vec::<String>::new());
    }
}

// ------------------------------------------------------------------ crashes

/// A copy of a prepared host, put back before each crash point: the
/// same paths, so the configuration, the fstabs and the fake's state stay
/// valid.
struct Checkpoint {
    saved: tempfile::TempDir,
}

impl Checkpoint {
    fn save(host: &ZfsHost) -> Checkpoint {
        let saved = tempfile::tempdir().unwrap();
        copy_all(&host.dir, saved.path());
        Checkpoint { saved }
    }

    fn restore(&self, host: &ZfsHost) {
        for entry in std::fs::read_dir(&host.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        copy_all(self.saved.path(), &host.dir);
    }
}

fn copy_all(from: &Path, to: &Path) {
    let output = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", explain(&output));
}

/// Where jailswap is stopped: at a journal commit (`JAILSWAP_KILL_AT`), or
/// by the fakes right after a call took effect (`crash-at`).
#[derive(Clone, Debug)]
enum Crash {
    Commit(String),
    After(String),
}

/// The journal commits of a clean run, as `NAME:N:WHEN`, from its result.
fn commit_points(result: &Value) -> Vec<Crash> {
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
        .into_iter()
        .flat_map(|point| {
            ["before", "after"]
                .into_iter()
                .map(move |when| format!("{point}:{when}"))
        })
        // Before the plan is written nothing has happened.
        .filter(|point| point != "begin:1:before")
        .map(Crash::Commit)
        .collect()
}

impl ZfsHost {
    /// Runs a transaction that dies at `crash`, and checks that it did.
    fn crash(&self, crash: &Crash, arguments: &[&str]) {
        let output = match crash {
            Crash::Commit(point) => self.jailswap_killed_at(point, arguments),
            Crash::After(call) => {
                self.set("crash-at", &format!("{call}\n"));
                let output = self.jailswap(arguments);
                assert!(
                    !self.state.join("crash-at").exists(),
                    "the fakes never saw {call}: {}",
                    explain(&output)
                );
                output
            }
        };
        assert_eq!(
            output.status.signal(),
            Some(9),
            "{crash:?}: {}",
            explain(&output)
        );
    }

    /// Runs `recover` after a crash; its result and the calls it made.
    fn recover(&self, crash: &Crash) -> (Option<i32>, Value) {
        self.clear_log();
        let output = self.jailswap(&["--json", "recover"]);
        assert!(
            matches!(code(&output), Some(0 | 1)),
            "{crash:?}: {}",
            explain(&output)
        );
        (code(&output), json(&output))
    }

    /// What must hold after every command, whatever the store holds: each
    /// jail's mounts are its fstab, every jail runs, each jail's own part is
    /// untouched, no staging copy is left, nothing is pending.
    fn assert_settled(&self, crash: &Crash) {
        assert_eq!(self.mounts(), self.expected_mounts(), "{crash:?}");
        assert_eq!(self.running(), self.all_running(), "{crash:?}");
        for jail in JAILS {
            assert_eq!(
                std::fs::read_to_string(self.own(jail).join("etc/rc.conf")).unwrap(),
                format!("hostname=\"{jail}.example.org\"\n"),
                "{crash:?}"
            );
        }
        assert!(
            self.store_names()
                .iter()
                .all(|n| !n.starts_with(".jailswap")),
            "{crash:?}: {:?}",
            self.store_names()
        );
        assert!(
            self.datasets()
                .iter()
                .all(|d| !d.name.contains(".jailswap")),
            "{crash:?}: {:#?}",
            self.datasets()
        );
        // Every file system is mounted where its name says, with its files.
        for d in self.datasets() {
            if d.kind == "filesystem" && d.name.starts_with(&format!("{STORE_DATASET}/")) {
                let name = d.name.strip_prefix(&format!("{STORE_DATASET}/")).unwrap();
                assert!(self.version(name).is_some(), "{crash:?}: {name}");
            }
        }
        let output = self.jailswap(&["--json", "history", "--limit", "1"]);
        let last = &json(&output)[0];
        assert!(
            last["state"] == "committed" || last["state"] == "rolled_back",
            "{crash:?}: {last:#}"
        );
    }
}

/// The names and GUIDs after renaming dataset `from` (and its snapshots)
/// to `to`.
fn renamed(guids: &BTreeMap<String, String>, from: &str, to: &str) -> BTreeMap<String, String> {
    let (from, to) = (dataset(from), dataset(to));
    guids
        .iter()
        .map(|(name, guid)| {
            let moved = if *name == from || name.starts_with(&format!("{from}@")) {
                format!("{to}{}", &name[from.len()..])
            } else {
                name.clone()
            };
            (moved, guid.clone())
        })
        .collect()
}

/// Where the two templates of a swap are, by GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Arrangement {
    /// The live name holds the old template, the target name the new one.
    Old,
    /// Between the two renames: no live name.
    Between,
    /// The live name holds the new template, the archive name the old one.
    New,
}

/// The swap of `target` in for the live template, archived as `archive`.
struct Swap<'a> {
    target: &'a str,
    archive: &'a str,
    old: String,
    new: String,
    guids: BTreeMap<String, String>,
}

impl Swap<'_> {
    fn arrangement(&self, host: &ZfsHost) -> Arrangement {
        let at = |name: &str| host.guid(name);
        match (at("mroot"), at(self.target), at(self.archive)) {
            (Some(l), Some(t), None) if l == self.old && t == self.new => Arrangement::Old,
            (None, Some(t), Some(a)) if t == self.new && a == self.old => Arrangement::Between,
            (Some(l), None, Some(a)) if l == self.new && a == self.old => Arrangement::New,
            other => panic!("the store is in no arrangement of the swap: {other:?}"),
        }
    }

    /// Kills the swap at `crash`, recovers, and checks what recovery ran
    /// and the whole invariant.
    fn crash_and_recover(&self, host: &ZfsHost, crash: &Crash, arguments: &[&str]) -> Arrangement {
        host.crash(crash, arguments);
        let crashed_in = self.arrangement(host);
        let (code, result) = host.recover(crash);
        // Forward once the swap took effect, back before it.
        let (expected_code, expected_zfs) = match crashed_in {
            Arrangement::Old => (1, vec![]),
            Arrangement::Between => (1, vec![zfs_rename(self.archive, "mroot")]),
            Arrangement::New => (0, vec![]),
        };
        assert_eq!(code, Some(expected_code), "{crash:?}: {result:#}");
        assert_eq!(host.zfs_changes(), expected_zfs, "{crash:?}");
        host.assert_identity_checked();
        let expected = if expected_code == 0 {
            renamed(
                &renamed(&self.guids, "mroot", self.archive),
                self.target,
                "mroot",
            )
        } else {
            self.guids.clone()
        };
        assert_eq!(host.guids(), expected, "{crash:?}");
        host.assert_settled(crash);
        crashed_in
    }
}

/// Runs `check` for every crash point, in two workers, each on a host of
/// its own that `prepare` makes and that is put back before each point.
fn sweep<T: Send>(
    points: &[Crash],
    prepare: &(dyn Fn() -> ZfsHost + Sync),
    check: &(dyn Fn(&ZfsHost, &Crash) -> T + Sync),
) -> Vec<T> {
    const WORKERS: usize = 2;
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let results = &results;
            scope.spawn(move || {
                let host = prepare();
                let checkpoint = Checkpoint::save(&host);
                for crash in points.iter().skip(worker).step_by(WORKERS) {
                    checkpoint.restore(&host);
                    let result = check(&host, crash);
                    results.lock().unwrap().push(result);
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// Every crash point of a swap: each journal commit, and right after each
/// `zfs rename`; recovery restores the invariant from each.
fn sweep_swap(
    prepare: &(dyn Fn() -> ZfsHost + Sync),
    target: &str,
    archive: &str,
    arguments: &[&str],
) -> usize {
    // A clean run on a host of its own tells the journal commits.
    let host = prepare();
    let mut clean = vec!["--json"];
    clean.extend_from_slice(arguments);
    let output = host.jailswap(&clean);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    let mut points = commit_points(&json(&output));
    points.push(Crash::After(zfs_rename("mroot", archive)));
    points.push(Crash::After(zfs_rename(target, "mroot")));
    let seen: std::collections::BTreeSet<Arrangement> = sweep(&points, prepare, &|host, crash| {
        let swap = Swap {
            target,
            archive,
            old: host.guid("mroot").unwrap(),
            new: host.guid(target).unwrap(),
            guids: host.guids(),
        };
        swap.crash_and_recover(host, crash, arguments)
    })
    .into_iter()
    .collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [Arrangement::Old, Arrangement::Between, Arrangement::New],
        "every arrangement of the swap was crashed in"
    );
    points.len()
}

// An upgrade killed at every journal commit and right after each `zfs rename`: recovery renames back only from between the renames, and always restores the invariant.
#[test]
fn upgrade_crashes_recover() {
    let prepare = || {
        let host = ZfsHost::new(ZFS);
        host.boot();
        host
    };
    let arguments = ["upgrade", "--to", STAGED, "--archive-as", ARCHIVE];
    let covered = sweep_swap(&prepare, STAGED, ARCHIVE, &arguments);
    eprintln!("upgrade: {covered} crash points");
    assert!(covered >= 40, "{covered}");
}

// A rollback killed at every journal commit and right after each `zfs rename`: the same.
#[test]
fn rollback_crashes_recover() {
    let prepare = || {
        let host = ZfsHost::new(ZFS);
        host.boot();
        host.ok(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
        host.clear_log();
        host
    };
    let covered = sweep_swap(&prepare, ARCHIVE, STAGED, &["rollback"]);
    eprintln!("rollback: {covered} crash points");
    assert!(covered >= 40, "{covered}");
}

/// How far a stage got, from the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StageState {
    Nothing,
    Snapshot,
    Clone,
    Published,
}

// A stage killed at every journal commit and right after each zfs(8) command: recovery leaves either no new template and no snapshot or clone of its own, or the complete template.
#[test]
fn stage_crashes_recover() {
    const NAME: &str = "mroot.20240701";
    let arguments = ["stage", "--as", NAME, "--run", "echo 3.0 > ${dir}/VERSION"];
    let snapshot = stage_snapshot("mroot", NAME);
    let clone = dataset(&staging(NAME));
    let prepare = || {
        let host = ZfsHost::new(ZFS);
        host.boot();
        host
    };
    let host = prepare();
    let mut points = commit_points(&host.ok(&arguments));
    points.push(Crash::After(format!("zfs snapshot {snapshot}")));
    points.push(Crash::After(format!("zfs clone {snapshot} {clone}")));
    points.push(Crash::After(zfs_rename(&staging(NAME), NAME)));
    let seen: std::collections::BTreeSet<StageState> = sweep(&points, &prepare, &|host, crash| {
        let before = host.guids();
        host.crash(crash, &arguments);
        let state = if host.guid(NAME).is_some() {
            StageState::Published
        } else if host.find(&clone).is_some() {
            StageState::Clone
        } else if host.find(&snapshot).is_some() {
            StageState::Snapshot
        } else {
            StageState::Nothing
        };
        let (code, result) = host.recover(crash);
        let (expected_code, expected_zfs) = match state {
            StageState::Nothing => (1, vec![]),
            StageState::Snapshot => (1, vec![format!("zfs destroy {snapshot}")]),
            StageState::Clone => (
                1,
                vec![
                    format!("zfs destroy -d {snapshot}"),
                    format!("zfs destroy {clone}"),
                ],
            ),
            StageState::Published => (0, vec![]),
        };
        assert_eq!(
            code,
            Some(expected_code),
            "{crash:?} ({state:?}): {result:#}"
        );
        assert_eq!(host.zfs_changes(), expected_zfs, "{crash:?} ({state:?})");
        host.assert_identity_checked();
        let mut now = host.guids();
        if expected_code == 0 {
            // The complete template: the clone of the snapshot, with the
            // command's work in it.
            assert_eq!(
                host.find(&dataset(NAME)).unwrap().origin,
                snapshot,
                "{crash:?}"
            );
            assert_eq!(host.version(NAME).as_deref(), Some("3.0"), "{crash:?}");
            now.remove(&dataset(NAME));
            now.remove(&snapshot);
        }
        assert_eq!(now, before, "{crash:?} ({state:?})");
        assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
        host.assert_settled(crash);
        state
    })
    .into_iter()
    .collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            StageState::Nothing,
            StageState::Snapshot,
            StageState::Clone,
            StageState::Published
        ]
    );
    eprintln!("stage: {} crash points", points.len());
}

/// How far a prune of a template with a dependent clone got, from the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PruneState {
    Untouched,
    Promoted,
    Marked,
    Destroyed,
}

// A prune killed at every journal commit and right after each zfs(8) command (promote, deferred destroy, destroy) finishes on recovery (a prune always goes forward), running only what is left.
#[test]
fn prune_crashes_recover() {
    const FIRST: &str = "mroot.20240701";
    const SECOND: &str = "mroot.20240801";
    let arguments = ["prune", "--keep", "0"];
    let prepare = || {
        let host = ZfsHost::new(ZFS);
        host.boot();
        stage(&host, FIRST, "mroot", "3.0");
        host.ok(&["upgrade", "--to", FIRST, "--archive-as", ARCHIVE]);
        stage(&host, SECOND, "mroot", "4.0");
        host.ok(&["upgrade", "--to", SECOND]);
        host.clear_log();
        host
    };
    let held = stage_snapshot(ARCHIVE, FIRST);
    let promoted = stage_snapshot(FIRST, FIRST);
    let promote = format!("zfs promote {}", dataset(FIRST));
    let mark = format!("zfs destroy -d {promoted}");
    let destroy = format!("zfs destroy {}", dataset(ARCHIVE));
    let host = prepare();
    let mut points = commit_points(&host.ok(&arguments));
    points.extend([&promote, &mark, &destroy].map(|call| Crash::After(call.clone())));
    let seen: std::collections::BTreeSet<PruneState> = sweep(&points, &prepare, &|host, crash| {
        let mut expected = host.guids();
        expected.remove(&dataset(ARCHIVE));
        expected.remove(&held);
        host.crash(crash, &arguments);
        let state = match (host.find(&dataset(ARCHIVE)), host.find(&promoted)) {
            (None, _) => PruneState::Destroyed,
            (Some(_), None) => PruneState::Untouched,
            (Some(_), Some(snapshot)) if snapshot.defer_destroy == "on" => PruneState::Marked,
            (Some(_), Some(_)) => PruneState::Promoted,
        };
        let (code, result) = host.recover(crash);
        let expected_zfs = match state {
            PruneState::Untouched => vec![promote.clone(), mark.clone(), destroy.clone()],
            PruneState::Promoted | PruneState::Marked => vec![mark.clone(), destroy.clone()],
            PruneState::Destroyed => vec![],
        };
        assert_eq!(code, Some(0), "{crash:?} ({state:?}): {result:#}");
        assert_eq!(host.zfs_changes(), expected_zfs, "{crash:?} ({state:?})");
        host.assert_identity_checked();
        assert_eq!(host.guids(), expected, "{crash:?} ({state:?})");
        assert_eq!(host.find(&dataset(FIRST)).unwrap().origin, "-");
        assert_eq!(host.version(FIRST).as_deref(), Some("3.0"));
        assert_eq!(host.version("mroot").as_deref(), Some("4.0"));
        host.assert_settled(crash);
        state
    })
    .into_iter()
    .collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            PruneState::Untouched,
            PruneState::Promoted,
            PruneState::Marked,
            PruneState::Destroyed
        ]
    );
    eprintln!("prune: {} crash points", points.len());
}
