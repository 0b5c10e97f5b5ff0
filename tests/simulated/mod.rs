//! The simulated bench shared by the crash enumerations: a simulated host
//! with its configuration and journal (a real SQLite file), brought up with
//! every jail mounted and running, the production orchestration and
//! recovery run on it as separate processes would run them, and the whole
//! invariant of SPEC.md checked after each.
//!
//! It is long because it holds both invariants (the whole one, and the
//! paused one of a rolling upgrade) beside the bench they read.

#![allow(dead_code)]

use jailswap::config::Batches;
use jailswap::config::Config;
use jailswap::error::Error;
use jailswap::executor::{Direction, Outcome};
use jailswap::host::simulated::{CrashPoint, Moment, MountRecord, MountSource, SimulatedHost};
use jailswap::host::Host;
use jailswap::journal::Fault as JournalFault;
use jailswap::journal::{Journal, TxnState};
use jailswap::output::Reporter;
use jailswap::plan::TransactionKind;
use jailswap::recover::{self, RecoverError};
use jailswap::transaction::{self, Finished, Swap as Request};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const LIVE: &str = "mroot";
pub const OLD_NAME: &str = "mroot.20240601";
pub const NEW_NAME: &str = "mroot.20240701";
pub const CARRY: &str = "usr/ports";
/// The directories every template holds: a jail's data mounts at `s`, and
/// the carried path goes into `usr`.
pub const INSIDE: [&str; 2] = ["s", "usr"];
/// The jails and what each depends on: `web` needs `db`, `mail` is alone.
pub const JAILS: [(&str, &[&str]); 3] = [("db", &[]), ("web", &["db"]), ("mail", &[])];
/// The jail without a status command.
pub const UNOBSERVABLE_JAIL: &str = "mail";
/// No process may run this many operations: a recovery that does is looping.
pub const OPERATION_LIMIT: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// An upgrade onto a healthy template: it commits.
    Upgrade,
    /// An upgrade onto a template on which no jail starts: it rolls back
    /// after the swap, so its crash points include those of a rollback.
    FailingUpgrade,
    /// After a committed upgrade, a second transaction that goes back.
    Rollback,
}

/// The transaction under test, with the inodes it moves.
#[derive(Clone, Debug)]
pub struct Swap {
    pub kind: TransactionKind,
    pub target: String,
    pub archive_as: String,
    pub from_inode: u64,
    pub to_inode: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrangement {
    /// Live is the old template, the target is staged under its name.
    Old,
    /// Live is the new template, the old one is archived.
    New,
}

/// What one process left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Finished(Outcome),
    NothingPending,
    Crashed(CrashPoint),
}

/// The crash points that led to the present state, for failure messages.
#[derive(Clone, Debug)]
pub struct Replay {
    pub scenario: Scenario,
    pub phases: Vec<String>,
}

impl Replay {
    pub fn new(scenario: Scenario) -> Replay {
        Replay {
            scenario,
            phases: Vec::new(),
        }
    }
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}", self.scenario)?;
        for phase in &self.phases {
            write!(f, " | {phase}")?;
        }
        write!(f, "]")
    }
}

/// One simulated host with its configuration and journal, brought up with
/// every jail mounted and running on the old template.
pub struct Bench {
    // Held so that the directory lives as long as the bench.
    pub _directory: tempfile::TempDir,
    pub scenario: Scenario,
    pub config: Config,
    pub host: SimulatedHost,
    pub journal_path: PathBuf,
    pub carry_inode: u64,
    pub data: BTreeMap<String, String>,
    pub swap: Swap,
    /// Batch sizes and pause for a rolling transaction; `None` is all at once.
    pub rolling: Option<(Batches, Option<u32>)>,
    /// Journal writes made to fail, for the processes started from now on.
    pub journal_faults: Arc<Mutex<JournalFaults>>,
}

/// Which journal commits fail, and how: the `nth` commit of each process
/// (counted from 1, before the commit), once or from then on.
#[derive(Clone, Debug, Default)]
pub struct JournalFaults {
    pub nth: Option<u64>,
    pub fault: Option<JournalFault>,
    pub always: bool,
    /// Commits of the current process so far.
    pub count: u64,
    /// Whether the fault was injected at least once.
    pub injected: bool,
}

