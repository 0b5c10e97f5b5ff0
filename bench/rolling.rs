//! The rolling benchmark: what a client sees of `jailswap upgrade
//! --rolling`, side by side in one run with restarting each jail by hand
//! and with the all-at-once upgrade; and the journal commits of a rolling
//! upgrade at two sizes.
//!
//! ```text
//! cargo bench --bench rolling                     # every part (about 5 min on 2 CPUs)
//! cargo bench --bench rolling -- one-by-one:30 quarter:20x200ms commits:10:1000 all-at-once:100:20x200ms
//! ```
//!
//! Parts (each takes its sizes after colons, as shown above):
//! - `one-by-one:N`: N jails, instant starts. Each jail is restarted by
//!   hand, one after another (`svc stop`, `umount` data and root, `mount
//!   --bind` and remount read-only, `mount --bind` data, `svc start`: the
//!   Handbook's commands for one jail), then `upgrade --rolling --batch 1`
//!   runs; both under the same client, five times, interleaved. A jail's
//!   outage on either side is the least of its five, the one least
//!   disturbed by other work on the machine (the median is shown too):
//!   one outage of a jail against one other is mostly noise on a shared
//!   machine.
//! - `quarter:NxDELAY`: N jails whose start takes DELAY; the all-at-once
//!   upgrade, then `upgrade --rolling --batch 25%`, on one sandbox.
//! - `commits:A:B`: `upgrade --rolling --batch 10%` (ten batches) at A and
//!   at B jails under strace, counting journal commits and fsyncs as
//!   bench/downtime.rs does (a second upgrade of the sandbox).
//! - `all-at-once:CASE:CASE`: bench/downtime.rs's jailswap side for each
//!   case, with this build and, when `BENCH_BASELINE_BIN` names another
//!   executable (main's build, say), with that one too, in the same run.
//!
//! The client is bench/downtime.rs's: every jail is asked (GET, 100 ms
//! timeouts) once per polling round of at least max(1 ms, N x 250 µs); a
//! jail is down from its last answer to its first answer after (any
//! version). Rounds here are single passes over every jail, so "jails down
//! in a round" is a count at one moment of the rolling upgrade. Besides
//! the rounds, the jails that are down, and in `one-by-one` the two jails
//! expected to go down next (in the order the upgrade takes them), are
//! asked every millisecond, so that each outage is measured to about a
//! millisecond at both ends: the comparison of one jail's outage with that
//! same jail restarted by hand needs that resolution.
//!
//! Environment: `JAILSWAP_BIN`, `BENCH_DIR`, `BENCH_POLL_US_PER_JAIL`,
//! `BENCH_SAVE` as for bench/downtime.rs; `BENCH_BASELINE_BIN`.
//!
//! The file is long because it is one benchmark, read top to bottom: the
//! client, the parts, the report.

#[path = "downtime.rs"]
#[allow(dead_code)]
mod downtime;

use downtime::{interrupted, run_bounded, Bed, Case, Result, Settings};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The client

/// The body of a jail's 200 answer, or `None` when it does not answer so.
fn probe(address: &SocketAddr) -> Option<String> {
    let timeout = Duration::from_millis(100);
    let mut stream = TcpStream::connect_timeout(address, timeout).ok()?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut response = Vec::with_capacity(256);
    (&mut stream).take(4096).read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.split("\r\n\r\n")
        .nth(1)
        .map(|body| body.trim().to_string())
}

/// One jail's service as the client saw it.
#[derive(Clone, Debug, Default)]
struct Track {
    /// When the latest poll whose answer was recorded was sent: an older
    /// poll that returns later is ignored.
    asked: Option<Instant>,
    last_up: Option<Instant>,
    /// While the jail is down: its last answer before.
    down_since: Option<Instant>,
    /// Each outage: the last answer before it, the first after it.
    outages: Vec<(Instant, Instant)>,
    version: String,
}

struct Shared {
    addresses: Vec<SocketAddr>,
    tracks: Mutex<Vec<Track>>,
    /// Jails down in each polling round, once every jail had answered.
    rounds: Mutex<Vec<usize>>,
    /// The first jail of the batch expected next: one past the last jail
    /// whose outage ended.
    next: AtomicUsize,
    /// How many jails from `next` on are asked every millisecond.
    width: usize,
    stop: AtomicBool,
}

