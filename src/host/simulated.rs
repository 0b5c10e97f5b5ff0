//! A simulated host: the whole world jailswap acts on (the store, the mount
//! table, the jails, the administrator's commands) in memory behind one
//! mutex, for the crash tests. Compiled only with the `fault-injection`
//! feature, which the test suite enables and release builds do not.
//!
//! Crash consistency is proved by enumeration, as SQLite proves its own:
//! every operation that reads or changes the world, and every commit of the
//! journal (through [`SimulatedHost::commit_hook`]), takes a number from
//! one shared counter. A test runs a transaction and stops the world at
//! operation N, before or after that operation takes effect, for every N;
//! then it runs recovery as a new process would and checks the invariant of
//! SPEC.md. Real mounts can neither do that thousands of times a second nor
//! replay a failure exactly; this world is deterministic and never sleeps.
//!
//! Where jailswap's correctness depends on how the kernel behaves, the world
//! behaves the same way, so that a wrong order of steps or a repeated step
//! shows up as a wrong world rather than passing silently:
//! - a mount binds the directory (its inode), not its name: renaming the
//!   template does not change what a jail sees;
//! - mounts stack: mounting twice on one mount point leaves two mounts;
//! - unmounts are never lazy: a mount point that a running jail holds, or
//!   that has another mount below it, is busy (EBUSY);
//! - a nested mount point (`<jail>/s`) exists only while its parent is
//!   mounted, since it is a directory of the template;
//! - a rename never replaces an existing entry, and refuses an entry that
//!   is not the template it was told to expect (a link, another directory);
//! - a jail starts only when all its mounts are there, and not on a
//!   template marked broken; it is healthy only while it runs on a template
//!   marked healthy with all its mounts.
//!
//! Health probes are answered from the world but take no number: how often
//! a failing check is retried depends on the clock, and a probe changes
//! nothing, so a crash at a probe is the same as a crash before the commit
//! that follows it, which is numbered.

use super::{
    CommandRun, Entry, Fingerprint, Found, Host, HostError, HostResult, Template, TemplateId,
};
use crate::config::{HealthCheck, JailSpec, StoreKind};
use crate::fstab::MountSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Whether a crash stops the world before or after an operation's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Moment {
    /// The operation did not happen (a journal commit did not commit).
    Before,
    /// The operation happened, but the process died before it heard back.
    After,
}

/// Where the world stops: the operation's number, counted from the start
/// of the current process (see [`SimulatedHost::restart`]), and the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrashPoint {
    pub operation: u64,
    pub moment: Moment,
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let moment = match self.moment {
            Moment::Before => "before",
            Moment::After => "after",
        };
        write!(f, "operation {} ({moment} its effect)", self.operation)
    }
}

/// The kinds of operations, as faults name them; they follow the kinds of
/// steps of a plan, plus the reads and the journal's commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperationKind {
    Stop,
    Start,
    /// A jail's status command.
    Status,
    Mount,
    Unmount,
    /// A read of the mount table.
    MountTable,
    /// The search for mounts of a template (the `verify_unused` step).
    VerifyUnused,
    /// A rename of a template in the store.
    Rename,
    /// A rename of a path inside a template (the `carry` step).
    Carry,
    /// A look at an entry of the store, or at the list of its templates.
    Inode,
    /// A copy of a template (`stage`).
    Copy,
    /// A deletion of a template (`prune`, or `stage` discarding its copy).
    Delete,
    /// A fingerprint of a template.
    Fingerprint,
    /// An administrator's command (`stage --run`).
    Command,
    /// One attempt at a health check.
    Health,
    /// A commit of the journal.
    Commit,
}

/// How an injected fault behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultMode {
    /// The next matching operation fails without effect; later ones succeed.
    FailOnce,
    /// Every matching operation fails without effect.
    FailAlways,
    /// Every matching operation runs into its timeout without effect, as a
    /// command that hangs and is killed; no time passes.
    Hang,
    /// Every matching operation takes effect and then runs into its
    /// timeout, as a command that did its work but never exited.
    HangAfterEffect,
}

/// A fault injected into every operation of one kind, or only into those
/// whose subject (the jail, or the destination of a rename, or the template
/// searched for) is the one named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: OperationKind,
    pub subject: Option<String>,
    pub mode: FaultMode,
}

/// What a mount shows at its mount point.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountSource {
    /// A directory of the store, bound by inode: `inside` is the path below
    /// the template (empty for the template itself).
    Template { inode: u64, inside: PathBuf },
    /// Anything outside the store, such as a jail's own data.
    Path(PathBuf),
}

/// One entry of the mount table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountRecord {
    pub target: PathBuf,
    pub source: MountSource,
    pub read_only: bool,
}

/// One jail of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedJail {
    pub path: PathBuf,
    pub running: bool,
    /// The jail's own answer to health checks, whatever its template.
    pub healthy: bool,
    /// Whether the jail has a status command; without one its state
    /// cannot be observed, as on a real host.
    pub has_status: bool,
    /// The jail's own data, which no transaction may change.
    pub data: String,
    /// The mount points of its fstab, in order.
    pub mount_targets: Vec<PathBuf>,
}

/// Something in the store that is not a template: what an intruder or a
/// careless administrator leaves where a template was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intruder {
    /// A symbolic link to somewhere else.
    Symlink(PathBuf),
    /// A plain file.
    File,
}