pub fn scratch_directory() -> tempfile::TempDir {
    // The journal commits with synchronous=FULL: on tmpfs an fsync is free,
    // which keeps thousands of runs fast.
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("jailswap-crash-");
        builder
    };
    let shared_memory = Path::new("/dev/shm");
    if shared_memory.is_dir() {
        if let Ok(directory) = builder.tempdir_in(shared_memory) {
            return directory;
        }
    }
    builder
        .tempdir()
        .expect("cannot create a temporary directory")
}

impl Bench {
    pub fn new(scenario: Scenario) -> Bench {
        let directory = scratch_directory();
        let root = directory.path();
        let store = root.join("store");
        std::fs::create_dir_all(&store).expect("cannot create the store");
        let mut text = format!(
            "store = {store:?}\nlive = {LIVE:?}\njournal = {:?}\nparallel = 1\ncarry = [{CARRY:?}]\n\
             [defaults]\nstart = \"true\"\nstop = \"true\"\ntimeout = \"1s\"\n\
             [health]\ntimeout = \"100ms\"\ninterval = \"10ms\"\n",
            root.join("journal").join("journal.sqlite")
        );
        for (name, depends) in JAILS {
            let fstab = root.join(format!("fstab.{name}"));
            let jail_path = root.join("jails").join(name);
            std::fs::write(
                &fstab,
                format!(
                    "{} {} nullfs ro 0 0\n{} {} nullfs rw 0 0\n",
                    store.join(LIVE).display(),
                    jail_path.display(),
                    root.join("data").join(name).display(),
                    jail_path.join("s").display()
                ),
            )
            .expect("cannot write an fstab");
            // `mail` has no status command, so recovery cannot see whether
            // it runs and must rely on idempotent starts and stops.
            let status = if name == UNOBSERVABLE_JAIL {
                ""
            } else {
                "status = \"true\"\n"
            };
            text.push_str(&format!(
                "[[jail]]\nname = {name:?}\npath = {jail_path:?}\nfstab = {fstab:?}\ndepends = {depends:?}\n{status}\
                 [[jail.health]]\ncmd = \"selftest ${{name}}\"\n"
            ));
        }
        let config = Config::parse(&text, &root.join("jailswap.toml"))
            .unwrap_or_else(|error| panic!("the test configuration is invalid: {error}\n{text}"));

        let host = SimulatedHost::new(&config.store);
        let old_inode = host.add_template(LIVE);
        let new_inode = host.add_template(NEW_NAME);
        for template in [LIVE, NEW_NAME] {
            for inside in INSIDE {
                host.add_inside(template, inside);
            }
        }
        let carry_inode = host
            .add_inside(LIVE, CARRY)
            .expect("the live template exists");
        let mut data = BTreeMap::new();
        for jail in &config.jails {
            let value = format!("data of {}", jail.name);
            host.add_jail(jail, &value);
            data.insert(jail.name.clone(), value);
        }
        for jail in &config.jails {
            for mount in &jail.mounts {
                host.mount(mount).expect("the first mounts succeed");
            }
        }
        for jail in &config.jails {
            host.start_jail(jail).expect("the jails start");
        }
        host.restart();

        let upgrade = Swap {
            kind: TransactionKind::Upgrade,
            target: NEW_NAME.to_string(),
            archive_as: OLD_NAME.to_string(),
            from_inode: old_inode,
            to_inode: new_inode,
        };
        let mut bench = Bench {
            _directory: directory,
            scenario,
            journal_path: config.journal.clone(),
            config,
            host,
            carry_inode,
            data,
            swap: upgrade.clone(),
            rolling: None,
            journal_faults: Arc::default(),
        };
        match scenario {
            Scenario::Upgrade => {}
            Scenario::FailingUpgrade => bench.host.set_template_broken(new_inode, true),
            Scenario::Rollback => {
                let outcome = bench.transact(&upgrade);
                assert!(
                    matches!(outcome, Ok(Outcome::Committed)),
                    "the upgrade before the rollback must commit: {outcome:?}"
                );
                bench.host.restart();
                bench.swap = Swap {
                    kind: TransactionKind::Rollback,
                    target: OLD_NAME.to_string(),
                    archive_as: NEW_NAME.to_string(),
                    from_inode: new_inode,
                    to_inode: old_inode,
                };
            }
        }
        bench
    }