impl Shared {
    fn ask(&self, index: usize) -> bool {
        let asked = Instant::now();
        let answer = probe(&self.addresses[index]);
        let at = Instant::now();
        let up = answer.is_some();
        let Ok(mut tracks) = self.tracks.lock() else {
            return up;
        };
        let track = &mut tracks[index];
        if track.asked.is_some_and(|latest| latest > asked) {
            return up;
        }
        track.asked = Some(asked);
        match answer {
            Some(version) => {
                if let Some(since) = track.down_since.take() {
                    track.outages.push((since, at));
                    self.next.fetch_max(index + 1, Ordering::SeqCst);
                }
                track.last_up = Some(at);
                track.version = version;
            }
            None => {
                if track.down_since.is_none() {
                    track.down_since = track.last_up;
                }
            }
        }
        up
    }

    fn all_answered(&self) -> bool {
        self.tracks
            .lock()
            .map(|tracks| tracks.iter().all(|t| t.last_up.is_some()))
            .unwrap_or(false)
    }
}

/// What the client saw while one action ran.
#[derive(Debug, Default)]
struct Watched {
    /// Each jail's outages, in ms, in order.
    outages: Vec<Vec<f64>>,
    /// Jails down in each round.
    rounds: Vec<usize>,
    /// The most outages that overlapped in time.
    concurrent: usize,
    versions: Vec<String>,
}

impl Watched {
    fn longest(&self, jail: usize) -> Option<f64> {
        self.outages[jail].iter().cloned().reduce(f64::max)
    }

    fn max_ms(&self) -> f64 {
        (0..self.outages.len())
            .filter_map(|jail| self.longest(jail))
            .fold(0.0, f64::max)
    }

    fn max_round(&self) -> usize {
        self.rounds.iter().copied().max().unwrap_or(0)
    }
}

/// Runs `action` while the client polls every port; `width` jails from
/// the next expected one are asked every millisecond as well.
fn watch<T>(
    settings: &Settings,
    ports: &[u16],
    width: usize,
    action: impl FnOnce() -> Result<T>,
) -> Result<(T, Watched)> {
    let shared = Arc::new(Shared {
        addresses: ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect(),
        tracks: Mutex::new(vec![Track::default(); ports.len()]),
        rounds: Mutex::new(Vec::new()),
        next: AtomicUsize::new(0),
        width,
        stop: AtomicBool::new(false),
    });
    let period = downtime::poll_period(settings, ports.len());
    let rounds = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(3600);
            while !shared.stop.load(Ordering::SeqCst) && Instant::now() < limit {
                let started = Instant::now();
                let counted = shared.all_answered();
                let down = (0..shared.addresses.len())
                    .filter(|index| !shared.ask(*index))
                    .count();
                if counted {
                    if let Ok(mut rounds) = shared.rounds.lock() {
                        rounds.push(down);
                    }
                }
                if let Some(rest) = period.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        })
    };
    let fast = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(3600);
            while !shared.stop.load(Ordering::SeqCst) && Instant::now() < limit {
                let started = Instant::now();
                let next = shared.next.load(Ordering::SeqCst);
                let down: Vec<usize> = shared
                    .tracks
                    .lock()
                    .map(|tracks| {
                        (0..tracks.len())
                            .filter(|i| tracks[*i].down_since.is_some())
                            .collect()
                    })
                    .unwrap_or_default();
                let expected = (next..next + shared.width).filter(|i| *i < shared.addresses.len());
                let mut asked = down;
                asked.extend(expected);
                asked.sort_unstable();
                asked.dedup();
                for index in asked {
                    shared.ask(index);
                }
                if let Some(rest) = Duration::from_millis(1).checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        })
    };
    let finish = |shared: &Arc<Shared>| {
        shared.stop.store(true, Ordering::SeqCst);
    };
    // Every jail answers before the action starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shared.all_answered() {
        if Instant::now() > deadline || interrupted() {
            finish(&shared);
            let _ = (rounds.join(), fast.join());
            return Err("not every jail answered before the upgrade".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A second of polling before the action: the first jails of an action
    // that starts on a machine at rest were measured slower than the rest
    // (on either side), whatever restarted them.
    std::thread::sleep(Duration::from_secs(1));
    let result = action();
    // Until every jail answers again (bounded), so that the last outage
    // ends in the record.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let down = shared
            .tracks
            .lock()
            .map(|tracks| tracks.iter().any(|t| t.down_since.is_some()))
            .unwrap_or(false);
        if !down || Instant::now() > deadline || interrupted() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    finish(&shared);
    let _ = (rounds.join(), fast.join());
    let value = result?;
    let tracks = shared.tracks.lock().map(|t| t.clone()).unwrap_or_default();
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for track in &tracks {
        for (from, to) in &track.outages {
            edges.push((*from, 1));
            edges.push((*to, -1));
        }
        if track.down_since.is_some() {
            return Err("a jail did not answer again within 20 s".into());
        }
    }
    edges.sort();
    let (mut now, mut concurrent) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        concurrent = concurrent.max(now);
    }
    let watched = Watched {
        outages: tracks
            .iter()
            .map(|t| {
                t.outages
                    .iter()
                    .map(|(a, b)| b.duration_since(*a).as_secs_f64() * 1000.0)
                    .collect()
            })
            .collect(),
        rounds: shared.rounds.lock().map(|r| r.clone()).unwrap_or_default(),
        concurrent: concurrent.max(0) as usize,
        versions: tracks.iter().map(|t| t.version.clone()).collect(),
    };
    Ok((value, watched))
}