/// Everything the simulated host knows; tests read a copy of it with
/// [`SimulatedHost::snapshot`].
#[derive(Clone, Debug, Default)]
pub struct World {
    pub store: PathBuf,
    /// The templates of the store: name to inode.
    pub templates: BTreeMap<String, u64>,
    /// Entries of the store that are not templates.
    pub intruders: BTreeMap<String, Intruder>,
    /// Paths inside each template (by inode) that tests follow, such as
    /// carried paths: relative path to inode.
    pub contents: BTreeMap<u64, BTreeMap<String, u64>>,
    /// The top-level symbolic links of each template (by inode).
    pub links: BTreeMap<u64, BTreeSet<String>>,
    /// What each template (by inode) holds, as a version string: its
    /// fingerprint follows it, and a stage command changes it.
    pub versions: BTreeMap<u64, String>,
    /// The mount table, in mount order.
    pub mounts: Vec<MountRecord>,
    pub jails: BTreeMap<String, SimulatedJail>,
    /// Templates (by inode) on which every jail's health check fails.
    pub unhealthy_templates: BTreeSet<u64>,
    /// Templates (by inode) on which no jail starts.
    pub broken_templates: BTreeSet<u64>,
    pub faults: Vec<Fault>,
    /// The commands run, in order, across processes.
    pub commands: Vec<String>,
    /// The operations of the current process, numbered, for replaying.
    pub log: Vec<String>,
    /// How many operations the current process has done.
    pub operations: u64,
    pub crash_at: Option<CrashPoint>,
    /// Where the current process died, if it did.
    pub crashed_at: Option<CrashPoint>,
    next_inode: u64,
}

impl World {
    /// The inode at `relative` in the store (`name` or `name/inside/path`).
    pub fn resolve(&self, relative: &str) -> Option<u64> {
        match relative.split_once('/') {
            None => self.templates.get(relative).copied(),
            Some((name, inside)) => {
                let template = self.templates.get(name)?;
                self.contents.get(template)?.get(inside).copied()
            }
        }
    }

    pub fn mounted(&self, target: &Path) -> bool {
        self.mounts.iter().any(|mount| mount.target == target)
    }

    /// The topmost mount at a mount point: the one a jail sees.
    pub fn visible_mount(&self, target: &Path) -> Option<&MountRecord> {
        self.mounts
            .iter()
            .rev()
            .find(|mount| mount.target == target)
    }

    /// The template (by inode) a jail sees at its root, if one is mounted.
    pub fn template_seen_by(&self, jail: &str) -> Option<u64> {
        let jail = self.jails.get(jail)?;
        self.template_at(&jail.path)
    }

    fn template_at(&self, root: &Path) -> Option<u64> {
        match &self.visible_mount(root)?.source {
            MountSource::Template { inode, inside } if inside.as_os_str().is_empty() => {
                Some(*inode)
            }
            _ => None,
        }
    }

    /// The jail whose fstab has this mount point.
    fn owner_of(&self, target: &Path) -> Option<&str> {
        self.jails
            .iter()
            .find(|(_, jail)| jail.mount_targets.iter().any(|t| t == target))
            .map(|(name, _)| name.as_str())
    }

    /// Whether a jail answers its health checks, and why not.
    fn health(&self, name: &str) -> Result<(), String> {
        let jail = self
            .jails
            .get(name)
            .ok_or_else(|| format!("jail {name} does not exist"))?;
        if !jail.running {
            return Err(format!("jail {name} is not running: connection refused"));
        }
        if let Some(missing) = jail.mount_targets.iter().find(|t| !self.mounted(t)) {
            return Err(format!(
                "jail {name} lacks its mount {:?}",
                missing.display().to_string()
            ));
        }
        match self.template_seen_by(name) {
            Some(inode) if self.unhealthy_templates.contains(&inode) => {
                return Err(format!(
                    "jail {name}: selftest failed on the template (inode {inode})"
                ))
            }
            Some(_) => {}
            None if jail.mount_targets.is_empty() => {}
            None => return Err(format!("jail {name} sees no template at its root")),
        }
        if !jail.healthy {
            return Err(format!("jail {name}: selftest failed"));
        }
        Ok(())
    }

    fn take_fault(&mut self, kind: OperationKind, subject: &str) -> Option<FaultMode> {
        let index = self.faults.iter().position(|fault| {
            fault.kind == kind && fault.subject.as_deref().is_none_or(|s| s == subject)
        })?;
        let mode = self.faults[index].mode;
        if mode == FaultMode::FailOnce {
            self.faults.remove(index);
        }
        Some(mode)
    }

