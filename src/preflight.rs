//! Preflight: names, labels and every check that can be made before the
//! first jail stops, through the host. It refuses (65) without changing
//! anything, with a message naming what is wrong and a `help:` line.

use crate::config::{valid_name, Config};
use crate::host::{Entry, Host, HostError, Template, TemplateId};
use crate::journal::{Journal, JournalError, TxnRecord, TxnState};
use crate::plan::Observed;
use std::collections::BTreeSet;
use std::path::Path;

/// Why preflight stopped; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// 65: the request cannot be carried out as it stands.
    #[error("{message}")]
    Refused { message: String, help: String },
    /// 75: a transaction is pending and must be recovered first.
    #[error("{message}")]
    Pending { message: String, help: String },
    /// The host could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

type Result<T, E = PreflightError> = std::result::Result<T, E>;

/// A refusal (65) naming what is wrong, with what to do.
pub fn refuse<E: From<PreflightError>>(message: impl Into<String>, help: impl Into<String>) -> E {
    E::from(PreflightError::Refused {
        message: message.into(),
        help: help.into(),
    })
}

/// The live template as jailswap knows it.
#[derive(Clone, Debug)]
pub struct LiveTemplate {
    pub id: TemplateId,
    pub modified: i64,
    /// The name it had before it went live, when jailswap made it live.
    pub label: Option<String>,
}

/// The templates of the store, without the jails' own roots (in the
/// Handbook's layout the jails live in the store beside the templates).
pub fn templates<H: Host + ?Sized>(host: &H, config: &Config) -> Result<Vec<Template>> {
    let roots: BTreeSet<&Path> = config
        .jails
        .iter()
        .flat_map(|jail| {
            std::iter::once(jail.path.as_path())
                .chain(jail.mounts.iter().map(|m| m.target.as_path()))
        })
        .collect();
    Ok(host
        .templates()?
        .into_iter()
        .filter(|template| !roots.contains(config.store.join(&template.name).as_path()))
        .collect())
}

/// Finds the live template and its label, refusing (65) a store changed by
/// hand since the last transaction unless `adopt` is set.
pub fn live_template<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    journal: Option<&Journal>,
    adopt: bool,
) -> Result<LiveTemplate> {
    let store_shown = config.store.display().to_string();
    let found = match host.examine(&config.live)? {
        Entry::Directory(found) => found,
        Entry::Absent => {
            return Err(refuse(
                format!("there is no live template {:?} in {store_shown:?}", config.live),
                "if a transaction was interrupted, run `jailswap recover`; otherwise check `store` and `live` in the configuration",
            ))
        }
        Entry::Foreign(why) => {
            return Err(refuse(
                format!("the live template {:?} in {store_shown:?} cannot be swapped: {why}", config.live),
                "keep every template in the store, as the store kind says (see `store_kind` in jailswap(8))",
            ))
        }
        _ => {
            return Err(refuse(
                format!("the live template {:?} in {store_shown:?} is not a directory", config.live),
                "a live template must be a plain directory; check the store by hand",
            ))
        }
    };
    let last = match journal {
        Some(journal) => journal.last_final()?,
        None => None,
    };
    let Some(last) = last else {
        return Ok(LiveTemplate {
            id: found.id,
            modified: found.modified,
            label: None,
        });
    };
    let (expected, label) = left_live(&last);
    if *expected == found.id {
        return Ok(LiveTemplate {
            id: found.id,
            modified: found.modified,
            label: Some(label.to_string()),
        });
    }
    if adopt {
        return Ok(LiveTemplate {
            id: found.id,
            modified: found.modified,
            label: None,
        });
    }
    Err(refuse(
        format!(
            "the store was changed by hand: transaction {} left {label:?} live as {:?} ({expected}), but {:?} is now {}",
            last.id, config.live, config.live, found.id
        ),
        "check the store; to accept it as it is now, run the command again with --adopt",
    ))
}

