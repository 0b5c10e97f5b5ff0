//! The downtime benchmark: the Handbook's serial procedure (a
//! shell script) against `jailswap upgrade`, on the same kind of sandbox,
//! in one run.
//!
//! ```text
//! cargo bench --bench downtime                       # every case (3-4 min on 2 CPUs)
//! cargo bench --bench downtime -- 1 10 20x200ms      # chosen cases
//! BENCH_CASES=100 cargo bench --bench downtime       # the same, from the environment
//! ```
//!
//! A case is `N` (N jails whose service starts at once) or `NxDELAY` (every
//! service start takes DELAY, for example `20x200ms`). For each case the
//! benchmark builds a sandbox (`jailswap::sandbox`: real bind mounts in a
//! private mount namespace, one HTTP service per jail answering the VERSION
//! of the template it sees), runs the script on it while a client polls
//! every jail, tears it down, builds a second one the same way and runs
//! `jailswap upgrade` on it under the same client. Downtime is what the
//! client sees: per jail, from its last answer "1.0" to its first answer
//! "2.0"; the table shows the maximum over jails (the mean in the details).
//! On the jailswap sandbox it then measures `status` (median of several
//! runs) and runs a second upgrade under strace to count the journal's
//! fsyncs. Peak memory is the upgrade's maximum resident set size as GNU
//! time(1) reports it (wait4's ru_maxrss), or VmHWM sampled from /proc.
//!
//! Environment: `JAILSWAP_BIN` (the executable to measure; default the one
//! cargo built for this benchmark, with the release profile), `BENCH_DIR`
//! (where the sandboxes go; default the system's temporary directory),
//! `BENCH_POLL_US_PER_JAIL` (the client's pace: one polling round of N
//! jails takes at least N times this, default 250 µs, at least 1 ms).
//! For profiling: `BENCH_SAVE=DIR` keeps the raw outputs (strace, `show
//! --json`), `BENCH_WRAP="CMD ARGS"` runs the timed upgrade under CMD,
//! `BENCH_ONLY=script|jailswap` runs one side, `BENCH_HOLD=SECONDS` keeps
//! the jailswap sandbox up at the end (it prints the `nsenter` line).
//!
//! Everything is bounded: every child has a time limit, every wait a
//! deadline, and the sandboxes are torn down (services stopped, mounts
//! unmounted, directory removed) on success, failure, panic or Ctrl-C.
//!
//! bench/rolling.rs includes this file as a module for its machinery (the
//! sandboxes, bounded children, the fsync count, the all-at-once run): the
//! items it uses are `pub(crate)`. The file is long because it is one
//! benchmark, read top to bottom.

use jailswap::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: every loop checks it and the run winds down.
pub(crate) static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

pub(crate) fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::SeqCst))
}

pub(crate) type Result<T> = std::result::Result<T, String>;

// ---------------------------------------------------------------------------
// Cases and settings

#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub(crate) jails: usize,
    pub(crate) start_delay_ms: u64,
    pub(crate) parallel: usize,
}

impl Case {
    pub(crate) fn parse(text: &str) -> Result<Case> {
        let (jails, delay) = match text.split_once('x') {
            Some((jails, delay)) => (jails, Some(delay)),
            None => (text, None),
        };
        let jails: usize = jails
            .parse()
            .map_err(|_| format!("bad case {text:?}: expected N or NxDELAY (20x200ms)"))?;
        if jails == 0 || jails > 5000 {
            return Err(format!("bad case {text:?}: N must be 1..=5000"));
        }
        let start_delay_ms = match delay {
            None => 0,
            Some(delay) => humantime::parse_duration(delay)
                .map_err(|e| format!("bad delay in {text:?}: {e}"))?
                .as_millis() as u64,
        };
        Ok(Case {
            jails,
            start_delay_ms,
            parallel: 8,
        })
    }

    pub(crate) fn label(&self) -> String {
        if self.start_delay_ms == 0 {
            format!("{}", self.jails)
        } else {
            format!("{}x{}ms", self.jails, self.start_delay_ms)
        }
    }
}

const DEFAULT_CASES: &str = "1,10,100,1000,20x200ms";

pub(crate) struct Settings {
    pub(crate) cases: Vec<Case>,
    pub(crate) program: PathBuf,
    pub(crate) base: PathBuf,
    pub(crate) poll_us_per_jail: u64,
    /// `BENCH_SAVE`: a directory for the raw outputs (strace, show).
    pub(crate) save: Option<PathBuf>,
    /// `BENCH_WRAP`: a command line the timed upgrade runs under (profiling).
    pub(crate) wrap: Vec<String>,
    /// `BENCH_ONLY=script|jailswap`: run one side only (profiling).
    pub(crate) only: Option<String>,
}

fn settings() -> Result<Settings> {
    // cargo bench passes `--bench`; anything else starting with `-` is ignored too.
    let from_args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .flat_map(|a| a.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|a| !a.is_empty())
        .collect();
    let texts = if !from_args.is_empty() {
        from_args
    } else {
        std::env::var("BENCH_CASES")
            .unwrap_or_else(|_| DEFAULT_CASES.to_string())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let cases = texts
        .iter()
        .map(|t| Case::parse(t))
        .collect::<Result<Vec<_>>>()?;
    let program = std::env::var_os("JAILSWAP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_jailswap")));
    if !program.is_file() {
        return Err(format!(
            "{} does not exist: run `cargo build --release` or set JAILSWAP_BIN",
            program.display()
        ));
    }
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let poll_us_per_jail = std::env::var("BENCH_POLL_US_PER_JAIL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250u64)
        .clamp(10, 100_000);
    let save = std::env::var_os("BENCH_SAVE").map(PathBuf::from);
    let wrap = std::env::var("BENCH_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Ok(Settings {
        cases,
        program,
        base,
        poll_us_per_jail,
        save,
        wrap,
        only: std::env::var("BENCH_ONLY").ok().filter(|s| !s.is_empty()),
    })
}

