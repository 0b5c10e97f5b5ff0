//! Operations: syslog and journald lines, Prometheus metrics, the man page
//! and shell completions.

mod common;

use clap::CommandFactory;
use common::{code, describe, Env};
use jailswap::config::{Config, LogTarget};
use jailswap::journal::{Audit, Journal, TxnState};
use jailswap::logging::{Record, SinkConfig, SyslogFormat};
use jailswap::plan::{Observed, Request, TransactionKind};
use jailswap::sandbox::SandboxOptions;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PROGRAM: &str = env!("CARGO_BIN_EXE_jailswap");

// ---------------------------------------------------------------- logging

/// The logging sink is one per process: its tests take turns.
static SINK_TESTS: Mutex<()> = Mutex::new(());

/// Takes the sink for this test and points it at a fresh listening socket.
fn sink_listening(
    target: LogTarget,
    format: SyslogFormat,
) -> (std::sync::MutexGuard<'static, ()>, Listener) {
    let turn = sink_lock();
    jailswap::logging::init(false, None);
    let listener = Listener::new();
    jailswap::logging::set_sink(Some(SinkConfig {
        target,
        socket: listener.path.clone(),
        format,
    }));
    (turn, listener)
}

fn sink_lock() -> std::sync::MutexGuard<'static, ()> {
    SINK_TESTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A datagram socket bound at a fresh path, as syslogd or journald would be.
struct Listener {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
}

impl Listener {
    fn new() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Listener {
            _dir: dir,
            path,
            socket,
        }
    }

    /// Runs `during` while a thread reads the socket, as a daemon would;
    /// returns its result and every datagram received meanwhile.
    fn record<T>(&self, during: impl FnOnce() -> T) -> (T, Vec<Vec<u8>>) {
        /// Stops the reader even when `during` panics.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut all = Vec::new();
                let mut buffer = vec![0u8; 65536];
                loop {
                    match self.socket.recv(&mut buffer) {
                        Ok(length) => all.push(buffer[..length].to_vec()),
                        // Quiet for the read timeout after `during` ended.
                        Err(_) if stop.load(Ordering::SeqCst) => break,
                        Err(_) => {}
                    }
                }
                all
            });
            let result = {
                let _stop = Stop(&stop);
                during()
            };
            (result, reader.join().unwrap())
        })
    }

    /// The datagrams received while `during` runs that contain `marker`.
    fn lines_with(&self, marker: &str, during: impl FnOnce()) -> Vec<String> {
        self.record(during)
            .1
            .into_iter()
            .map(|datagram| String::from_utf8_lossy(&datagram).into_owned())
            .filter(|text| text.contains(marker))
            .collect()
    }
}

/// Parses a journald native-protocol datagram into (name, value) pairs.
fn journald_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').expect("newline");
        let line = &rest[..end];
        if let Some(equals) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8(line[..equals].to_vec()).unwrap(),
                String::from_utf8(line[equals + 1..].to_vec()).unwrap(),
            ));
            rest = &rest[end + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).unwrap();
            let length = u64::from_le_bytes(rest[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &rest[end + 9..end + 9 + length];
            assert_eq!(rest[end + 9 + length], b'\n', "value ends with a newline");
            fields.push((name, String::from_utf8(value.to_vec()).unwrap()));
            rest = &rest[end + 10 + length..];
        }
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

// Events at info and above with target jailswap reach the syslog socket as
// RFC 3164 lines, facility daemon, identifier jailswap, fields as key=value;
// debug events and other targets do not; set_target(None) stops the lines.
#[test]
fn syslog_lines_in_process() {
    let (_turn, listener) = sink_listening(LogTarget::Syslog, SyslogFormat::Rfc3164);
    let marker = "m3164";
    let lines = listener.lines_with(marker, || {
        tracing::info!(target: "jailswap", step = "stop", jail = "web", undo = false, ms = 12, marker, "stop jail web ok");
        tracing::warn!(target: "jailswap", step = "start", jail = "db", error = "exit 1: no such file", marker, "start jail db failed");
        tracing::error!(target: "jailswap::journal", marker, "journal trouble");
        tracing::debug!(target: "jailswap", marker, "debug is not sent");
        tracing::info!(target: "other", marker, "other targets are not sent");
        tracing::info!(target: "jailswap", transaction = 7_i64, kind = "upgrade", outcome = "committed", downtime_ms = 1234_i64, from = "mroot.1", to = "mroot.2", marker, "transaction 7 committed\nsecond line");
    });
    let pid = std::process::id();
    let header = format!(" jailswap[{pid}]: ");
    let bodies: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            let at = line
                .find(&header)
                .unwrap_or_else(|| panic!("no {header:?} in {line:?}"));
            // <PRI>Mmm dd hh:mm:ss: the timestamp is 15 characters.
            let close = line.find('>').unwrap();
            assert_eq!(at - close - 1, 15, "timestamp in {line:?}");
            (&line[..close + 1], &line[at + header.len()..])
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            ("<30>", "stop jail web ok step=stop jail=web undo=false ms=12 marker=m3164"),
            ("<28>", "start jail db failed step=start jail=db error=\"exit 1: no such file\" marker=m3164"),
            ("<27>", "journal trouble marker=m3164"),
            ("<30>", "transaction 7 committed second line transaction=7 kind=upgrade outcome=committed downtime_ms=1234 from=mroot.1 to=mroot.2 marker=m3164"),
        ],
        "{lines:#?}"
    );

    jailswap::logging::set_target(LogTarget::None);
    assert_eq!(jailswap::logging::current_sink(), None);
    let after = listener.lines_with(marker, || {
        tracing::info!(target: "jailswap", marker, "after the sink is off");
    });
    assert!(after.is_empty(), "{after:?}");
}

