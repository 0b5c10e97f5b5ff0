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

mod operations;
mod world;

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
    pub(super) next_inode: u64,
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
    pub(super) fn operate<T>(
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

#[cfg(test)]
mod tests;
