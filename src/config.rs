//! The configuration file: TOML in, a validated [`Config`] out.
//!
//! "Parse, don't validate": everything that can be wrong with the file is
//! found here, before any command touches the host, and reported with the
//! file, the key and what to do (exit 78; 66 when the file is missing). The
//! rest of jailswap only ever sees a [`Config`] whose jails have valid names,
//! parsed fstabs, known dependencies without cycles and parsed durations.

use crate::error::{Error, Kind, Result};
use crate::fstab::{self, MountSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub store: PathBuf,
    pub live: String,
    pub journal: PathBuf,
    pub parallel: usize,
    pub carry: Vec<String>,
    pub backend: Backend,
    pub log: LogTarget,
    /// Prometheus textfile written after every transaction.
    pub metrics: Option<PathBuf>,
    /// Jails in file order.
    pub jails: Vec<JailSpec>,
    /// Jails grouped by dependency level: level 0 depends on nothing, level
    /// k only on lower levels. Indexes into `jails`.
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
    log: Option<LogTarget>,
    metrics: Option<PathBuf>,
    #[serde(default)]
    defaults: RawJail,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    jail: Vec<RawJail>,
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

/// Resolves symbolic links in the longest existing prefix of `path`, as
/// mount(8) and the kernel do before they record a mount: on a host where
/// `/home` links to `/usr/home`, the mount table says `/usr/home/j/ns`, and
/// jailswap must compare like with like. The rest of the path (a jail's `s`
/// before the template is mounted) is kept as written.
pub fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    // Bounded by the number of components of the path.
    while !existing.as_os_str().is_empty() {
        if let Ok(resolved) = std::fs::canonicalize(&existing) {
            return rest
                .iter()
                .rev()
                .fold(resolved, |acc: PathBuf, part| acc.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    path.to_path_buf()
}

/// Parses a duration such as `60s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

impl Config {
    /// Reads, parses and validates the configuration file.
    pub fn load(file: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Kind::ConfigMissing,
                    format!("configuration file {:?} does not exist", file.display().to_string()),
                )
                .with_help(format!(
                    "write one (see `jailswap init --help` to generate it), or name another with -c FILE; the default is {DEFAULT_CONFIG}"
                )));
            }
            Err(error) => {
                return Err(Error::new(
                    Kind::ConfigMissing,
                    format!(
                        "cannot read configuration file {:?}: {error}",
                        file.display().to_string()
                    ),
                ))
            }
        };
        check_ownership(file)?;
        Config::parse(&text, file).map_err(|error| match error.help {
            Some(_) => error,
            None => {
                let shown = file.display().to_string();
                error.with_help(format!("fix {shown:?}; `jailswap check -c {shown}` validates it without changing anything"))
            }
        })
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let name = file.display().to_string();
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            Error::config(format!("{name:?}: {}", error.to_string().trim_end()))
                .with_help("fix the file; `jailswap check` validates it without changing anything")
        })?;
        let fail =
            |key: &str, message: String| Error::config(format!("{name:?}: {key}: {message}"));

        let store = raw.store.clone().ok_or_else(|| {
            fail("store", "missing: name the directory that holds the live template, for example store = \"/home/j\"".into())
        })?;
        if !store.is_absolute() {
            return Err(fail(
                "store",
                format!("{:?} is not an absolute path", store.display().to_string()),
            ));
        }
        match std::fs::metadata(&store) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(fail(
                    "store",
                    format!("{:?} is not a directory", store.display().to_string()),
                ))
            }
            Err(error) => {
                return Err(fail(
                    "store",
                    format!("{:?}: {error}", store.display().to_string()),
                )
                .with_help("create the store directory or correct the path"))
            }
        }
        let store = resolve(&store);
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
        if !journal.is_absolute() {
            return Err(fail(
                "journal",
                format!(
                    "{:?} is not an absolute path",
                    journal.display().to_string()
                ),
            ));
        }
        if let Some(metrics) = &raw.metrics {
            if !metrics.is_absolute() {
                return Err(fail(
                    "metrics",
                    format!(
                        "{:?} is not an absolute path",
                        metrics.display().to_string()
                    ),
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

        let duration = |key: &str, value: &Option<String>, default: Duration| -> Result<Duration> {
            match value {
                None => Ok(default),
                Some(text) => match parse_duration(text) {
                    Some(duration) if !duration.is_zero() => Ok(duration),
                    _ => Err(fail(
                        key,
                        format!(
                            "{text:?} is not a duration; write for example \"30s\" or \"500ms\""
                        ),
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
            let fail_jail = |field: &str, message: String| {
                Error::config(format!("{name:?}: {}: {message}", key(field)))
            };
            let pick = |own: &Option<String>, default: &Option<String>| {
                own.clone().or_else(|| default.clone())
            };
            let substitute = |text: String| text.replace("${name}", &jail_name);

            let path = match pick(&entry.path, &raw.defaults.path) {
                Some(path) => resolve(&PathBuf::from(substitute(path))),
                None => store.join(&jail_name),
            };
            if !path.is_absolute() {
                return Err(fail_jail(
                    "path",
                    format!("{:?} is not an absolute path", path.display().to_string()),
                ));
            }
            if path.starts_with(store.join(&live)) || path == store {
                return Err(fail_jail(
                    "path",
                    format!(
                        "{:?} is inside the live template or is the store",
                        path.display().to_string()
                    ),
                ));
            }
            let fstab_path =
                pick(&entry.fstab, &raw.defaults.fstab).map(|p| PathBuf::from(substitute(p)));
            let mounts = match &fstab_path {
                None => Vec::new(),
                Some(fstab_file) => {
                    let text = std::fs::read_to_string(fstab_file).map_err(|error| {
                        fail_jail("fstab", format!("cannot read {:?}: {error}", fstab_file.display().to_string()))
                            .with_help("create the jail's fstab, or remove the key if the jail mounts its own file systems")
                    })?;
                    let mut mounts = fstab::parse(&text, fstab_file)
                        .map_err(|error| fail_jail("fstab", error.to_string()))?;
                    for mount in &mut mounts {
                        if mount.source.is_absolute() {
                            mount.source = resolve(&mount.source);
                        }
                        mount.target = resolve(&mount.target);
                    }
                    mounts
                }
            };
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
            let mut health = Vec::new();
            let raw_checks = entry
                .health
                .clone()
                .or_else(|| raw.defaults.health.clone())
                .unwrap_or_default();
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
            jails.push(JailSpec {
                name: jail_name.clone(),
                path,
                fstab: fstab_path,
                mounts,
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
            });
        }
        let levels = dependency_levels(&jails).map_err(|message| fail("depends", message))?;
        Ok(Config {
            file: file.to_path_buf(),
            store,
            live,
            journal,
            parallel,
            carry: raw.carry,
            backend: raw.backend.unwrap_or_else(Backend::native),
            log: raw.log.unwrap_or_else(LogTarget::native),
            metrics: raw.metrics,
            jails,
            levels,
        })
    }

    pub fn jail(&self, name: &str) -> Option<&JailSpec> {
        self.jails.iter().find(|jail| jail.name == name)
    }
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

/// Run as root, the file names commands run as root: it must be owned by
/// root and writable by nobody else.
fn check_ownership(file: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = std::fs::metadata(file).map_err(|error| {
        Error::new(
            Kind::ConfigMissing,
            format!(
                "cannot read configuration file {:?}: {error}",
                file.display().to_string()
            ),
        )
    })?;
    let shown = file.display().to_string();
    if meta.uid() != 0 {
        return Err(Error::config(format!(
            "configuration file {shown:?} is owned by uid {}, not root; it names commands that run as root",
            meta.uid()
        ))
        .with_help(format!("chown root {shown:?}")));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::config(format!(
            "configuration file {shown:?} is writable by group or others (mode {:o}); it names commands that run as root",
            meta.mode() & 0o7777
        ))
        .with_help(format!("chmod go-w {shown:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/test/jailswap.toml"))
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
        let config = parse(
            "store = \"/tmp\"\n[defaults]\nstart = \"go ${name}\"\n[[jail]]\nname = \"web\"\ndepends = [\"db\"]\n[[jail]]\nname = \"db\"\nstart = \"own\"\n",
        )
        .unwrap();
        assert_eq!(config.jails[0].start, "go ${name}");
        assert_eq!(config.jails[1].start, "own");
        assert_eq!(config.levels, vec![vec![1], vec![0]]);
        assert_eq!(config.jails[0].path, PathBuf::from("/tmp/web"));
        let error = parse("store = \"/tmp\"\n[[jail]]\nname = \"a\"\ndepends = [\"b\"]\n[[jail]]\nname = \"b\"\ndepends = [\"a\"]\n").unwrap_err();
        assert_eq!(error.kind, Kind::Config);
        assert!(error.message.contains("cycle"), "{}", error.message);
    }

    // Unknown keys are refused with their name.
    #[test]
    fn unknown_key() {
        let error = parse("store = \"/tmp\"\nstroe = 1\n[[jail]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(error.kind, Kind::Config);
        assert!(error.message.contains("stroe"), "{}", error.message);
    }
}
