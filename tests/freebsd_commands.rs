//! The FreeBSD backend (`backend = "commands"`) end to end: the real
//! `jailswap` binary, run as a child process, swaps a Handbook-style store
//! (jails ns, mail and www, 14.5 "Updating Multiple Jails") through
//! FreeBSD's own tools.
//!
//! There is no FreeBSD here, so this is the one place where the host is
//! mocked: `tests/fakes/` holds POSIX sh stand-ins for mount(8), umount(8),
//! jls(8) and service(8) (see `tests/fakes/fake-lib.sh`), put first on the
//! PATH of jailswap. Nothing is mounted and no jail runs: the fakes keep a
//! mount table and the running jails in a state directory, print `mount -p`
//! the way FreeBSD lays it out, fail `umount` with "Device busy" on request,
//! and append every call's exact argv to a log. The store is a real
//! temporary directory, because template renames are done in-process.
//!
//! The tests assert the exact ordered log of the calls that change the host
//! (`mount -t`, `umount`, `service`); the read-only queries (`mount -p`,
//! `jls -j`) are left out of that comparison, since how often jailswap looks
//! is its own business. They run as root (the configuration must then be
//! owned by root and not writable by others, which it is) or as anyone.
//! The jailswap process is killed mid-transaction by the fakes themselves
//! (a `crash-at` call line), so the crash point is exact, not timed; one
//! test uses jailswap's own `JAILSWAP_KILL_AT` hook instead, to stop right
//! after a journal commit.
//!
//! By default the fake `mount -p` writes spaces as `\040`, the format the
//! backend expects; FreeBSD's real mount(8) does not escape them, which the
//! `raw-mount-p` mode reproduces. The tests marked `#[ignore = "bug: ..."]`
//! show defects of the backend on real FreeBSD behaviour; run them with
//! `cargo test --test freebsd_commands -- --ignored`.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const JAILS: [&str; 3] = ["ns", "mail", "www"];
const STAGED: &str = "mroot.20240601";
const ARCHIVE: &str = "mroot.20240101";

/// A fake FreeBSD host in a temporary directory D:
///
/// ```text
/// D/<base>/j/mroot           live template: VERSION 1.0, s/, etc -> s/etc
/// D/<base>/j/mroot.20240601  staged template of the same shape
/// D/<base>/j/<jail>/s        each jail's root, with the mount point of its
///                            own part (on FreeBSD it comes from the template)
/// D/<base>/js/<jail>         each jail's own read-write part
/// D/fstab.<jail>             its two Handbook lines
/// D/bin/                     the fakes; D/state/ their state
/// D/jailswap.toml            the configuration; D/db/ the journal
/// ```
struct FakeHost {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    /// The store as the configuration and the fstabs name it.
    store: PathBuf,
    /// The jails' own parts, as the fstabs name them.
    data: PathBuf,
    state: PathBuf,
    bin: PathBuf,
    config: PathBuf,
    own_mounts: bool,
}

#[derive(Clone, Copy)]
struct Layout<'a> {
    /// The directory under D that holds j/ and js/.
    base: &'a str,
    /// When set, the configuration names the store through this symbolic
    /// link under D to `base`, as /home -> /usr/home on many FreeBSD hosts.
    link: Option<&'a str>,
    /// The staged template has a VERSION file (its health checks pass).
    staged_healthy: bool,
    /// The jails mount their own fstab (jail.conf `mount.fstab`): the
    /// configuration names no `fstab`, and the fake service(8) mounts it
    /// at start and unmounts it at stop, as jail(8) does.
    own_mounts: bool,
}

const HANDBOOK: Layout<'static> = Layout {
    base: "home",
    link: None,
    staged_healthy: true,
    own_mounts: false,
};

fn make_template(dir: &Path, version: Option<&str>) {
    std::fs::create_dir_all(dir.join("s")).unwrap();
    std::fs::create_dir_all(dir.join("usr")).unwrap();
    std::os::unix::fs::symlink("s/etc", dir.join("etc")).unwrap();
    if let Some(version) = version {
        std::fs::write(dir.join("VERSION"), format!("{version}\n")).unwrap();
    }
}

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

