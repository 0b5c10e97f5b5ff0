//! A Handbook-style sandbox: the demo, the end-to-end tests and the
//! benchmark all build the same one.
//!
//! Layout under a directory D, as in the Handbook with /home/j = D/j and
//! /home/js = D/js:
//!
//! ```text
//! D/j/mroot            live template: VERSION, s/, etc -> s/etc
//! D/j/mroot.<next>     staged templates, same shape, other VERSION
//! D/j/<jail>           each jail's root: the template mounted read-only
//! D/js/<jail>          each jail's own data, mounted read-write at <jail>/s
//! D/fstab.<jail>       its mounts, Handbook style
//! D/svc                start/stop/status of a jail's service
//! D/run/<jail>.pid     the service's pid
//! D/jailswap.toml      the configuration (root-owned, 0600)
//! D/db/journal.sqlite  the journal
//! ```
//!
//! Each jail runs `jailswap serve`, which answers with the VERSION the jail
//! sees. Mounts are made by the caller's mount namespace: callers enter a
//! private one first (the demo does, and so does every test).

use crate::error::{Error, Result};
use crate::host::Host;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The jail service's control script. A killed service can linger as a
/// zombie until its parent reaps it; a zombie no longer holds any mount,
/// so it counts as stopped. `@HOOKS_START@` and `@HOOKS_STOP@` are where the
/// test suite's failure hooks go (see [`TEST_HOOKS_START`]); the demo's
/// script has none.
const SERVICE_SCRIPT: &str = r#"#!/bin/sh
# svc start|stop|status NAME PORT ROOT
action=$1 name=$2 port=$3 root=$4
dir=${0%/*}
pidfile="$dir/run/$name.pid"
# Shell builtins only. A zombie has no memory: its statm reads all zeros.
alive() {
    [ -r "$pidfile" ] && read -r pid < "$pidfile" || return 1
    read -r size rest 2>/dev/null < "/proc/$pid/statm" || return 1
    [ "$size" != 0 ]
}
# Gone for good: no such process, or a zombie, which holds nothing. A
# process that has let go of its memory may still hold its working
# directory (the jail's root) for a moment as it exits: a stop waits for
# that too, so that the jail's mounts can be unmounted at once.
gone() {
    read -r _ _ state _ 2>/dev/null < "/proc/$pid/stat" || return 0
    [ "$state" = Z ]
}
# Like `service jail`, one start or stop of a jail at a time: a command left
# running by a killed jailswap finishes before recovery's own command runs.
if [ "$action" != status ]; then
    exec 9>"$dir/run/$name.lock"
    flock 9
fi
case $action in
start)
    alive && exit 0
    delay=$(cat "$dir/start-delay" 2>/dev/null || echo 0ms)
    [ -f "$root/FAIL_START" ] && { echo "start of $name failed: this template cannot start" >&2; exit 1; }
    ignore=""
@HOOKS_START@
    exec "$dir/jailswap" serve --root "$root" --listen "127.0.0.1:$port" --pidfile "$pidfile" --detach --start-delay "$delay" $ignore 9>&- ;;
stop)
@HOOKS_STOP@
    alive || exit 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    i=0
    while ! gone; do
        i=$((i + 1)); [ $i -gt 1000 ] && { echo "$name (pid $pid) did not stop" >&2; exit 1; }
        sleep 0.005
    done
    # A stale pid could be reused by another process and look alive.
    rm -f "$pidfile"
    exit 0 ;;
status)
    alive
    exit $? ;;
esac
exit 64
"#;

/// The test suite's failure hooks: marker files in the sandbox make a
/// jail's start fail, its service ignore TERM, its stop hang, wait or fail.
#[cfg(feature = "fault-injection")]
const TEST_HOOKS_START: &str = r#"    [ -f "$dir/fail-start.$name" ] && { echo "start of $name refused (fail-start)" >&2; exit 1; }
    [ -f "$dir/ignore-term.$name" ] && ignore="--ignore-term""#;
#[cfg(feature = "fault-injection")]
const TEST_HOOKS_STOP: &str = r#"    [ -f "$dir/hang-stop.$name" ] && sleep 3600
    [ -f "$dir/stop-delay" ] && sleep "$(cat "$dir/stop-delay")"
    [ -f "$dir/fail-stop.$name" ] && { echo "stop of $name refused (fail-stop)" >&2; exit 1; }"#;

/// The service script, with the test hooks where the build has them.
fn service_script() -> String {
    #[cfg(feature = "fault-injection")]
    let (start, stop) = (TEST_HOOKS_START, TEST_HOOKS_STOP);
    #[cfg(not(feature = "fault-injection"))]
    let (start, stop) = (":", ":");
    SERVICE_SCRIPT
        .replace("@HOOKS_START@", start)
        .replace("@HOOKS_STOP@", stop)
}

/// A jail's status command: the check of `svc status`, written inline so
/// that it starts no program (`status` runs the status commands of all
/// jails as subshells of a few shells; see `process::run_many`).
fn status_command(dir: &Path) -> String {
    let pidfile = format!("{}/run/${{name}}.pid", dir.display()).replace('\'', r"'\''");
    format!(
        "read -r pid < '{pidfile}' && read -r size rest 2>/dev/null < \"/proc/$pid/statm\" && [ \"$size\" != 0 ]"
    )
}

#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub jails: usize,
    pub parallel: usize,
    pub health_timeout: String,
    pub start_delay: String,
    /// Bound on each start/stop/status command.
    pub command_timeout: String,
    /// TOML lines added to every `[[jail]]` (after its http check).
    pub extra_jail_toml: String,
    /// Staged templates to create besides the live one: (name, VERSION or
    /// None for a broken one without VERSION).
    pub staged: Vec<(String, Option<String>)>,
    /// The live template's modification time (seconds since the epoch),
    /// which names its default archive; `None` leaves it as made.
    pub live_modified: Option<i64>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            jails: 3,
            parallel: 8,
            health_timeout: "5s".into(),
            start_delay: "0ms".into(),
            command_timeout: "20s".into(),
            extra_jail_toml: String::new(),
            staged: vec![("mroot.2".into(), Some("2.0".into()))],
            live_modified: None,
        }
    }
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub config: PathBuf,
    pub journal: PathBuf,
    pub jails: Vec<(String, u16)>,
}

fn io(what: &str, error: std::io::Error) -> Error {
    Error::Host(crate::host::HostError::from_io(
        format!("sandbox: {what}"),
        &error,
    ))
}

fn host(config: &crate::config::Config) -> crate::host::system::SystemHost {
    crate::host::system(
        config.backend,
        &config.store,
        crate::config::StoreKind::Directory,
    )
}

/// Makes one template: VERSION, `s/`, and the Handbook's `etc -> s/etc`.
pub fn make_template(dir: &Path, version: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(dir.join("s")).map_err(|e| io("template", e))?;
    std::fs::create_dir_all(dir.join("usr")).map_err(|e| io("template", e))?;
    std::os::unix::fs::symlink("s/etc", dir.join("etc")).map_err(|e| io("template", e))?;
    if let Some(version) = version {
        std::fs::write(dir.join("VERSION"), format!("{version}\n"))
            .map_err(|e| io("template", e))?;
    }
    Ok(())
}

/// `count` distinct free ports below the kernel's ephemeral range: a port
/// in that range could be taken by an outgoing connection (a client, a
/// health check) while its service is down, and the service could then not
/// start again. Every listener is held until all are chosen, so no port is
/// handed out twice; the search starts at a place that differs per process
/// and per call, so sandboxes built side by side rarely probe the same ports.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|low| low.parse::<usize>().ok())
        })
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(20000).max(1024);
    let span = ephemeral_low - low;
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let start = (std::process::id() as usize * 7919 + call * 104_729) % span;
    let mut listeners = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for offset in 0..span {
        if ports.len() == count {
            break;
        }
        let port = (low + (start + offset) % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
            ports.push(port);
        }
    }
    if ports.len() < count {
        return Err(Error::Host(crate::host::HostError::Failed(format!(
            "sandbox: only {} free ports below {ephemeral_low}",
            ports.len()
        ))));
    }
    Ok(ports)
}

impl Sandbox {
    /// Lays out the sandbox under `dir`, mounts every jail and starts its
    /// service. `program` is the jailswap executable the jails run.
    pub fn create(dir: &Path, program: &Path, options: &SandboxOptions) -> Result<Sandbox> {
        let store = dir.join("j");
        for sub in ["j", "js", "run", "db"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io("layout", e))?;
        }
        std::fs::set_permissions(dir.join("db"), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("layout", e))?;
        make_template(&store.join("mroot"), Some("1.0"))?;
        if let Some(modified) = options.live_modified {
            let time = nix::sys::time::TimeSpec::new(modified, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &store.join("mroot"),
                &time,
                &time,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io("template time", e.into()))?;
        }
        for (name, version) in &options.staged {
            make_template(&store.join(name), version.as_deref())?;
        }
        let script = dir.join("svc");
        std::fs::write(&script, service_script()).map_err(|e| io("svc", e))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("svc", e))?;
        let link = dir.join("jailswap");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(program, &link).map_err(|e| io("program link", e))?;
        std::fs::write(dir.join("start-delay"), &options.start_delay)
            .map_err(|e| io("start-delay", e))?;

        let journal = dir.join("db/journal.sqlite");
        let mut config = String::new();
        let _ = writeln!(
            config,
            "store = {:?}\nlive = \"mroot\"\njournal = {:?}\nparallel = {}\n",
            store.display().to_string(),
            journal.display().to_string(),
            options.parallel
        );
        let _ = writeln!(
            config,
            "[health]\ntimeout = {:?}\ninterval = \"50ms\"\n",
            options.health_timeout
        );
        let _ = writeln!(
            config,
            "[defaults]\ntimeout = {:?}\n",
            options.command_timeout
        );
        let mut jails = Vec::new();
        let ports = free_ports(options.jails)?;
        for (index, port) in ports.into_iter().enumerate() {
            let name = format!("jail{index}");
            let root = store.join(&name);
            let data = dir.join("js").join(&name);
            std::fs::create_dir_all(&root).map_err(|e| io("jail root", e))?;
            std::fs::create_dir_all(data.join("etc")).map_err(|e| io("jail data", e))?;
            std::fs::write(data.join("etc/rc.conf"), format!("hostname=\"{name}\"\n"))
                .map_err(|e| io("jail data", e))?;
            std::fs::write(data.join("data.txt"), format!("data of {name}\n"))
                .map_err(|e| io("jail data", e))?;
            let fstab = dir.join(format!("fstab.{name}"));
            std::fs::write(
                &fstab,
                format!(
                    "{} {} nullfs ro 0 0\n{} {}/s nullfs rw 0 0\n",
                    crate::fstab::escape(&store.join("mroot").to_string_lossy()),
                    crate::fstab::escape(&root.to_string_lossy()),
                    crate::fstab::escape(&data.to_string_lossy()),
                    crate::fstab::escape(&root.to_string_lossy())
                ),
            )
            .map_err(|e| io("fstab", e))?;
            let svc = script.display().to_string();
            let _ = writeln!(
                config,
                "[[jail]]\nname = \"{name}\"\npath = {:?}\nfstab = {:?}\nstart = \"{svc} start ${{name}} {port} ${{path}}\"\nstop = \"{svc} stop ${{name}} {port} ${{path}}\"\nstatus = {}\n[[jail.health]]\nhttp = \"http://127.0.0.1:{port}/\"\n{}\n",
                root.display().to_string(),
                fstab.display().to_string(),
                toml::Value::String(status_command(dir)),
                options.extra_jail_toml
            );
            jails.push((name, port));
        }
        let config_path = dir.join("jailswap.toml");
        std::fs::write(&config_path, config).map_err(|e| io("config", e))?;
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("config", e))?;
        let sandbox = Sandbox {
            dir: dir.to_path_buf(),
            store,
            config: config_path,
            journal,
            jails,
        };
        sandbox.bring_up()?;
        Ok(sandbox)
    }

    /// Mounts every jail and starts its service.
    fn bring_up(&self) -> Result<()> {
        let config = crate::config::Config::load(&self.config)?;
        let host = host(&config);
        for jail in &config.jails {
            for mount in &jail.mounts {
                host.mount(mount)?;
            }
            host.start_jail(jail)?;
        }
        Ok(())
    }

    /// Stops every service and unmounts every jail (best effort).
    pub fn tear_down(&self) {
        let Ok(config) = crate::config::Config::load(&self.config) else {
            return;
        };
        let host = host(&config);
        for jail in &config.jails {
            let _ = host.stop_jail(jail);
        }
        let mounted = host.mount_points().unwrap_or_default();
        for jail in &config.jails {
            for mount in jail.mounts.iter().rev() {
                if mounted.contains(&mount.target) {
                    let _ = host.unmount(&mount.target);
                }
            }
        }
    }

    /// The pid of each jail's service, where it runs.
    pub fn pids(&self) -> std::collections::BTreeMap<String, u32> {
        self.jails
            .iter()
            .filter_map(|(name, _)| {
                let text =
                    std::fs::read_to_string(self.dir.join("run").join(format!("{name}.pid")))
                        .ok()?;
                Some((name.clone(), text.trim().parse().ok()?))
            })
            .collect()
    }

    /// What a jail's service answers now, or why it does not.
    pub fn ask(&self, port: u16) -> std::result::Result<String, String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            std::time::Duration::from_secs(2),
        )
        .map_err(|e| e.to_string())?;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        if !response.starts_with("HTTP/1.1 200") {
            return Err(response.lines().next().unwrap_or("").to_string());
        }
        Ok(response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string())
    }
}

/// Enters a private mount namespace (the calling thread, and every process
/// it starts from now on) so that mounts never reach the host.
#[cfg(target_os = "linux")]
pub fn enter_private_mount_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        Error::NotRoot(format!(
            "cannot create a private mount namespace (the sandbox makes real bind mounts): {e}"
        ))
    })?;
    make_mounts_private()
}

/// Makes every mount of the current namespace private, so that nothing
/// mounted from now on propagates to the host.
#[cfg(target_os = "linux")]
pub fn make_mounts_private() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| {
        Error::Host(crate::host::HostError::from_io(
            "cannot make mounts private".into(),
            &e.into(),
        ))
    })
}