// The RFC 5424 format (FreeBSD's syslog(3)) carries version 1, an RFC 3339
// timestamp in local time with its offset, the host name, the identifier and
// the pid.
#[test]
fn syslog_rfc5424_in_process() {
    let (_turn, listener) = sink_listening(LogTarget::Syslog, SyslogFormat::Rfc5424);
    let lines = listener.lines_with("m5424", || {
        tracing::info!(target: "jailswap", jail = "web", marker = "m5424", "health of web ok");
    });
    jailswap::logging::set_target(LogTarget::None);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let parts: Vec<&str> = lines[0].splitn(8, ' ').collect();
    assert_eq!(parts[0], "<30>1");
    let stamp = chrono::DateTime::parse_from_rfc3339(parts[1])
        .unwrap_or_else(|error| panic!("{error}: {}", lines[0]));
    // FreeBSD's syslogd copies the stamp's clock as is into its files, so
    // the offset must be the local one (this tells only where TZ is not UTC).
    assert_eq!(
        stamp.offset().local_minus_utc(),
        stamp
            .with_timezone(&chrono::Local)
            .offset()
            .local_minus_utc(),
        "{}",
        lines[0]
    );
    let hostname = nix::unistd::gethostname().unwrap();
    assert_eq!(parts[2], hostname.to_str().unwrap());
    assert_eq!(parts[3], "jailswap");
    assert_eq!(parts[4], std::process::id().to_string());
    assert_eq!(
        &parts[5..],
        ["-", "-", "health of web ok jail=web marker=m5424"]
    );
}

// journald receives the native protocol: MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER=jailswap, and each field uppercased; a value with a
// newline uses the length-prefixed form.
#[test]
fn journald_entries_in_process() {
    let (_turn, listener) = sink_listening(LogTarget::Journald, SyslogFormat::Rfc3164);
    let (_, datagrams) = listener.record(|| {
        tracing::warn!(target: "jailswap", step = "mount", jail = "web", error = "mount: busy\ntry again", marker = "mjournal", "mount of web failed");
    });
    jailswap::logging::set_target(LogTarget::None);
    let datagrams: Vec<Vec<u8>> = datagrams
        .into_iter()
        .filter(|d| String::from_utf8_lossy(d).contains("mjournal"))
        .collect();
    assert_eq!(datagrams.len(), 1);
    let fields = journald_fields(&datagrams[0]);
    assert_eq!(
        field(&fields, "MESSAGE"),
        Some("mount of web failed step=mount jail=web error=\"mount: busy\\ntry again\" marker=mjournal")
    );
    assert_eq!(field(&fields, "PRIORITY"), Some("4"));
    assert_eq!(field(&fields, "SYSLOG_FACILITY"), Some("3"));
    assert_eq!(field(&fields, "SYSLOG_IDENTIFIER"), Some("jailswap"));
    assert_eq!(
        field(&fields, "SYSLOG_PID"),
        Some(std::process::id().to_string().as_str())
    );
    assert_eq!(field(&fields, "STEP"), Some("mount"));
    assert_eq!(field(&fields, "JAIL"), Some("web"));
    assert_eq!(field(&fields, "ERROR"), Some("mount: busy\ntry again"));
}

// Both formats stamp the clock they are given with its offset, as syslog(3)
// stamps the local time: RFC 3164 as `Mmm dd hh:mm:ss` with the day padded by
// a space and no host name, RFC 5424 as RFC 3339 with microseconds and the
// offset, nil MSGID and structured data.
#[test]
fn syslog_stamps_carry_the_given_clock() {
    let zone = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
    let at = chrono::TimeZone::with_ymd_and_hms(&zone, 2026, 6, 1, 7, 5, 9).unwrap()
        + chrono::Duration::microseconds(250);
    let record = Record {
        level: Some(tracing::Level::WARN),
        message: "stop jail web failed".to_string(),
        fields: vec![("jail".to_string(), "web".to_string())],
    };
    assert_eq!(
        jailswap::logging::syslog_datagram(SyslogFormat::Rfc3164, &record, "host", 4242, at),
        "<28>Jun  1 07:05:09 jailswap[4242]: stop jail web failed jail=web"
    );
    assert_eq!(
        jailswap::logging::syslog_datagram(SyslogFormat::Rfc5424, &record, "host", 4242, at),
        "<28>1 2026-06-01T07:05:09.000250-05:00 host jailswap 4242 - - stop jail web failed jail=web"
    );
}

// A burst far beyond the socket's queue (Linux: 10 datagrams) arrives
// whole, in order, when the daemon keeps reading: sends wait for room.
#[test]
fn burst_arrives_whole() {
    let (_turn, listener) = sink_listening(LogTarget::Syslog, SyslogFormat::Rfc3164);
    let lines = listener.lines_with("mburst", || {
        for n in 0..500 {
            tracing::info!(target: "jailswap", n, marker = "mburst", "event");
        }
    });
    jailswap::logging::set_target(LogTarget::None);
    let numbers: Vec<usize> = lines
        .iter()
        .map(|line| {
            let n = line.split(" n=").nth(1).unwrap().split(' ').next().unwrap();
            n.parse().unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..500).collect::<Vec<_>>());
}

// A missing socket, a path that is not a socket, and a daemon that never
// reads (full queue) lose lines but neither fail nor stall the caller.
#[test]
fn logging_degrades_silently() {
    let _turn = sink_lock();
    jailswap::logging::init(false, None);
    let dir = tempfile::tempdir().unwrap();
    let not_a_socket = dir.path().join("file");
    std::fs::write(&not_a_socket, "").unwrap();
    let deaf = dir.path().join("deaf.sock");
    let _deaf = UnixDatagram::bind(&deaf).unwrap();
    for socket in [dir.path().join("missing.sock"), not_a_socket, deaf] {
        for target in [LogTarget::Syslog, LogTarget::Journald] {
            jailswap::logging::set_sink(Some(SinkConfig {
                target,
                socket: socket.clone(),
                format: SyslogFormat::native(),
            }));
            // In a thread, so that a send that blocks for good fails the
            // test instead of hanging it.
            let (done, finished) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let started = Instant::now();
                for n in 0..3000 {
                    tracing::info!(target: "jailswap", n, marker = "mdegrade", "event {n}");
                }
                let _ = done.send(started.elapsed());
            });
            let took = finished
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("logging to {socket:?} blocked"));
            // At most one wait of 100 ms, then drops without waiting.
            assert!(
                took < Duration::from_secs(3),
                "logging 3000 events to {socket:?} took {took:?}"
            );
        }
    }
    jailswap::logging::set_target(LogTarget::None);
}