impl FakeHost {
    fn new(layout: Layout) -> FakeHost {
        let temp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(temp.path()).unwrap();
        let real = dir.join(layout.base);
        let named = match layout.link {
            Some(link) => {
                std::os::unix::fs::symlink(&real, dir.join(link)).unwrap();
                dir.join(link)
            }
            None => real.clone(),
        };
        let host = FakeHost {
            _temp: temp,
            store: named.join("j"),
            data: named.join("js"),
            state: dir.join("state"),
            bin: dir.join("bin"),
            config: dir.join("jailswap.toml"),
            own_mounts: layout.own_mounts,
            dir,
        };
        for sub in ["state", "bin", "db"] {
            std::fs::create_dir_all(host.dir.join(sub)).unwrap();
        }
        let fakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes");
        for name in ["fake-lib.sh", "mount", "umount", "jls", "service"] {
            let copy = host.bin.join(name);
            std::fs::copy(fakes.join(name), &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::create_dir_all(real.join("j")).unwrap();
        make_template(&real.join("j/mroot"), Some("1.0"));
        make_template(
            &real.join("j").join(STAGED),
            layout.staged_healthy.then_some("2.0"),
        );

        let mut config = format!(
            "store = {:?}\nlive = \"mroot\"\njournal = {:?}\nparallel = 1\nbackend = \"commands\"\n\n\
             [defaults]\nstart = \"service jail start ${{name}}\"\nstop = \"service jail stop ${{name}}\"\n\
             status = \"jls -j ${{name}}\"\ntimeout = \"20s\"\n\n\
             [health]\ntimeout = \"1s\"\ninterval = \"50ms\"\n",
            host.store.display().to_string(),
            host.dir.join("db/journal.sqlite").display().to_string(),
        );
        for jail in JAILS {
            std::fs::create_dir_all(real.join("j").join(jail).join("s")).unwrap();
            std::fs::create_dir_all(real.join("js").join(jail).join("etc")).unwrap();
            std::fs::write(
                real.join("js").join(jail).join("etc/rc.conf"),
                format!("hostname=\"{jail}.example.org\"\n"),
            )
            .unwrap();
            let fstab = host.dir.join(format!("fstab.{jail}"));
            std::fs::write(
                &fstab,
                format!(
                    "# {jail}: the template read-only, then its own part read-write\n{} {} nullfs ro 0 0\n{} {} nullfs rw 0 0\n",
                    jailswap::fstab::escape(&host.live().to_string_lossy()),
                    jailswap::fstab::escape(&host.root(jail).to_string_lossy()),
                    jailswap::fstab::escape(&host.own(jail).to_string_lossy()),
                    jailswap::fstab::escape(&host.part(jail).to_string_lossy()),
                ),
            )
            .unwrap();
            config.push_str(&format!(
                "\n[[jail]]\nname = \"{jail}\"\npath = {:?}\n",
                host.root(jail).display().to_string(),
            ));
            if layout.own_mounts {
                host.set(&format!("jail-fstab.{jail}"), &fstab.display().to_string());
            } else {
                config.push_str(&format!("fstab = {:?}\n", fstab.display().to_string()));
            }
            if jail != "ns" {
                config.push_str("depends = [\"ns\"]\n");
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
            .env_remove("JAILSWAP_LOG");
        command
    }

    /// Runs one of the fakes, as the boot scripts would.
    fn tool(&self, program: &str, arguments: &[&str]) -> Output {
        let output = self
            .command(&self.bin.join(program))
            .args(arguments)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program} {arguments:?}: {output:?}"
        );
        output
    }

    /// Boots the host: `mount -a` over the jails' fstab lines, then
    /// `service jail start`; the log starts empty afterwards.
    fn boot(&self) {
        if !self.own_mounts {
            self.mount_all();
        }
        for jail in JAILS {
            self.tool("service", &["jail", "start", jail]);
        }
        self.clear_log();
    }

    /// What `mount -a` does at boot with the Handbook's /etc/fstab lines.
    fn mount_all(&self) {
        for jail in JAILS {
            let live = self.live();
            let root = self.root(jail);
            let own = self.own(jail);
            let part = self.part(jail);
            self.tool(
                "mount",
                &["-t", "nullfs", "-o", "ro", path(&live), path(&root)],
            );
            self.tool(
                "mount",
                &["-t", "nullfs", "-o", "rw", path(&own), path(&part)],
            );
        }
    }

    /// A power cycle: no jail runs and nothing is mounted, then the boot
    /// scripts run `mount -a`. The jails are not started: jailswap's rc.d
    /// script runs before rc.d/jail.
    fn reboot(&self) {
        self.set("running", "");
        self.set("mounts", "");
        self.mount_all();
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

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.state.join("calls"));
    }

    /// Every call the fakes saw, in order.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The calls that change the host, in order.
    fn changes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| call != "mount -p" && !call.starts_with("jls "))
            .collect()
    }

    /// The fake mount table as (source, target, type, options), sorted.
    fn mounts(&self) -> Vec<(String, String, String, String)> {
        let mut table: Vec<_> = std::fs::read_to_string(self.state.join("mounts"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 4, "{line:?}");
                (
                    fields[0].to_string(),
                    fields[1].to_string(),
                    fields[2].to_string(),
                    fields[3].to_string(),
                )
            })
            .collect();
        table.sort();
        table
    }

    /// The mount table the fstabs describe, each line once, template read-only.
    /// Paths as mount_nullfs(8) records them: resolved with realpath(3).
    fn expected_mounts(&self) -> Vec<(String, String, String, String)> {
        let real = |path: PathBuf| std::fs::canonicalize(path).unwrap().display().to_string();
        let mut table = Vec::new();
        for jail in JAILS {
            table.push((
                real(self.live()),
                real(self.root(jail)),
                "nullfs".to_string(),
                "ro".to_string(),
            ));
            table.push((
                real(self.own(jail)),
                real(self.part(jail)),
                "nullfs".to_string(),
                "rw".to_string(),
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

    /// The VERSION of a template in the store; None when it is missing.
    fn version(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.store.join(name).join("VERSION"))
            .ok()
            .map(|text| text.trim().to_string())
    }

    /// The names in the store, sorted.
    fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.store)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.state.join(file), text).unwrap();
    }

    // The calls of each phase of the Handbook's procedure, in jailswap's order.

    /// Dependants first (mail and www depend on ns), then ns.
    fn stops(&self) -> Vec<String> {
        vec![stop("mail"), stop("www"), stop("ns")]
    }
    /// Each jail's fstab in reverse: its read-write part, then the template.
    fn unmounts(&self) -> Vec<String> {
        JAILS
            .iter()
            .flat_map(|jail| [self.umount_part(jail), self.umount_root(jail)])
            .collect()
    }
    /// Each jail's fstab in order: the template read-only, then its part.
    fn mounts_in_order(&self) -> Vec<String> {
        JAILS
            .iter()
            .flat_map(|jail| [self.mount_root(jail), self.mount_part(jail)])
            .collect()
    }
    fn starts(&self) -> Vec<String> {
        vec![start("ns"), start("mail"), start("www")]
    }
    fn umount_root(&self, jail: &str) -> String {
        format!("umount {}", arg(&self.root(jail)))
    }
    fn umount_part(&self, jail: &str) -> String {
        format!("umount {}", arg(&self.part(jail)))
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

    /// The complete forward procedure of an upgrade or rollback.
    fn swap(&self) -> Vec<String> {
        [
            self.stops(),
            self.unmounts(),
            self.mounts_in_order(),
            self.starts(),
        ]
        .concat()
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

// An upgrade runs the Handbook's procedure through FreeBSD's tools, in order, and commits (0).
#[test]
fn upgrade_runs_the_handbook_procedure() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    let output = host.jailswap(&[
        "--json",
        "upgrade",
        "--to",
        STAGED,
        "--archive-as",
        ARCHIVE,
        "--reason",
        "14.5.3",
    ]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert_eq!(json(&output)["outcome"], "committed");
    assert_eq!(host.changes(), host.swap());
    // The jails' state was asked before anything stopped.
    let calls = host.calls();
    let first_stop = calls.iter().position(|c| c.starts_with("service")).unwrap();
    for jail in JAILS {
        assert!(
            calls[..first_stop].contains(&format!("jls -j {jail}")),
            "{calls:#?}"
        );
    }
    // mv mroot mroot.20240101; mv mroot.20240601 mroot
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
    assert_eq!(host.version(STAGED), None);
    assert!(!host.store.join(STAGED).exists());
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// A rollback after an upgrade runs the same procedure and puts the old template back live.
#[test]
fn rollback_after_upgrade() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    host.clear_log();

    let output = host.jailswap(&["--json", "rollback"]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    let result = json(&output);
    assert_eq!(result["kind"], "rollback");
    assert_eq!(result["outcome"], "committed");
    assert_eq!(result["to"], ARCHIVE);
    assert_eq!(host.changes(), host.swap());
    // The template that was live goes back under the name it went live with.
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.version(STAGED).as_deref(), Some("2.0"));
    assert!(!host.store.join(ARCHIVE).exists());
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());

    let history = json(&host.jailswap(&["--json", "history"]));
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "upgrade"]);
}