    fn taken(&self, name: &str) -> bool {
        self.templates.contains_key(name) || self.intruders.contains_key(name)
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    /// Checks that `name` is the template `expected`, as a real store opens
    /// it without following links before it moves or copies it.
    fn checked(&self, name: &str, expected: &TemplateId, context: &str) -> HostResult<u64> {
        match (self.templates.get(name), self.intruders.get(name)) {
            (Some(inode), _) if TemplateId::Inode(*inode) == *expected => Ok(*inode),
            (Some(inode), _) => Err(HostError::Failed(format!(
                "{context}: it is no longer the directory recorded before the first stop (expected {expected}, found inode {inode}); it was left untouched"
            ))),
            (None, Some(_)) => Err(HostError::Failed(format!(
                "{context}: it is no longer the directory recorded before the first stop ({expected}) but a link or a file; it was left untouched"
            ))),
            (None, None) => Err(HostError::Failed(format!(
                "{context}: No such file or directory (os error 2)"
            ))),
        }
    }

    fn rename(&mut self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!(
            "cannot rename {from:?} to {to:?} in {:?}",
            self.store.display().to_string()
        );
        let inode = self.checked(from, expected, &context)?;
        if self.taken(to) {
            return Err(HostError::Failed(format!(
                "{context}: File exists (os error 17)"
            )));
        }
        self.templates.remove(from);
        self.templates.insert(to.to_string(), inode);
        Ok(())
    }

    fn move_inside(&mut self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let failed = |why: &str| {
            HostError::Failed(format!(
                "cannot move {from:?} to {to:?} in {:?}: {why}",
                self.store.display().to_string()
            ))
        };
        let (Some((from_name, from_inside)), Some((to_name, to_inside))) =
            (from.split_once('/'), to.split_once('/'))
        else {
            return Err(failed(
                "a template and a path inside one cannot trade places",
            ));
        };
        let (Some(from_template), Some(to_template)) = (
            self.templates.get(from_name).copied(),
            self.templates.get(to_name).copied(),
        ) else {
            return Err(failed("No such file or directory (os error 2)"));
        };
        let Some(inode) = self
            .contents
            .get(&from_template)
            .and_then(|contents| contents.get(from_inside))
            .copied()
        else {
            return Err(failed("No such file or directory (os error 2)"));
        };
        if TemplateId::Inode(inode) != *expected {
            return Err(failed(&format!(
                "it is not the path recorded before the first stop (expected {expected}, found inode {inode}); it was left untouched"
            )));
        }
        if self
            .contents
            .get(&to_template)
            .is_some_and(|contents| contents.contains_key(to_inside))
        {
            return Err(failed("File exists (os error 17)"));
        }
        if let Some(contents) = self.contents.get_mut(&from_template) {
            contents.remove(from_inside);
        }
        self.contents
            .entry(to_template)
            .or_default()
            .insert(to_inside.to_string(), inode);
        Ok(())
    }

    fn copy(&mut self, from: &str, to: &str, expected: &TemplateId) -> HostResult<TemplateId> {
        let context = format!(
            "cannot copy {from:?} to {to:?} in {:?}",
            self.store.display().to_string()
        );
        let source = self.checked(from, expected, &context)?;
        if self.taken(to) {
            return Err(HostError::Failed(format!(
                "{context}: File exists (os error 17)"
            )));
        }
        let copy = self.new_inode();
        let inside: Vec<String> = self
            .contents
            .get(&source)
            .map(|contents| contents.keys().cloned().collect())
            .unwrap_or_default();
        let mut contents = BTreeMap::new();
        for path in inside {
            let inode = self.new_inode();
            contents.insert(path, inode);
        }
        self.contents.insert(copy, contents);
        let links = self.links.get(&source).cloned().unwrap_or_default();
        self.links.insert(copy, links);
        let version = self.versions.get(&source).cloned().unwrap_or_default();
        self.versions.insert(copy, version);
        self.templates.insert(to.to_string(), copy);
        Ok(TemplateId::Inode(copy))
    }

    fn delete(&mut self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        let context = format!(
            "cannot delete {name:?} in {:?}",
            self.store.display().to_string()
        );
        let Some(inode) = self.templates.get(name).copied() else {
            if self.intruders.contains_key(name) {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a template directory"
                )));
            }
            return Ok(());
        };
        if expected.is_some_and(|expected| *expected != TemplateId::Inode(inode)) {
            return Err(HostError::Failed(format!(
                "{context}: it is no longer the template recorded; not deleting it"
            )));
        }
        if self.mounts.iter().any(
            |mount| matches!(mount.source, MountSource::Template { inode: mounted, .. } if mounted == inode),
        ) {
            return Err(HostError::Failed(format!("{context}: Device busy")));
        }
        self.templates.remove(name);
        self.contents.remove(&inode);
        self.links.remove(&inode);
        self.versions.remove(&inode);
        Ok(())
    }

    fn fingerprint(&self, name: &str) -> HostResult<Fingerprint> {
        let Some(inode) = self.templates.get(name) else {
            return Err(HostError::Failed(format!(
                "cannot fingerprint {name:?}: No such file or directory (os error 2)"
            )));
        };
        let contents = self.contents.get(inode).cloned().unwrap_or_default();
        let links = self.links.get(inode).cloned().unwrap_or_default();
        let version = self.versions.get(inode).cloned().unwrap_or_default();
        let text = format!(
            "{version}|{:?}|{links:?}",
            contents.keys().collect::<Vec<_>>()
        );
        Ok(Fingerprint {
            entries: (contents.len() + links.len()) as u64,
            sha256: crate::template::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
        })
    }

    /// A stage command: it changes what the templates it names hold.
    fn command(&mut self, command: &str) -> CommandRun {
        self.commands.push(command.to_string());
        let named: Vec<u64> = self
            .templates
            .iter()
            .filter(|(name, _)| command.contains(&format!("{}/{name}", self.store.display())))
            .map(|(_, inode)| *inode)
            .collect();
        for inode in named {
            self.versions.entry(inode).or_default().push_str("+updated");
        }
        CommandRun {
            status: Some(0),
            timed_out: false,
            output_tail: format!("ran {command}"),
        }
    }

    fn mount(&mut self, spec: &MountSpec) -> HostResult<()> {
        let failed = |why: &str| {
            HostError::Failed(format!(
                "cannot mount {:?} on {:?}: {why}",
                spec.source.display().to_string(),
                spec.target.display().to_string()
            ))
        };
        // A nested mount point is a directory of what is mounted above it.
        let parent = self
            .jails
            .values()
            .flat_map(|jail| jail.mount_targets.iter())
            .filter(|target| *target != &spec.target && spec.target.starts_with(target))
            .max_by_key(|target| target.components().count());
        if let Some(parent) = parent {
            if !self.mounted(parent) {
                return Err(failed("No such file or directory (os error 2)"));
            }
        }
        let source = match spec.source.strip_prefix(&self.store) {
            Ok(relative) => {
                let mut components = relative.components();
                let name = components
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(inode) = self.templates.get(&name).copied() else {
                    return Err(failed("No such file or directory (os error 2)"));
                };
                MountSource::Template {
                    inode,
                    inside: components.as_path().to_path_buf(),
                }
            }
            Err(_) => MountSource::Path(spec.source.clone()),
        };
        self.mounts.push(MountRecord {
            target: spec.target.clone(),
            source,
            read_only: spec.read_only(),
        });
        Ok(())
    }

    fn unmount(&mut self, target: &Path) -> HostResult<()> {
        let shown = target.display().to_string();
        let Some(index) = self.mounts.iter().rposition(|mount| mount.target == target) else {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: Invalid argument (os error 22)"
            )));
        };
        if self
            .mounts
            .iter()
            .any(|mount| mount.target != target && mount.target.starts_with(target))
        {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: device busy (a mount below it)"
            )));
        }
        let holder = self
            .jails
            .iter()
            .find(|(_, jail)| jail.running && jail.mount_targets.iter().any(|t| t == target));
        if let Some((name, _)) = holder {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: device busy (held by jail {name})"
            )));
        }
        self.mounts.remove(index);
        Ok(())
    }

    fn start(&mut self, name: &str) -> HostResult<()> {
        let Some(jail) = self.jails.get(name) else {
            return Err(HostError::Failed(format!("jail {name} does not exist")));
        };
        if jail.running {
            // rc.d/jail says the jail is already running and exits 0.
            return Ok(());
        }
        if let Some(missing) = jail.mount_targets.iter().find(|t| !self.mounted(t)) {
            return Err(HostError::Failed(format!(
                "jail {name}: {:?} is not mounted; /etc/rc not found",
                missing.display().to_string()
            )));
        }
        if let Some(inode) = self.template_seen_by(name) {
            if self.broken_templates.contains(&inode) {
                return Err(HostError::Failed(format!(
                    "jail {name}: /etc/rc failed on the template (inode {inode})"
                )));
            }
        }
        if let Some(jail) = self.jails.get_mut(name) {
            jail.running = true;
        }
        Ok(())
    }
}