    pub fn journal(&self) -> Result<Journal, Error> {
        let mut journal = Journal::open(&self.journal_path)?;
        let mut crash = self.host.commit_hook();
        let faults = Arc::clone(&self.journal_faults);
        if let Ok(mut faults) = faults.lock() {
            faults.count = 0;
        }
        journal.set_fault_hook(Some(Box::new(move |name, after| {
            if crash(name, after) {
                return Some(JournalFault::Crash);
            }
            if after {
                return None;
            }
            let mut faults = faults.lock().ok()?;
            faults.count += 1;
            let nth = faults.nth?;
            let hit = faults.count == nth || (faults.always && faults.count > nth);
            if hit {
                faults.injected = true;
            }
            hit.then_some(faults.fault?)
        })));
        Ok(journal)
    }

    /// One process running `jailswap upgrade` or `jailswap rollback`, as
    /// the command does: the production orchestration on this host.
    pub fn transact(&self, swap: &Swap) -> Result<Outcome, Error> {
        let mut journal = self.journal()?;
        let request = Request {
            kind: swap.kind,
            to: (swap.kind == TransactionKind::Upgrade).then(|| swap.target.clone()),
            archive_as: (swap.kind == TransactionKind::Upgrade).then(|| swap.archive_as.clone()),
            force: false,
            adopt: false,
            reason: None,
            rolling: self.rolling.clone(),
        };
        let reporter = Reporter::new(true);
        let interrupted = AtomicBool::new(false);
        match transaction::swap(
            &self.host,
            &self.config,
            &mut journal,
            &request,
            false,
            &reporter,
            &interrupted,
        )? {
            Finished::Done { outcome, .. } => Ok(outcome),
            Finished::Planned(_) => Err(Error::Internal("not a dry run".into())),
        }
    }

    /// One process running `jailswap recover`; `None` when nothing is pending.
    pub fn recover(&self, chosen: Option<Direction>) -> Result<Option<Outcome>, Error> {
        let mut journal = self.journal()?;
        let Some(pending) = journal.pending()? else {
            return Ok(None);
        };
        let reporter = Reporter::new(true);
        let interrupted = AtomicBool::new(false);
        match recover::recover(
            &self.host,
            &mut journal,
            &pending,
            chosen,
            &reporter,
            &interrupted,
        ) {
            Ok(outcome) => Ok(Some(outcome)),
            Err(RecoverError::Journal(error)) => Err(error.into()),
            Err(RecoverError::Crash) => Err(Error::Internal("simulated crash".into())),
        }
    }

    /// Classifies how a process ended; an error that is not a crash is a
    /// failure of the test.
    pub fn end<T: Into<Option<Outcome>>>(
        &self,
        result: Result<T, Error>,
        replay: &Replay,
        phase: &str,
    ) -> End {
        if let Some(point) = self.host.crashed() {
            return End::Crashed(point);
        }
        let operations = self.host.operations();
        assert!(
            operations < OPERATION_LIMIT,
            "{replay} | {phase}: one process ran {operations} operations: it loops"
        );
        match result {
            Ok(outcome) => match outcome.into() {
                Some(outcome) => End::Finished(outcome),
                None => End::NothingPending,
            },
            Err(error) => {
                panic!("{replay} | {phase}: the process failed without a crash: {error}")
            }
        }
    }

    /// Runs the transaction under test as one process, crashing at `point`.
    pub fn transact_crashing(&self, point: Option<CrashPoint>, replay: &mut Replay) -> End {
        self.host.restart();
        if let Some(point) = point {
            self.host.crash_at(point);
        }
        let result = self.transact(&self.swap);
        let end = self.end(
            result,
            replay,
            &format!("transaction to crash at {point:?}"),
        );
        replay.phases.push(self.describe("transaction", end));
        end
    }

    /// Runs one recovery as a new process, crashing at `point`.
    pub fn recover_crashing(
        &self,
        point: Option<CrashPoint>,
        chosen: Option<Direction>,
        replay: &mut Replay,
    ) -> End {
        self.host.restart();
        if let Some(point) = point {
            self.host.crash_at(point);
        }
        let result = self.recover(chosen);
        let end = self.end(result, replay, &format!("recovery to crash at {point:?}"));
        replay.phases.push(self.describe("recovery", end));
        end
    }