// "Device busy" from umount rolls the transaction back (1): the undo runs, the store is unchanged.
#[test]
fn device_busy_rolls_back() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    let before = host.mounts();
    let names = host.store_names();
    // A process of the host still has its working directory in www's template.
    host.set(
        "busy",
        &format!(
            "{}\n",
            std::fs::canonicalize(host.root("www")).unwrap().display()
        ),
    );
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let result = json(&output);
    assert_eq!(result["outcome"], "rolled_back");
    let failed: Vec<&Value> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{result:#}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("Device busy"),
        "{result:#}"
    );

    let expected = [
        host.stops(),
        vec![
            host.umount_part("ns"),
            host.umount_root("ns"),
            host.umount_part("mail"),
            host.umount_root("mail"),
            host.umount_part("www"),
            host.umount_root("www"), // Device busy
            // Undo, newest first: remount what was unmounted, restart.
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
    assert_eq!(host.store_names(), names);
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.version(STAGED).as_deref(), Some("2.0"));
    assert_eq!(host.mounts(), before);
    assert_eq!(host.running(), host.all_running());
}

// Failing health checks after start roll back (1): stop, unmount, rename back, remount, restart.
#[test]
fn unhealthy_template_rolls_back() {
    let host = FakeHost::new(Layout {
        staged_healthy: false,
        ..HANDBOOK
    });
    host.boot();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let undo = [
        vec![stop("www"), stop("mail"), stop("ns")],
        vec![
            host.umount_part("www"),
            host.umount_root("www"),
            host.umount_part("mail"),
            host.umount_root("mail"),
            host.umount_part("ns"),
            host.umount_root("ns"),
        ],
        vec![
            host.mount_root("www"),
            host.mount_part("www"),
            host.mount_root("mail"),
            host.mount_part("mail"),
            host.mount_root("ns"),
            host.mount_part("ns"),
        ],
        vec![start("ns"), start("www"), start("mail")],
    ]
    .concat();
    assert_eq!(host.changes(), [host.swap(), undo].concat());
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert!(host.store.join(STAGED).is_dir());
    assert!(!host.store.join(ARCHIVE).exists());
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// A dry run prints the plan and runs nothing that changes the host.
#[test]
fn dry_run_changes_nothing() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    let before = host.mounts();
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED, "--dry-run"]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    let plan = json(&output);
    assert_eq!(plan["outcome"], "planned");
    let verbs: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["action"].as_str().unwrap())
        .collect();
    assert_eq!(verbs.iter().filter(|v| **v == "unmount").count(), 6);
    assert_eq!(verbs.iter().filter(|v| **v == "rename").count(), 2);
    assert_eq!(host.changes(), Vec::<String>::new());
    assert!(!host.calls().is_empty(), "the dry run looks at the host");
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), before);
}