/// The template a finished transaction left live, and its label.
pub fn left_live(record: &TxnRecord) -> (&TemplateId, &str) {
    match record.state {
        TxnState::Committed => (&record.to_id, &record.to_label),
        _ => (&record.from_id, &record.from_label),
    }
}

/// The default archive name for the outgoing template: its label, or for a
/// template jailswap never saw, `<live>.<YYYYMMDD of its mtime>` with `-2`,
/// `-3` … appended while taken.
pub fn default_archive_name<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    live: &LiveTemplate,
) -> Result<String> {
    if let Some(label) = &live.label {
        if label != &config.live {
            return Ok(label.clone());
        }
    }
    let date = chrono::DateTime::from_timestamp(live.modified, 0)
        .unwrap_or_default()
        .format("%Y%m%d")
        .to_string();
    let base = format!("{}.{date}", config.live);
    for suffix in 1..10_000 {
        let name = if suffix == 1 {
            base.clone()
        } else {
            format!("{base}-{suffix}")
        };
        if !host.examine(&name)?.exists() {
            return Ok(name);
        }
    }
    Err(refuse(
        format!("no free archive name like {base:?} in the store"),
        "name one with --archive-as",
    ))
}

/// Refuses (65) a name that is not a single plain component of the store.
pub fn plain_name(what: &str, name: &str) -> Result<()> {
    if valid_name(name) {
        return Ok(());
    }
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if name.starts_with('/') {
        "is an absolute path".to_string()
    } else if name.contains('/') || name == ".." || name == "." {
        "is a path, not a name in the store".to_string()
    } else {
        "contains characters other than letters, digits, `_`, `.` and `-`, or does not start with a letter or digit".to_string()
    };
    Err(refuse(
        format!("{what} {name:?} {why}"),
        "give the bare name of a template in the store, such as mroot.20240601",
    ))
}

/// Checks everything about the target that can be checked before the first
/// jail stops; returns its identity.
pub fn check_target<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    live: &LiveTemplate,
    what: &str,
    target: &str,
    archive_as: &str,
    force: bool,
) -> Result<TemplateId> {
    let store_shown = config.store.display().to_string();
    plain_name(what, target)?;
    let other = if what.starts_with("rollback") {
        "name an archived template to go back to (`jailswap status` lists them), or run `jailswap rollback` without --to for the previous one"
    } else {
        "name the staged template to make live (`jailswap status` lists them)"
    };
    if target == config.live {
        return Err(refuse(
            format!("{what} {target:?} is the live template itself"),
            other,
        ));
    }
    let id = match host.examine(target)? {
        Entry::Absent if what.starts_with("rollback") => {
            return Err(refuse(
                format!("there is no template {target:?} in the store {store_shown:?}"),
                "name an archived template (`jailswap status` lists the templates and their roles), or run `jailswap rollback` without --to for the previous one",
            ))
        }
        Entry::Absent => {
            return Err(refuse(
                format!("there is no template {target:?} in the store {store_shown:?}"),
                "stage the new template next to the live one first (`jailswap stage`), or see `jailswap status` for what is there",
            ))
        }
        Entry::Symlink => {
            return Err(refuse(
                format!("{target:?} in the store is a symbolic link"),
                "templates must be real directories in the store; move the directory itself there",
            ))
        }
        Entry::NotDirectory => {
            return Err(refuse(
                format!("{target:?} in the store is not a directory"),
                "a template is a directory holding a whole jail root",
            ))
        }
        Entry::Foreign(why) => {
            return Err(refuse(
                format!("{target:?} cannot be swapped in: {why}"),
                "make it a template of the store's kind (`jailswap status` shows the kind) as said above, or build it with `jailswap stage`",
            ))
        }
        Entry::Directory(found) => found.id,
    };
    if id == live.id {
        return Err(refuse(
            format!("{target:?} is the live template itself"),
            other,
        ));
    }
    plain_name("--archive-as", archive_as)?;
    if archive_as == config.live || archive_as == target {
        return Err(refuse(
            format!("--archive-as {archive_as:?} is the live or the target name"),
            "the outgoing template needs a name of its own, such as mroot.20240101",
        ));
    }
    if host.examine(archive_as)?.exists() {
        return Err(refuse(
            format!("the archive name {archive_as:?} is already taken in the store"),
            "choose another with --archive-as",
        ));
    }
    if !force {
        let missing = missing_links(host, &config.live, target)?;
        if !missing.is_empty() {
            return Err(refuse(
                format!(
                    "{target:?} lacks top-level symbolic links that the live template has: {}",
                    missing.join(", ")
                ),
                format!("recreate them in {target:?} (the Handbook's `ln -s s/etc etc` step), or pass --force"),
            ));
        }
    }
    check_nested_mount_points(host, config, target)?;
    check_carry(host, config, target)?;
    Ok(id)
}

