//! The configuration file: TOML in, a validated [`Config`] out.
//!
//! "Parse, don't validate", in two stages as ripgrep reads its arguments:
//! [`parse`] turns the text into [`Settings`] without touching the system
//! (everything that can be wrong with the file itself is found here: keys,
//! names, durations, dependencies); [`Settings::resolve`] then checks them
//! against the system (the store exists, fstab files are read and parsed,
//! symbolic links in paths resolved) through a [`Files`] the caller gives,
//! so tests resolve against tables in memory. Errors name the file, the key
//! and what to do (exit 78; 66 when the file is missing; 77 when it cannot
//! be read for lack of permission). The rest of jailswap only ever sees a
//! [`Config`] whose jails have valid names, parsed fstabs, known
//! dependencies without cycles and parsed durations.

mod resolve;

use crate::fstab::MountSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use resolve::{resolve_path, Files, SystemFiles};

#[cfg(target_os = "freebsd")]
pub const DEFAULT_CONFIG: &str = "/usr/local/etc/jailswap.toml";
#[cfg(not(target_os = "freebsd"))]
pub const DEFAULT_CONFIG: &str = "/etc/jailswap.toml";

#[cfg(target_os = "freebsd")]
pub const DEFAULT_JOURNAL: &str = "/var/db/jailswap/journal.sqlite";
#[cfg(not(target_os = "freebsd"))]
pub const DEFAULT_JOURNAL: &str = "/var/lib/jailswap/journal.sqlite";

/// Which host backend carries out mounts and reads the mount table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Bind mounts through mount(2), the mount table from /proc (Linux only).
    Linux,
    /// The system's own tools: mount(8) -t nullfs, umount(8), `mount -p`.
    Commands,
}

impl Backend {
    pub fn native() -> Backend {
        if cfg!(target_os = "linux") {
            Backend::Linux
        } else {
            Backend::Commands
        }
    }
}

/// Which kind of store holds the templates (SPEC.md "Template stores").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Plain directories of one file system; renames are rename(2).
    #[default]
    Directory,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Directory => "directory",
        }
    }

    /// Whether a template can change its name while jails mount it (a
    /// rolling upgrade renames under running jails).
    pub fn renames_in_use(self) -> bool {
        match self {
            StoreKind::Directory => true,
        }
    }
}

/// The `store_kind` key: a kind, or `auto` (judged by the live template).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKindSetting {
    Auto,
    #[serde(untagged)]
    Kind(StoreKind),
}

/// Where structured log lines (one per step and per outcome) go, besides
/// the human lines on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogTarget {
    /// The local syslog daemon (/dev/log, /var/run/log), identifier `jailswap`.
    Syslog,
    /// systemd's journal, identifier `jailswap`.
    Journald,
    /// Only stderr.
    None,
}

impl LogTarget {
    /// syslog on FreeBSD; the journal on Linux when it runs, syslog otherwise.
    pub fn native() -> LogTarget {
        if cfg!(target_os = "linux") && Path::new("/run/systemd/journal/socket").exists() {
            LogTarget::Journald
        } else {
            LogTarget::Syslog
        }
    }
}

/// One health check of a jail; all of a jail's checks must pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// GET answers 2xx, and the body contains `contains` when given.
    Http {
        url: String,
        contains: Option<String>,
    },
    /// A TCP connection to the address succeeds.
    Tcp { address: String },
    /// The command exits 0.
    Cmd { command: String },
}

impl HealthCheck {
    pub fn describe(&self) -> String {
        match self {
            HealthCheck::Http {
                url,
                contains: None,
            } => format!("http {url}"),
            HealthCheck::Http {
                url,
                contains: Some(text),
            } => format!("http {url} contains {text:?}"),
            HealthCheck::Tcp { address } => format!("tcp {address}"),
            HealthCheck::Cmd { command } => format!("cmd {command}"),
        }
    }
}

/// A jail with every inherited default resolved. It is copied into each
/// transaction's plan, so recovery never depends on the current file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSpec {
    pub name: String,
    pub path: PathBuf,
    pub fstab: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub depends: Vec<String>,
    pub start: String,
    pub stop: String,
    pub status: Option<String>,
    pub timeout_ms: u64,
    pub health: Vec<HealthCheck>,
    pub health_timeout_ms: u64,
    pub health_interval_ms: u64,
}

impl JailSpec {
    /// Substitutes `${name}` and `${path}` into one of the jail's commands.
    pub fn expand(&self, command: &str) -> String {
        command
            .replace("${name}", &self.name)
            .replace("${path}", &self.path.to_string_lossy())
    }
}

