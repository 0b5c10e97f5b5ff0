//! Logging: human lines on stderr, and one structured line per event to
//! the local syslog daemon or systemd's journal.
//!
//! [`init`] runs first thing, before the configuration is read: it installs
//! the tracing subscriber with two layers.
//!
//! - stderr: human lines, level `error` (with `-v`: `jailswap=debug` except
//!   the progress events, which the reporter already prints itself; other
//!   crates `warn`); the environment variable `JAILSWAP_LOG` replaces that
//!   filter (EnvFilter syntax, such as `jailswap=trace`). No colour when
//!   stderr is not a terminal or `NO_COLOR` is set.
//! - the sink: every event at info and above whose target is `jailswap` (or
//!   a `jailswap::` module) becomes one line in syslog (facility daemon,
//!   identifier `jailswap`) or one entry in the journal
//!   (`SYSLOG_IDENTIFIER=jailswap`). The sink starts disabled; once the
//!   configuration is loaded, [`set_target`] points it at the `log` key's
//!   choice. `JAILSWAP_LOG` does not change what the sink receives.
//!
//! The sink never fails the caller and never prints: a missing socket or a
//! daemon that is not running only loses the line. Like syslog(3), a send
//! waits while the daemon's queue is full (Linux queues only 10 datagrams
//! per socket by default), but at most 100 ms: after such a timeout the
//! sink stops waiting for 5 seconds and drops what does not fit, so a hung
//! daemon costs a transaction at most 100 ms every 5 seconds.
//!
//! Both wire formats are written here rather than by a client crate,
//! because each one at hand breaks a promise above: tracing-journald 0.3
//! sends only to `/run/systemd/journal/socket`, so `JAILSWAP_JOURNALD_SOCKET`
//! could not name another socket; fasyslog 1.0 puts a host name into the
//! local RFC 3164 form, which journald and syslog-ng then take for the
//! program name, and stamps RFC 5424 in UTC, a clock FreeBSD's syslogd
//! copies as is into its files; syslog 7.0 stamps RFC 3164 in UTC and
//! writes a numeric MSGID. The senders of all three also wait without bound
//! on a daemon that does not read.
//!
//! A line carries the local time, as syslog(3) stamps it, the event's
//! message, then its fields as `key=value` (values quoted when they contain
//! blanks, quotes or `=`):
//!
//! ```text
//! <30>Jun  1 12:00:00 jailswap[4242]: stop jail web ok step=stop jail=web undo=false ms=12
//! ```
//!
//! The socket paths can be overridden for tests and unusual hosts:
//! `JAILSWAP_SYSLOG_SOCKET` (default `/var/run/log` on FreeBSD, `/dev/log`
//! elsewhere) and `JAILSWAP_JOURNALD_SOCKET` (default
//! `/run/systemd/journal/socket`), read when [`set_target`] runs.

use crate::config::LogTarget;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The syslog identifier (tag) and journal `SYSLOG_IDENTIFIER`.
pub const IDENTIFIER: &str = "jailswap";
/// Replaces the stderr filter (tracing EnvFilter directives).
pub const LOG_ENV: &str = "JAILSWAP_LOG";
/// Overrides the syslog socket path.
pub const SYSLOG_SOCKET_ENV: &str = "JAILSWAP_SYSLOG_SOCKET";
/// Overrides the journald socket path.
pub const JOURNALD_SOCKET_ENV: &str = "JAILSWAP_JOURNALD_SOCKET";

/// syslog facility `daemon` (3), as in `<syslog.h>`.
const FACILITY_DAEMON: u8 = 3;
/// Longest line sent: local syslog daemons accept at least this much.
const MAX_LINE: usize = 8000;
/// How long a send waits for room in the daemon's queue.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// How long the sink drops rather than waits after a send timed out.
const BACKOFF: Duration = Duration::from_secs(5);

/// The datagram format of a syslog line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogFormat {
    /// What glibc's syslog(3) writes to /dev/log:
    /// `<PRI>Mmm dd hh:mm:ss jailswap[PID]: MSG`. rsyslog, syslog-ng and
    /// journald's /dev/log all read it.
    Rfc3164,
    /// What FreeBSD's syslog(3) writes to /var/run/log since 12.0:
    /// `<PRI>1 TIMESTAMP HOSTNAME jailswap PID - - MSG`.
    Rfc5424,
}