// `set_target` reads the socket path from JAILSWAP_SYSLOG_SOCKET /
// JAILSWAP_JOURNALD_SOCKET, else the system's default; None disables.
#[test]
fn sink_for_target() {
    let syslog = SinkConfig::for_target(LogTarget::Syslog).unwrap();
    let expected = match std::env::var_os("JAILSWAP_SYSLOG_SOCKET") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ if cfg!(target_os = "freebsd") => PathBuf::from("/var/run/log"),
        _ => PathBuf::from("/dev/log"),
    };
    assert_eq!(syslog.socket, expected);
    assert_eq!(syslog.target, LogTarget::Syslog);
    let journald = SinkConfig::for_target(LogTarget::Journald).unwrap();
    if std::env::var_os("JAILSWAP_JOURNALD_SOCKET").is_none() {
        assert_eq!(
            journald.socket,
            PathBuf::from("/run/systemd/journal/socket")
        );
    }
    assert_eq!(SinkConfig::for_target(LogTarget::None), None);
}

/// Adds top-level keys to the sandbox's configuration (before any table).
fn prepend_config(env: &Env, lines: &str) {
    let text = std::fs::read_to_string(&env.sandbox.config).unwrap();
    std::fs::write(&env.sandbox.config, format!("{lines}\n{text}")).unwrap();
}

/// Whether an RFC 3164 stamp (`Mmm dd hh:mm:ss`) names a second between
/// `started` and `ended`, read in their zone.
fn stamped_between(
    stamp: &str,
    started: chrono::DateTime<chrono::FixedOffset>,
    ended: chrono::DateTime<chrono::FixedOffset>,
) -> bool {
    use chrono::Datelike;
    // The stamp has no year: try both ends' years, for a run across New Year.
    [started.year(), ended.year()].iter().any(|year| {
        chrono::NaiveDateTime::parse_from_str(&format!("{year} {stamp}"), "%Y %b %e %H:%M:%S")
            .is_ok_and(|at| {
                at >= started.naive_local() - chrono::Duration::seconds(1)
                    && at <= ended.naive_local()
            })
    })
}

// The real binary, with `log = "syslog"`, sends one line per step and one
// per outcome to the socket JAILSWAP_SYSLOG_SOCKET names, stamped with the
// local time as syslog(3) does (the binary runs 5 hours west of UTC here).
#[test]
fn syslog_lines_from_the_binary() {
    let env = Env::standard();
    prepend_config(&env, "log = \"syslog\"");
    let listener = Listener::new();
    let mut output = None;
    // A POSIX TZ string needs no zoneinfo file.
    let zone = chrono::FixedOffset::west_opt(5 * 3600).unwrap();
    let started = chrono::Utc::now().with_timezone(&zone);
    let lines = listener.lines_with("jailswap[", || {
        output = Some(
            env.command(&["upgrade", "--to", "mroot.2"])
                .env("JAILSWAP_SYSLOG_SOCKET", &listener.path)
                .env("TZ", "EST5")
                .output()
                .unwrap(),
        );
    });
    let ended = chrono::Utc::now().with_timezone(&zone);
    let output = output.unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    for line in &lines {
        let stamp = line
            .find('>')
            .and_then(|close| line.get(close + 1..close + 16));
        assert!(
            stamp.is_some_and(|stamp| stamped_between(stamp, started, ended)),
            "not stamped between {started} and {ended}: {line}"
        );
    }
    assert!(
        lines.iter().all(|line| line.starts_with("<30>")
            || line.starts_with("<28>")
            || line.starts_with("<27>")),
        "{lines:#?}"
    );
    for jail in ["jail0", "jail1", "jail2"] {
        for step in ["stop", "unmount", "mount", "start"] {
            let expected = format!(" step={step} jail={jail} undo=false ms=");
            assert!(
                lines.iter().any(|line| line.contains(&expected)),
                "no {expected:?} line: {lines:#?}"
            );
        }
    }
    let outcome: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains(" outcome="))
        .collect();
    assert_eq!(outcome.len(), 1, "{lines:#?}");
    for part in [
        " transaction=1 ",
        " kind=upgrade ",
        " outcome=committed ",
        " downtime_ms=",
        " from=mroot.",
        " to=mroot.2",
    ] {
        assert!(outcome[0].contains(part), "{part} missing: {}", outcome[0]);
    }
}

// The real binary, with `log = "journald"`, writes journal entries with
// SYSLOG_IDENTIFIER=jailswap and the outcome's fields.
#[test]
fn journald_entries_from_the_binary() {
    let env = Env::standard();
    prepend_config(&env, "log = \"journald\"");
    let listener = Listener::new();
    let (output, datagrams) = listener.record(|| {
        env.command(&["upgrade", "--to", "mroot.2"])
            .env("JAILSWAP_JOURNALD_SOCKET", &listener.path)
            .output()
            .unwrap()
    });
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let entries: Vec<Vec<(String, String)>> = datagrams
        .iter()
        .map(|datagram| journald_fields(datagram))
        .collect();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|entry| field(entry, "SYSLOG_IDENTIFIER") == Some("jailswap")));
    assert!(
        entries
            .iter()
            .any(|entry| field(entry, "STEP") == Some("stop")
                && field(entry, "JAIL") == Some("jail0"))
    );
    let outcome = entries
        .iter()
        .find(|entry| field(entry, "OUTCOME").is_some())
        .expect("an outcome entry");
    assert_eq!(field(outcome, "OUTCOME"), Some("committed"));
    assert_eq!(field(outcome, "KIND"), Some("upgrade"));
    assert_eq!(field(outcome, "TO"), Some("mroot.2"));
}