    /// How a process ended, naming the operation it died at.
    pub fn describe(&self, phase: &str, end: End) -> String {
        match end {
            End::Crashed(point) => {
                let log = self.host.log();
                let operation = usize::try_from(point.operation)
                    .ok()
                    .and_then(|n| log.get(n.wrapping_sub(1)))
                    .cloned()
                    .unwrap_or_default();
                format!("{phase} crashed at {point} `{operation}`")
            }
            End::Finished(outcome) => format!("{phase} ended {}", outcome.as_str()),
            End::NothingPending => format!("{phase} found nothing pending"),
        }
    }

    /// Checks the whole invariant of SPEC.md; `last` is the outcome the
    /// last process reported, if it reported one.
    pub fn invariant(&self, last: Option<Outcome>) -> Result<Arrangement, String> {
        let journal = Journal::open_read(&self.journal_path)
            .map_err(|error| format!("cannot read the journal: {error}"))?;
        // No journal file: no process got as far as opening it.
        let pending = match &journal {
            Some(journal) => journal.pending().map_err(|e| e.to_string())?,
            None => None,
        };
        if let Some(pending) = pending {
            return Err(format!(
                "transaction {} is still pending ({}): {}",
                pending.id,
                pending.state.as_str(),
                pending.attention.unwrap_or_default()
            ));
        }
        let swap = &self.swap;
        let history = match &journal {
            Some(journal) => journal.history(None).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let record = history.into_iter().find(|record| {
            record.kind == swap.kind
                && record.target == swap.target
                && record.archive_as == swap.archive_as
        });
        let arrangement = match record.as_ref().map(|record| record.state) {
            None => Arrangement::Old,
            Some(TxnState::Committed) => Arrangement::New,
            Some(TxnState::RolledBack) => Arrangement::Old,
            Some(other) => return Err(format!("the transaction ended {}", other.as_str())),
        };
        match last {
            Some(Outcome::Committed) if arrangement != Arrangement::New => {
                return Err("the outcome is committed but the journal says otherwise".into())
            }
            Some(Outcome::RolledBack) if arrangement != Arrangement::Old => {
                return Err("the outcome is rolled_back but the journal says otherwise".into())
            }
            Some(Outcome::NeedsOperator) => return Err("the outcome is needs_operator".into()),
            _ => {}
        }
        self.world_invariant(arrangement)?;
        Ok(arrangement)
    }

    /// The host's half of the invariant, whatever the journal says: the
    /// store holds exactly `arrangement`, the carried path sits in the live
    /// template, each jail's mounts are exactly its fstab on the live
    /// template (read-only), every jail runs healthy on it, no data changed.
    pub fn world_invariant(&self, arrangement: Arrangement) -> Result<(), String> {
        let swap = &self.swap;
        let world = self.host.snapshot();
        let (live_inode, other_name, other_inode) = match arrangement {
            Arrangement::Old => (swap.from_inode, &swap.target, swap.to_inode),
            Arrangement::New => (swap.to_inode, &swap.archive_as, swap.from_inode),
        };
        let expected_store: BTreeMap<String, u64> = [
            (LIVE.to_string(), live_inode),
            (other_name.clone(), other_inode),
        ]
        .into_iter()
        .collect();
        if world.templates != expected_store {
            return Err(format!(
                "the journal says {arrangement:?} arrangement, so the store must hold {expected_store:?}, but it holds {:?}",
                world.templates
            ));
        }
        for (inode, contents) in &world.contents {
            let mut names: Vec<&str> = INSIDE.to_vec();
            if *inode == live_inode {
                names.push(CARRY);
            }
            let found: Vec<&str> = contents.keys().map(String::as_str).collect();
            let carried = contents.get(CARRY).copied();
            let expected_carry = (*inode == live_inode).then_some(self.carry_inode);
            names.sort_unstable();
            if found != names || carried != expected_carry {
                let expected = names;
                return Err(format!(
                    "template inode {inode} holds {contents:?}, expected {expected:?} (the carried path belongs in the live template, inode {live_inode})"
                ));
            }
        }

        let mut expected_mounts = Vec::new();
        for jail in &self.config.jails {
            for mount in &jail.mounts {
                let source = match mount.source.strip_prefix(&self.config.store) {
                    Ok(relative) => MountSource::Template {
                        inode: live_inode,
                        inside: relative
                            .strip_prefix(LIVE)
                            .map(Path::to_path_buf)
                            .unwrap_or_else(|_| relative.to_path_buf()),
                    },
                    Err(_) => MountSource::Path(mount.source.clone()),
                };
                expected_mounts.push(MountRecord {
                    target: mount.target.clone(),
                    source,
                    read_only: mount.read_only(),
                });
            }
        }
        expected_mounts.sort();
        let mut mounts = world.mounts.clone();
        mounts.sort();
        if mounts != expected_mounts {
            return Err(format!(
                "the mount table is {mounts:#?}, expected exactly the fstabs on the live template: {expected_mounts:#?}"
            ));
        }
        if let Some(writable) = mounts
            .iter()
            .find(|mount| matches!(mount.source, MountSource::Template { .. }) && !mount.read_only)
        {
            return Err(format!("the template is mounted read-write: {writable:?}"));
        }

        for jail in &self.config.jails {
            let Some(simulated) = world.jails.get(&jail.name) else {
                return Err(format!("jail {} vanished", jail.name));
            };
            if !simulated.running {
                return Err(format!("jail {} is not running", jail.name));
            }
            if world.template_seen_by(&jail.name) != Some(live_inode) {
                return Err(format!(
                    "jail {} runs on {:?}, not on the live template {live_inode}",
                    jail.name,
                    world.template_seen_by(&jail.name)
                ));
            }
            if Some(&simulated.data) != self.data.get(&jail.name) {
                return Err(format!(
                    "the data of jail {} changed: {:?}",
                    jail.name, simulated.data
                ));
            }
            for check in &jail.health {
                self.host
                    .probe(jail, check, Duration::from_millis(1))
                    .map_err(|error| format!("jail {} is not healthy: {error}", jail.name))?;
            }
        }
        Ok(())
    }

    /// What must hold even when a transaction waits for the operator: no
    /// template, carried path or per-jail data was deleted.
    pub fn nothing_deleted(&self) -> Result<(), String> {
        let world = self.host.snapshot();
        let mut inodes: Vec<u64> = world.templates.values().copied().collect();
        inodes.sort_unstable();
        let mut expected = vec![self.swap.from_inode, self.swap.to_inode];
        expected.sort_unstable();
        if inodes != expected {
            return Err(format!(
                "the store holds {:?}, expected both templates {expected:?}",
                world.templates
            ));
        }
        let carried = world
            .contents
            .values()
            .filter(|contents| contents.get(CARRY) == Some(&self.carry_inode))
            .count();
        if carried != 1 {
            return Err(format!("the carried path is lost: {:?}", world.contents));
        }
        for (name, value) in &self.data {
            if world.jails.get(name).map(|jail| &jail.data) != Some(value) {
                return Err(format!("the data of jail {name} changed"));
            }
        }
        Ok(())
    }

    /// The arrangement recovery must reach from the world as it is now,
    /// without faults: the swap is the point of no return, so the new one
    /// once the target is live, unless no jail can start on it.
    pub fn decided_arrangement(&self) -> Arrangement {
        let swapped = self.host.snapshot().templates.get(LIVE) == Some(&self.swap.to_inode);
        if swapped && self.scenario != Scenario::FailingUpgrade {
            Arrangement::New
        } else {
            Arrangement::Old
        }
    }

    /// Asserts the invariant, with the replay in the message.
    pub fn assert_invariant(&self, last: Option<Outcome>, replay: &Replay) -> Arrangement {
        self.invariant(last)
            .unwrap_or_else(|violation| panic!("{replay}: invariant violated: {violation}"))
    }
}

pub fn outcome_of(end: End) -> Option<Outcome> {
    match end {
        End::Finished(outcome) => Some(outcome),
        _ => None,
    }
}

/// The number of operations of a transaction that nothing interrupts, with
/// its outcome and its log.
pub fn clean_run(scenario: Scenario) -> (u64, Outcome, Vec<String>) {
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    let end = bench.transact_crashing(None, &mut replay);
    let End::Finished(outcome) = end else {
        panic!("{replay}: a clean run must finish");
    };
    bench.assert_invariant(Some(outcome), &replay);
    (bench.host.operations(), outcome, bench.host.log())
}

pub fn every_point(operations: u64) -> impl Iterator<Item = CrashPoint> {
    (1..=operations).flat_map(|operation| {
        [Moment::Before, Moment::After]
            .into_iter()
            .map(move |moment| CrashPoint { operation, moment })
    })
}

/// The operation numbers of a log whose description satisfies `wanted`.
pub fn operations_where(log: &[String], wanted: impl Fn(&str) -> bool) -> Vec<u64> {
    log.iter()
        .filter_map(|line| {
            let (number, description) = line.split_once(' ')?;
            wanted(description).then(|| number.parse().ok()).flatten()
        })
        .collect()
}

/// A paused rolling transaction as the journal records it: which jails
/// moved to the new template, which did not, and after which batch it
/// paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PausedState {
    pub id: i64,
    pub paused_after: u32,
    pub moved: Vec<String>,
    pub unmoved: Vec<String>,
}