/// One size of a rolling upgrade's batches, as Ansible's `serial` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    Jails(usize),
    Percent(u8),
}

/// Batch sizes: a list of counts or percentages, the last repeating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batches(pub Vec<BatchSize>);

impl Batches {
    /// The default, `1,25%`: one canary jail, then a quarter at a time.
    pub fn default_sizes() -> Batches {
        Batches(vec![BatchSize::Jails(1), BatchSize::Percent(25)])
    }

    /// Parses `1,25%`: whole numbers from 1, percentages from 1% to 100%.
    pub fn parse(text: &str) -> Result<Batches, String> {
        let mut sizes = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let size = if let Some(percent) = item.strip_suffix('%') {
                match percent.parse::<u8>() {
                    Ok(p) if (1..=100).contains(&p) => BatchSize::Percent(p),
                    _ => return Err(format!("{item:?} is not a percentage from 1% to 100%")),
                }
            } else {
                match item.parse::<usize>() {
                    Ok(n) if n >= 1 => BatchSize::Jails(n),
                    _ if item.is_empty() => {
                        return Err("an empty item; write sizes such as \"1,25%\"".into())
                    }
                    _ => return Err(format!("{item:?} is not a whole number of jails from 1")),
                }
            };
            sizes.push(size);
        }
        Ok(Batches(sizes))
    }

    /// Splits `count` jails into batch lengths: each size rounded up, at
    /// least one jail, the last size repeating until every jail has one.
    pub fn lengths(&self, count: usize) -> Vec<usize> {
        let mut lengths = Vec::new();
        let mut left = count;
        let mut sizes = self.0.iter();
        let mut size = sizes.next().copied().unwrap_or(BatchSize::Jails(1));
        // Bounded: every round takes at least one jail.
        while left > 0 {
            let length = match size {
                BatchSize::Jails(n) => n,
                BatchSize::Percent(p) => (count * usize::from(p)).div_ceil(100),
            }
            .clamp(1, left);
            lengths.push(length);
            left -= length;
            if let Some(next) = sizes.next() {
                size = *next;
            }
        }
        lengths
    }

    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|size| match size {
                BatchSize::Jails(n) => n.to_string(),
                BatchSize::Percent(p) => format!("{p}%"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub store: PathBuf,
    pub live: String,
    pub journal: PathBuf,
    pub parallel: usize,
    pub carry: Vec<String>,
    pub backend: Backend,
    /// `None` for `auto`: the host judges it by the live template.
    pub store_kind: Option<StoreKind>,
    pub log: LogTarget,
    /// Prometheus textfile written after every transaction.
    pub metrics: Option<PathBuf>,
    /// `[rolling] batch`: the batch sizes of `upgrade --rolling`.
    pub rolling_batches: Batches,
    /// Jails in file order.
    pub jails: Vec<JailSpec>,
    /// Jails grouped by dependency level: level 0 depends on nothing, level
    /// k only on lower levels. Indexes into `jails`.
    pub levels: Vec<Vec<usize>>,
}

impl Config {
    pub fn jail(&self, name: &str) -> Option<&JailSpec> {
        self.jails.iter().find(|jail| jail.name == name)
    }
}

/// What is wrong with the configuration, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// 66: there is no file.
    #[error("configuration file {file:?} does not exist")]
    Missing { file: String },
    /// 66, or 77 when permission is denied.
    #[error("cannot read configuration file {file:?}: {error}")]
    Unreadable { file: String, error: std::io::Error },
    /// 78: the file, a key in it, or what it names is wrong.
    #[error("{message}")]
    Invalid {
        message: String,
        help: Option<String>,
    },
}

impl ConfigError {
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigError::Missing { .. } => Some(format!(
                "write one (`jailswap init` prints one for the jails a host already has), or name another with -c FILE; the default is {DEFAULT_CONFIG}"
            )),
            ConfigError::Unreadable { error, .. }
                if error.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Some("run jailswap as root, or name a file you can read with -c FILE".into())
            }
            ConfigError::Unreadable { .. } => None,
            ConfigError::Invalid { help, .. } => help.clone(),
        }
    }

    pub fn permission_denied(&self) -> bool {
        matches!(self, ConfigError::Unreadable { error, .. } if error.kind() == std::io::ErrorKind::PermissionDenied)
    }

    fn with_help(self, text: String) -> ConfigError {
        match self {
            ConfigError::Invalid {
                message,
                help: None,
            } => ConfigError::Invalid {
                message,
                help: Some(text),
            },
            other => other,
        }
    }
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A jail as the file describes it, before its fstab is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JailSettings {
    pub spec: JailSpec,
    /// The fstab file to read, if the jail has one.
    pub fstab: Option<PathBuf>,
}