// With the syslog socket missing, the upgrade still commits and stderr
// says nothing about logging.
#[test]
fn missing_syslog_socket_changes_nothing() {
    let env = Env::standard();
    prepend_config(&env, "log = \"syslog\"");
    let missing = env.dir.path().join("no-such.sock");
    let output = env
        .command(&["upgrade", "--to", "mroot.2"])
        .env("JAILSWAP_SYSLOG_SOCKET", &missing)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("no-such.sock") && !stderr.to_lowercase().contains("syslog"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- metrics

/// A configuration over a temporary store with two jails' fstabs.
fn small_config(dir: &Path) -> Config {
    let store = dir.join("j");
    std::fs::create_dir_all(store.join("mroot")).unwrap();
    for name in ["db", "web"] {
        std::fs::write(
            dir.join(format!("fstab.{name}")),
            format!(
                "{0}/mroot {0}/{name} nullfs ro 0 0\n{1}/js/{name} {0}/{name}/s nullfs rw 0 0\n",
                store.display(),
                dir.display()
            ),
        )
        .unwrap();
    }
    let text = format!(
        "store = {:?}\njournal = {:?}\n[[jail]]\nname = \"web\"\npath = {:?}\nfstab = {:?}\ndepends = [\"db\"]\n[[jail]]\nname = \"db\"\npath = {:?}\nfstab = {:?}\n",
        store.display().to_string(),
        dir.join("db/journal.sqlite").display().to_string(),
        store.join("web").display().to_string(),
        dir.join("fstab.web").display().to_string(),
        store.join("db").display().to_string(),
        dir.join("fstab.db").display().to_string(),
    );
    Config::parse(&text, &dir.join("jailswap.toml")).unwrap()
}

fn begin(journal: &mut Journal, config: &Config, kind: TransactionKind, to: &str) -> i64 {
    let request = Request {
        kind,
        target: to.into(),
        archive_as: format!("{to}.archived"),
        from_label: "mroot.1".into(),
        to_label: to.into(),
        rolling: None,
    };
    let observed = Observed {
        live_id: jailswap::template::TemplateId::Inode(1),
        target_id: jailswap::template::TemplateId::Inode(2),
        ..Observed::default()
    };
    let plan = jailswap::plan::build(config, &request, &observed);
    journal.begin(&plan, &Audit::current(None)).unwrap()
}

/// The samples of a metrics text (`name{labels}` -> value), checking that
/// each metric has exactly one HELP and one TYPE line before its samples.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut help: BTreeMap<String, usize> = BTreeMap::new();
    let mut kind: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(rest.len() > name.len() + 1, "empty help for {name}");
            *help.entry(name).or_default() += 1;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, value) = rest.split_once(' ').unwrap();
            assert!(
                ["gauge", "counter"].contains(&value),
                "type {value} of {name}"
            );
            assert!(
                kind.insert(name.to_string(), value.to_string()).is_none(),
                "two TYPE lines for {name}"
            );
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "line {line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert_eq!(help.get(name), Some(&1), "HELP before {line:?}");
            assert!(kind.contains_key(name), "TYPE before {line:?}");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{series} twice"
            );
        }
    }
    // No metric is only a header.
    for name in kind.keys() {
        assert!(
            samples
                .keys()
                .any(|series| series.split('{').next() == Some(name)),
            "{name} has no sample"
        );
    }
    samples
}

fn seconds(rfc3339: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0
}

// Metrics written from a real journal carry exact values for the newest
// transaction, the counts per outcome and the pending flag; the file is
// replaced by rename (new inode, old readers keep the old text), is 0644,
// and no temporary file is left behind.
#[test]
fn metrics_from_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let mut journal = Journal::open(&config.journal).unwrap();
    let textfile = dir.path().join("textfile");
    std::fs::create_dir(&textfile).unwrap();
    let path = textfile.join("jailswap.prom");

    // An empty journal: no last transaction, nothing pending.
    jailswap::metrics::write(&path, &journal).unwrap();
    let metrics = parse_metrics(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        metrics.get("jailswap_last_transaction_outcome{outcome=\"committed\"}"),
        Some(&0.0)
    );
    assert_eq!(metrics.get("jailswap_pending_transaction"), Some(&0.0));
    assert!(!metrics.contains_key("jailswap_last_transaction_downtime_seconds"));

    // A running transaction is pending and has no end yet.
    let first = begin(&mut journal, &config, TransactionKind::Upgrade, "mroot.2");
    jailswap::metrics::write(&path, &journal).unwrap();
    let metrics = parse_metrics(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(metrics.get("jailswap_pending_transaction"), Some(&1.0));
    assert_eq!(
        metrics.get("jailswap_last_transaction_outcome{outcome=\"running\"}"),
        Some(&1.0)
    );
    assert!(!metrics.contains_key("jailswap_last_transaction_end_timestamp_seconds"));
    assert!(metrics.contains_key("jailswap_last_transaction_start_timestamp_seconds"));

    journal
        .finish(
            first,
            TxnState::Committed,
            (Some(123), Some("{}")),
            &[],
            None,
        )
        .unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let old_text = std::fs::read_to_string(&path).unwrap();
    let old_reader = std::fs::File::open(&path).unwrap();
    jailswap::metrics::write(&path, &journal).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let metrics = parse_metrics(&text);
    let record = journal.transaction(first).unwrap().unwrap();
    let started = seconds(&record.started_at);
    let finished = seconds(record.finished_at.as_deref().unwrap());
    let expected: BTreeMap<String, f64> = [
        ("jailswap_last_transaction_outcome{outcome=\"committed\"}", 1.0),
        ("jailswap_last_transaction_outcome{outcome=\"rolled_back\"}", 0.0),
        ("jailswap_last_transaction_outcome{outcome=\"needs_operator\"}", 0.0),
        ("jailswap_last_transaction_outcome{outcome=\"running\"}", 0.0),
        ("jailswap_last_transaction_outcome{outcome=\"rolling_back\"}", 0.0),
        (
            "jailswap_last_transaction_info{id=\"1\",kind=\"upgrade\",from=\"mroot.1\",to=\"mroot.2\"}",
            1.0,
        ),
        ("jailswap_last_transaction_start_timestamp_seconds", started),
        ("jailswap_last_transaction_end_timestamp_seconds", finished),
        (
            "jailswap_last_transaction_duration_seconds",
            ((finished - started) * 1000.0).round() / 1000.0,
        ),
        ("jailswap_last_transaction_downtime_seconds", 0.123),
        ("jailswap_transactions_total{outcome=\"committed\"}", 1.0),
        ("jailswap_transactions_total{outcome=\"rolled_back\"}", 0.0),
        ("jailswap_transactions_total{outcome=\"needs_operator\"}", 0.0),
        ("jailswap_pending_transaction", 0.0),
    ]
    .into_iter()
    .map(|(series, value)| (series.to_string(), value))
    .collect();
    assert_eq!(metrics, expected, "{text}");
    assert!(text.contains("# TYPE jailswap_transactions_total counter\n"));
    assert!(text.contains("# TYPE jailswap_last_transaction_downtime_seconds gauge\n"));
    assert!(text.contains("\njailswap_last_transaction_downtime_seconds 0.123\n"));

    // Replaced, not rewritten in place: a reader of the old file still
    // sees the old, complete text.
    let after = std::fs::metadata(&path).unwrap();
    assert_ne!(before.ino(), after.ino(), "the file was rewritten in place");
    assert_eq!(
        std::io::read_to_string(old_reader).unwrap(),
        old_text,
        "the old file changed under its reader"
    );
    assert_eq!(after.permissions().mode() & 0o777, 0o644);
    let names: Vec<String> = std::fs::read_dir(&textfile)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["jailswap.prom"], "temporary files left behind");

    // A second transaction that rolled back becomes the last one.
    let second = begin(&mut journal, &config, TransactionKind::Rollback, "mroot.1");
    journal
        .finish(second, TxnState::RolledBack, (Some(50), None), &[], None)
        .unwrap();
    jailswap::metrics::write(&path, &journal).unwrap();
    let metrics = parse_metrics(&std::fs::read_to_string(&path).unwrap());
    for (series, value) in [
        ("jailswap_last_transaction_outcome{outcome=\"committed\"}", 0.0),
        ("jailswap_last_transaction_outcome{outcome=\"rolled_back\"}", 1.0),
        ("jailswap_transactions_total{outcome=\"committed\"}", 1.0),
        ("jailswap_transactions_total{outcome=\"rolled_back\"}", 1.0),
        ("jailswap_last_transaction_downtime_seconds", 0.05),
        (
            "jailswap_last_transaction_info{id=\"2\",kind=\"rollback\",from=\"mroot.1\",to=\"mroot.1\"}",
            1.0,
        ),
    ] {
        assert_eq!(metrics.get(series), Some(&value), "{series}");
    }
}