// ---------------------------------------------------------------------------
// Children with a time limit

/// Waits for `child` at most `limit`; on timeout or interrupt it is killed
/// (by its pid: it is our own child). `sample` runs at every tick.
pub(crate) fn wait_bounded(
    child: &mut Child,
    limit: Duration,
    mut sample: impl FnMut(u32),
) -> Result<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        sample(child.id());
        if started.elapsed() > limit || interrupted() {
            // Children of the child (GNU time's, strace's) go too.
            for pid in descendants(child.id()) {
                kill_pid(pid);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(if interrupted() {
                "interrupted".to_string()
            } else {
                format!("timed out after {} s", limit.as_secs())
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids below `pid` in the process tree, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    let mut rounds = 0;
    while let Some(parent) = queue.pop() {
        rounds += 1;
        if rounds > 10_000 {
            break;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

fn kill_pid(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs a command to the end (bounded) and returns (status, stdout, stderr, wall time).
pub(crate) fn run_bounded(
    command: &mut Command,
    limit: Duration,
) -> Result<(ExitStatus, String, String, Duration)> {
    let mut stdout = tempfile::tempfile().map_err(|e| format!("tempfile: {e}"))?;
    let mut stderr = tempfile::tempfile().map_err(|e| format!("tempfile: {e}"))?;
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(|e| e.to_string())?)
        .stderr(stderr.try_clone().map_err(|e| e.to_string())?);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let status = wait_bounded(&mut child, limit, |_| {})?;
    let took = started.elapsed();
    Ok((status, read_all(&mut stdout), read_all(&mut stderr), took))
}

pub(crate) fn read_all(file: &mut std::fs::File) -> String {
    use std::io::Seek;
    let _ = file.seek(std::io::SeekFrom::Start(0));
    let mut text = String::new();
    let _ = file.take(16 << 20).read_to_string(&mut text);
    text
}

// ---------------------------------------------------------------------------
// The sandbox, always cleaned up

pub(crate) struct Bed {
    sandbox: Option<Sandbox>,
    dir: Option<tempfile::TempDir>,
}

impl Bed {
    fn create(settings: &Settings, case: &Case, side: &str, staged: &[&str]) -> Result<Bed> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("jailswap-bench.{side}.{}.", case.label()))
            .tempdir_in(&settings.base)
            .map_err(|e| format!("temporary directory: {e}"))?;
        let mut bed = Bed {
            sandbox: None,
            dir: Some(dir),
        };
        let options = SandboxOptions {
            jails: case.jails,
            parallel: case.parallel,
            health_timeout: "30s".into(),
            start_delay: format!("{}ms", case.start_delay_ms),
            command_timeout: "60s".into(),
            extra_jail_toml: String::new(),
            live_modified: None,
            staged: staged
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), Some(format!("{}.0", i + 2))))
                .collect(),
        };
        let path = bed.path().to_path_buf();
        // On failure `bed` is dropped on return, which cleans up whatever was made.
        let sandbox = Sandbox::create(&path, &settings.program, &options)
            .map_err(|e| format!("sandbox: {e}"))?;
        bed.sandbox = Some(sandbox);
        Ok(bed)
    }

    /// Building a sandbox of many jails on a shared machine can fail for
    /// reasons outside the benchmark (a stray signal to one of the hundreds
    /// of commands); one more attempt, on a fresh directory.
    pub(crate) fn create_retrying(
        settings: &Settings,
        case: &Case,
        side: &str,
        staged: &[&str],
    ) -> Result<Bed> {
        match Bed::create(settings, case, side, staged) {
            Err(e) if !interrupted() => {
                eprintln!("bench: building the {side} sandbox failed ({e}); trying again");
                Bed::create(settings, case, side, staged)
            }
            other => other,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }

    pub(crate) fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("sandbox is set after create")
    }

    pub(crate) fn config(&self) -> &Path {
        &self.sandbox().config
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.tear_down();
        }
        // Whatever tear_down could not do (a sandbox that failed half-way,
        // a jail left stopped or renamed): kill the services by pidfile,
        // then unmount everything below the directory, deepest first.
        kill_services(dir.path());
        let left = unmount_below(dir.path());
        if left.is_empty() {
            let _ = dir.close();
        } else {
            eprintln!(
                "bench: {} mount(s) left below {}; directory kept: {}",
                left.len(),
                dir.path().display(),
                left.join(", ")
            );
            let _ = dir.keep();
        }
    }
}

fn kill_services(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("run")) else {
        return;
    };
    let marker = dir.to_string_lossy().to_string();
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            continue;
        };
        // Only a service of this sandbox: its command line names the pidfile.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            kill_pid(pid);
        }
    }
}

fn mount_points_below(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    jailswap::host::linux::parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect()
}