// ---------------------------------------------------------------------------
// Running things

/// `jailswap --json ARGUMENTS -q` on the sandbox, bounded; its JSON and
/// wall time. It must end as `outcome`.
fn jailswap(
    settings: &Settings,
    bed: &Bed,
    arguments: &[&str],
    outcome: &str,
) -> Result<(Value, f64)> {
    let mut all = vec!["--json"];
    all.extend_from_slice(arguments);
    all.push("-q");
    let limit = Duration::from_secs(120 + 2 * bed.sandbox().jails.len() as u64);
    let (status, out, err, took) = run_bounded(
        &mut downtime::jailswap_command(settings, bed.config(), &all),
        limit,
    )?;
    let json: Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("jailswap {arguments:?} ({status}) printed no JSON ({e}): {err}"))?;
    if json["outcome"] != outcome {
        return Err(format!(
            "jailswap {arguments:?}: {} ({status}): {}{err}",
            json["outcome"],
            downtime::first_error(&json)
        ));
    }
    Ok((json, took.as_secs_f64() * 1000.0))
}

/// Restarts every jail by hand, one after another, with the Handbook's
/// commands for one jail and a pause between jails.
fn by_hand_script(bed: &Bed) -> String {
    let sandbox = bed.sandbox();
    let quote = downtime::quote;
    let svc = quote(&sandbox.dir.join("svc"));
    // A service that `svc stop` saw go may still hold its root for a moment
    // as it exits: the administrator tries the unmount again.
    let mut s = String::from(
        "#!/bin/sh\n# Each jail restarted alone, by hand.\nset -e\n\
         u() { i=0; until umount \"$1\" 2>/dev/null; do i=$((i + 1)); \
         [ $i -gt 2000 ] && { umount \"$1\"; return 1; }; sleep 0.001; done; }\n",
    );
    for (name, port) in &sandbox.jails {
        let root = sandbox.store.join(name);
        let q = quote(&root);
        let _ = writeln!(s, "{svc} stop {name} {port} {q}");
        let _ = writeln!(s, "u {}", quote(&root.join("s")));
        let _ = writeln!(s, "u {q}");
        let _ = writeln!(
            s,
            "mount --bind {} {q}",
            quote(&sandbox.store.join("mroot"))
        );
        let _ = writeln!(s, "mount -o remount,bind,ro {q}");
        let _ = writeln!(
            s,
            "mount --bind {} {}",
            quote(&sandbox.dir.join("js").join(name)),
            quote(&root.join("s"))
        );
        let _ = writeln!(s, "{svc} start {name} {port} {q}");
        let _ = writeln!(s, "sleep 0.05");
    }
    s
}

fn ports(bed: &Bed) -> Vec<u16> {
    bed.sandbox().jails.iter().map(|(_, p)| *p).collect()
}