/// The simulated host. Cheap to clone: clones share one world.
#[derive(Clone, Debug, Default)]
pub struct SimulatedHost {
    world: Arc<Mutex<World>>,
    store: PathBuf,
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    // A test that panicked while holding the lock leaves a world that is
    // still consistent: every change is applied whole under the lock.
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimulatedHost {
    /// An empty world whose store is `store`.
    pub fn new(store: &Path) -> SimulatedHost {
        let host = SimulatedHost {
            world: Arc::default(),
            store: store.to_path_buf(),
        };
        {
            let mut world = lock(&host.world);
            world.store = store.to_path_buf();
            world.next_inode = 1000;
        }
        host
    }

    /// Adds a directory to the store with the Handbook's `etc -> s/etc`
    /// link and `version` as its contents; returns its inode.
    pub fn add_template(&self, name: &str) -> u64 {
        let mut world = lock(&self.world);
        let inode = world.new_inode();
        world.templates.insert(name.to_string(), inode);
        world.contents.insert(inode, BTreeMap::new());
        world.links.insert(inode, ["etc".to_string()].into());
        world.versions.insert(inode, name.to_string());
        inode
    }

    /// Adds a path inside a template of the store; returns its inode.
    pub fn add_inside(&self, template: &str, relative: &str) -> Option<u64> {
        let mut world = lock(&self.world);
        let template = world.templates.get(template).copied()?;
        let inode = world.new_inode();
        world
            .contents
            .entry(template)
            .or_default()
            .insert(relative.to_string(), inode);
        Some(inode)
    }

    /// Replaces the store entry `name` by hand, as an intruder would: by a
    /// link, a file, or (with `None`) by a new directory. A template that
    /// was there moves to `moved_to` when given, or vanishes (its inode
    /// stays known so that nothing it holds is lost).
    pub fn replace_entry(&self, name: &str, with: Option<Intruder>, moved_to: Option<&str>) -> u64 {
        let mut world = lock(&self.world);
        let previous = world.templates.remove(name);
        world.intruders.remove(name);
        if let (Some(inode), Some(moved_to)) = (previous, moved_to) {
            world.templates.insert(moved_to.to_string(), inode);
        }
        match with {
            Some(intruder) => {
                world.intruders.insert(name.to_string(), intruder);
                0
            }
            None => {
                let inode = world.new_inode();
                world.templates.insert(name.to_string(), inode);
                world.links.insert(inode, ["etc".to_string()].into());
                world.versions.insert(inode, format!("{name} (intruder)"));
                inode
            }
        }
    }

    /// Removes a top-level link from a template (the forgotten `etc -> s/etc`).
    pub fn remove_link(&self, template: &str, link: &str) {
        let mut world = lock(&self.world);
        if let Some(inode) = world.templates.get(template).copied() {
            if let Some(links) = world.links.get_mut(&inode) {
                links.remove(link);
            }
        }
    }

    /// Adds a stopped jail with nothing mounted.
    pub fn add_jail(&self, spec: &JailSpec, data: &str) {
        let mut world = lock(&self.world);
        world.jails.insert(
            spec.name.clone(),
            SimulatedJail {
                path: spec.path.clone(),
                running: false,
                healthy: true,
                has_status: spec.status.is_some(),
                data: data.to_string(),
                mount_targets: spec.mounts.iter().map(|m| m.target.clone()).collect(),
            },
        );
    }

    pub fn set_template_healthy(&self, inode: u64, healthy: bool) {
        let mut world = lock(&self.world);
        if healthy {
            world.unhealthy_templates.remove(&inode);
        } else {
            world.unhealthy_templates.insert(inode);
        }
    }

    pub fn set_template_broken(&self, inode: u64, broken: bool) {
        let mut world = lock(&self.world);
        if broken {
            world.broken_templates.insert(inode);
        } else {
            world.broken_templates.remove(&inode);
        }
    }

    pub fn set_jail_healthy(&self, jail: &str, healthy: bool) {
        if let Some(jail) = lock(&self.world).jails.get_mut(jail) {
            jail.healthy = healthy;
        }
    }

    /// A jail dies (or a reboot did not bring it back): it no longer runs.
    pub fn kill_jail(&self, jail: &str) {
        if let Some(jail) = lock(&self.world).jails.get_mut(jail) {
            jail.running = false;
        }
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.world).faults.push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.world).faults.clear();
    }

    /// Stops the world at `point` of the current process.
    pub fn crash_at(&self, point: CrashPoint) {
        lock(&self.world).crash_at = Some(point);
    }

    /// Where the current process died, if it did.
    pub fn crashed(&self) -> Option<CrashPoint> {
        lock(&self.world).crashed_at
    }

    /// A new process starts: the world stays as the dead one left it (jails
    /// keep running, mounts stay), the count of operations and the log
    /// start again, and no crash is armed.
    pub fn restart(&self) {
        let mut world = lock(&self.world);
        world.operations = 0;
        world.log.clear();
        world.crash_at = None;
        world.crashed_at = None;
    }

    /// How many operations the current process has done.
    pub fn operations(&self) -> u64 {
        lock(&self.world).operations
    }

    /// The numbered operations of the current process.
    pub fn log(&self) -> Vec<String> {
        lock(&self.world).log.clone()
    }

    /// A copy of the whole world.
    pub fn snapshot(&self) -> World {
        lock(&self.world).clone()
    }

    /// A hook for the journal's commits: numbers every commit on the
    /// host's counter and answers `true` where the world stops (the crash
    /// point says so). After a crash every commit answers `true`, as
    /// nothing more may be written. The caller wires it into the journal;
    /// the host itself records nothing.
    pub fn commit_hook(&self) -> Box<dyn FnMut(&'static str, bool) -> bool + Send> {
        let world = Arc::clone(&self.world);
        Box::new(move |name, after| {
            let mut world = lock(&world);
            if world.crashed_at.is_some() {
                return true;
            }
            if !after {
                world.operations += 1;
                let number = world.operations;
                world.log.push(format!("{number} commit {name}"));
            }
            let point = CrashPoint {
                operation: world.operations,
                moment: if after { Moment::After } else { Moment::Before },
            };
            if world.crash_at == Some(point) {
                world.crashed_at = Some(point);
                return true;
            }
            false
        })
    }

    /// Runs one numbered operation: the crash point before it, an injected
    /// fault, its effect, the crash point after it.
    fn operate<T>(
        &self,
        kind: OperationKind,
        subject: &str,
        description: String,
        effect: impl FnOnce(&mut World) -> HostResult<T>,
    ) -> HostResult<T> {
        let mut world = lock(&self.world);
        if world.crashed_at.is_some() {
            return Err(HostError::Crashed);
        }
        world.operations += 1;
        let number = world.operations;
        world.log.push(format!("{number} {description}"));
        let before = CrashPoint {
            operation: number,
            moment: Moment::Before,
        };
        if world.crash_at == Some(before) {
            world.crashed_at = Some(before);
            return Err(HostError::Crashed);
        }
        let timeout = || {
            HostError::Failed(format!(
                "{description}: timed out after 60s (simulated hang)"
            ))
        };
        let fault = world.take_fault(kind, subject);
        if let (Some(mode), Some(line)) = (fault, world.log.last_mut()) {
            line.push_str(&format!(" [fault {mode:?}]"));
        }
        let result = match fault {
            Some(FaultMode::FailOnce | FaultMode::FailAlways) => Err(HostError::Failed(format!(
                "{description}: simulated failure"
            ))),
            Some(FaultMode::Hang) => Err(timeout()),
            Some(FaultMode::HangAfterEffect) => effect(&mut world).and_then(|_| Err(timeout())),
            None => effect(&mut world),
        };
        let after = CrashPoint {
            operation: number,
            moment: Moment::After,
        };
        if world.crash_at == Some(after) {
            world.crashed_at = Some(after);
            return Err(HostError::Crashed);
        }
        result
    }
}