// Writing into a directory that does not exist fails with an error and
// creates nothing.
#[test]
fn metrics_into_a_missing_directory_fail() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let journal = Journal::open(&config.journal).unwrap();
    let path = dir.path().join("missing/jailswap.prom");
    let error = jailswap::metrics::write(&path, &journal).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
    assert!(!dir.path().join("missing").exists());
}

// The real binary, with `metrics = ...`, writes the file after each
// transaction: a committed upgrade, then a health-check failure.
#[test]
fn metrics_from_the_binary() {
    let env = Env::new(SandboxOptions {
        health_timeout: "1s".into(),
        staged: vec![
            ("mroot.2".into(), Some("2.0".into())),
            ("mroot.broken".into(), None),
        ],
        ..SandboxOptions::default()
    });
    let path = env.dir.path().join("jailswap.prom");
    prepend_config(&env, &format!("metrics = {:?}", path.display().to_string()));

    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let metrics = parse_metrics(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        metrics.get("jailswap_last_transaction_outcome{outcome=\"committed\"}"),
        Some(&1.0)
    );
    assert!(metrics
        .get("jailswap_last_transaction_downtime_seconds")
        .is_some_and(|&seconds| seconds > 0.0));

    let output = env.run(&["upgrade", "--to", "mroot.broken"]);
    assert_eq!(code(&output), 1, "{}", describe(&output));
    let metrics = parse_metrics(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        metrics.get("jailswap_last_transaction_outcome{outcome=\"rolled_back\"}"),
        Some(&1.0)
    );
    assert_eq!(
        metrics.get("jailswap_transactions_total{outcome=\"committed\"}"),
        Some(&1.0)
    );
    assert_eq!(
        metrics.get("jailswap_transactions_total{outcome=\"rolled_back\"}"),
        Some(&1.0)
    );
    assert_eq!(metrics.get("jailswap_pending_transaction"), Some(&0.0));
}

// ---------------------------------------------------------------- man page

/// The lines clap_mangen writes at the top of every rendered piece.
const APOSTROPHE_PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

