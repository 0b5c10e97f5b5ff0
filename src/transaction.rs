//! `upgrade` and `rollback`: resolve names and labels, preflight, plan,
//! journal, execute. Everything before the first stop happens here, outside
//! the downtime window, and refuses (65) without changing anything.

use crate::config::{valid_name, Config};
use crate::error::{Error, Kind, Result};
use crate::executor::{Actor, Direction, Executor, Outcome};
use crate::host::store::{self, EntryInfo};
use crate::host::Host;
use crate::journal::{Audit, Journal, TxnRecord, TxnState};
use crate::plan::{self, Observed, Plan, Request, TransactionKind};
use crate::report::Reporter;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// What the operator asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub to: Option<String>,
    pub archive_as: Option<String>,
    pub force: bool,
    pub adopt: bool,
    pub reason: Option<String>,
}

/// The live template as jailswap knows it.
#[derive(Clone, Debug)]
pub struct LiveTemplate {
    pub entry: EntryInfo,
    /// The name it had before it went live, when jailswap made it live.
    pub label: Option<String>,
}

fn examine(store_path: &Path, name: &str) -> Result<Option<EntryInfo>> {
    store::entry(store_path, name).map_err(|error| {
        Error::internal(format!(
            "cannot examine {name:?} in the store {:?}: {error}",
            store_path.display().to_string()
        ))
    })
}

/// Finds the live template and its label, refusing (65) a store changed by
/// hand since the last transaction unless `adopt` is set.
pub fn live_template(
    config: &Config,
    journal: Option<&Journal>,
    adopt: bool,
) -> Result<LiveTemplate> {
    let store_shown = config.store.display().to_string();
    let entry = match examine(&config.store, &config.live)? {
        Some(entry) if entry.is_directory => entry,
        Some(_) => {
            return Err(Error::invalid(format!("the live template {:?} in {store_shown:?} is not a directory", config.live))
                .with_help("a live template must be a plain directory; check the store by hand"))
        }
        None => {
            return Err(Error::invalid(format!("there is no live template {:?} in {store_shown:?}", config.live)).with_help(
                "if a transaction was interrupted, run `jailswap recover`; otherwise check `store` and `live` in the configuration",
            ))
        }
    };
    let last = match journal {
        Some(journal) => journal.last_final()?,
        None => None,
    };
    let Some(last) = last else {
        return Ok(LiveTemplate { entry, label: None });
    };
    let (expected_inode, label) = match last.state {
        TxnState::Committed => (last.to_inode, last.to_label.clone()),
        _ => (last.from_inode, last.from_label.clone()),
    };
    if expected_inode == entry.inode {
        return Ok(LiveTemplate {
            entry,
            label: Some(label),
        });
    }
    if adopt {
        return Ok(LiveTemplate { entry, label: None });
    }
    Err(Error::invalid(format!(
        "the store was changed by hand: transaction {} left {label:?} live as {:?} (inode {expected_inode}), but {:?} is now inode {}",
        last.id, config.live, config.live, entry.inode
    ))
    .with_help("check the store; to accept it as it is now, run the command again with --adopt"))
}

/// The default archive name for the outgoing template: its label, or for a
/// template jailswap never saw, `<live>.<YYYYMMDD of its mtime>` with `-2`,
/// `-3` … appended while taken.
pub fn default_archive_name(config: &Config, live: &LiveTemplate) -> Result<String> {
    if let Some(label) = &live.label {
        if label != &config.live {
            return Ok(label.clone());
        }
    }
    let date = chrono::DateTime::from_timestamp(live.entry.mtime, 0)
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
        if examine(&config.store, &name)?.is_none() {
            return Ok(name);
        }
    }
    Err(
        Error::invalid(format!("no free archive name like {base:?} in the store"))
            .with_help("name one with --archive-as"),
    )
}

/// Refuses (65) a name that is not a single plain component of the store.
fn plain_name(what: &str, name: &str) -> Result<()> {
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
        "contains characters other than letters, digits, `_`, `.` and `-`".to_string()
    };
    Err(Error::invalid(format!("{what} {name:?} {why}"))
        .with_help("give the bare name of a directory in the store, such as mroot.20240601"))
}