fn case(jails: usize, start_delay_ms: u64) -> Case {
    Case {
        jails,
        start_delay_ms,
        parallel: 8,
    }
}

// ---------------------------------------------------------------------------
// The parts

/// How many times each jail is restarted by hand and by a rolling upgrade,
/// interleaved: each jail's outage is taken over its trials.
const TRIALS: usize = 5;

struct OneByOne {
    jails: usize,
    /// Each trial's client record, by hand and rolling.
    hand: Vec<Watched>,
    rolling: Vec<Watched>,
    wall_ms: Vec<f64>,
    own_downtime_ms: Vec<Option<i64>>,
}

impl OneByOne {
    /// A jail's outage over the trials of one side at `fraction` (0 the
    /// least, 0.5 the median), when every trial measured it.
    fn outage(trials: &[Watched], jail: usize, fraction: f64) -> Option<f64> {
        let mut outages: Vec<f64> = trials.iter().filter_map(|t| t.longest(jail)).collect();
        (outages.len() == trials.len()).then(|| percentile(&mut outages, fraction))
    }

    /// Each jail's rolling outage over its outage by hand, both taken at
    /// `fraction` of its trials, with the jail; sorted.
    fn ratios(&self, fraction: f64) -> Vec<(f64, usize)> {
        let mut ratios: Vec<(f64, usize)> = (0..self.jails)
            .filter_map(|jail| {
                let hand = OneByOne::outage(&self.hand, jail, fraction)?;
                let rolling = OneByOne::outage(&self.rolling, jail, fraction)?;
                Some((rolling / hand, jail))
            })
            .collect();
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        ratios
    }
}

fn one_by_one(settings: &Settings, jails: usize) -> Result<OneByOne> {
    eprintln!(
        "bench: one-by-one, N={jails}: each jail by hand, then --rolling --batch 1, {TRIALS} times"
    );
    let targets: Vec<String> = (0..TRIALS)
        .map(|trial| format!("mroot.{}", trial + 2))
        .collect();
    let staged: Vec<&str> = targets.iter().map(String::as_str).collect();
    let bed = Bed::create_retrying(settings, &case(jails, 0), "rolling", &staged)?;
    let ports = ports(&bed);
    let script = bed.path().join("by-hand.sh");
    std::fs::write(&script, by_hand_script(&bed)).map_err(|e| format!("script: {e}"))?;
    let limit = Duration::from_secs(60 + jails as u64);
    let mut result = OneByOne {
        jails,
        hand: Vec::new(),
        rolling: Vec::new(),
        wall_ms: Vec::new(),
        own_downtime_ms: Vec::new(),
    };
    for (trial, target) in targets.iter().enumerate() {
        let ((), hand) = watch(settings, &ports, 2, || {
            let (status, _, err, _) = run_bounded(Command::new("/bin/sh").arg(&script), limit)?;
            if !status.success() {
                return Err(format!(
                    "restarting by hand failed ({status}): {}",
                    err.trim()
                ));
            }
            Ok(())
        })?;
        let ((json, wall_ms), rolling) = watch(settings, &ports, 2, || {
            jailswap(
                settings,
                &bed,
                &["upgrade", "--to", target, "--rolling", "--batch", "1"],
                "committed",
            )
        })?;
        let version = format!("{}.0", trial + 2);
        if let Some(other) = rolling.versions.iter().find(|v| **v != version) {
            return Err(format!(
                "a jail answers {other:?} after the upgrade to {target}"
            ));
        }
        downtime::save(
            settings,
            &format!("one-by-one.{jails}.trial{trial}.json"),
            &json.to_string(),
        );
        let csv: String = (0..jails)
            .map(|jail| {
                format!(
                    "jail{jail},{:.1},{:.1}\n",
                    hand.longest(jail).unwrap_or(0.0),
                    rolling.longest(jail).unwrap_or(0.0)
                )
            })
            .collect();
        downtime::save(
            settings,
            &format!("one-by-one.{jails}.trial{trial}.outages.csv"),
            &format!("jail,by hand ms,rolling ms\n{csv}"),
        );
        result.hand.push(hand);
        result.rolling.push(rolling);
        result.wall_ms.push(wall_ms);
        result.own_downtime_ms.push(json["downtime_ms"].as_i64());
    }
    Ok(result)
}