/// One section rendered by clap_mangen, without its preamble and, when
/// `keep_heading` is false, without its `.SH` line.
fn piece(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>, keep_heading: bool) -> String {
    let mut buffer = Vec::new();
    render(&mut buffer).unwrap();
    String::from_utf8(buffer)
        .unwrap()
        .lines()
        .filter(|line| !APOSTROPHE_PREAMBLE.contains(line))
        .filter(|line| keep_heading || !line.starts_with(".SH "))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// One key of the configuration file: its name, its default (`None`:
/// required or unset) and what it does.
struct Key {
    name: &'static str,
    default: Option<&'static str>,
    meaning: &'static str,
}

const fn key(name: &'static str, default: Option<&'static str>, meaning: &'static str) -> Key {
    Key {
        name,
        default,
        meaning,
    }
}

/// The keys of each table of the configuration file, as the man page's
/// CONFIGURATION section lists them. `man_page_documents_every_key` holds
/// this list to what the parser accepts and to the defaults it applies.
const CONFIGURATION: &[(&str, &[Key])] = &[
    (
        "Top level",
        &[
            key("store", None, "Required. The directory that holds the live template and its siblings (the Handbook's /home/j); an absolute path."),
            key("live", Some("mroot"), "The name of the live template in the store: the directory every jail mounts read-only."),
            key("journal", Some("/var/db/jailswap/journal.sqlite on FreeBSD, /var/lib/jailswap/journal.sqlite elsewhere"), "The journal, an SQLite file (mode 0600, its directory created 0700). One jailswap at a time holds the lock on its directory."),
            key("parallel", Some("8"), "How many jails are stopped or started at once, 1 to 1024."),
            key("carry", Some("[]"), "Directories moved from the outgoing template into the incoming one, such as \"usr/ports\" (relative, without ..); a rollback moves them back."),
            key("store_kind", Some("auto"), "How templates are renamed and copied: directory, btrfs, zfs, or auto (judged by the live template)."),
            key("backend", Some("linux on Linux, commands elsewhere"), "How mounts are made and read: linux (mount(2) bind mounts, /proc/self/mountinfo) or commands (mount(8) -t nullfs, umount(8), mount -p)."),
            key("log", Some("journald on Linux when systemd's journal runs, syslog otherwise"), "Where one line per step and per outcome goes besides stderr: syslog, journald or none."),
            key("metrics", None, "A file rewritten after every transaction with Prometheus metrics (node_exporter's textfile collector); unset, none is written."),
        ],
    ),
    (
        "[rolling]",
        &[key("batch", Some("1,25%"), "Batch sizes of upgrade --rolling, as Ansible's serial: counts or percentages, the last one repeating.")],
    ),
    (
        "[health]",
        &[
            key("timeout", Some("30s"), "All of a jail's health checks must pass within this after its start."),
            key("interval", Some("500ms"), "The pause between two attempts."),
        ],
    ),
    (
        "[[jail]]",
        &[
            key("name", None, "Required. The jail's name, [A-Za-z0-9][A-Za-z0-9_.-]*, unique."),
            key("path", Some("<store>/<name>"), "The jail's root: the mount point of the template."),
            key("fstab", None, "The jail's mounts in fstab(5) form, mounted in order and unmounted in reverse; type nullfs is a bind mount on Linux, option ro read-only. Without it the jail mounts its own (jail.conf mount.fstab) and jailswap only checks after the stop that nothing still mounts the template."),
            key("depends", Some("[]"), "Jails started before this one and stopped after it."),
            key("start", Some("service jail start ${name}"), "The command that starts the jail."),
            key("stop", Some("service jail stop ${name}"), "The command that stops the jail."),
            key("status", None, "A command that exits 0 while the jail runs; jails it finds stopped stay stopped (the plan says so). Unset, jailswap cannot tell and stops and starts every jail."),
            key("timeout", Some("60s"), "The bound on each start, stop and status command."),
            key("health", Some("[]"), "The jail's health checks, as [[jail.health]] tables; all must pass."),
        ],
    ),
    (
        "[[jail.health]]",
        &[
            key("http", None, "A URL whose GET must answer 2xx."),
            key("contains", None, "With http: text the body must contain."),
            key("tcp", None, "An address (host:port) that must accept a connection."),
            key("cmd", None, "A command that must exit 0."),
        ],
    ),
];

/// docs/jailswap.8: clap_mangen's page for the command, one subsection per
/// command under COMMANDS, then CONFIGURATION, EXIT STATUS, ENVIRONMENT,
/// FILES, EXAMPLES, SEE ALSO.
pub fn generate_man_page() -> String {
    use clap_mangen::roff::{bold, italic, roman, Roff};
    use clap_mangen::Man;

    let mut command = jailswap::cli::Cli::command();
    command.build();
    let version = command.get_version().unwrap_or_default().to_string();
    let man = Man::new(command.clone()).section("8");
    let mut page = APOSTROPHE_PREAMBLE.join("\n") + "\n";
    // Written by hand: roff drops an empty argument, which would shift the
    // source into the date's place.
    page += &format!(".TH JAILSWAP 8 \"\" \"jailswap {version}\" \"System Manager's Manual\"\n");
    page += &piece(|w| man.render_name_section(w), true);
    page += &piece(|w| man.render_synopsis_section(w), true);
    page += &piece(|w| man.render_description_section(w), true);
    page += &piece(|w| man.render_options_section(w), true);

    page += ".SH COMMANDS\n";
    let visible = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help");
    for sub in visible {
        // The global options are described once, above.
        let sub = sub.clone().mut_args(|arg| {
            if arg.is_global_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                arg.hide(true)
            } else {
                arg
            }
        });
        let name = format!("jailswap {}", sub.get_name());
        let man = Man::new(sub);
        page += &Roff::new().control("SS", [name.as_str()]).to_roff();
        page += &piece(|w| man.render_synopsis_section(w), false);
        page += ".PP\n";
        page += &piece(|w| man.render_description_section(w), false);
        let options = piece(|w| man.render_options_section(w), false);
        if !options.trim().is_empty() {
            page += ".PP\n";
            page += &options;
        }
    }

    let mut roff = Roff::new();
    roff.control("SH", ["CONFIGURATION"]);
    roff.text([roman(
        "A TOML file, owned by root and not writable by group or others when jailswap runs as root (it names commands run as root). Unknown keys are refused (exit 78). Commands run through /bin/sh -c with ${name} and ${path} replaced by the jail's name and root; ${name} is also replaced in path, fstab, http and tcp. Durations read as 500ms, 30s, 2m.",
    )]);
    for (table, keys) in CONFIGURATION {
        roff.control("SS", [*table]);
        if *table == "[[jail]]" {
            roff.text([
                roman("One table per jail. A "),
                bold("[defaults]"),
                roman(" table takes any of these keys but name, and every jail inherits it."),
            ]);
        }
        for entry in *keys {
            // A short default goes with the key, a long one after the text.
            let (tag, text) = match entry.default {
                Some(value) if value.len() <= 30 => {
                    (format!(" (default: {value})"), entry.meaning.to_string())
                }
                Some(value) => (
                    String::new(),
                    format!("{} Default: {value}.", entry.meaning),
                ),
                None => (String::new(), entry.meaning.to_string()),
            };
            roff.control("TP", [])
                .text([bold(entry.name), roman(tag)])
                .text([roman(text)]);
        }
    }

    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "jailswap exits with one of the sysexits(3) codes FreeBSD tools use:",
    )]);
    for (code, meaning) in [
        ("0", "Success: committed, or nothing to do."),
        ("1", "Rolled back: the transaction failed and the host is healthy on the template it had before."),
        ("2", "Needs operator: neither direction could be completed; jailswap status says what is wrong."),
        ("64", "Usage error (EX_USAGE)."),
        ("65", "Invalid input (EX_DATAERR): a bad --to or --archive-as, or preflight refused; nothing was changed."),
        ("66", "Configuration file missing (EX_NOINPUT)."),
        ("70", "Internal error (EX_SOFTWARE)."),
        ("74", "Journal I/O error (EX_IOERR): unreadable, corrupt or not writable; nothing was changed."),
        ("75", "Busy (EX_TEMPFAIL): another jailswap holds the lock, or an interrupted transaction must be recovered first."),
        ("77", "Permission denied (EX_NOPERM): not run as root where root is needed, or a file jailswap must read or write refuses it."),
        ("78", "Configuration invalid (EX_CONFIG); nothing was changed."),
    ] {
        roff.control("TP", []).text([bold(code)]).text([roman(meaning)]);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        ("JAILSWAP_CONFIG", "The configuration file, when -c is not given."),
        ("JAILSWAP_LOG", "Replaces the filter of the log lines on stderr (tracing EnvFilter syntax, such as jailswap=debug)."),
        ("NO_COLOR", "When set and not empty, no colour on stderr."),
        ("JAILSWAP_SYSLOG_SOCKET", "The syslog socket, instead of /var/run/log (FreeBSD) or /dev/log."),
        ("JAILSWAP_JOURNALD_SOCKET", "The journald socket, instead of /run/systemd/journal/socket."),
    ] {
        roff.control("TP", []).text([bold(name)]).text([roman(meaning)]);
    }

    roff.control("SH", ["FILES"]);
    for (file, meaning) in [
        (
            "/usr/local/etc/jailswap.toml",
            "The configuration on FreeBSD.",
        ),
        ("/etc/jailswap.toml", "The configuration elsewhere."),
        (
            "/var/db/jailswap/journal.sqlite",
            "The journal on FreeBSD: every transaction and its steps.",
        ),
        (
            "/var/lib/jailswap/",
            "The journal's directory elsewhere: journal.sqlite, as above.",
        ),
        (
            "journal.sqlite.backup",
            "Beside the journal: a copy as of the last finished transaction.",
        ),
        (
            "lock",
            "Beside the journal: the pid of the jailswap that holds the lock, which status reads.",
        ),
    ] {
        roff.control("TP", [])
            .text([italic(file)])
            .text([roman(meaning)]);
    }

    roff.control("SH", ["EXAMPLES"]);
    roff.text([roman(
        "The Handbook's layout: the live template /home/j/mroot, jails ns, mail and www under /home/j. Build the new template beside the live one as /home/j/mroot.20240601 (with its s directory and top-level links such as etc -> s/etc), then:",
    )]);
    for (command, meaning) in [
        (
            "jailswap upgrade --to mroot.20240601 --dry-run",
            "Print the plan: every step with its undo. Nothing changes.",
        ),
        (
            "jailswap upgrade --to mroot.20240601 --reason \"13.3 security update\"",
            "Stop the jails, unmount them, archive mroot under the name it went live under, make mroot.20240601 live, mount and start the jails, check their health: committed (0) or rolled back (1).",
        ),
        (
            "jailswap status",
            "The live template and its label, every template with its role, each jail and the template it runs on, anything pending.",
        ),
        ("jailswap history", "Past transactions: who, why, how long the jails were down."),
        (
            "jailswap rollback",
            "Make the previous template live again, with the same steps and checks.",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(command)])
            .text([roman(meaning)]);
    }

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("jail"),
        roman("(8), "),
        bold("jail.conf"),
        roman("(5), "),
        bold("fstab"),
        roman("(5), "),
        bold("mount_nullfs"),
        roman("(8)"),
    ]);
    page += &roff.to_roff();
    page
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// docs/jailswap.8 is exactly what the command line generates today.
#[test]
fn man_page() {
    let generated = generate_man_page();
    let path = repository().join("docs/jailswap.8");
    if std::env::var_os("JAILSWAP_UPDATE_MAN").is_some_and(|value| value == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/jailswap.8 is out of date with the command line; regenerate it with\n\n    JAILSWAP_UPDATE_MAN=1 cargo test --test operations man_page\n"
    );
}