/// Runs an upgrade that the fakes kill with SIGKILL right after `crash_at`
/// took effect, and checks that it is pending.
fn crash_upgrade(host: &FakeHost, crash_at: &str) {
    host.set("crash-at", &format!("{crash_at}\n"));
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(output.status.signal(), Some(9), "{}", explain(&output));
    assert_eq!(host.changes().last().map(String::as_str), Some(crash_at));
    assert!(
        !host.state.join("crash-at").exists(),
        "the fakes never reached {crash_at}"
    );
    let status = json(&host.jailswap(&["--json", "status"]));
    assert!(status["pending"].is_i64(), "{status:#}");
    // Nothing else may change the host until recover has run.
    host.clear_log();
    let refused = host.jailswap(&["upgrade", "--to", STAGED]);
    assert_eq!(code(&refused), Some(75), "{}", explain(&refused));
    assert_eq!(host.changes(), Vec::<String>::new());
}

// Killed after the swap (mid-remount), `recover` rolls forward: it runs only what is left, and commits (0).
#[test]
fn recover_rolls_forward_after_the_swap() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    crash_upgrade(&host, &host.mount_root("mail"));
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));

    let output = host.jailswap(&["--json", "recover"]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert_eq!(json(&output)["outcome"], "committed");
    assert_eq!(
        host.changes(),
        [
            host.mount_part("mail"),
            host.mount_root("www"),
            host.mount_part("www"),
            start("ns"),
            start("mail"),
            start("www"),
        ]
    );
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
    let status = json(&host.jailswap(&["--json", "status"]));
    assert_eq!(status["pending"], Value::Null, "{status:#}");
    assert_eq!(status["live"], STAGED, "{status:#}");
}