/// The configuration as the file says it, checked in itself but not yet
/// against the system.
#[derive(Clone, Debug)]
pub struct Settings {
    pub file: PathBuf,
    pub store: PathBuf,
    pub live: String,
    pub journal: PathBuf,
    pub parallel: usize,
    pub carry: Vec<String>,
    pub backend: Backend,
    pub store_kind: Option<StoreKind>,
    pub log: LogTarget,
    pub metrics: Option<PathBuf>,
    pub rolling_batches: Batches,
    pub jails: Vec<JailSettings>,
    pub levels: Vec<Vec<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    store: Option<PathBuf>,
    live: Option<String>,
    journal: Option<PathBuf>,
    parallel: Option<i64>,
    #[serde(default)]
    carry: Vec<String>,
    backend: Option<Backend>,
    store_kind: Option<StoreKindSetting>,
    log: Option<LogTarget>,
    metrics: Option<PathBuf>,
    #[serde(default)]
    rolling: RawRolling,
    #[serde(default)]
    defaults: RawJail,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    jail: Vec<RawJail>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRolling {
    batch: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    timeout: Option<String>,
    interval: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawJail {
    name: Option<String>,
    path: Option<String>,
    fstab: Option<String>,
    depends: Option<Vec<String>>,
    start: Option<String>,
    stop: Option<String>,
    status: Option<String>,
    timeout: Option<String>,
    health: Option<Vec<RawCheck>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    http: Option<String>,
    contains: Option<String>,
    tcp: Option<String>,
    cmd: Option<String>,
}

/// Whether a jail or template name is safe to use as a single path
/// component and in commands: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses a duration such as `60s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// The first stage: configuration text to [`Settings`], touching nothing
/// but the text. `file` only names the file in errors.
pub fn parse(text: &str, file: &Path) -> Result<Settings> {
    let name = file.display().to_string();
    let raw: RawFile = toml::from_str(text).map_err(|error| ConfigError::Invalid {
        message: format!("{name:?}: {}", error.to_string().trim_end()),
        help: Some("fix the file; `jailswap check` validates it without changing anything".into()),
    })?;
    let fail = |key: &str, message: String| ConfigError::Invalid {
        message: format!("{name:?}: {key}: {message}"),
        help: None,
    };

    let store = raw.store.clone().ok_or_else(|| {
        fail("store", "missing: name the directory that holds the live template, for example store = \"/home/j\"".into())
    })?;
    if !store.is_absolute() {
        return Err(fail(
            "store",
            format!("{:?} is not an absolute path", store.display().to_string()),
        ));
    }
    let live = raw.live.clone().unwrap_or_else(|| "mroot".to_string());
    if !valid_name(&live) {
        return Err(fail(
            "live",
            format!("{live:?} is not a plain name ([A-Za-z0-9][A-Za-z0-9_.-]*)"),
        ));
    }
    let journal = raw
        .journal
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL));
    for (key, path) in [
        ("journal", Some(&journal)),
        ("metrics", raw.metrics.as_ref()),
    ] {
        if let Some(path) = path.filter(|path| !path.is_absolute()) {
            return Err(fail(
                key,
                format!("{:?} is not an absolute path", path.display().to_string()),
            ));
        }
    }
    let parallel = match raw.parallel {
        None => 8,
        Some(n) if (1..=1024).contains(&n) => n as usize,
        Some(n) => {
            return Err(fail(
                "parallel",
                format!("{n} is out of range; use 1 to 1024"),
            ))
        }
    };
    for path in &raw.carry {
        let relative = Path::new(path);
        let plain = !path.is_empty()
            && relative.is_relative()
            && relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(fail(
                "carry",
                format!("{path:?} must be a relative path inside the template, without `..`"),
            ));
        }
    }
    let rolling_batches = match &raw.rolling.batch {
        None => Batches::default_sizes(),
        Some(text) => Batches::parse(text).map_err(|why| fail("rolling.batch", why))?,
    };

    let duration = |key: &str, value: &Option<String>, default: Duration| -> Result<Duration> {
        match value {
            None => Ok(default),
            Some(text) => match parse_duration(text) {
                Some(duration) if duration.is_zero() => Err(fail(
                    key,
                    format!("{text:?} is out of range: it must be longer than zero"),
                )),
                Some(duration) => Ok(duration),
                None => Err(fail(
                    key,
                    format!("{text:?} is not a duration; write for example \"30s\" or \"500ms\""),
                )),
            },
        }
    };
    let health_timeout = duration(
        "health.timeout",
        &raw.health.timeout,
        Duration::from_secs(30),
    )?;
    let health_interval = duration(
        "health.interval",
        &raw.health.interval,
        Duration::from_millis(500),
    )?;

    if raw.jail.is_empty() {
        return Err(fail(
            "jail",
            "no [[jail]] is configured; add one [[jail]] table per jail".into(),
        ));
    }
    if raw.defaults.name.is_some() {
        return Err(fail(
            "defaults.name",
            "a name cannot be a default; name each [[jail]]".into(),
        ));
    }

    let mut jails = Vec::with_capacity(raw.jail.len());
    let mut seen = BTreeSet::new();
    for (index, entry) in raw.jail.iter().enumerate() {
        let jail_name = entry.name.clone().ok_or_else(|| {
            fail(
                &format!("jail[{index}].name"),
                "missing: every [[jail]] needs a name".into(),
            )
        })?;
        if !valid_name(&jail_name) {
            return Err(fail(
                &format!("jail[{index}].name"),
                format!("{jail_name:?} is not a valid jail name: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
            ));
        }
        if !seen.insert(jail_name.clone()) {
            return Err(fail(
                &format!("jail {jail_name:?}"),
                "defined twice; jail names must be unique".into(),
            ));
        }
        let key = |field: &str| format!("jail {jail_name:?}: {field}");
        let fail_jail = |field: &str, message: String| fail(&key(field), message);
        let pick = |own: &Option<String>, default: &Option<String>| {
            own.clone().or_else(|| default.clone())
        };
        let substitute = |text: String| text.replace("${name}", &jail_name);

        let path = match pick(&entry.path, &raw.defaults.path) {
            Some(path) => PathBuf::from(substitute(path)),
            None => store.join(&jail_name),
        };
        if !path.is_absolute() {
            return Err(fail_jail(
                "path",
                format!("{:?} is not an absolute path", path.display().to_string()),
            ));
        }
        let fstab = pick(&entry.fstab, &raw.defaults.fstab).map(|p| PathBuf::from(substitute(p)));
        let depends = entry
            .depends
            .clone()
            .or_else(|| raw.defaults.depends.clone())
            .unwrap_or_default();
        let timeout = duration(
            &key("timeout"),
            &pick(&entry.timeout, &raw.defaults.timeout),
            Duration::from_secs(60),
        )?;
        let raw_checks = entry
            .health
            .clone()
            .or_else(|| raw.defaults.health.clone())
            .unwrap_or_default();
        let mut health = Vec::new();
        for (check_index, check) in raw_checks.iter().enumerate() {
            let check_key = format!("health[{check_index}]");
            let kinds = [
                check.http.is_some(),
                check.tcp.is_some(),
                check.cmd.is_some(),
            ];
            if kinds.iter().filter(|set| **set).count() != 1 {
                return Err(fail_jail(
                    &check_key,
                    "give exactly one of http, tcp or cmd".into(),
                ));
            }
            if check.contains.is_some() && check.http.is_none() {
                return Err(fail_jail(
                    &check_key,
                    "`contains` only goes with `http`".into(),
                ));
            }
            health.push(if let Some(url) = &check.http {
                let url = substitute(url.clone());
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(fail_jail(
                        &check_key,
                        format!("{url:?} is not an http:// URL"),
                    ));
                }
                HealthCheck::Http {
                    url,
                    contains: check.contains.clone(),
                }
            } else if let Some(address) = &check.tcp {
                HealthCheck::Tcp {
                    address: substitute(address.clone()),
                }
            } else {
                HealthCheck::Cmd {
                    command: check.cmd.clone().unwrap_or_default(),
                }
            });
        }
        jails.push(JailSettings {
            fstab: fstab.clone(),
            spec: JailSpec {
                name: jail_name.clone(),
                path,
                fstab,
                mounts: Vec::new(),
                depends,
                start: pick(&entry.start, &raw.defaults.start)
                    .unwrap_or_else(|| "service jail start ${name}".into()),
                stop: pick(&entry.stop, &raw.defaults.stop)
                    .unwrap_or_else(|| "service jail stop ${name}".into()),
                status: pick(&entry.status, &raw.defaults.status),
                timeout_ms: timeout.as_millis() as u64,
                health,
                health_timeout_ms: health_timeout.as_millis() as u64,
                health_interval_ms: health_interval.as_millis() as u64,
            },
        });
    }
    let specs: Vec<JailSpec> = jails.iter().map(|jail| jail.spec.clone()).collect();
    let levels = dependency_levels(&specs).map_err(|message| fail("depends", message))?;
    Ok(Settings {
        file: file.to_path_buf(),
        store,
        live,
        journal,
        parallel,
        carry: raw.carry,
        backend: raw.backend.unwrap_or_else(Backend::native),
        store_kind: match raw.store_kind {
            None | Some(StoreKindSetting::Auto) => None,
            Some(StoreKindSetting::Kind(kind)) => Some(kind),
        },
        log: raw.log.unwrap_or_else(LogTarget::native),
        metrics: raw.metrics,
        rolling_batches,
        jails,
        levels,
    })
}