// The page names every visible command and the extra sections, and groff
// (when installed) formats it without a warning.
#[test]
fn man_page_content_renders() {
    let page = generate_man_page();
    let help = help_commands();
    for name in &help {
        assert!(
            page.contains(&format!(".SS \"jailswap {name}\"\n")),
            "no section for {name}"
        );
    }
    for heading in [
        "CONFIGURATION",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
        "OPTIONS",
    ] {
        assert!(
            page.contains(&format!(".SH \"{heading}\"\n"))
                || page.contains(&format!(".SH {heading}\n")),
            "{heading}"
        );
    }
    assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH JAILSWAP 8 "));
    let Ok(output) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        })
    else {
        eprintln!("groff is not installed: the page's formatting was not checked");
        return;
    };
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "groff warnings"
    );
}

/// The documented default of `name` in `table`.
fn documented(table: &str, name: &str) -> Option<&'static str> {
    CONFIGURATION
        .iter()
        .find(|(t, _)| *t == table)
        .and_then(|(_, keys)| keys.iter().find(|k| k.name == name))
        .unwrap_or_else(|| panic!("{table} {name} is not documented"))
        .default
}

/// The keys the parser accepts in one table, from its refusal of an
/// unknown key ("unknown field `x`, expected one of `a`, `b`").
fn accepted_keys(text: &str) -> std::collections::BTreeSet<String> {
    let error = match jailswap::config::parse(text, Path::new("probe.toml")) {
        Ok(_) => panic!("an unknown key was accepted: {text}"),
        Err(error) => error.to_string(),
    };
    let line = error
        .lines()
        .find(|line| line.contains("unknown field `bogus_key`"))
        .unwrap_or_else(|| panic!("not an unknown-key error: {error}"));
    let expected = line.split_once("expected").expect("the keys expected").1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

// The man page's CONFIGURATION section lists exactly the keys the parser
// accepts in each table, with the defaults the parser applies: a key added
// to the parser, or a default changed, fails here until the page says so.
#[test]
fn man_page_documents_every_key() {
    let store = "store = \"/home/j\"\n";
    let jail = "[[jail]]\nname = \"a\"\n";
    for (table, text) in [
        ("Top level", format!("{store}bogus_key = 1\n{jail}")),
        (
            "[rolling]",
            format!("{store}[rolling]\nbogus_key = 1\n{jail}"),
        ),
        (
            "[health]",
            format!("{store}[health]\nbogus_key = 1\n{jail}"),
        ),
        (
            "[[jail]]",
            format!("{store}[defaults]\nbogus_key = 1\n{jail}"),
        ),
        ("[[jail]]", format!("{store}{jail}bogus_key = 1\n")),
        (
            "[[jail.health]]",
            format!("{store}{jail}[[jail.health]]\nbogus_key = 1\n"),
        ),
    ] {
        let accepted = accepted_keys(&text);
        let documented: std::collections::BTreeSet<String> = CONFIGURATION
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, keys)| keys.iter().map(|k| k.name.to_string()).collect())
            .unwrap();
        // Tables the top level accepts are documented as their own sections.
        let accepted: std::collections::BTreeSet<String> = accepted
            .into_iter()
            .filter(|key| {
                !(table == "Top level"
                    && ["rolling", "health", "defaults", "jail"].contains(&key.as_str()))
            })
            .collect();
        assert_eq!(
            documented, accepted,
            "{table}: documented keys differ from the parser's"
        );
    }

    let settings =
        jailswap::config::parse(&format!("{store}{jail}"), Path::new("probe.toml")).unwrap();
    let spec = &settings.jails[0].spec;
    let ms = |text: &str| jailswap::config::parse_duration(text).unwrap().as_millis() as u64;
    let name_of = |value: serde_json::Value| value.as_str().unwrap().to_string();
    assert_eq!(documented("Top level", "store"), None);
    assert_eq!(
        documented("Top level", "live"),
        Some(settings.live.as_str())
    );
    assert!(documented("Top level", "journal")
        .unwrap()
        .contains(&settings.journal.display().to_string()));
    assert_eq!(
        documented("Top level", "parallel"),
        Some(settings.parallel.to_string().as_str())
    );
    assert!(settings.carry.is_empty());
    assert_eq!(documented("Top level", "carry"), Some("[]"));
    assert!(settings.store_kind.is_none());
    assert_eq!(documented("Top level", "store_kind"), Some("auto"));
    let backend = name_of(serde_json::to_value(settings.backend).unwrap());
    assert!(documented("Top level", "backend")
        .unwrap()
        .starts_with(&backend));
    let log = name_of(serde_json::to_value(settings.log).unwrap());
    assert!(documented("Top level", "log").unwrap().contains(&log));
    assert!(settings.metrics.is_none());
    assert_eq!(documented("Top level", "metrics"), None);
    assert_eq!(
        documented("[rolling]", "batch"),
        Some(settings.rolling_batches.describe().as_str())
    );
    assert_eq!(
        ms(documented("[health]", "timeout").unwrap()),
        spec.health_timeout_ms
    );
    assert_eq!(
        ms(documented("[health]", "interval").unwrap()),
        spec.health_interval_ms
    );
    assert_eq!(documented("[[jail]]", "name"), None);
    assert_eq!(documented("[[jail]]", "path"), Some("<store>/<name>"));
    assert_eq!(spec.path, settings.store.join("a"));
    assert_eq!(
        (documented("[[jail]]", "fstab"), &spec.fstab),
        (None, &None)
    );
    assert!(spec.depends.is_empty() && spec.health.is_empty());
    assert_eq!(documented("[[jail]]", "depends"), Some("[]"));
    assert_eq!(documented("[[jail]]", "health"), Some("[]"));
    assert_eq!(documented("[[jail]]", "start"), Some(spec.start.as_str()));
    assert_eq!(documented("[[jail]]", "stop"), Some(spec.stop.as_str()));
    assert_eq!(
        (documented("[[jail]]", "status"), &spec.status),
        (None, &None)
    );
    assert_eq!(
        ms(documented("[[jail]]", "timeout").unwrap()),
        spec.timeout_ms
    );
    // Every entry reaches the page.
    let page = generate_man_page();
    for (table, keys) in CONFIGURATION {
        assert!(
            page.contains(&format!(".SS \"{table}\"")) || page.contains(&format!(".SS {table}\n")),
            "{table}"
        );
        for entry in *keys {
            assert!(
                page.contains(&format!("\\fB{}\\fR", entry.name)),
                "{table} {}",
                entry.name
            );
        }
    }
}