// Killed before the swap (mid-unmount), `recover` rolls back (1): it remounts and restarts, the store is unchanged.
#[test]
fn recover_rolls_back_before_the_swap() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    let names = host.store_names();
    crash_upgrade(&host, &host.umount_root("mail"));

    let output = host.jailswap(&["--json", "recover"]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert_eq!(json(&output)["outcome"], "rolled_back");
    assert_eq!(
        host.changes(),
        [
            host.mount_root("mail"),
            host.mount_part("mail"),
            host.mount_root("ns"),
            host.mount_part("ns"),
            start("ns"),
            start("www"),
            start("mail"),
        ]
    );
    assert_eq!(host.store_names(), names);
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
    // And a second recover finds nothing to do.
    host.clear_log();
    let again = host.jailswap(&["--json", "recover"]);
    assert_eq!(code(&again), Some(0), "{}", explain(&again));
    assert_eq!(json(&again)["outcome"], "nothing_pending");
    assert_eq!(host.changes(), Vec::<String>::new());
}

// Jails that mount their own fstab (jail.conf `mount.fstab`, no `fstab` key): jail(8) unmounts and remounts, jailswap checks and renames.
#[test]
fn jails_with_mount_fstab() {
    let host = FakeHost::new(Layout {
        own_mounts: true,
        ..HANDBOOK
    });
    host.boot();
    assert_eq!(host.mounts(), host.expected_mounts());
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    let stop_and_unmount =
        |jail: &str| [stop(jail), host.umount_part(jail), host.umount_root(jail)];
    let start_and_mount = |jail: &str| [start(jail), host.mount_root(jail), host.mount_part(jail)];
    let expected = [
        stop_and_unmount("mail"),
        stop_and_unmount("www"),
        stop_and_unmount("ns"),
        start_and_mount("ns"),
        start_and_mount("mail"),
        start_and_mount("www"),
    ]
    .concat();
    assert_eq!(host.changes(), expected);
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));
    assert_eq!(host.version(ARCHIVE).as_deref(), Some("1.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// A jail(8) that leaves the template mounted after stop: "verify nothing mounts mroot" fails, the transaction rolls back (1) before any rename.
#[test]
fn template_left_mounted_by_a_jail_rolls_back() {
    let host = FakeHost::new(Layout {
        own_mounts: true,
        ..HANDBOOK
    });
    host.boot();
    // www's jail.conf lost its mount.fstab: stopping it unmounts nothing.
    std::fs::remove_file(host.state.join("jail-fstab.www")).unwrap();
    let output = host.jailswap(&["--json", "upgrade", "--to", STAGED]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    let result = json(&output);
    let failed: Vec<&Value> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{result:#}");
    assert_eq!(failed[0]["action"], "verify_unused", "{result:#}");
    let www = std::fs::canonicalize(host.root("www")).unwrap();
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains(&www.display().to_string()),
        "{result:#}"
    );
    assert!(!host
        .changes()
        .iter()
        .any(|call| call.starts_with("umount") && call.contains("/www")));
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));
    assert!(host.store.join(STAGED).is_dir());
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// Paths with spaces: `mount -p` escapes them as \040, status sees the jails mounted, mount gets one argument per path.
#[test]
fn paths_with_spaces() {
    let host = FakeHost::new(Layout {
        base: "jail host",
        ..HANDBOOK
    });
    let mounted = |status: &Value| -> Vec<(bool, Value)> {
        status["jails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|jail| {
                (
                    jail["mounted"].as_bool().unwrap(),
                    jail["read_only"].clone(),
                )
            })
            .collect()
    };
    let status = json(&host.jailswap(&["--json", "status"]));
    assert_eq!(
        mounted(&status),
        vec![(false, Value::Null); 3],
        "{status:#}"
    );

    host.boot();
    let table = String::from_utf8(host.tool("mount", &["-p"]).stdout).unwrap();
    assert!(table.contains("/jail\\040host/j/ns nullfs"), "{table}");
    let status = json(&host.jailswap(&["--json", "status"]));
    assert_eq!(
        mounted(&status),
        vec![(true, Value::Bool(true)); 3],
        "{status:#}"
    );
    for jail in status["jails"].as_array().unwrap() {
        assert_eq!(jail["running"], true);
        assert_eq!(jail["mounts_mounted"], 2);
    }

    host.clear_log();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert!(host.swap().iter().any(|call| call.contains("'")));
    assert_eq!(host.changes(), host.swap());
    assert_eq!(host.mounts(), host.expected_mounts());
}

// Status and upgrade work when `mount -p` prints as FreeBSD's putfsent() does: unescaped, autofs's `map -hosts` on /net a line of 7 fields.
#[test]
fn mount_p_as_freebsd_prints_it() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    host.set("raw-mount-p", "");
    let mut table = std::fs::read_to_string(host.state.join("mounts")).unwrap();
    table.push_str("map -hosts\t/net\tautofs\trw,nosuid\n");
    host.set("mounts", &table);
    let listing = String::from_utf8(host.tool("mount", &["-p"]).stdout).unwrap();
    assert!(listing.contains("map -hosts\t\t/net"), "{listing}");

    let status = json(&host.jailswap(&["--json", "status"]));
    for jail in status["jails"].as_array().unwrap() {
        assert_eq!(jail["mounted"], true, "{status:#}");
    }
    host.clear_log();
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert_eq!(host.changes(), host.swap());
}