/// Checks everything that can be checked before the first jail stops.
pub fn preflight(
    config: &Config,
    live: &LiveTemplate,
    target: &str,
    archive_as: &str,
    force: bool,
) -> Result<EntryInfo> {
    let store_shown = config.store.display().to_string();
    plain_name("--to", target)?;
    if target == config.live {
        return Err(
            Error::invalid(format!("--to {target:?} is the live template itself"))
                .with_help("name the staged template to make live"),
        );
    }
    let entry = match examine(&config.store, target)? {
        None => {
            return Err(Error::invalid(format!("there is no template {target:?} in the store {store_shown:?}"))
                .with_help("stage the new template next to the live one first (see `jailswap status` for what is there)"))
        }
        Some(entry) if entry.is_symlink => {
            return Err(Error::invalid(format!("{target:?} in the store is a symbolic link"))
                .with_help("templates must be real directories in the store; move the directory itself there"))
        }
        Some(entry) if !entry.is_directory => {
            return Err(Error::invalid(format!("{target:?} in the store is not a directory"))
                .with_help("a template is a directory holding a whole jail root"))
        }
        Some(entry) => entry,
    };
    if entry.inode == live.entry.inode && entry.device == live.entry.device {
        return Err(Error::invalid(format!(
            "{target:?} is the live template itself"
        )));
    }
    let store_device = std::fs::metadata(&config.store)
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .unwrap_or(entry.device);
    if entry.device != store_device {
        return Err(Error::invalid(format!("{target:?} is on another file system than the store {store_shown:?}"))
            .with_help("a rename across file systems is not atomic; copy the template into the store's file system"));
    }
    plain_name("--archive-as", archive_as)?;
    if archive_as == config.live || archive_as == target {
        return Err(Error::invalid(format!(
            "--archive-as {archive_as:?} is the live or the target name"
        ))
        .with_help("the outgoing template needs a name of its own, such as mroot.20240101"));
    }
    if examine(&config.store, archive_as)?.is_some() {
        return Err(Error::invalid(format!(
            "the archive name {archive_as:?} is already taken in the store"
        ))
        .with_help("choose another with --archive-as"));
    }
    if !force {
        let read = |name: &str| {
            store::top_level_symlinks(&config.store, name).map_err(|error| {
                Error::internal(format!("cannot list {name:?} in the store: {error}"))
            })
        };
        let live_links = read(&config.live)?;
        let target_links = read(target)?;
        let missing: Vec<&String> = live_links
            .iter()
            .filter(|link| !target_links.contains(link))
            .collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(Error::invalid(format!(
                "{target:?} lacks top-level symbolic links that the live template has: {}",
                names.join(", ")
            ))
            .with_help(format!("recreate them in {target:?} (the Handbook's `ln -s s/etc etc` step), or pass --force")));
        }
    }
    // Mount points nested in the template (a jail's `s` for its data) must
    // exist in the new template too, or the jail cannot be mounted.
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
            match examine(&config.store, &relative)? {
                Some(found) if found.is_directory => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "{target:?} has no directory {:?}, where jail {} mounts {:?}",
                        inside.display().to_string(),
                        jail.name,
                        mount.source.display().to_string()
                    ))
                    .with_help(format!(
                        "create it: mkdir {:?}",
                        config.store.join(&relative).display().to_string()
                    )))
                }
            }
        }
    }
    for path in &config.carry {
        let from = format!("{}/{path}", config.live);
        if examine(&config.store, &from)?.is_none() {
            return Err(Error::invalid(format!(
                "carry path {path:?} does not exist in the live template"
            ))
            .with_help("remove it from `carry`, or create it"));
        }
        let to = format!("{target}/{path}");
        if examine(&config.store, &to)?.is_some() {
            return Err(Error::invalid(format!(
                "carry path {path:?} already exists in {target:?}; jailswap deletes nothing"
            ))
            .with_help(format!(
                "remove {:?} by hand if it is not needed",
                config.store.join(&to).display().to_string()
            )));
        }
        let parent = Path::new(&to)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !examine(&config.store, &parent)?.is_some_and(|e| e.is_directory) {
            return Err(Error::invalid(format!(
                "{target:?} has no directory {parent:?} to carry {path:?} into"
            )));
        }
    }
    Ok(entry)
}

/// What the host looks like now: which jails run, what is mounted.
pub fn observe_host<H: Host + ?Sized>(host: &H, config: &Config) -> Result<Observed> {
    let mounted = host
        .mount_points()
        .map_err(|error| Error::internal(error.to_string()))?;
    let mut stopped = std::collections::BTreeSet::new();
    for (jail, running) in config
        .jails
        .iter()
        .zip(host.jails_running(&config.jails, config.parallel))
    {
        match running {
            Ok(Some(false)) => {
                stopped.insert(jail.name.clone());
            }
            Ok(_) => {}
            Err(error) => {
                return Err(
                    Error::invalid(format!("status of jail {}: {error}", jail.name))
                        .with_help("fix the jail's `status` command; nothing was changed"),
                );
            }
        }
    }
    Ok(Observed {
        stopped_jails: stopped,
        mounted,
        ..Default::default()
    })
}

/// The result of `upgrade` or `rollback`.
pub struct Finished {
    pub id: Option<i64>,
    pub plan: Plan,
    pub outcome: Option<Outcome>,
}