impl SyslogFormat {
    /// RFC 5424 on FreeBSD, RFC 3164 (the local format) elsewhere.
    pub fn native() -> SyslogFormat {
        if cfg!(target_os = "freebsd") {
            SyslogFormat::Rfc5424
        } else {
            SyslogFormat::Rfc3164
        }
    }
}

/// Where the sink sends its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// `Syslog` or `Journald`; `None` disables the sink.
    pub target: LogTarget,
    /// The daemon's Unix datagram socket.
    pub socket: PathBuf,
    /// Only for `Syslog`.
    pub format: SyslogFormat,
}

impl SinkConfig {
    /// The sink for a `log` setting: the system's socket (or the one the
    /// environment names) and format; `None` for `LogTarget::None`.
    pub fn for_target(target: LogTarget) -> Option<SinkConfig> {
        let (variable, default) = match target {
            LogTarget::None => return None,
            LogTarget::Syslog => (SYSLOG_SOCKET_ENV, default_socket(target)?),
            LogTarget::Journald => (JOURNALD_SOCKET_ENV, default_socket(target)?),
        };
        let socket = std::env::var_os(variable)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .unwrap_or(default);
        Some(SinkConfig {
            target,
            socket,
            format: SyslogFormat::native(),
        })
    }
}

/// The daemon's socket for a target on this system.
pub fn default_socket(target: LogTarget) -> Option<PathBuf> {
    match target {
        LogTarget::None => None,
        LogTarget::Syslog if cfg!(target_os = "freebsd") => Some(PathBuf::from("/var/run/log")),
        LogTarget::Syslog => Some(PathBuf::from("/dev/log")),
        LogTarget::Journald => Some(PathBuf::from("/run/systemd/journal/socket")),
    }
}

/// Installs the subscriber: human lines on stderr, and the sink, enabled
/// at once when `target` is given. Call it once, early; later calls only
/// apply `target`.
pub fn init(verbose: bool, target: Option<LogTarget>) {
    let filter = stderr_filter(verbose);
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .without_time()
        .with_filter(filter);
    let sink = SinkLayer.with_filter(Targets::new().with_target(IDENTIFIER, Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(sink)
        .try_init();
    if let Some(target) = target {
        set_target(target);
    }
}

fn stderr_filter(verbose: bool) -> EnvFilter {
    let default = if verbose {
        "warn,jailswap=debug,jailswap::progress=off"
    } else {
        "error"
    };
    match std::env::var(LOG_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .unwrap_or_else(|error| {
                crate::output::warning(&format!(
                    "ignoring {LOG_ENV}={directives:?}: {error}; write filter directives such as jailswap=debug"
                ));
                EnvFilter::new(default)
            }),
        _ => EnvFilter::new(default),
    }
}

/// Points the sink at the configuration's `log` choice (`None` disables
/// it). Call it once the configuration is loaded.
pub fn set_target(target: LogTarget) {
    set_sink(SinkConfig::for_target(target));
}

/// Points the sink at an explicit socket and format, or disables it.
pub fn set_sink(config: Option<SinkConfig>) {
    let sink = config.and_then(Sink::new);
    *SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = sink;
}

/// The current sink, for diagnostics (`check`, tests).
pub fn current_sink() -> Option<SinkConfig> {
    SINK.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .map(|sink| sink.config.clone())
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

struct Sink {
    config: SinkConfig,
    socket: UnixDatagram,
    hostname: String,
    pid: u32,
    /// Set after a send timed out: until then, sends do not wait.
    congested_until: Option<Instant>,
}

impl Sink {
    fn new(config: SinkConfig) -> Option<Sink> {
        if config.target == LogTarget::None {
            return None;
        }
        let socket = UnixDatagram::unbound().ok()?;
        // A syslog daemon that does not read must not stall a transaction.
        socket.set_write_timeout(Some(SEND_TIMEOUT)).ok()?;
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "-".to_string());
        Some(Sink {
            config,
            socket,
            hostname,
            pid: std::process::id(),
            congested_until: None,
        })
    }

    fn send(&mut self, record: &Record) {
        let datagram = match self.config.target {
            LogTarget::Syslog => syslog_datagram(
                self.config.format,
                record,
                &self.hostname,
                self.pid,
                chrono::Local::now(),
            )
            .into_bytes(),
            LogTarget::Journald => journald_datagram(record, self.pid),
            LogTarget::None => return,
        };
        // Lost when the daemon is absent or busy; never reported.
        let now = Instant::now();
        let congested = self.congested_until.is_some_and(|until| now < until);
        if self.congested_until.is_some() && !congested {
            self.congested_until = None;
            let _ = self.socket.set_nonblocking(false);
        }
        match self.socket.send_to(&datagram, &self.config.socket) {
            Ok(_) if congested => {
                // The daemon reads again: wait for it again.
                self.congested_until = None;
                let _ = self.socket.set_nonblocking(false);
            }
            Err(error)
                if !congested
                    && matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                self.congested_until = Some(now + BACKOFF);
                let _ = self.socket.set_nonblocking(true);
            }
            _ => {}
        }
    }
}

/// One event, as the sink sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub level: Option<Level>,
    pub message: String,
    /// The other fields in order, values unquoted.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// syslog severity: err 3, warning 4, info 6, debug 7.
    pub fn severity(&self) -> u8 {
        match self.level {
            Some(Level::ERROR) => 3,
            Some(Level::WARN) => 4,
            Some(Level::INFO) | None => 6,
            Some(_) => 7,
        }
    }

    /// The line's text: the message, then ` key=value` for each field, on
    /// one line.
    pub fn line(&self) -> String {
        let mut line = single_line(&self.message);
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={}", quote(value));
        }
        line
    }
}