struct Quarter {
    case: Case,
    all_at_once: Watched,
    all_at_once_ms: f64,
    rolling: Watched,
    rolling_ms: f64,
    batches: usize,
}

fn quarter(settings: &Settings, case: &Case) -> Result<Quarter> {
    eprintln!(
        "bench: quarter, N={} starts {} ms: all at once, then --rolling --batch 25%",
        case.jails, case.start_delay_ms
    );
    let bed = Bed::create_retrying(settings, case, "rolling", &["mroot.2", "mroot.3"])?;
    let ports = ports(&bed);
    let ((_, all_at_once_ms), all_at_once) = watch(settings, &ports, 0, || {
        jailswap(settings, &bed, &["upgrade", "--to", "mroot.2"], "committed")
    })?;
    let ((json, rolling_ms), rolling) = watch(settings, &ports, 0, || {
        jailswap(
            settings,
            &bed,
            &["upgrade", "--to", "mroot.3", "--rolling", "--batch", "25%"],
            "committed",
        )
    })?;
    Ok(Quarter {
        case: case.clone(),
        all_at_once,
        all_at_once_ms,
        rolling,
        rolling_ms,
        batches: batches(&json),
    })
}

/// The number of batches of a rolling transaction's JSON.
fn batches(json: &Value) -> usize {
    let mut seen: Vec<u64> = json["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["batch"].as_u64())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

struct Commits {
    jails: usize,
    batches: usize,
    fsyncs: downtime::Fsyncs,
}

fn commits(settings: &Settings, jails: usize) -> Result<Commits> {
    eprintln!("bench: commits, N={jails}: --rolling --batch 10% under strace");
    let bed = Bed::create_retrying(
        settings,
        &case(jails, 0),
        "rolling",
        &["mroot.2", "mroot.3"],
    )?;
    // The first upgrade creates the journal; the traced one is the second.
    jailswap(settings, &bed, &["upgrade", "--to", "mroot.2"], "committed")?;
    let arguments = ["upgrade", "--to", "mroot.3", "--rolling", "--batch", "10%"];
    let limit = Duration::from_secs(120 + 2 * jails as u64);
    let fsyncs = downtime::count_fsyncs_of(settings, &bed, limit, &arguments)?;
    let (_, listed, _, _) = run_bounded(
        &mut downtime::jailswap_command(
            settings,
            bed.config(),
            &["--json", "history", "--limit", "1"],
        ),
        Duration::from_secs(60),
    )?;
    let history: Value =
        serde_json::from_str(listed.trim()).map_err(|e| format!("history printed no JSON: {e}"))?;
    let id = history[0]["id"].as_i64().unwrap_or(0).to_string();
    let (_, shown, _, _) = run_bounded(
        &mut downtime::jailswap_command(settings, bed.config(), &["--json", "show", &id]),
        Duration::from_secs(60),
    )?;
    let shown: Value = serde_json::from_str(shown.trim()).unwrap_or(Value::Null);
    if shown["outcome"] != "committed" {
        return Err(format!(
            "the traced rolling upgrade ended {}",
            shown["outcome"]
        ));
    }
    Ok(Commits {
        jails,
        batches: batches(&shown),
        fsyncs,
    })
}

struct AllAtOnce {
    case: Case,
    program: PathBuf,
    result: downtime::JailswapResult,
}

fn all_at_once(settings: &Settings, case: &Case, program: &Path) -> Result<AllAtOnce> {
    eprintln!(
        "bench: all at once, N={} starts {} ms, with {}",
        case.jails,
        case.start_delay_ms,
        program.display()
    );
    let settings = Settings {
        program: program.to_path_buf(),
        cases: Vec::new(),
        base: settings.base.clone(),
        poll_us_per_jail: settings.poll_us_per_jail,
        save: settings.save.clone(),
        wrap: Vec::new(),
        only: None,
    };
    Ok(AllAtOnce {
        case: case.clone(),
        program: program.to_path_buf(),
        result: downtime::run_jailswap(&settings, case)?,
    })
}

// ---------------------------------------------------------------------------
// The report

fn mark(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "FAIL"
    }
}

fn percentile(values: &mut [f64], fraction: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * fraction).round() as usize;
    values.get(index).copied().unwrap_or(0.0)
}