/// Unmounts every mount below `dir`; returns those that stayed.
fn unmount_below(dir: &Path) -> Vec<String> {
    for _ in 0..5 {
        let mut points = mount_points_below(dir);
        if points.is_empty() {
            return Vec::new();
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for point in points {
            let _ = nix::mount::umount2(&point, nix::mount::MntFlags::empty());
        }
    }
    mount_points_below(dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// The client

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Old,
    New,
    Other,
    Nothing,
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
const READ_TIMEOUT: Duration = Duration::from_millis(100);

fn ask(address: &SocketAddr, old: &str, new: &str) -> Answer {
    let Ok(mut stream) = TcpStream::connect_timeout(address, CONNECT_TIMEOUT) else {
        return Answer::Nothing;
    };
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return Answer::Nothing;
    }
    let mut response = Vec::with_capacity(256);
    if (&mut stream).take(4096).read_to_end(&mut response).is_err() {
        return Answer::Nothing;
    }
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return Answer::Other;
    }
    match text.split("\r\n\r\n").nth(1).map(str::trim) {
        Some(body) if body == old => Answer::Old,
        Some(body) if body == new => Answer::New,
        _ => Answer::Other,
    }
}

#[derive(Clone, Debug, Default)]
struct JailSeen {
    last_old: Option<Instant>,
    first_new: Option<Instant>,
    /// The polls between the last "old" and the first "new" that got no answer.
    misses: usize,
}

struct ThreadReport {
    seen: Vec<JailSeen>,
    rounds: usize,
    round_total: Duration,
    round_max: Duration,
}

/// Polls every jail's service from a few threads until every jail has
/// answered the new version (or it is stopped).
struct Poller {
    stop: Arc<AtomicBool>,
    seen_old: Arc<AtomicUsize>,
    handles: Vec<std::thread::JoinHandle<ThreadReport>>,
    jails: usize,
}

struct PollReport {
    seen: Vec<JailSeen>,
    round_mean: Duration,
    round_max: Duration,
}

impl Poller {
    fn start(ports: &[u16], period: Duration, old: &str, new: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen_old = Arc::new(AtomicUsize::new(0));
        // A few jails per thread, so that one slow answer (a service that
        // is up but waits for a CPU) delays the polls of few other jails.
        let threads = ports.len().div_ceil(5).clamp(1, 8);
        let chunk = ports.len().div_ceil(threads);
        let handles = ports
            .chunks(chunk.max(1))
            .map(|slice| {
                let addresses: Vec<SocketAddr> =
                    slice.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
                let stop = stop.clone();
                let seen_old = seen_old.clone();
                let (old, new) = (old.to_string(), new.to_string());
                std::thread::spawn(move || {
                    poll_loop(&addresses, period, &old, &new, &stop, &seen_old)
                })
            })
            .collect();
        Poller {
            stop,
            seen_old,
            handles,
            jails: ports.len(),
        }
    }

    /// Waits until every jail has answered the old version once.
    fn wait_baseline(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while self.seen_old.load(Ordering::SeqCst) < self.jails {
            if started.elapsed() > limit || interrupted() {
                return Err(format!(
                    "only {} of {} jails answered before the swap",
                    self.seen_old.load(Ordering::SeqCst),
                    self.jails
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Lets the threads run until they are done or `limit` has passed.
    fn finish(self, limit: Duration) -> PollReport {
        let started = Instant::now();
        while self.handles.iter().any(|h| !h.is_finished())
            && started.elapsed() < limit
            && !interrupted()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::SeqCst);
        let mut seen = Vec::new();
        let (mut rounds, mut total, mut max) = (0usize, Duration::ZERO, Duration::ZERO);
        for handle in self.handles {
            if let Ok(report) = handle.join() {
                seen.extend(report.seen);
                rounds += report.rounds;
                total += report.round_total;
                max = max.max(report.round_max);
            }
        }
        PollReport {
            seen,
            round_mean: total / (rounds.max(1) as u32),
            round_max: max,
        }
    }
}

fn poll_loop(
    addresses: &[SocketAddr],
    period: Duration,
    old: &str,
    new: &str,
    stop: &AtomicBool,
    seen_old: &AtomicUsize,
) -> ThreadReport {
    let mut seen = vec![JailSeen::default(); addresses.len()];
    let (mut rounds, mut round_total, mut round_max) = (0usize, Duration::ZERO, Duration::ZERO);
    // Bounded by the stop flag, and in any case by an hour.
    let limit = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::SeqCst) && Instant::now() < limit {
        let round = Instant::now();
        let mut pending = 0;
        for (address, jail) in addresses.iter().zip(seen.iter_mut()) {
            if jail.first_new.is_some() {
                continue;
            }
            pending += 1;
            let answer = ask(address, old, new);
            let at = Instant::now();
            match answer {
                Answer::Old => {
                    if jail.last_old.is_none() {
                        seen_old.fetch_add(1, Ordering::SeqCst);
                    }
                    jail.last_old = Some(at);
                    jail.misses = 0;
                }
                Answer::New if jail.last_old.is_some() => jail.first_new = Some(at),
                Answer::New | Answer::Other | Answer::Nothing => jail.misses += 1,
            }
        }
        if pending == 0 {
            break;
        }
        let took = round.elapsed();
        if rounds > 0 || seen.iter().all(|j| j.last_old.is_some()) {
            rounds += 1;
            round_total += took.max(period);
            round_max = round_max.max(took.max(period));
        }
        if let Some(rest) = period.checked_sub(took) {
            std::thread::sleep(rest);
        }
    }
    ThreadReport {
        seen,
        rounds,
        round_total,
        round_max,
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    round_mean_ms: f64,
    round_max_ms: f64,
    missing: usize,
}

fn summarize(report: &PollReport) -> Seen {
    let mut downs = Vec::new();
    let mut missing = 0;
    for jail in &report.seen {
        match (jail.last_old, jail.first_new) {
            (Some(old), Some(new)) => downs.push(new.duration_since(old).as_secs_f64() * 1000.0),
            _ => missing += 1,
        }
    }
    let max_ms = downs.iter().cloned().fold(0.0, f64::max);
    let mean_ms = if downs.is_empty() {
        0.0
    } else {
        downs.iter().sum::<f64>() / downs.len() as f64
    };
    Seen {
        max_ms,
        mean_ms,
        round_mean_ms: report.round_mean.as_secs_f64() * 1000.0,
        round_max_ms: report.round_max.as_secs_f64() * 1000.0,
        missing,
    }
}

pub(crate) fn poll_period(settings: &Settings, jails: usize) -> Duration {
    Duration::from_micros((settings.poll_us_per_jail * jails as u64).max(1000))
}

// ---------------------------------------------------------------------------
// The Handbook's procedure as a script

pub(crate) fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

fn handbook_script(sandbox: &Sandbox) -> String {
    let dir = &sandbox.dir;
    let store = &sandbox.store;
    let svc = quote(&dir.join("svc"));
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# The Handbook's procedure, one jail after another.\nset -e\n");
    for (name, port) in &sandbox.jails {
        let _ = writeln!(s, "{svc} stop {name} {port} {}", quote(&store.join(name)));
    }
    for (name, _) in &sandbox.jails {
        let root = store.join(name);
        let _ = writeln!(s, "umount {}", quote(&root.join("s")));
        let _ = writeln!(s, "umount {}", quote(&root));
    }
    let _ = writeln!(
        s,
        "mv {} {}",
        quote(&store.join("mroot")),
        quote(&store.join("mroot.1"))
    );
    let _ = writeln!(
        s,
        "mv {} {}",
        quote(&store.join("mroot.2")),
        quote(&store.join("mroot"))
    );
    for (name, _) in &sandbox.jails {
        let root = quote(&store.join(name));
        let _ = writeln!(s, "mount --bind {} {root}", quote(&store.join("mroot")));
        let _ = writeln!(s, "mount -o remount,bind,ro {root}");
        let _ = writeln!(
            s,
            "mount --bind {} {}",
            quote(&dir.join("js").join(name)),
            quote(&store.join(name).join("s"))
        );
    }
    for (name, port) in &sandbox.jails {
        let _ = writeln!(s, "{svc} start {name} {port} {}", quote(&store.join(name)));
    }
    s
}

// ---------------------------------------------------------------------------
// One case

#[derive(Debug, Default)]
struct ScriptResult {
    seen: Seen,
    wall_ms: f64,
}

#[derive(Debug, Default)]
pub(crate) struct JailswapResult {
    pub(crate) seen: Seen,
    pub(crate) wall_ms: f64,
    pub(crate) own_downtime_ms: Option<i64>,
    phases: Vec<(String, f64, f64)>,
    pub(crate) peak_rss_kb: Option<u64>,
    rss_source: &'static str,
    pub(crate) status_ms: Option<f64>,
    /// `status` with one program per jail as its status command.
    pub(crate) status_programs_ms: Option<f64>,
    pub(crate) fsyncs: Option<Fsyncs>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Fsyncs {
    /// Journal commits: the WAL frames that commit a transaction.
    pub(crate) commits: usize,
    pub(crate) wal: usize,
    pub(crate) db: usize,
    pub(crate) store_dir: usize,
    pub(crate) other: usize,
}

impl Fsyncs {
    pub(crate) fn total(&self) -> usize {
        self.wal + self.db + self.store_dir + self.other
    }
}

struct CaseResult {
    case: Case,
    script: Result<ScriptResult>,
    jailswap: Result<JailswapResult>,
}

fn run_script(settings: &Settings, case: &Case) -> Result<ScriptResult> {
    let bed = Bed::create_retrying(settings, case, "script", &["mroot.2"])?;
    let sandbox = bed.sandbox();
    let script = bed.path().join("handbook.sh");
    std::fs::write(&script, handbook_script(sandbox)).map_err(|e| format!("script: {e}"))?;
    let ports: Vec<u16> = sandbox.jails.iter().map(|(_, p)| *p).collect();
    let poller = Poller::start(&ports, poll_period(settings, case.jails), "1.0", "2.0");
    poller.wait_baseline(Duration::from_secs(60))?;
    let limit = Duration::from_secs(120 + case.jails as u64 * (1 + case.start_delay_ms / 100));
    let outcome = run_bounded(Command::new("/bin/sh").arg(&script), limit);
    let report = poller.finish(Duration::from_secs(20));
    let (status, _out, err, took) = outcome?;
    if !status.success() {
        return Err(format!("the script failed ({status}): {}", err.trim()));
    }
    let seen = summarize(&report);
    if seen.missing > 0 {
        return Err(format!("{} jails never answered 2.0", seen.missing));
    }
    Ok(ScriptResult {
        seen,
        wall_ms: took.as_secs_f64() * 1000.0,
    })
}

pub(crate) fn jailswap_command(settings: &Settings, config: &Path, arguments: &[&str]) -> Command {
    let mut command = Command::new(&settings.program);
    command
        .arg("-c")
        .arg(config)
        .args(arguments)
        .env_remove("JAILSWAP_CONFIG")
        .env_remove("JAILSWAP_KILL_AT")
        .env("NO_COLOR", "1");
    command
}

/// The median wall time of `runs` runs of `jailswap --json status`, each
/// of which must see every jail running.
fn time_status(settings: &Settings, config: &Path, runs: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let (status, out, err, took) = run_bounded(
            &mut jailswap_command(settings, config, &["--json", "status"]),
            Duration::from_secs(120),
        )?;
        if !status.success() {
            return Err(format!("jailswap status failed ({status}): {err}"));
        }
        let value: Value = serde_json::from_str(&out)
            .map_err(|e| format!("jailswap status printed no JSON ({e}): {err}"))?;
        let jails = value["jails"].as_array().cloned().unwrap_or_default();
        if jails.is_empty() || jails.iter().any(|jail| jail["running"] != true) {
            return Err(format!(
                "jailswap status does not see every jail running: {value}"
            ));
        }
        times.push(took.as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
        .get(times.len() / 2)
        .copied()
        .ok_or_else(|| "no run of status".to_string())
}

/// Writes a configuration file as jailswap requires it: owned by root,
/// mode 0600.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn run_jailswap(settings: &Settings, case: &Case) -> Result<JailswapResult> {
    let bed = Bed::create_retrying(settings, case, "jailswap", &["mroot.2", "mroot.3"])?;
    let sandbox = bed.sandbox();
    let ports: Vec<u16> = sandbox.jails.iter().map(|(_, p)| *p).collect();
    let limit = Duration::from_secs(120 + case.jails as u64 * (1 + case.start_delay_ms / 100));
    let upgrade = ["--json", "upgrade", "--to", "mroot.2", "-q"];

    // The timed upgrade, under GNU time for its peak memory when available.
    // Not under a profiling wrapper, whose memory it would measure.
    let time = Path::new(if settings.wrap.is_empty() {
        "/usr/bin/time"
    } else {
        "/nonexistent"
    });
    let rss_file = bed.path().join("rss.txt");
    let mut argv: Vec<std::ffi::OsString> = settings.wrap.iter().map(Into::into).collect();
    if time.is_file() {
        argv.extend([
            "/usr/bin/time".into(),
            "-f".into(),
            "%M".into(),
            "-o".into(),
        ]);
        argv.push(rss_file.clone().into());
    }
    argv.push(settings.program.clone().into());
    argv.push("-c".into());
    argv.push(bed.config().into());
    argv.extend(upgrade.iter().map(Into::into));
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_remove("JAILSWAP_CONFIG")
        .env_remove("JAILSWAP_KILL_AT");
    let mut stdout = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut stderr = tempfile::tempfile().map_err(|e| e.to_string())?;
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(|e| e.to_string())?)
        .stderr(stderr.try_clone().map_err(|e| e.to_string())?);

    let poller = Poller::start(&ports, poll_period(settings, case.jails), "1.0", "2.0");
    poller.wait_baseline(Duration::from_secs(60))?;
    let started = Instant::now();
    let mut hwm_kb = 0u64;
    let waited = command
        .spawn()
        .map_err(|e| format!("cannot run jailswap: {e}"))
        .and_then(|mut child| {
            wait_bounded(&mut child, limit, |pid| {
                // The fallback for peak memory: VmHWM of jailswap itself.
                if !time.is_file() {
                    hwm_kb = hwm_kb.max(vm_hwm_kb(pid).unwrap_or(0));
                }
            })
        });
    let took = started.elapsed();
    let report = poller.finish(Duration::from_secs(20));
    let status = waited?;
    let out = read_all(&mut stdout);
    let err = read_all(&mut stderr);
    let json: Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("jailswap upgrade ({status}) printed no JSON ({e}): {out} {err}"))?;
    save(settings, &format!("upgrade.{}.json", case.label()), &out);
    let outcome = json["outcome"].as_str().unwrap_or("?").to_string();
    if outcome != "committed" {
        return Err(format!(
            "jailswap upgrade: {outcome} ({status}): {}{err}",
            first_error(&json)
        ));
    }
    let seen = summarize(&report);
    if seen.missing > 0 {
        return Err(format!("{} jails never answered 2.0", seen.missing));
    }
    let (peak_rss_kb, rss_source) = if time.is_file() {
        (
            std::fs::read_to_string(&rss_file)
                .ok()
                .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok())),
            "GNU time %M (wait4 ru_maxrss)",
        )
    } else {
        (Some(hwm_kb), "VmHWM sampled every 2 ms")
    };

    let mut result = JailswapResult {
        seen,
        wall_ms: took.as_secs_f64() * 1000.0,
        own_downtime_ms: json["downtime_ms"].as_i64(),
        peak_rss_kb,
        rss_source,
        ..Default::default()
    };

    // Where the time went, from the journal's step times.
    if let Some(id) = json["id"].as_i64() {
        let id = id.to_string();
        let shown = run_bounded(
            &mut jailswap_command(settings, bed.config(), &["--json", "show", &id]),
            Duration::from_secs(60),
        )?;
        save(settings, &format!("show.{}.json", case.label()), &shown.1);
        if let Ok(value) = serde_json::from_str::<Value>(shown.1.trim()) {
            result.phases = phases(&value);
        }
    }

    // `status`: median of several runs, with the sandbox's status commands
    // (shell builtins) and with one program per jail (`svc status`).
    let runs = if case.jails > 200 { 3 } else { 7 };
    result.status_ms = Some(time_status(settings, bed.config(), runs)?);
    let with_programs = bed.sandbox().dir.join("jailswap.svc-status.toml");
    let svc = bed.sandbox().dir.join("svc");
    let text = std::fs::read_to_string(bed.config()).map_err(|e| format!("config: {e}"))?;
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("status = ") {
                format!(
                    "status = \"{} status ${{name}} 0 ${{path}}\"\n",
                    svc.display()
                )
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    write_private(&with_programs, &text)?;
    result.status_programs_ms = Some(time_status(settings, &with_programs, runs)?);

    // A second upgrade (to mroot.3) under strace, to count fsyncs.
    result.fsyncs = count_fsyncs(settings, &bed, limit).map_or_else(
        |e| {
            eprintln!("bench: fsync count unavailable: {e}");
            None
        },
        Some,
    );
    hold(settings, &bed);
    Ok(result)
}

/// `BENCH_HOLD=SECONDS`: keeps the jailswap sandbox up that long (or until
/// Ctrl-C) for profiling by hand, in the benchmark's mount namespace.
fn hold(settings: &Settings, bed: &Bed) {
    let Some(seconds) = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    eprintln!(
        "bench: holding {} for {seconds} s: nsenter -m -t {} {} -c {} status",
        bed.path().display(),
        std::process::id(),
        settings.program.display(),
        bed.config().display()
    );
    let until = Instant::now() + Duration::from_secs(seconds.min(3600));
    while Instant::now() < until && !interrupted() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keeps a raw output in `BENCH_SAVE` (a directory), when set.
pub(crate) fn save(settings: &Settings, name: &str, text: &str) {
    if let Some(dir) = &settings.save {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(name), text);
    }
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Span of each kind of step, in ms from the first stop's start.
fn phases(show: &Value) -> Vec<(String, f64, f64)> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut spans: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut first: Option<i64> = None;
    let steps = show["steps"].as_array().cloned().unwrap_or_default();
    for (order, step) in steps.iter().enumerate() {
        let (Some(a), Some(b)) = (parse(&step["started_at"]), parse(&step["finished_at"])) else {
            continue;
        };
        let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
        first = Some(first.map_or(a, |f| f.min(a)));
        let verb = step["action"].as_str().unwrap_or("?").to_string();
        let entry = spans.entry(verb).or_insert((order as i64, a, b));
        entry.1 = entry.1.min(a);
        entry.2 = entry.2.max(b);
    }
    let first = first.unwrap_or(0);
    let mut list: Vec<(i64, String, f64, f64)> = spans
        .into_iter()
        .map(|(verb, (order, a, b))| (order, verb, (a - first) as f64, (b - first) as f64))
        .collect();
    list.sort_by_key(|(order, ..)| *order);
    list.into_iter().map(|(_, v, a, b)| (v, a, b)).collect()
}

fn count_fsyncs(settings: &Settings, bed: &Bed, limit: Duration) -> Result<Fsyncs> {
    count_fsyncs_of(settings, bed, limit, &["upgrade", "--to", "mroot.3"])
}

/// Counts the journal commits and the fsyncs of `jailswap --json
/// ARGUMENTS -q` (an upgrade to `mroot.3`) run under strace.
pub(crate) fn count_fsyncs_of(
    settings: &Settings,
    bed: &Bed,
    limit: Duration,
    arguments: &[&str],
) -> Result<Fsyncs> {
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("strace is not installed (apt-get install strace)")?;
    let trace = bed.path().join("strace.txt");
    let mut command = Command::new(strace);
    // -f follows jailswap's threads; -b execve lets go of every command it
    // runs (sh, the services), which strace would otherwise wait for. The
    // first 8 bytes of every pwrite, in hex, tell the WAL's commit frames.
    command
        .args(["-f", "-b", "execve", "-qq", "-y", "-xx", "-s", "8"])
        .args(["-e", "signal=none"])
        .args([
            "-e",
            "trace=fsync,fdatasync,sync_file_range,syncfs,sync,pwrite64",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(&settings.program)
        .arg("-c")
        .arg(bed.config())
        .arg("--json")
        .args(arguments)
        .arg("-q")
        .env_remove("JAILSWAP_CONFIG")
        .env_remove("JAILSWAP_KILL_AT");
    let (status, out, err, _) = run_bounded(&mut command, limit)?;
    let json: Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("traced upgrade ({status}) printed no JSON ({e}): {err}"))?;
    save(
        settings,
        &format!("traced-upgrade.{}.json", bed.sandbox().jails.len()),
        &out,
    );
    if json["outcome"].as_str() != Some("committed") {
        return Err(format!(
            "traced upgrade: {}: {}{err}",
            json["outcome"],
            first_error(&json)
        ));
    }
    let text = std::fs::read_to_string(&trace).map_err(|e| format!("strace output: {e}"))?;
    save(
        settings,
        &format!("fsync-strace.{}.txt", bed.sandbox().jails.len()),
        &text,
    );
    let journal = bed.sandbox().journal.to_string_lossy().to_string();
    let wal_path = format!("{journal}-wal");
    let store = bed.sandbox().store.to_string_lossy().to_string();
    let mut counts = Fsyncs::default();
    let mut commit_offsets = std::collections::BTreeSet::new();
    for line in text.lines() {
        // `PID fsync(3</path/to/file>) = 0`, or its `<unfinished ...>` half.
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let file = call
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(path, _)| String::from_utf8_lossy(&unhex(path)).into_owned())
            .unwrap_or_default();
        if call.starts_with("pwrite") {
            match wal_write(call) {
                // A new WAL header (after a checkpoint): frame offsets start over.
                Some((32, 0, _)) if file == wal_path => commit_offsets.clear(),
                // SQLite may write a commit frame's header again (checksums
                // rewritten): one commit per offset and WAL generation.
                Some((24, offset, true)) if file == wal_path && commit_offsets.insert(offset) => {
                    counts.commits += 1;
                }
                _ => {}
            }
            continue;
        }
        let sync = [
            "fsync(",
            "fdatasync(",
            "sync_file_range(",
            "syncfs(",
            "sync(",
        ]
        .iter()
        .any(|name| call.starts_with(name));
        if !sync {
            continue;
        }
        if file == wal_path {
            counts.wal += 1;
        } else if file == journal {
            counts.db += 1;
        } else if file == store {
            counts.store_dir += 1;
        } else {
            counts.other += 1;
        }
    }
    Ok(counts)
}

/// Reads `pwrite64(5</x-wal>, "\x00\x00\x00\x02\x00\x00\x00\x07"..., 24, 4152)`
/// as (size, offset, whether it writes the header of a commit frame).
/// SQLite writes each WAL frame header on its own (24 bytes; the WAL header
/// is 32), and bytes 4-8 of a frame header hold the database size in pages
/// for the frame that commits a transaction, 0 for the others.
fn wal_write(call: &str) -> Option<(usize, u64, bool)> {
    let (_, rest) = call.split_once(", \"")?;
    let (bytes, rest) = rest.split_once('"')?;
    let mut numbers = rest
        .trim_start_matches("...")
        .trim_start_matches(", ")
        .split([',', ')'])
        .map(str::trim);
    let size = numbers.next()?.parse::<usize>().ok()?;
    let offset = numbers.next()?.parse::<u64>().ok()?;
    let bytes = unhex(bytes);
    let commit = size == 24 && bytes.len() >= 8 && bytes[4..8].iter().any(|b| *b != 0);
    Some((size, offset, commit))
}

/// Decodes strace's `-xx` strings (`\x2f\x74…`); other characters pass.
fn unhex(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() / 4);
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(byte) = rest
            .strip_prefix("\\x")
            .and_then(|r| r.get(..2))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            bytes.push(byte);
            rest = &rest[4..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    bytes
}

/// The first step error of a transaction's JSON, for failure messages.
pub(crate) fn first_error(json: &Value) -> String {
    json["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|step| {
            step["error"]
                .as_str()
                .or(step["undo_error"].as_str())
                .map(|e| format!("step {} {}: {e}; ", step["seq"], step["action"]))
        })
        .unwrap_or_default()
}

fn run_case(settings: &Settings, case: &Case) -> CaseResult {
    eprintln!(
        "bench: N={} start delay {} ms, parallel {}: the Handbook's script ...",
        case.jails, case.start_delay_ms, case.parallel
    );
    let script = if settings.only.as_deref() == Some("jailswap") {
        Err("skipped (BENCH_ONLY=jailswap)".to_string())
    } else {
        run_script(settings, case)
    };
    match &script {
        Ok(r) => eprintln!(
            "bench:   script: client-seen max {:.0} ms (mean {:.0}), wall {:.0} ms",
            r.seen.max_ms, r.seen.mean_ms, r.wall_ms
        ),
        Err(e) => eprintln!("bench:   script FAILED: {e}"),
    }
    let jailswap = if interrupted() {
        Err("interrupted".to_string())
    } else if settings.only.as_deref() == Some("script") {
        Err("skipped (BENCH_ONLY=script)".to_string())
    } else {
        eprintln!("bench: ... and jailswap upgrade");
        run_jailswap(settings, case)
    };
    match &jailswap {
        Ok(r) => eprintln!(
            "bench:   jailswap: client-seen max {:.0} ms (mean {:.0}), own {:?} ms, wall {:.0} ms",
            r.seen.max_ms, r.seen.mean_ms, r.own_downtime_ms, r.wall_ms
        ),
        Err(e) => eprintln!("bench:   jailswap FAILED: {e}"),
    }
    CaseResult {
        case: case.clone(),
        script,
        jailswap,
    }
}

// ---------------------------------------------------------------------------
// Targets and the table

struct Verdict {
    text: String,
    pass: Option<bool>,
}

fn downtime_target(result: &CaseResult) -> Verdict {
    let (Ok(script), Ok(js)) = (&result.script, &result.jailswap) else {
        return Verdict {
            text: "-".into(),
            pass: Some(false),
        };
    };
    let (s, j) = (script.seen.max_ms, js.seen.max_ms);
    let case = &result.case;
    if case.start_delay_ms > 0 {
        let bound = case.jails.div_ceil(case.parallel) as f64 * case.start_delay_ms as f64;
        let pass = j <= 0.25 * s && j <= 1.25 * bound;
        Verdict {
            text: format!(
                "<= 0.25x and <= 1.25 x {bound:.0} ms = {:.0} ms",
                1.25 * bound
            ),
            pass: Some(pass),
        }
    } else if case.jails == 1 {
        Verdict {
            text: "<= script + 30 ms".into(),
            pass: Some(j <= s + 30.0),
        }
    } else if case.jails == 100 {
        Verdict {
            text: "<= 0.5x".into(),
            pass: Some(j <= 0.5 * s),
        }
    } else {
        Verdict {
            text: "-".into(),
            pass: None,
        }
    }
}

fn mark(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "-",
    }
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

fn report(settings: &Settings, results: &[CaseResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### Downtime as a client sees it (max over jails)\n");
    let _ = writeln!(
        out,
        "| N | start takes | script | jailswap | ratio | target | result |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---|---|");
    for r in results {
        let verdict = downtime_target(r);
        let script = r
            .script
            .as_ref()
            .map_or("failed".into(), |s| ms(s.seen.max_ms));
        let jailswap = r
            .jailswap
            .as_ref()
            .map_or("failed".into(), |j| ms(j.seen.max_ms));
        let ratio = match (&r.script, &r.jailswap) {
            (Ok(s), Ok(j)) if s.seen.max_ms > 0.0 => {
                format!("{:.2}", j.seen.max_ms / s.seen.max_ms)
            }
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {script} | {jailswap} | {ratio} | {} | {} |",
            r.case.jails,
            r.case.start_delay_ms,
            verdict.text,
            mark(verdict.pass)
        );
    }

    let _ = writeln!(out, "\n### Details of the same runs\n");
    let _ = writeln!(
        out,
        "| N | start takes | mean per jail: script / jailswap | jailswap's own `downtime_ms` | wall time: script / `upgrade` | polling round, mean (max): script / jailswap |"
    );
    let _ = writeln!(out, "|---:|---:|---|---:|---|---|");
    for r in results {
        let (s_mean, s_wall, s_round) = match &r.script {
            Ok(s) => (
                ms(s.seen.mean_ms),
                ms(s.wall_ms),
                format!(
                    "{:.1} ({:.1}) ms",
                    s.seen.round_mean_ms, s.seen.round_max_ms
                ),
            ),
            Err(_) => ("-".into(), "-".into(), "-".into()),
        };
        let (j_mean, j_wall, j_round, own) = match &r.jailswap {
            Ok(j) => (
                ms(j.seen.mean_ms),
                ms(j.wall_ms),
                format!(
                    "{:.1} ({:.1}) ms",
                    j.seen.round_mean_ms, j.seen.round_max_ms
                ),
                j.own_downtime_ms.map_or("-".into(), |v| format!("{v} ms")),
            ),
            Err(_) => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {s_mean} / {j_mean} | {own} | {s_wall} / {j_wall} | {s_round} / {j_round} |",
            r.case.jails, r.case.start_delay_ms
        );
    }

    let _ = writeln!(
        out,
        "\n### jailswap: journal, memory, `status`\n\nCommits and fsyncs of one upgrade (a second upgrade of the same sandbox, to `mroot.3`, under strace). `status` runs with the sandbox's status commands (shell builtins reading the pidfile), and again with `svc status ${{name}}` (a program) as every jail's status command.\n"
    );
    let _ = writeln!(
        out,
        "| N | start takes | journal commits | fsyncs: WAL | journal file | store directory | other | all | peak RSS of `upgrade` | `status` (median) | `status`, one program per jail |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let Ok(j) = &r.jailswap else {
            let _ = writeln!(
                out,
                "| {} | {} ms | failed | | | | | | | |",
                r.case.jails, r.case.start_delay_ms
            );
            continue;
        };
        let counts = match &j.fsyncs {
            Some(f) => format!(
                "{} | {} | {} | {} | {} | {}",
                f.commits,
                f.wal,
                f.db,
                f.store_dir,
                f.other,
                f.total()
            ),
            None => "? | ? | ? | ? | ? | ?".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {counts} | {} | {} | {} |",
            r.case.jails,
            r.case.start_delay_ms,
            j.peak_rss_kb
                .map_or("?".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
            j.status_ms.map_or("?".into(), |v| format!("{v:.1} ms")),
            j.status_programs_ms
                .map_or("?".into(), |v| format!("{v:.1} ms")),
        );
    }

    let _ = writeln!(out, "\n### The other targets\n");
    let find = |jails: usize| {
        results
            .iter()
            .find(|r| r.case.jails == jails && r.case.start_delay_ms == 0)
            .and_then(|r| r.jailswap.as_ref().ok())
    };
    let _ = writeln!(out, "| target | measured | result |\n|---|---|---|");
    match (find(10), find(1000)) {
        (Some(a), Some(b)) => {
            let (ca, cb) = (
                a.fsyncs.as_ref().map(|f| f.commits),
                b.fsyncs.as_ref().map(|f| f.commits),
            );
            let count = |c: Option<usize>| c.map_or("?".into(), |c| c.to_string());
            let _ = writeln!(
                out,
                "| journal commits per upgrade the same at N=10 and N=1000 | {} and {} | {} |",
                count(ca),
                count(cb),
                mark(ca.zip(cb).map(|(a, b)| a == b))
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "| journal commits per upgrade the same at N=10 and N=1000 | not run | - |"
            );
        }
    }
    match find(1000) {
        Some(j) => {
            let _ = writeln!(
                out,
                "| peak memory under 30 MB at N=1000 | {} | {} |",
                j.peak_rss_kb
                    .map_or("?".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
                mark(j.peak_rss_kb.map(|kb| kb < 30 * 1024))
            );
        }
        None => {
            let _ = writeln!(out, "| peak memory under 30 MB at N=1000 | not run | - |");
        }
    }
    match find(100) {
        Some(j) => {
            let _ = writeln!(
                out,
                "| `status` under 50 ms at N=100 | {} | {} |",
                j.status_ms.map_or("?".into(), |v| format!("{v:.1} ms")),
                mark(j.status_ms.map(|v| v < 50.0))
            );
        }
        None => {
            let _ = writeln!(out, "| `status` under 50 ms at N=100 | not run | - |");
        }
    }

    let _ = writeln!(
        out,
        "\n### Where `upgrade`'s time went\n\nSpan of each kind of step, from `jailswap show ID --json` (ms after the first stop began):\n"
    );
    for r in results {
        if let Ok(j) = &r.jailswap {
            let spans: Vec<String> = j
                .phases
                .iter()
                .map(|(verb, a, b)| format!("{verb} {a:.0}-{b:.0}"))
                .collect();
            let _ = writeln!(
                out,
                "- N={}, start {} ms: {}",
                r.case.jails,
                r.case.start_delay_ms,
                spans.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "\nPeak RSS: {}. Client: one polling round of N jails lasts at least max(1 ms, N x {} µs); connect and read timeouts {} ms.",
        results
            .iter()
            .find_map(|r| r.jailswap.as_ref().ok().map(|j| j.rss_source))
            .unwrap_or("-"),
        settings.poll_us_per_jail,
        CONNECT_TIMEOUT.as_millis()
    );
    for r in results {
        for (side, error) in [
            ("script", r.script.as_ref().err()),
            ("jailswap", r.jailswap.as_ref().err()),
        ] {
            if let Some(error) = error {
                let _ = writeln!(out, "- N={} {side} failed: {error}", r.case.label());
            }
        }
    }
    out
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

fn main() {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    let _ = INTERRUPTED.set(flag);
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(64);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: run as root: the sandboxes make real bind mounts (in a private mount namespace)");
        std::process::exit(77);
    }
    if let Err(e) = jailswap::sandbox::enter_private_mount_namespace() {
        eprintln!("bench: {e}");
        std::process::exit(71);
    }
    eprintln!(
        "bench: {} on {}; cases: {}",
        settings.program.display(),
        machine(),
        settings
            .cases
            .iter()
            .map(Case::label)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let load_before = load_average();
    let mut results = Vec::new();
    for case in &settings.cases {
        if interrupted() {
            break;
        }
        // A panic in one case (a bug of the benchmark) still tears its
        // sandboxes down (Bed's Drop) and leaves the other cases to run.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&settings, case))) {
            Ok(result) => results.push(result),
            Err(_) => results.push(CaseResult {
                case: case.clone(),
                script: Err("panicked".into()),
                jailswap: Err("panicked".into()),
            }),
        }
    }
    println!("## jailswap downtime benchmark\n");
    println!(
        "Machine: {}. Executable: {}. Run took {:.0} s; load average {} before, {} after.",
        machine(),
        settings.program.display(),
        started.elapsed().as_secs_f64(),
        load_before,
        load_average()
    );
    print!("{}", report(&settings, &results));
    let failed = results
        .iter()
        .any(|r| r.script.is_err() || r.jailswap.is_err());
    if interrupted() {
        std::process::exit(130);
    }
    if failed {
        std::process::exit(1);
    }
}