// Through a store named via /home -> /usr/home (mount_nullfs(8) records resolved paths), an upgrade unmounts first and mounts each line once.
#[test]
fn store_behind_a_symbolic_link() {
    let host = FakeHost::new(Layout {
        base: "usr/home",
        link: Some("home"),
        ..HANDBOOK
    });
    host.boot();
    let status = json(&host.jailswap(&["--json", "status"]));
    for jail in status["jails"].as_array().unwrap() {
        assert_eq!(jail["mounted"], true, "{status:#}");
    }
    let output = host.jailswap(&["upgrade", "--to", STAGED, "--archive-as", ARCHIVE]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    // jailswap names the resolved paths, as mount(8) records them.
    let changes: Vec<String> = host
        .changes()
        .iter()
        .map(|c| c.replace("/usr/home/", "/home/"))
        .collect();
    assert_eq!(changes, host.swap());
    assert_eq!(host.mounts(), host.expected_mounts());
}

// Killed mid-unmount, rebooted (`mount -a` remounts the jails), boot-time `recover` rolls back without mounting anything twice.
#[test]
fn recover_at_boot_after_a_crash() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    crash_upgrade(&host, &host.umount_root("mail"));
    host.reboot();

    let output = host.jailswap(&["recover"]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert_eq!(host.changes(), [start("ns"), start("www"), start("mail")]);
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

/// Runs the upgrade with jailswap killing itself (SIGKILL) at the journal
/// commit `point` (`JAILSWAP_KILL_AT`), and checks that it died there.
fn upgrade_killed_at(host: &FakeHost, point: &str) {
    let output = host
        .command(Path::new(env!("CARGO_BIN_EXE_jailswap")))
        .env("JAILSWAP_KILL_AT", point)
        .arg("-c")
        .arg(&host.config)
        .args(["upgrade", "--to", STAGED, "--archive-as", ARCHIVE])
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "{point}: {}",
        explain(&output)
    );
}

// Killed once every unmount is durable, rebooted (`mount -a` remounts the jails), boot-time `recover` must still mount each line once.
#[test]
fn recover_at_boot_after_the_unmounts_were_recorded() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    // The journal's third completion commit records the unmount wave (after
    // the two stop waves); jailswap kills itself right after it.
    upgrade_killed_at(&host, "completion:3:after");
    assert_eq!(host.changes(), [host.stops(), host.unmounts()].concat());
    host.reboot();

    let output = host.jailswap(&["recover"]);
    assert_eq!(code(&output), Some(1), "{}", explain(&output));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

// Killed during the health checks (after the swap), rebooted, boot-time `recover` rolls forward: it starts the jails again and commits (0).
#[test]
fn recover_at_boot_after_the_jails_had_started() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    // The tenth intent commit marks the health checks started (after the
    // waves stop, stop, unmount, verify, rename, rename, mount, start, start).
    upgrade_killed_at(&host, "intent:10:after");
    assert_eq!(host.changes(), host.swap());
    host.reboot();

    let output = host.jailswap(&["--json", "recover"]);
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert_eq!(json(&output)["outcome"], "committed");
    assert_eq!(host.changes(), host.starts());
    assert_eq!(host.version("mroot").as_deref(), Some("2.0"));
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.running(), host.all_running());
}