fn report_one_by_one(out: &mut String, r: &OneByOne) {
    // Each jail's least outage over its trials is the one least disturbed
    // by other work on the machine; the median is shown beside it.
    let compare = |fraction: f64| {
        let ratios = r.ratios(fraction);
        let over = ratios.iter().filter(|(ratio, _)| *ratio > 1.5).count();
        let mut only: Vec<f64> = ratios.iter().map(|(ratio, _)| *ratio).collect();
        let (worst, jail) = ratios.last().copied().unwrap_or((0.0, 0));
        (percentile(&mut only, 0.5), worst, jail, over, ratios.len())
    };
    let (least_median, least_worst, least_jail, least_over, measured) = compare(0.0);
    let (median, worst, worst_jail, over, _) = compare(0.5);
    let outages = |trials: &[Watched], fraction: f64| -> Vec<f64> {
        (0..r.jails)
            .filter_map(|jail| OneByOne::outage(trials, jail, fraction))
            .collect()
    };
    let (mut hand, mut rolling) = (outages(&r.hand, 0.5), outages(&r.rolling, 0.5));
    let (mut hand_least, mut rolling_least) = (outages(&r.hand, 0.0), outages(&r.rolling, 0.0));
    let single = |trials: &[Watched]| trials.iter().map(Watched::max_ms).fold(0.0, f64::max);
    let rounds = |trials: &[Watched]| trials.iter().map(Watched::max_round).max().unwrap_or(0);
    let round_count: usize = r.rolling.iter().map(|t| t.rounds.len()).sum();
    let concurrent = |trials: &[Watched]| trials.iter().map(|t| t.concurrent).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\n### One jail at a time: N={}, `--batch 1`, instant starts, {TRIALS} trials each way\n",
        r.jails
    );
    let _ = writeln!(
        out,
        "| | each jail restarted by hand | `upgrade --rolling --batch 1` |\n|---|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| outage per jail (its least over the trials): median over jails | {:.1} ms | {:.1} ms |",
        percentile(&mut hand_least, 0.5),
        percentile(&mut rolling_least, 0.5)
    );
    let _ = writeln!(
        out,
        "| the same: max over jails | {:.1} ms | {:.1} ms |",
        percentile(&mut hand_least, 1.0),
        percentile(&mut rolling_least, 1.0)
    );
    let _ = writeln!(
        out,
        "| outage per jail (its median over the trials): median over jails | {:.1} ms | {:.1} ms |",
        percentile(&mut hand, 0.5),
        percentile(&mut rolling, 0.5)
    );
    let _ = writeln!(
        out,
        "| the same: 90th percentile over jails | {:.1} ms | {:.1} ms |",
        percentile(&mut hand, 0.9),
        percentile(&mut rolling, 0.9)
    );
    let _ = writeln!(
        out,
        "| the same: max over jails | {:.1} ms | {:.1} ms |",
        percentile(&mut hand, 1.0),
        percentile(&mut rolling, 1.0)
    );
    let _ = writeln!(
        out,
        "| longest single outage in any trial | {:.1} ms | {:.1} ms |",
        single(&r.hand),
        single(&r.rolling)
    );
    let _ = writeln!(
        out,
        "| most jails down in one polling round ({round_count} rounds of the upgrades) | {} | {} |",
        rounds(&r.hand),
        rounds(&r.rolling)
    );
    let _ = writeln!(
        out,
        "| most outages overlapping in time | {} | {} |",
        concurrent(&r.hand),
        concurrent(&r.rolling)
    );
    let walls: Vec<String> = r.wall_ms.iter().map(|w| format!("{w:.0}")).collect();
    let owns: Vec<String> = r
        .own_downtime_ms
        .iter()
        .map(|v| v.map_or("-".into(), |v| v.to_string()))
        .collect();
    let _ = writeln!(
        out,
        "| wall time of each upgrade | - | {} ms (jailswap's own `downtime_ms`: {} ms) |",
        walls.join(", "),
        owns.join(", ")
    );
    let _ = writeln!(out, "\n| target | measured | result |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| no polling round with more than one jail down | at most {} | {} |",
        rounds(&r.rolling),
        mark(rounds(&r.rolling) <= 1)
    );
    let _ = writeln!(
        out,
        "| each jail's outage <= 1.5 x its outage restarted by hand (each side: the jail's least of {TRIALS}) | rolling / by hand per jail: median {least_median:.2}, worst {least_worst:.2} (jail{least_jail}); {least_over} of {measured} over 1.5 | {} |",
        mark(least_over == 0 && measured == r.jails)
    );
    let _ = writeln!(
        out,
        "| the same with each side's median of {TRIALS} (not a target: one trial can meet a burst of other work) | median {median:.2}, worst {worst:.2} (jail{worst_jail}); {over} of {measured} over 1.5 | - |"
    );
}