/// Groups jails by dependency level, refusing unknown names and cycles.
fn dependency_levels(jails: &[JailSpec]) -> std::result::Result<Vec<Vec<usize>>, String> {
    let nodes: Vec<crate::order::Node<'_>> = jails
        .iter()
        .map(|jail| crate::order::Node {
            name: &jail.name,
            depends: &jail.depends,
        })
        .collect();
    crate::order::levels(&nodes).map_err(|error| match error {
        crate::order::OrderError::Unknown { jail, dependency } => {
            format!("jail {jail:?} depends on {dependency:?}, which is not configured")
        }
        crate::order::OrderError::SelfDependency { jail } => {
            format!("jail {jail:?} depends on itself")
        }
        crate::order::OrderError::Cycle { cycle } => format!(
            "dependency cycle among jails {}; remove one of the `depends` entries",
            cycle.join(" -> ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Settings> {
        parse(text, Path::new("/test/jailswap.toml"))
    }

    // Names follow the documented pattern; shell metacharacters are refused.
    #[test]
    fn names() {
        for good in ["ns", "www.example", "a_b-c", "9"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-x", ".x", "a b", "a;rm", "a/b", "$(x)", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    // Defaults are inherited, dependencies are levelled, cycles refused.
    #[test]
    fn defaults_levels_and_cycles() {
        let settings = parse_text(
            "store = \"/tmp\"\n[defaults]\nstart = \"go ${name}\"\n[[jail]]\nname = \"web\"\ndepends = [\"db\"]\n[[jail]]\nname = \"db\"\nstart = \"own\"\n",
        )
        .unwrap();
        assert_eq!(settings.jails[0].spec.start, "go ${name}");
        assert_eq!(settings.jails[1].spec.start, "own");
        assert_eq!(settings.levels, vec![vec![1], vec![0]]);
        assert_eq!(settings.jails[0].spec.path, PathBuf::from("/tmp/web"));
        let error = parse_text("store = \"/tmp\"\n[[jail]]\nname = \"a\"\ndepends = [\"b\"]\n[[jail]]\nname = \"b\"\ndepends = [\"a\"]\n").unwrap_err();
        assert!(error.to_string().contains("cycle"), "{error}");
    }

    // Unknown keys are refused with their name.
    #[test]
    fn unknown_key() {
        let error =
            parse_text("store = \"/tmp\"\nstroe = 1\n[[jail]]\nname = \"a\"\n").unwrap_err();
        assert!(error.to_string().contains("stroe"), "{error}");
    }

    // A zero duration is a duration out of range, not a malformed one.
    #[test]
    fn zero_duration_is_out_of_range() {
        let error =
            parse_text("store = \"/tmp\"\n[defaults]\ntimeout = \"0s\"\n[[jail]]\nname = \"a\"\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("out of range"), "{error}");
        let error = parse_text(
            "store = \"/tmp\"\n[defaults]\ntimeout = \"soon\"\n[[jail]]\nname = \"a\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("not a duration"), "{error}");
    }

    // Batch sizes parse as Ansible's `serial`, and split jails as it does.
    #[test]
    fn batches() {
        let table: [(&str, usize, &[usize]); 6] = [
            ("1,25%", 10, &[1, 3, 3, 3]),
            ("1", 3, &[1, 1, 1]),
            ("10%", 10, &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            ("10%", 1000, &[100; 10]),
            ("2,100%", 5, &[2, 3]),
            ("50%", 3, &[2, 1]),
        ];
        for (text, count, expected) in table {
            assert_eq!(
                Batches::parse(text).unwrap().lengths(count),
                expected,
                "{text} of {count}"
            );
        }
        for bad in ["0", "0%", "150%", "", "1,,2", "1.5", "-1", "x"] {
            assert!(Batches::parse(bad).is_err(), "{bad}");
        }
    }
}