/// Runs packaging/freebsd/rc.d/jailswap with the given rc.conf lines, the
/// fake rc.subr standing in for /etc/rc.subr and jailswap as the program.
fn rc_script(host: &FakeHost, action: &str, rc_conf: &str) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("packaging/freebsd/rc.d/jailswap")).unwrap();
    assert!(script.contains("\n. /etc/rc.subr\n"));
    let script = script.replace(
        "\n. /etc/rc.subr\n",
        &format!(
            "\n. {:?}\n",
            root.join("tests/fakes/rc.subr").display().to_string()
        ),
    );
    let copy = host.dir.join("rc.d-jailswap");
    std::fs::write(&copy, script).unwrap();
    let rc_conf_file = host.dir.join("rc.conf");
    std::fs::write(
        &rc_conf_file,
        format!(
            "{rc_conf}\njailswap_config={:?}\njailswap_program={:?}\n",
            host.config.display().to_string(),
            env!("CARGO_BIN_EXE_jailswap")
        ),
    )
    .unwrap();
    host.command(Path::new("/bin/sh"))
        .arg(&copy)
        .arg(action)
        .env("RC_CONF", &rc_conf_file)
        .output()
        .unwrap()
}

// The rc.d script recovers at boot when enabled (rolled back: a warning, never a failed boot) and does nothing when not.
#[test]
fn rc_script_recovers_at_boot() {
    let host = FakeHost::new(HANDBOOK);
    host.boot();
    crash_upgrade(&host, &host.umount_root("mail"));
    host.reboot();

    let output = rc_script(&host, "start", "jailswap_enable=\"NO\"");
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert_eq!(host.calls(), Vec::<String>::new());

    let output = rc_script(&host, "start", "jailswap_enable=\"YES\"");
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("jailswap: WARNING: an interrupted jail template swap was rolled back"),
        "{stderr}"
    );
    assert_eq!(host.changes(), [start("ns"), start("www"), start("mail")]);
    assert_eq!(host.mounts(), host.expected_mounts());
    assert_eq!(host.version("mroot").as_deref(), Some("1.0"));

    // At the next boot there is nothing to recover, and no warning.
    host.clear_log();
    let output = rc_script(&host, "start", "jailswap_enable=\"YES\"");
    assert_eq!(code(&output), Some(0), "{}", explain(&output));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("WARNING"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to recover"));
    assert_eq!(host.changes(), Vec::<String>::new());
}