// ---------------------------------------------------------------- completions

/// The commands `jailswap --help` lists.
fn help_commands() -> Vec<String> {
    let output = Command::new(PROGRAM).arg("--help").output().unwrap();
    assert_eq!(code(&output), 0);
    let help = String::from_utf8(output.stdout).unwrap();
    let section = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap();
    let names: Vec<String> = section
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for expected in [
        "upgrade",
        "rollback",
        "recover",
        "status",
        "history",
        "show",
        "check",
        "completions",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    names
}

fn completions(shell: &str) -> String {
    let output = Command::new(PROGRAM)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `shell` with `check` arguments on the script; `None` when the shell
/// is not installed.
fn syntax_check(shell: &str, check: &[&str], script: &str) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("jailswap.{shell}"));
    std::fs::write(&file, script).unwrap();
    match Command::new(shell).args(check).arg(&file).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => panic!("{shell}: {error}"),
    }
}

// Each shell's script names every command of `--help` and is valid syntax
// for that shell (bash always; zsh and fish when installed).
#[test]
fn completion_scripts() {
    let commands = help_commands();
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"][..]),
        ("fish", &["--no-execute"][..]),
    ] {
        let script = completions(shell);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for name in &commands {
            assert!(script.contains(name.as_str()), "{shell}: {name} missing");
        }
        match syntax_check(shell, check, &script) {
            Some(output) => assert!(output.status.success(), "{shell}: {}", describe(&output)),
            None if shell == "bash" => panic!("bash is not installed"),
            None => eprintln!("{shell} is not installed: syntax not checked"),
        }
    }
    // bash: the script registers itself for the jailswap command.
    assert!(completions("bash").contains("complete -F _jailswap"));
}

// An unknown shell is a usage error: 64, naming the shells there are.
#[test]
fn completions_for_an_unknown_shell() {
    let output = Command::new(PROGRAM)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 64, "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bash") && stderr.contains("zsh") && stderr.contains("fish"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