impl Host for SimulatedHost {
    fn store(&self) -> &Path {
        &self.store
    }

    fn store_kind(&self) -> StoreKind {
        StoreKind::Directory
    }

    fn templates(&self) -> HostResult<Vec<Template>> {
        self.operate(
            OperationKind::Inode,
            "",
            "list the templates".to_string(),
            |world| {
                Ok(world
                    .templates
                    .iter()
                    .map(|(name, inode)| Template {
                        name: name.clone(),
                        found: Found {
                            id: TemplateId::Inode(*inode),
                            modified: 0,
                        },
                    })
                    .collect())
            },
        )
    }

    fn examine(&self, relative: &str) -> HostResult<Entry> {
        self.operate(
            OperationKind::Inode,
            relative,
            format!("look at {relative}"),
            |world| {
                if let Some(intruder) = world.intruders.get(relative) {
                    return Ok(match intruder {
                        Intruder::Symlink(_) => Entry::Symlink,
                        Intruder::File => Entry::NotDirectory,
                    });
                }
                Ok(match world.resolve(relative) {
                    Some(inode) => Entry::Directory(Found {
                        id: TemplateId::Inode(inode),
                        modified: 0,
                    }),
                    None => Entry::Absent,
                })
            },
        )
    }

    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        self.operate(
            OperationKind::Inode,
            template,
            format!("list the links of {template}"),
            |world| {
                let Some(inode) = world.templates.get(template) else {
                    return Err(HostError::Failed(format!(
                        "cannot list {template:?}: No such file or directory (os error 2)"
                    )));
                };
                Ok(world
                    .links
                    .get(inode)
                    .map(|links| links.iter().cloned().collect())
                    .unwrap_or_default())
            },
        )
    }

    fn rename_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.operate(
            OperationKind::Rename,
            to,
            format!("rename {from} -> {to}"),
            |world| world.rename(from, to, expected),
        )
    }

    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.operate(
            OperationKind::Carry,
            to,
            format!("rename {from} -> {to}"),
            |world| world.move_inside(from, to, expected),
        )
    }

    fn copy_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<TemplateId> {
        self.operate(
            OperationKind::Copy,
            to,
            format!("copy {from} -> {to}"),
            |world| world.copy(from, to, expected),
        )
    }

    fn delete_template(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        self.operate(
            OperationKind::Delete,
            name,
            format!("delete {name}"),
            |world| world.delete(name, expected),
        )
    }

    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        self.operate(
            OperationKind::Fingerprint,
            template,
            format!("fingerprint {template}"),
            |world| world.fingerprint(template),
        )
    }

    fn template_at(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        self.operate(
            OperationKind::MountTable,
            "",
            format!("look at the template under {}", root.display()),
            |world| Ok(world.template_at(root).map(TemplateId::Inode)),
        )
    }

    fn mount(&self, mount: &MountSpec) -> HostResult<()> {
        let owner = lock(&self.world)
            .owner_of(&mount.target)
            .unwrap_or_default()
            .to_string();
        self.operate(
            OperationKind::Mount,
            &owner,
            format!(
                "mount {} on {}",
                mount.source.display(),
                mount.target.display()
            ),
            |world| world.mount(mount),
        )
    }

    fn unmount(&self, target: &Path) -> HostResult<()> {
        let owner = lock(&self.world)
            .owner_of(target)
            .unwrap_or_default()
            .to_string();
        self.operate(
            OperationKind::Unmount,
            &owner,
            format!("unmount {}", target.display()),
            |world| world.unmount(target),
        )
    }

    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>> {
        self.operate(
            OperationKind::MountTable,
            "",
            "read the mount table".to_string(),
            |world| {
                Ok(world
                    .mounts
                    .iter()
                    .map(|m| (m.target.clone(), m.read_only))
                    .collect())
            },
        )
    }

    fn template_users(&self, template: &str) -> HostResult<Vec<PathBuf>> {
        self.operate(
            OperationKind::VerifyUnused,
            template,
            format!("find the mounts of {template}"),
            |world| {
                let Some(wanted) = world.templates.get(template).copied() else {
                    return Ok(Vec::new());
                };
                Ok(world
                    .mounts
                    .iter()
                    .filter(|m| matches!(m.source, MountSource::Template { inode, .. } if inode == wanted))
                    .map(|m| m.target.clone())
                    .collect())
            },
        )
    }

    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        let name = jail.name.clone();
        self.operate(
            OperationKind::Stop,
            &jail.name,
            format!("stop jail {name}"),
            |world| match world.jails.get_mut(&name) {
                Some(jail) => {
                    jail.running = false;
                    Ok(())
                }
                None => Err(HostError::Failed(format!("jail {name} does not exist"))),
            },
        )
    }

    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        let name = jail.name.clone();
        self.operate(
            OperationKind::Start,
            &jail.name,
            format!("start jail {name}"),
            |world| world.start(&name),
        )
    }

    /// One jail after another, so that crash points come in a fixed order.
    fn jails_running(&self, jails: &[JailSpec], _parallel: usize) -> Vec<HostResult<Option<bool>>> {
        jails
            .iter()
            .map(|jail| {
                let name = jail.name.clone();
                self.operate(
                    OperationKind::Status,
                    &jail.name,
                    format!("status of jail {name}"),
                    |world| match world.jails.get(&name) {
                        Some(jail) if jail.has_status => Ok(Some(jail.running)),
                        Some(_) => Ok(None),
                        None => Err(HostError::Failed(format!("jail {name} does not exist"))),
                    },
                )
            })
            .collect()
    }

    fn run_command(
        &self,
        command: &str,
        _environment: &[(&str, &str)],
        _timeout: Duration,
    ) -> HostResult<CommandRun> {
        let result = self.operate(
            OperationKind::Command,
            "",
            format!("run `{command}`"),
            |world| Ok(world.command(command)),
        );
        // A command that fails or hangs is an outcome of the command, not
        // a failure to run it: it exits non-zero or times out.
        match result {
            Err(HostError::Failed(message)) => Ok(CommandRun {
                status: (!message.contains("timed out")).then_some(1),
                timed_out: message.contains("timed out"),
                output_tail: message,
            }),
            other => other,
        }
    }

    fn probe(
        &self,
        jail: &JailSpec,
        check: &HealthCheck,
        _timeout: Duration,
    ) -> Result<(), String> {
        let mut world = lock(&self.world);
        if world.crashed_at.is_some() {
            return Err("simulated crash".to_string());
        }
        let description = format!("{} of jail {}", check.describe(), jail.name);
        match world.take_fault(OperationKind::Health, &jail.name) {
            Some(FaultMode::FailOnce | FaultMode::FailAlways) => {
                Err(format!("{description}: simulated failure"))
            }
            Some(FaultMode::Hang | FaultMode::HangAfterEffect) => {
                Err(format!("{description}: timed out (simulated hang)"))
            }
            None => world.health(&jail.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "/home/j";

    fn jail(name: &str, status: bool) -> JailSpec {
        let path = PathBuf::from(format!("/jails/{name}"));
        let mount = |source: String, target: PathBuf, option: &str| MountSpec {
            source: PathBuf::from(source),
            target,
            fstype: "nullfs".to_string(),
            options: vec![option.to_string()],
        };
        JailSpec {
            name: name.to_string(),
            path: path.clone(),
            fstab: None,
            mounts: vec![
                mount(format!("{STORE}/mroot"), path.clone(), "ro"),
                mount(format!("/data/{name}"), path.join("s"), "rw"),
            ],
            depends: Vec::new(),
            start: String::new(),
            stop: String::new(),
            status: status.then(String::new),
            timeout_ms: 1000,
            health: vec![HealthCheck::Cmd {
                command: "selftest".to_string(),
            }],
            health_timeout_ms: 1,
            health_interval_ms: 1,
        }
    }

    /// A world with `mroot` (and `usr/ports` in it), `mroot.new`, and one
    /// jail mounted and running.
    fn world() -> (SimulatedHost, JailSpec, u64, u64) {
        let host = SimulatedHost::new(Path::new(STORE));
        let live = host.add_template("mroot");
        let new = host.add_template("mroot.new");
        host.add_inside("mroot", "usr/ports");
        let web = jail("web", true);
        host.add_jail(&web, "data");
        for mount in &web.mounts {
            host.mount(mount).unwrap();
        }
        host.start_jail(&web).unwrap();
        host.restart();
        (host, web, live, new)
    }

    fn check(jail: &JailSpec) -> HealthCheck {
        jail.health[0].clone()
    }

    // Unmounts are refused while a jail runs or a mount lies below, as EBUSY.
    #[test]
    fn running_jails_and_nested_mounts_are_busy() {
        let (host, web, _, _) = world();
        let error = host.unmount(&web.mounts[1].target).unwrap_err();
        assert!(error.to_string().contains("held by jail web"), "{error}");
        host.stop_jail(&web).unwrap();
        let error = host.unmount(&web.mounts[0].target).unwrap_err();
        assert!(error.to_string().contains("a mount below it"), "{error}");
        host.unmount(&web.mounts[1].target).unwrap();
        host.unmount(&web.mounts[0].target).unwrap();
        assert!(host.mount_points().unwrap().is_empty());
        assert!(host.unmount(&web.mounts[0].target).is_err());
        // The jail's data directory lives in the template: no parent, no mount.
        assert!(host.mount(&web.mounts[1]).is_err());
        assert!(host.start_jail(&web).is_err());
    }

    // A mount binds the template's inode, whatever its name becomes, and
    // mounting twice stacks two mounts.
    #[test]
    fn mounts_follow_the_inode_and_stack() {
        let (host, web, live, _) = world();
        host.rename_template("mroot", "mroot.old", &TemplateId::Inode(live))
            .unwrap();
        assert_eq!(host.snapshot().template_seen_by("web"), Some(live));
        assert_eq!(
            host.template_at(&web.path).unwrap(),
            Some(TemplateId::Inode(live))
        );
        assert_eq!(host.template_users("mroot.old").unwrap().len(), 1);
        assert!(host.template_users("mroot").unwrap().is_empty());
        host.mount(&web.mounts[1]).unwrap();
        assert_eq!(host.snapshot().mounts.len(), 3);
        assert_eq!(host.mount_table().unwrap().get(&web.path), Some(&true));
    }

    fn id(entry: Entry) -> Option<TemplateId> {
        entry.found().map(|found| found.id.clone())
    }

    // Renames never replace, refuse an entry that is not the one expected
    // (left where it is), and paths inside templates move between them.
    #[test]
    fn renames_refuse_to_replace() {
        let (host, _, live, new) = world();
        let (live_id, new_id) = (TemplateId::Inode(live), TemplateId::Inode(new));
        assert!(host.rename_template("mroot.new", "mroot", &new_id).is_err());
        assert!(host.rename_template("absent", "other", &new_id).is_err());
        assert!(host
            .rename_template("mroot.new", "other", &live_id)
            .is_err());
        assert_eq!(id(host.examine("mroot.new").unwrap()), Some(new_id.clone()));
        let carried = id(host.examine("mroot/usr/ports").unwrap()).unwrap();
        host.move_inside("mroot/usr/ports", "mroot.new/usr/ports", &carried)
            .unwrap();
        assert_eq!(host.examine("mroot/usr/ports").unwrap(), Entry::Absent);
        assert_eq!(
            id(host.examine("mroot.new/usr/ports").unwrap()),
            Some(carried)
        );
        assert_eq!(id(host.examine("mroot").unwrap()), Some(live_id));
        // An intruder where the staged template was is refused and stays.
        host.replace_entry(
            "mroot.new",
            Some(Intruder::Symlink("/elsewhere".into())),
            Some("moved"),
        );
        assert_eq!(host.examine("mroot.new").unwrap(), Entry::Symlink);
        let error = host.rename_template("mroot.new", "x", &new_id).unwrap_err();
        assert!(error.to_string().contains("left untouched"), "{error}");
        assert_eq!(host.snapshot().templates.get("moved"), Some(&new));
    }

    // A copy is a new template with the same contents and fingerprint; a
    // stage command naming it changes its fingerprint; delete removes it.
    #[test]
    fn copies_fingerprints_and_deletes() {
        let (host, _, live, _) = world();
        let live_id = TemplateId::Inode(live);
        let copy = host.copy_template("mroot", ".stage", &live_id).unwrap();
        assert_ne!(copy, live_id);
        assert_eq!(
            host.fingerprint(".stage").unwrap(),
            host.fingerprint("mroot").unwrap()
        );
        assert_eq!(host.top_level_symlinks(".stage").unwrap(), ["etc"]);
        let run = host
            .run_command(
                &format!("pkg -r {STORE}/.stage upgrade"),
                &[],
                Duration::ZERO,
            )
            .unwrap();
        assert!(run.success());
        assert_ne!(
            host.fingerprint(".stage").unwrap(),
            host.fingerprint("mroot").unwrap()
        );
        assert!(host.delete_template(".stage", Some(&live_id)).is_err());
        host.delete_template(".stage", Some(&copy)).unwrap();
        assert_eq!(host.examine(".stage").unwrap(), Entry::Absent);
        // The live template is mounted: it cannot be deleted.
        assert!(host.delete_template("mroot", None).is_err());
    }

    // A crash before an operation leaves no effect, after it the effect;
    // either way the process is dead until it restarts, journal included.
    #[test]
    fn crashes_stop_the_world_before_or_after_the_effect() {
        for moment in [Moment::Before, Moment::After] {
            let (host, web, _, _) = world();
            let mut hook = host.commit_hook();
            assert!(!hook("begin", false));
            assert!(!hook("begin", true));
            let point = CrashPoint {
                operation: 2,
                moment,
            };
            host.crash_at(point);
            assert_eq!(host.stop_jail(&web), Err(HostError::Crashed));
            assert_eq!(host.crashed(), Some(point));
            let running = host.snapshot().jails["web"].running;
            assert_eq!(running, moment == Moment::Before);
            assert_eq!(host.jail_running(&web), Err(HostError::Crashed));
            assert!(hook("intent", false));
            assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
            assert_eq!(host.operations(), 2);
            host.restart();
            assert_eq!(host.jail_running(&web), Ok(Some(running)));
            assert_eq!(host.log(), vec!["1 status of jail web".to_string()]);
        }
        // A commit is numbered once; its crash point after means committed.
        let (host, _, _, _) = world();
        host.crash_at(CrashPoint {
            operation: 1,
            moment: Moment::After,
        });
        let mut hook = host.commit_hook();
        assert!(!hook("begin", false));
        assert!(hook("begin", true));
    }

    // Faults fail once, always, or hang before or after the effect.
    #[test]
    fn faults_fail_hang_and_can_take_effect() {
        let (host, web, _, _) = world();
        let fault = |mode| Fault {
            kind: OperationKind::Stop,
            subject: Some("web".to_string()),
            mode,
        };
        host.inject(fault(FaultMode::FailOnce));
        assert!(host.stop_jail(&web).is_err());
        assert!(host.snapshot().jails["web"].running);
        host.inject(fault(FaultMode::HangAfterEffect));
        let error = host.stop_jail(&web).unwrap_err();
        assert!(error.to_string().contains("timed out"), "{error}");
        assert!(!host.snapshot().jails["web"].running);
        host.clear_faults();
        host.inject(Fault {
            kind: OperationKind::Start,
            subject: Some("db".to_string()),
            mode: FaultMode::FailAlways,
        });
        host.start_jail(&web).unwrap();
        assert!(host.log()[1].ends_with("[fault HangAfterEffect]"));
    }

    // Health follows the jail and its template; a broken template does not start.
    #[test]
    fn health_and_starts_depend_on_the_template() {
        let (host, web, live, _) = world();
        assert_eq!(host.probe(&web, &check(&web), Duration::ZERO), Ok(()));
        host.set_template_healthy(live, false);
        assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
        host.set_template_healthy(live, true);
        host.set_jail_healthy("web", false);
        assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
        host.set_jail_healthy("web", true);
        host.set_template_broken(live, true);
        host.stop_jail(&web).unwrap();
        assert!(host.start_jail(&web).is_err());
        assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
        let silent = jail("quiet", false);
        host.add_jail(&silent, "data");
        assert_eq!(host.jail_running(&silent), Ok(None));
        // Probes take no number: their count depends on the clock.
        let before = host.operations();
        let _ = host.probe(&web, &check(&web), Duration::ZERO);
        assert_eq!(host.operations(), before);
    }
}