/// Plans and, unless it is a dry run, carries out a transaction.
#[allow(clippy::too_many_arguments)]
pub fn run<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    journal: &mut Journal,
    kind: TransactionKind,
    options: &Options,
    dry_run: bool,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Finished> {
    if let Some(pending) = journal.pending()? {
        return Err(pending_error(&pending));
    }
    let live = live_template(config, Some(journal), options.adopt)?;
    let target = match (kind, &options.to) {
        (_, Some(to)) => to.clone(),
        (TransactionKind::Upgrade | TransactionKind::Prune, None) => {
            return Err(Error::usage("upgrade needs --to NAME"))
        }
        (TransactionKind::Rollback, None) => previous_template(config, journal)?,
    };
    let archive_as = match &options.archive_as {
        Some(name) => name.clone(),
        None => default_archive_name(config, &live)?,
    };
    let target_entry = preflight(config, &live, &target, &archive_as, options.force)?;
    let mut observed = observe_host(host, config)?;
    observed.live_inode = live.entry.inode;
    observed.target_inode = target_entry.inode;
    for path in &config.carry {
        let inode = examine(&config.store, &format!("{}/{path}", config.live))?
            .map(|e| e.inode)
            .unwrap_or(0);
        observed.carry_inodes.push(inode);
    }
    let request = Request {
        kind,
        target: target.clone(),
        archive_as: archive_as.clone(),
        from_label: live.label.clone().unwrap_or_else(|| archive_as.clone()),
        to_label: target.clone(),
    };
    let plan = plan::build(config, &request, &observed);
    if dry_run {
        return Ok(Finished {
            id: None,
            plan,
            outcome: None,
        });
    }
    // Fingerprints are taken here, before the first stop: reading a whole
    // template must not lengthen the outage.
    let mut audit = Audit::current(options.reason.clone());
    audit.from_fingerprint = Some(fingerprint(&config.store, &config.live, live.entry.inode));
    audit.to_fingerprint = Some(fingerprint(&config.store, &target, target_entry.inode));
    let id = journal.begin(&plan, &audit)?;
    crate::process::set_transaction(id);
    crate::process::track_commands_in(&crate::recover::command_directory(journal.path()));
    reporter.line(&format!(
        "transaction {id}: {} {} -> {}",
        kind.as_str(),
        plan.from_label,
        plan.to_label
    ));
    let mut executor = Executor {
        actor: Actor {
            host,
            plan: &plan,
            reporter,
            recovering: false,
        },
        journal,
        id,
        states: BTreeMap::new(),
        interrupted,
    };
    let outcome = executor.drive(Direction::Forward)?;
    Ok(Finished {
        id: Some(id),
        plan,
        outcome: Some(outcome),
    })
}

/// The template the last committed transaction archived.
pub fn previous_template(config: &Config, journal: &Journal) -> Result<String> {
    let Some(last) = journal.last_committed()? else {
        return Err(Error::invalid(
            "there is nothing to roll back to: no transaction was ever committed",
        )
        .with_help("name an archived template with `rollback --to NAME`"));
    };
    match examine(&config.store, &last.archive_as)? {
        Some(entry) if entry.inode == last.from_inode => Ok(last.archive_as),
        _ => Err(Error::invalid(format!(
            "the previous template {:?} (archived by transaction {}) is no longer in the store",
            last.archive_as, last.id
        ))
        .with_help("name an archived template with `rollback --to NAME`")),
    }
}

pub fn pending_error(pending: &TxnRecord) -> Error {
    Error::new(
        Kind::Busy,
        format!(
            "transaction {} ({} {} -> {}) is pending ({})",
            pending.id,
            pending.kind,
            pending.from_label,
            pending.to_label,
            pending.state.as_str()
        ),
    )
    .with_help("run `jailswap status` to see what is pending, then `jailswap recover`")
}

/// A template's fingerprint: its inode and a SHA-256 digest of its
/// manifest (every path, with its size, mode and modification time, in
/// order; links are not followed), so that `show` can tell whether a
/// template was changed after it went live or was archived.
pub fn fingerprint(store: &Path, name: &str, inode: u64) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let root = store.join(name);
    let mut hasher = Sha256::new();
    let mut pending = vec![root.clone()];
    let mut entries = 0u64;
    // Bounded by the size of the tree; directories are read in name order.
    while let Some(directory) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&directory) else {
            continue;
        };
        let mut children: Vec<_> = listing.flatten().map(|entry| entry.path()).collect();
        children.sort();
        for child in children.into_iter().rev() {
            let Ok(meta) = std::fs::symlink_metadata(&child) else {
                continue;
            };
            let relative = child
                .strip_prefix(&root)
                .unwrap_or(&child)
                .to_string_lossy()
                .into_owned();
            hasher.update(
                format!(
                    "{relative}\0{}\0{:o}\0{}\n",
                    meta.len(),
                    meta.mode(),
                    meta.mtime()
                )
                .as_bytes(),
            );
            entries += 1;
            if meta.is_dir() {
                pending.push(child);
            }
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("inode {inode}, {entries} entries, sha256 {digest}")
}