fn report_quarter(out: &mut String, r: &Quarter) {
    let _ = writeln!(
        out,
        "\n### A quarter at a time: N={}, starts take {} ms, `--batch 25%` ({} batches), parallel 8\n",
        r.case.jails, r.case.start_delay_ms, r.batches
    );
    let _ = writeln!(
        out,
        "| | all at once | `upgrade --rolling --batch 25%` |\n|---|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| most jails down in one polling round | {} | {} |",
        r.all_at_once.max_round(),
        r.rolling.max_round()
    );
    let _ = writeln!(
        out,
        "| most outages overlapping in time | {} | {} |",
        r.all_at_once.concurrent, r.rolling.concurrent
    );
    let _ = writeln!(
        out,
        "| outage per jail: max | {:.0} ms | {:.0} ms |",
        r.all_at_once.max_ms(),
        r.rolling.max_ms()
    );
    let _ = writeln!(
        out,
        "| wall time of the upgrade | {:.0} ms | {:.0} ms |",
        r.all_at_once_ms, r.rolling_ms
    );
    let limit = r.case.jails.div_ceil(4);
    let _ = writeln!(out, "\n| target | measured | result |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| no more than {limit} jails down at once | at most {} in a round | {} |",
        r.rolling.max_round(),
        mark(r.rolling.max_round() <= limit)
    );
}

fn report_commits(out: &mut String, results: &[Commits]) {
    let _ = writeln!(
        out,
        "\n### Journal commits of a rolling upgrade, `--batch 10%`\n\nA second upgrade of each sandbox, under strace.\n"
    );
    let _ = writeln!(
        out,
        "| N | batches | journal commits | fsyncs: WAL | journal file | store directory | other | all |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let f = &r.fsyncs;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.jails,
            r.batches,
            f.commits,
            f.wal,
            f.db,
            f.store_dir,
            f.other,
            f.total()
        );
    }
    if let [a, b] = results {
        let _ = writeln!(out, "\n| target | measured | result |\n|---|---|---|");
        let _ = writeln!(
            out,
            "| the same commits at N={} and N={} (ten batches each) | {} and {} | {} |",
            a.jails,
            b.jails,
            a.fsyncs.commits,
            b.fsyncs.commits,
            mark(a.fsyncs.commits == b.fsyncs.commits && a.batches == b.batches)
        );
    }
}

fn report_all_at_once(out: &mut String, results: &[AllAtOnce]) {
    let _ = writeln!(
        out,
        "\n### All at once, as bench/downtime.rs measures it\n\n| N | start takes | executable | client-seen max (mean) | own `downtime_ms` | wall | journal commits | fsyncs | `status` |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let j = &r.result;
        let (commits, fsyncs) = j.fsyncs.as_ref().map_or(("?".into(), "?".into()), |f| {
            (f.commits.to_string(), f.total().to_string())
        });
        let _ = writeln!(
            out,
            "| {} | {} ms | {} | {:.0} ms ({:.0} ms) | {} | {:.0} ms | {commits} | {fsyncs} | {} |",
            r.case.jails,
            r.case.start_delay_ms,
            r.program.display(),
            j.seen.max_ms,
            j.seen.mean_ms,
            j.own_downtime_ms.map_or("-".into(), |v| format!("{v} ms")),
            j.wall_ms,
            j.status_ms.map_or("?".into(), |v| format!("{v:.1} ms")),
        );
    }
}

// ---------------------------------------------------------------------------
// Settings and main

enum Part {
    OneByOne(usize),
    Quarter(Case),
    Commits(Vec<usize>),
    AllAtOnce(Vec<Case>),
}

