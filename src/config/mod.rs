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

mod parse;
mod resolve;

use crate::fstab::MountSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::parse;
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
    /// ZFS datasets mounted at `store/NAME`; renames are `zfs rename`.
    Zfs,
    /// Btrfs subvolumes of one file system; renames are rename(2), a stage
    /// is a writable snapshot, identity is the subvolume UUID.
    Btrfs,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Directory => "directory",
            StoreKind::Zfs => "zfs",
            StoreKind::Btrfs => "btrfs",
        }
    }

    /// Whether a template can change its name while jails mount it (a
    /// rolling upgrade renames under running jails).
    pub fn renames_in_use(self) -> bool {
        match self {
            StoreKind::Directory => true,
            StoreKind::Zfs => false,
            // A bind mount holds the subvolume, not its name: rename(2) of
            // a subvolume under running jails is as safe as of a directory.
            StoreKind::Btrfs => true,
        }
    }

    /// Whether `carry` can move a path from one template into another with
    /// one atomic rename(2): between directories of one file system, and
    /// between btrfs subvolumes when the carried path is a subvolume of its
    /// own (preflight checks that); never between ZFS datasets, each a file
    /// system of its own.
    pub fn carries(self) -> bool {
        matches!(self, StoreKind::Directory | StoreKind::Btrfs)
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
            ConfigError::Unreadable { .. } => {
                Some("name the configuration file (a TOML file) with -c FILE".into())
            }
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

#[cfg(test)]
mod tests;
