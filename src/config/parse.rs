//! The first stage of reading the configuration: TOML text to
//! [`Settings`], touching nothing but the text. Unknown keys, names,
//! durations, batch sizes and dependencies are checked here.

use super::{
    parse_duration, valid_name, Backend, Batches, ConfigError, HealthCheck, JailSettings, JailSpec,
    LogTarget, Settings, StoreKind, DEFAULT_JOURNAL,
};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The `store_kind` key: a kind, or `auto` (judged by the live template).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoreKindSetting {
    Auto,
    #[serde(untagged)]
    Kind(StoreKind),
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

/// The keys of the file's top level, which TOML reads as part of the last
/// `[section]` above them when they are written after one.
pub(super) const TOP_LEVEL_KEYS: [&str; 9] = [
    "store",
    "live",
    "journal",
    "parallel",
    "carry",
    "backend",
    "store_kind",
    "log",
    "metrics",
];

/// The help for a top-level key written below a `[section]` header (an
/// easy slip when appending to the end of the file): TOML reports it as
/// unknown in that section.
fn misplaced_key(message: &str) -> Option<String> {
    let key = message.split("unknown field `").nth(1)?.split('`').next()?;
    let in_section = !message.contains("expected one of `store`");
    (in_section && TOP_LEVEL_KEYS.contains(&key)).then(|| {
        format!(
            "`{key}` is a top-level key: move it above the first [section] header (a key written below a header belongs to that section)"
        )
    })
}

/// The first stage: configuration text to [`Settings`], touching nothing
/// but the text. `file` only names the file in errors.
pub fn parse(text: &str, file: &Path) -> Result<Settings> {
    let name = file.display().to_string();
    let raw: RawFile = toml::from_str(text).map_err(|error| {
        let message = error.to_string();
        ConfigError::Invalid {
            help: Some(misplaced_key(&message).unwrap_or_else(|| {
                "fix the file; `jailswap check` validates it without changing anything".into()
            })),
            message: format!("{name:?}: {}", message.trim_end()),
        }
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