const DEFAULT_PARTS: &str =
    "one-by-one:100 quarter:20x200ms commits:10:1000 all-at-once:100:20x200ms";

fn parse_part(text: &str) -> Result<Part> {
    let mut pieces = text.split(':');
    let name = pieces.next().unwrap_or("");
    let sizes: Vec<&str> = pieces.collect();
    let number = |text: &str| -> Result<usize> {
        text.parse::<usize>()
            .ok()
            .filter(|n| (1..=5000).contains(n))
            .ok_or_else(|| format!("bad size {text:?} in {text:?}"))
    };
    match (name, sizes.as_slice()) {
        ("one-by-one", [n]) => Ok(Part::OneByOne(number(n)?)),
        ("quarter", [c]) => Ok(Part::Quarter(Case::parse(c)?)),
        ("commits", list) if !list.is_empty() => {
            Ok(Part::Commits(list.iter().map(|n| number(n)).collect::<Result<_>>()?))
        }
        ("all-at-once", list) if !list.is_empty() => Ok(Part::AllAtOnce(
            list.iter().map(|c| Case::parse(c)).collect::<Result<_>>()?,
        )),
        _ => Err(format!(
            "bad part {text:?}: expected one-by-one:N, quarter:NxDELAY, commits:N:N, all-at-once:CASE:CASE"
        )),
    }
}

fn settings() -> Result<(Settings, Vec<Part>, Option<PathBuf>)> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let texts: Vec<String> = if args.is_empty() {
        DEFAULT_PARTS
            .split_whitespace()
            .map(str::to_string)
            .collect()
    } else {
        args
    };
    let parts = texts
        .iter()
        .map(|t| parse_part(t))
        .collect::<Result<Vec<_>>>()?;
    let program = std::env::var_os("JAILSWAP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_jailswap")));
    let baseline = std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from);
    for executable in std::iter::once(&program).chain(baseline.as_ref()) {
        if !executable.is_file() {
            return Err(format!("{} does not exist", executable.display()));
        }
    }
    let settings = Settings {
        cases: Vec::new(),
        program,
        base: std::env::var_os("BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
        poll_us_per_jail: std::env::var("BENCH_POLL_US_PER_JAIL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(250u64)
            .clamp(10, 100_000),
        save: std::env::var_os("BENCH_SAVE").map(PathBuf::from),
        wrap: Vec::new(),
        only: None,
    };
    Ok((settings, parts, baseline))
}

fn main() {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    let _ = downtime::INTERRUPTED.set(flag);
    let (settings, parts, baseline) = match settings() {
        Ok(found) => found,
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
    let started = Instant::now();
    let load_before = downtime::load_average();
    let mut out = String::new();
    let mut failures = Vec::new();
    for part in &parts {
        if interrupted() {
            break;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
            match part {
                Part::OneByOne(jails) => {
                    report_one_by_one(&mut out, &one_by_one(&settings, *jails)?);
                }
                Part::Quarter(case) => report_quarter(&mut out, &quarter(&settings, case)?),
                Part::Commits(sizes) => {
                    let results = sizes
                        .iter()
                        .map(|jails| commits(&settings, *jails))
                        .collect::<Result<Vec<_>>>()?;
                    report_commits(&mut out, &results);
                }
                Part::AllAtOnce(cases) => {
                    let mut results = Vec::new();
                    for case in cases {
                        for program in std::iter::once(&settings.program).chain(baseline.as_ref()) {
                            results.push(all_at_once(&settings, case, program)?);
                        }
                    }
                    report_all_at_once(&mut out, &results);
                }
            }
            Ok(())
        }));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => "a part panicked".to_string(),
        };
        eprintln!("bench: FAILED: {failure}");
        failures.push(failure);
    }
    println!("## jailswap rolling benchmark\n");
    println!(
        "Machine: {}. Executable: {}. Run took {:.0} s; load average {} before, {} after.",
        downtime::machine(),
        settings.program.display(),
        started.elapsed().as_secs_f64(),
        load_before,
        downtime::load_average()
    );
    print!("{out}");
    for failure in &failures {
        println!("\n- failed: {failure}");
    }
    if interrupted() {
        std::process::exit(130);
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