// The sample configuration shipped in packaging/ parses with the real parser, ns/mail/www as in the Handbook.
#[test]
fn sample_configuration_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(root.join("packaging/jailswap.toml.sample")).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let store = dir.join("j");
    std::fs::create_dir_all(store.join("mroot")).unwrap();
    let mut text = sample.replace("\"/home/j\"", &format!("{:?}", store.display().to_string()));
    for jail in JAILS {
        let fstab = dir.join(format!("fstab.{jail}"));
        std::fs::write(
            &fstab,
            format!("/home/j/mroot /home/j/{jail} nullfs ro 0 0\n/home/js/{jail} /home/j/{jail}/s nullfs rw 0 0\n"),
        )
        .unwrap();
        let named = format!("\"/etc/fstab.{jail}\"");
        assert!(text.contains(&named), "the sample names {named}");
        text = text.replace(&named, &format!("{:?}", fstab.display().to_string()));
    }
    let config = jailswap::config::Config::parse(&text, Path::new("jailswap.toml.sample")).unwrap();
    assert_eq!(config.store, store);
    assert_eq!(config.live, "mroot");
    let names: Vec<&str> = config.jails.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, JAILS);
    for jail in &config.jails {
        assert_eq!(jail.path, PathBuf::from(format!("/home/j/{}", jail.name)));
        assert_eq!(jail.mounts.len(), 2);
        assert_eq!(jail.start, "service jail start ${name}");
        assert_eq!(jail.stop, "service jail stop ${name}");
        assert_eq!(jail.status.as_deref(), Some("jls -j ${name}"));
        assert!(
            !jail.health.is_empty(),
            "jail {} has no health check",
            jail.name
        );
    }
    // ns serves the others: it starts first and stops last.
    assert_eq!(config.levels.len(), 2);
    assert_eq!(config.jails[config.levels[0][0]].name, "ns");
    assert_eq!(
        config.journal,
        PathBuf::from("/var/db/jailswap/journal.sqlite")
    );
}

// The shell scripts we ship or test with are valid POSIX sh.
#[test]
fn shell_scripts_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in [
        "packaging/freebsd/rc.d/jailswap",
        "tests/fakes/fake-lib.sh",
        "tests/fakes/mount",
        "tests/fakes/umount",
        "tests/fakes/jls",
        "tests/fakes/service",
        "tests/fakes/rc.subr",
    ] {
        let output = Command::new("sh")
            .arg("-n")
            .arg(root.join(script))
            .output()
            .unwrap();
        assert!(output.status.success(), "{script}: {}", explain(&output));
    }
}