/// The top-level links of `like` that `template` lacks.
pub fn missing_links<H: Host + ?Sized>(
    host: &H,
    like: &str,
    template: &str,
) -> Result<Vec<String>> {
    let wanted = host.top_level_symlinks(like)?;
    let present = host.top_level_symlinks(template)?;
    Ok(wanted
        .into_iter()
        .filter(|link| !present.contains(link))
        .collect())
}

/// Mount points nested in the template (a jail's `s` for its data) must
/// exist in the new template too, or the jail cannot be mounted.
fn check_nested_mount_points<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    target: &str,
) -> Result<()> {
    let live_path = config.store.join(&config.live);
    for jail in &config.jails {
        let Some(root) = jail.mounts.iter().find(|m| m.source == live_path) else {
            continue;
        };
        for mount in &jail.mounts {
            let Ok(inside) = mount.target.strip_prefix(&root.target) else {
                continue;
            };
            if inside.as_os_str().is_empty() {
                continue;
            }
            let relative = format!("{target}/{}", inside.display());
            if !matches!(host.examine(&relative)?, Entry::Directory(_)) {
                return Err(refuse(
                    format!(
                        "{target:?} has no directory {:?}, where jail {} mounts {:?}",
                        inside.display().to_string(),
                        jail.name,
                        mount.source.display().to_string()
                    ),
                    format!(
                        "create it: mkdir {:?}",
                        config.store.join(&relative).display().to_string()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_carry<H: Host + ?Sized>(host: &H, config: &Config, target: &str) -> Result<()> {
    let kind = host.store_kind();
    if let Some(path) = config.carry.first().filter(|_| !kind.carries()) {
        return Err(refuse(
            format!(
                "carry cannot move {path:?} on a {} store: each template is a file system of its own, and a move between two file systems is a copy, not one atomic rename",
                kind.as_str()
            ),
            "remove `carry` from the configuration; keep such trees out of the templates (a dataset of their own, mounted by each jail's fstab)",
        ));
    }
    for path in &config.carry {
        let found = host.examine(&format!("{}/{path}", config.live))?;
        if !found.exists() {
            return Err(refuse(
                format!("carry path {path:?} does not exist in the live template"),
                "remove it from `carry`, or create it",
            ));
        }
        // Between two subvolumes only a subvolume moves by rename(2).
        let subvolume = matches!(found.found().map(|f| &f.id), Some(TemplateId::Subvolume(_)));
        if kind == crate::config::StoreKind::Btrfs && !subvolume {
            return Err(refuse(
                format!("carry path {path:?} is not a subvolume: on a btrfs store only a subvolume moves between templates by one rename"),
                format!(
                    "make it one (move it aside, `btrfs subvolume create {}`, copy it back), or remove it from `carry`",
                    config.store.join(&config.live).join(path).display()
                ),
            ));
        }
        let to = format!("{target}/{path}");
        if host.examine(&to)?.exists() {
            return Err(refuse(
                format!(
                    "carry path {path:?} already exists in {target:?}; jailswap deletes nothing"
                ),
                format!(
                    "remove {:?} by hand if it is not needed",
                    config.store.join(&to).display().to_string()
                ),
            ));
        }
        let parent = Path::new(&to)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !matches!(host.examine(&parent)?, Entry::Directory(_)) {
            return Err(refuse(
                format!("{target:?} has no directory {parent:?} to carry {path:?} into"),
                format!(
                    "create it: mkdir -p {:?}",
                    config.store.join(&parent).display().to_string()
                ),
            ));
        }
    }
    Ok(())
}

/// The jails known to be stopped, refusing (65) a status command that
/// cannot answer.
pub fn observe_host_jails<H: Host + ?Sized>(host: &H, config: &Config) -> Result<Vec<String>> {
    let mut stopped = Vec::new();
    for (jail, running) in config
        .jails
        .iter()
        .zip(host.jails_running(&config.jails, config.parallel))
    {
        match running {
            Ok(Some(false)) => stopped.push(jail.name.clone()),
            Ok(_) => {}
            Err(error) => {
                let help = if crate::process::out_of_files(&error.to_string()) {
                    "jailswap ran out of open files: raise the limit (`ulimit -n`, or LimitNOFILE in its service unit); nothing was changed"
                } else {
                    "fix the jail's `status` command; nothing was changed"
                };
                return Err(refuse(
                    format!("status of jail {}: {error}", jail.name),
                    help,
                ));
            }
        }
    }
    Ok(stopped)
}

/// What the host looks like now: which jails run, what is mounted, what
/// the carried paths are.
pub fn observe_host<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    live: &LiveTemplate,
    target_id: TemplateId,
) -> Result<Observed> {
    let mounted = host.mount_points()?;
    let stopped: BTreeSet<String> = observe_host_jails(host, config)?.into_iter().collect();
    let mut carry_ids = Vec::new();
    for path in &config.carry {
        let id = match host.examine(&format!("{}/{path}", config.live))? {
            Entry::Directory(found) => found.id,
            _ => {
                return Err(refuse(
                    format!("carry path {path:?} is not a directory of the live template"),
                    "carry moves directories such as usr/ports; remove it from `carry`",
                ))
            }
        };
        carry_ids.push(id);
    }
    Ok(Observed {
        store_kind: host.store_kind(),
        live_id: live.id.clone(),
        target_id,
        stopped_jails: stopped,
        mounted,
        carry_ids,
    })
}

/// The template the last committed transaction archived, if it is still
/// in the store.
pub fn previous_template<H: Host + ?Sized>(host: &H, journal: &Journal) -> Result<String> {
    let Some(last) = journal.last_committed()? else {
        return Err(refuse(
            "there is nothing to roll back to: no transaction was ever committed",
            "name an archived template with `rollback --to NAME` (`jailswap status` lists them)",
        ));
    };
    match host.examine(&last.archive_as)? {
        Entry::Directory(found) if found.id == last.from_id => Ok(last.archive_as),
        _ => Err(refuse(
            format!(
                "the previous template {:?} (archived by transaction {}) is no longer in the store",
                last.archive_as, last.id
            ),
            "name an archived template with `rollback --to NAME` (`jailswap status` lists them)",
        )),
    }
}

/// The refusal for a command that would change the host while a
/// transaction is pending (75).
pub fn pending_error(pending: &TxnRecord) -> PreflightError {
    let help = if pending.state == TxnState::Paused {
        "the rolling upgrade is paused: `jailswap recover --resume` continues it, `jailswap recover --rollback` undoes it"
    } else {
        "run `jailswap status` to see what is pending, then `jailswap recover`"
    };
    PreflightError::Pending {
        message: format!(
            "transaction {} ({} {} -> {}) is pending ({})",
            pending.id,
            pending.kind,
            pending.from_label,
            pending.to_label,
            pending.state.as_str()
        ),
        help: help.to_string(),
    }
}