/// A syslog datagram for one record.
pub fn syslog_datagram<Tz>(
    format: SyslogFormat,
    record: &Record,
    hostname: &str,
    pid: u32,
    at: chrono::DateTime<Tz>,
) -> String
where
    Tz: chrono::TimeZone,
    Tz::Offset: std::fmt::Display,
{
    let priority = FACILITY_DAEMON * 8 + record.severity();
    let mut datagram = match format {
        SyslogFormat::Rfc3164 => format!(
            "<{priority}>{} {IDENTIFIER}[{pid}]: ",
            at.format("%b %e %H:%M:%S")
        ),
        SyslogFormat::Rfc5424 => format!(
            "<{priority}>1 {} {hostname} {IDENTIFIER} {pid} - - ",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
    };
    datagram.push_str(&record.line());
    truncate(&mut datagram, MAX_LINE);
    datagram
}

/// A datagram of journald's native protocol for one record.
pub fn journald_datagram(record: &Record, pid: u32) -> Vec<u8> {
    let mut datagram = Vec::new();
    let mut message = record.line();
    truncate(&mut message, MAX_LINE);
    journald_field(&mut datagram, "MESSAGE", &message);
    journald_field(&mut datagram, "PRIORITY", &record.severity().to_string());
    journald_field(
        &mut datagram,
        "SYSLOG_FACILITY",
        &FACILITY_DAEMON.to_string(),
    );
    journald_field(&mut datagram, "SYSLOG_IDENTIFIER", IDENTIFIER);
    journald_field(&mut datagram, "SYSLOG_PID", &pid.to_string());
    for (key, value) in &record.fields {
        journald_field(&mut datagram, &journald_name(key), value);
    }
    datagram
}

/// A field name journald accepts: `[A-Z0-9_]`, not starting with `_` or a
/// digit, at most 64 characters, none of the names set above.
pub fn journald_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let reserved = [
        "MESSAGE",
        "MESSAGE_ID",
        "PRIORITY",
        "SYSLOG_FACILITY",
        "SYSLOG_IDENTIFIER",
        "SYSLOG_PID",
    ];
    if name.is_empty()
        || name.starts_with(|c: char| c == '_' || c.is_ascii_digit())
        || reserved.contains(&name.as_str())
    {
        name.insert_str(0, "JAILSWAP_");
    }
    name.truncate(64);
    name
}

fn journald_field(datagram: &mut Vec<u8>, name: &str, value: &str) {
    datagram.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        datagram.push(b'\n');
        datagram.extend_from_slice(&(value.len() as u64).to_le_bytes());
        datagram.extend_from_slice(value.as_bytes());
    } else {
        datagram.push(b'=');
        datagram.extend_from_slice(value.as_bytes());
    }
    datagram.push(b'\n');
}

/// Control characters (newlines) become spaces: one event, one line.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A value as written after `key=`: bare when it is one plain word,
/// otherwise in double quotes with `\` escapes.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if plain {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{{{:x}}}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn truncate(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Sends each event it sees to the current sink, if any.
struct SinkLayer;

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut guard = SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sink) = guard.as_mut() else {
            return;
        };
        let mut record = Record {
            level: Some(*event.metadata().level()),
            ..Record::default()
        };
        event.record(&mut record);
        sink.send(&record);
    }
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Whether `path` names an existing socket (for `check` and diagnostics).
pub fn socket_exists(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}