impl Bench {
    /// A bench whose transaction restarts the jails a batch at a time.
    pub fn rolling(scenario: Scenario, sizes: &str, pause_after: Option<u32>) -> Bench {
        let mut bench = Bench::new(scenario);
        let batches = Batches::parse(sizes)
            .unwrap_or_else(|error| panic!("the test's batch sizes {sizes:?}: {error}"));
        bench.rolling = Some((batches, pause_after));
        bench
    }

    /// The invariant of a paused rolling transaction (SPEC.md, "Invariant"):
    /// the transaction is pending as `paused`; the store holds the new
    /// arrangement with the carried path in the live template; every step
    /// of each jail is either done (the jail moved; its health checks may be
    /// set to run again) or planned (it did not), and the jails that moved
    /// are exactly those of the batches up to the pause; each jail's mounts are exactly its fstab, the template
    /// read-only, on the template the journal records for it (the new one
    /// when it moved, the archived one otherwise); every jail runs, healthy,
    /// on that template; per-jail data is unchanged.
    pub fn paused_invariant(&self) -> Result<PausedState, String> {
        let journal = Journal::open_read(&self.journal_path)
            .map_err(|error| format!("cannot read the journal: {error}"))?
            .ok_or("there is no journal")?;
        let pending = journal
            .pending()
            .map_err(|e| e.to_string())?
            .ok_or("nothing is pending, but the transaction must be paused")?;
        if pending.state != TxnState::Paused {
            return Err(format!(
                "transaction {} is {}, not paused: {}",
                pending.id,
                pending.state.as_str(),
                pending.attention.unwrap_or_default()
            ));
        }
        let plan = pending.plan()?;
        let jailswap::plan::Strategy::Rolling {
            batches,
            pause_after: Some(pause),
        } = plan.strategy
        else {
            return Err(format!(
                "a paused transaction must be rolling with a pause: {:?}",
                plan.strategy
            ));
        };
        if pause >= batches {
            return Err(format!("paused after batch {pause} of {batches}"));
        }
        let steps = journal.steps(pending.id).map_err(|e| e.to_string())?;
        let mut moved = Vec::new();
        let mut unmoved = Vec::new();
        for jail in &self.config.jails {
            let forward: Vec<_> = steps
                .iter()
                .filter(|step| {
                    step.phase == jailswap::plan::Phase::Forward
                        && step.action.jail() == Some(jail.name.as_str())
                })
                .collect();
            let batch = forward.first().and_then(|step| step.batch);
            // A recovery that began to resume and was interrupted may have
            // set the moved jails' health checks to run again.
            let done = forward.iter().all(|step| {
                step.state == jailswap::journal::StepState::Done
                    || (step.state == jailswap::journal::StepState::Planned
                        && matches!(step.action, jailswap::plan::Action::Health { .. }))
            }) && forward
                .iter()
                .any(|step| step.state == jailswap::journal::StepState::Done);
            let planned = forward
                .iter()
                .all(|step| step.state == jailswap::journal::StepState::Planned);
            let in_paused_batches = batch.is_some_and(|batch| batch <= pause);
            match (done, planned, in_paused_batches) {
                (true, _, true) => moved.push(jail.name.clone()),
                (_, true, false) => unmoved.push(jail.name.clone()),
                _ => {
                    return Err(format!(
                        "jail {} (batch {batch:?}, paused after batch {pause}) has steps {:?}",
                        jail.name,
                        forward
                            .iter()
                            .map(|step| (step.seq, step.state.as_str()))
                            .collect::<Vec<_>>()
                    ))
                }
            }
        }
        let after_rollback = steps.iter().find(|step| {
            step.phase != jailswap::plan::Phase::Forward
                && step.state != jailswap::journal::StepState::Planned
        });
        if let Some(step) = after_rollback {
            return Err(format!(
                "a paused transaction ran step {} ({}) of the rollback",
                step.seq,
                step.action.describe()
            ));
        }

        let swap = &self.swap;
        let world = self.host.snapshot();
        let expected_store: BTreeMap<String, u64> = [
            (LIVE.to_string(), swap.to_inode),
            (swap.archive_as.clone(), swap.from_inode),
        ]
        .into_iter()
        .collect();
        if world.templates != expected_store {
            return Err(format!(
                "a paused upgrade has swapped the names, so the store must hold {expected_store:?}, but it holds {:?}",
                world.templates
            ));
        }
        let carried_in_live = world
            .contents
            .get(&swap.to_inode)
            .and_then(|contents| contents.get(CARRY))
            == Some(&self.carry_inode);
        if !carried_in_live {
            return Err(format!(
                "the carried path is not in the live template: {:?}",
                world.contents
            ));
        }

        let mut expected_mounts = Vec::new();
        for jail in &self.config.jails {
            let inode = if moved.contains(&jail.name) {
                swap.to_inode
            } else {
                swap.from_inode
            };
            for mount in &jail.mounts {
                let source = match mount.source.strip_prefix(&self.config.store) {
                    Ok(relative) => MountSource::Template {
                        inode,
                        inside: relative
                            .strip_prefix(LIVE)
                            .map(Path::to_path_buf)
                            .unwrap_or_else(|_| relative.to_path_buf()),
                    },
                    Err(_) => MountSource::Path(mount.source.clone()),
                };
                expected_mounts.push(MountRecord {
                    target: mount.target.clone(),
                    source,
                    read_only: mount.read_only(),
                });
            }
            let Some(simulated) = world.jails.get(&jail.name) else {
                return Err(format!("jail {} vanished", jail.name));
            };
            if !simulated.running {
                return Err(format!("jail {} is not running", jail.name));
            }
            if world.template_seen_by(&jail.name) != Some(inode) {
                return Err(format!(
                    "jail {} runs on {:?}, but the journal records inode {inode} for it",
                    jail.name,
                    world.template_seen_by(&jail.name)
                ));
            }
            if Some(&simulated.data) != self.data.get(&jail.name) {
                return Err(format!("the data of jail {} changed", jail.name));
            }
            for check in &jail.health {
                self.host
                    .probe(jail, check, Duration::from_millis(1))
                    .map_err(|error| format!("jail {} is not healthy: {error}", jail.name))?;
            }
        }
        expected_mounts.sort();
        let mut mounts = world.mounts.clone();
        mounts.sort();
        if mounts != expected_mounts {
            return Err(format!(
                "the mount table is {mounts:#?}, expected each fstab on the template its jail runs on: {expected_mounts:#?}"
            ));
        }
        Ok(PausedState {
            id: pending.id,
            paused_after: pause,
            moved,
            unmoved,
        })
    }

    /// Asserts the paused invariant, with the replay in the message.
    pub fn assert_paused(&self, replay: &Replay) -> PausedState {
        self.paused_invariant()
            .unwrap_or_else(|violation| panic!("{replay}: paused invariant violated: {violation}"))
    }
}

/// The jails a process's log shows stopped or started, leaving out the
/// operation it crashed at when the crash came before its effect.
pub fn jails_acted_on(log: &[String], crashed: Option<CrashPoint>) -> Vec<String> {
    let mut jails: Vec<String> = log
        .iter()
        .filter(|line| {
            let Some((number, _)) = line.split_once(' ') else {
                return false;
            };
            !crashed.is_some_and(|point| {
                point.moment == Moment::Before && number.parse() == Ok(point.operation)
            })
        })
        .filter_map(|line| {
            let (_, description) = line.split_once(' ')?;
            let name = description
                .strip_prefix("stop jail ")
                .or_else(|| description.strip_prefix("start jail "))?;
            Some(name.split(' ').next().unwrap_or(name).to_string())
        })
        .collect();
    jails.sort();
    jails.dedup();
    jails
}
