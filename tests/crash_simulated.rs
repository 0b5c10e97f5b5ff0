//! Crash consistency of jailswap, proved by enumeration on the simulated
//! host (`jailswap::host::simulated`).
//!
//! Each transaction below is stopped at every operation (host operations and
//! journal commits share one count), once before and once after the
//! operation takes effect; then a new process opens the journal afresh and
//! recovers, and the whole invariant of SPEC.md is checked: the store holds
//! exactly the old or the new arrangement, the carried path sits in the live
//! template, each jail's mounts are exactly its fstab with the template
//! read-only, every jail runs on the live template, per-jail data is
//! unchanged, nothing is pending, and the journal's outcome matches the
//! arrangement. Every failure message starts with the crash points that led
//! to it, so a failure replays exactly.
//!
//! The transactions run through the production orchestration
//! (`transaction::swap`, preflight included) and the production recovery
//! (`recover::recover`), exactly as the commands run them; only the host is
//! simulated. Everything is in-process and deterministic: `parallel = 1`
//! fixes the order of operations, the simulated host never sleeps, and
//! health checks pass at their first probe. Only where a test makes a
//! health check fail does the engine's retry loop wait out the configured
//! 100 ms timeout.

use jailswap::config::Config;
use jailswap::error::Error;
use jailswap::executor::{Direction, Outcome};
use jailswap::host::simulated::{
    CrashPoint, Fault, FaultMode, Moment, MountRecord, MountSource, OperationKind, SimulatedHost,
};
use jailswap::host::{Host, TemplateId};
use jailswap::journal::{Journal, TxnState};
use jailswap::output::Reporter;
use jailswap::plan::TransactionKind;
use jailswap::recover::{self, RecoverError};
use jailswap::transaction::{self, Finished, Swap as Request};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const LIVE: &str = "mroot";
const OLD_NAME: &str = "mroot.20240601";
const NEW_NAME: &str = "mroot.20240701";
const CARRY: &str = "usr/ports";
/// The directories every template holds: a jail's data mounts at `s`, and
/// the carried path goes into `usr`.
const INSIDE: [&str; 2] = ["s", "usr"];
/// The jails and what each depends on: `web` needs `db`, `mail` is alone.
const JAILS: [(&str, &[&str]); 3] = [("db", &[]), ("web", &["db"]), ("mail", &[])];
/// The jail without a status command.
const UNOBSERVABLE_JAIL: &str = "mail";
/// No process may run this many operations: a recovery that does is looping.
const OPERATION_LIMIT: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
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
struct Swap {
    kind: TransactionKind,
    target: String,
    archive_as: String,
    from_inode: u64,
    to_inode: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrangement {
    /// Live is the old template, the target is staged under its name.
    Old,
    /// Live is the new template, the old one is archived.
    New,
}

/// What one process left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Finished(Outcome),
    NothingPending,
    Crashed(CrashPoint),
}

/// The crash points that led to the present state, for failure messages.
#[derive(Clone, Debug)]
struct Replay {
    scenario: Scenario,
    phases: Vec<String>,
}

impl Replay {
    fn new(scenario: Scenario) -> Replay {
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
struct Bench {
    // Held so that the directory lives as long as the bench.
    _directory: tempfile::TempDir,
    scenario: Scenario,
    config: Config,
    host: SimulatedHost,
    journal_path: PathBuf,
    carry_inode: u64,
    data: BTreeMap<String, String>,
    swap: Swap,
}

fn scratch_directory() -> tempfile::TempDir {
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
    fn new(scenario: Scenario) -> Bench {
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

    fn journal(&self) -> Result<Journal, Error> {
        let mut journal = Journal::open(&self.journal_path)?;
        let mut crash = self.host.commit_hook();
        journal.set_fault_hook(Some(Box::new(move |name, after| {
            crash(name, after).then_some(jailswap::journal::Fault::Crash)
        })));
        Ok(journal)
    }

    /// One process running `jailswap upgrade` or `jailswap rollback`, as
    /// the command does: the production orchestration on this host.
    fn transact(&self, swap: &Swap) -> Result<Outcome, Error> {
        let mut journal = self.journal()?;
        let request = Request {
            kind: swap.kind,
            to: (swap.kind == TransactionKind::Upgrade).then(|| swap.target.clone()),
            archive_as: (swap.kind == TransactionKind::Upgrade).then(|| swap.archive_as.clone()),
            force: false,
            adopt: false,
            reason: None,
            rolling: None,
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
    fn recover(&self, chosen: Option<Direction>) -> Result<Option<Outcome>, Error> {
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
    fn end<T: Into<Option<Outcome>>>(
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
    fn transact_crashing(&self, point: Option<CrashPoint>, replay: &mut Replay) -> End {
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
    fn recover_crashing(
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
    fn describe(&self, phase: &str, end: End) -> String {
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
    fn invariant(&self, last: Option<Outcome>) -> Result<Arrangement, String> {
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
        Ok(arrangement)
    }

    /// What must hold even when a transaction waits for the operator: no
    /// template, carried path or per-jail data was deleted.
    fn nothing_deleted(&self) -> Result<(), String> {
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
    fn decided_arrangement(&self) -> Arrangement {
        let swapped = self.host.snapshot().templates.get(LIVE) == Some(&self.swap.to_inode);
        if swapped && self.scenario != Scenario::FailingUpgrade {
            Arrangement::New
        } else {
            Arrangement::Old
        }
    }

    /// Asserts the invariant, with the replay in the message.
    fn assert_invariant(&self, last: Option<Outcome>, replay: &Replay) -> Arrangement {
        self.invariant(last)
            .unwrap_or_else(|violation| panic!("{replay}: invariant violated: {violation}"))
    }
}

fn outcome_of(end: End) -> Option<Outcome> {
    match end {
        End::Finished(outcome) => Some(outcome),
        _ => None,
    }
}

/// The number of operations of a transaction that nothing interrupts, with
/// its outcome and its log.
fn clean_run(scenario: Scenario) -> (u64, Outcome, Vec<String>) {
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    let end = bench.transact_crashing(None, &mut replay);
    let End::Finished(outcome) = end else {
        panic!("{replay}: a clean run must finish");
    };
    bench.assert_invariant(Some(outcome), &replay);
    (bench.host.operations(), outcome, bench.host.log())
}

fn every_point(operations: u64) -> impl Iterator<Item = CrashPoint> {
    (1..=operations).flat_map(|operation| {
        [Moment::Before, Moment::After]
            .into_iter()
            .map(move |moment| CrashPoint { operation, moment })
    })
}

/// Crashes the transaction of `scenario` at every point, recovers, checks
/// the invariant; returns the number of crash points covered.
fn enumerate_transaction(scenario: Scenario, expected_clean: Outcome) -> usize {
    let (operations, outcome, log) = clean_run(scenario);
    assert_eq!(outcome, expected_clean, "[{scenario:?}] clean run");
    let mut covered = 0;
    let mut arrangements = BTreeMap::new();
    for point in every_point(operations) {
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        let end = bench.transact_crashing(Some(point), &mut replay);
        assert_eq!(
            end,
            End::Crashed(point),
            "{replay}: the run must reach its crash point (clean log: {log:?})"
        );
        let decided = bench.decided_arrangement();
        let end = bench.recover_crashing(None, None, &mut replay);
        let arrangement = bench.assert_invariant(outcome_of(end), &replay);
        assert_eq!(
            arrangement, decided,
            "{replay}: recovery must roll back before the swap and forward after it"
        );
        *arrangements.entry(format!("{arrangement:?}")).or_insert(0) += 1;
        covered += 1;
    }
    let minimum = 2 * operations as usize;
    eprintln!(
        "[{scenario:?}] crash points covered: {covered} ({operations} operations in a clean run; arrangements after recovery: {arrangements:?})"
    );
    assert!(
        covered >= minimum,
        "[{scenario:?}] covered {covered} < {minimum}"
    );
    covered
}

// Any crash of an upgrade recovers to the old arrangement before the swap, the new one after.
#[test]
fn every_crash_point_of_an_upgrade_recovers() {
    let covered = enumerate_transaction(Scenario::Upgrade, Outcome::Committed);
    assert!(covered > 60, "too few crash points: {covered}");
}

// Any crash of an upgrade that fails after the swap, or of its rollback, recovers to the old one.
#[test]
fn every_crash_point_of_a_failing_upgrade_recovers_to_the_old_template() {
    let covered = enumerate_transaction(Scenario::FailingUpgrade, Outcome::RolledBack);
    assert!(covered > 60, "too few crash points: {covered}");
}

// Any crash of a rollback transaction recovers to the arrangement its swap decides.
#[test]
fn every_crash_point_of_a_rollback_transaction_recovers() {
    let covered = enumerate_transaction(Scenario::Rollback, Outcome::Committed);
    assert!(covered > 60, "too few crash points: {covered}");
}

/// The operation numbers of a log whose description satisfies `wanted`.
fn operations_where(log: &[String], wanted: impl Fn(&str) -> bool) -> Vec<u64> {
    log.iter()
        .filter_map(|line| {
            let (number, description) = line.split_once(' ')?;
            wanted(description).then(|| number.parse().ok()).flatten()
        })
        .collect()
}

// A recovery killed at any point is finished by the next one, with the whole invariant.
#[test]
fn every_crash_point_of_a_recovery_is_recovered() {
    let scenario = Scenario::Upgrade;
    let (_, _, log) = clean_run(scenario);
    // The states a crash of the upgrade can leave differ at the journal's
    // intent and completion commits of each wave and at the renames; the
    // crash points between them leave the same journal for recovery.
    let first_points: Vec<CrashPoint> = operations_where(&log, |description| {
        description == "commit intent"
            || description == "commit completion"
            || description.starts_with("rename ")
    })
    .into_iter()
    .map(|operation| CrashPoint {
        operation,
        moment: Moment::After,
    })
    .collect();
    assert!(first_points.len() >= 20, "too few states: {first_points:?}");
    let mut covered = 0;
    let mut minimum = 0;
    for first in first_points {
        // How many operations the recovery of this state takes.
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        bench.transact_crashing(Some(first), &mut replay);
        let end = bench.recover_crashing(None, None, &mut replay);
        bench.assert_invariant(outcome_of(end), &replay);
        let recovery_operations = bench.host.operations();
        minimum += 2 * recovery_operations as usize;

        for point in every_point(recovery_operations) {
            let bench = Bench::new(scenario);
            let mut replay = Replay::new(scenario);
            bench.transact_crashing(Some(first), &mut replay);
            let decided = bench.decided_arrangement();
            let end = bench.recover_crashing(Some(point), None, &mut replay);
            assert_eq!(
                end,
                End::Crashed(point),
                "{replay}: the recovery must reach its crash point"
            );
            let end = bench.recover_crashing(None, None, &mut replay);
            let arrangement = bench.assert_invariant(outcome_of(end), &replay);
            assert_eq!(
                arrangement, decided,
                "{replay}: recovery must roll back before the swap and forward after it"
            );
            covered += 1;
        }
    }
    eprintln!("[recovery] crash points covered: {covered}");
    assert!(covered >= minimum, "covered {covered} < {minimum}");
}

// A recovery of a fixed needs_operator transaction, killed at any point, is finished by the next.
#[test]
fn every_crash_point_of_a_recovery_after_needs_operator_is_recovered() {
    let scenario = Scenario::Upgrade;
    let waiting = || {
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        replay
            .phases
            .push("fault Mount of db, FailAlways".to_string());
        bench.host.inject(Fault {
            kind: OperationKind::Mount,
            subject: Some("db".to_string()),
            mode: FaultMode::FailAlways,
        });
        let end = bench.transact_crashing(None, &mut replay);
        assert_eq!(end, End::Finished(Outcome::NeedsOperator), "{replay}");
        bench.host.clear_faults();
        replay.phases.push("fault cleared".to_string());
        (bench, replay)
    };
    let (bench, mut replay) = waiting();
    let end = bench.recover_crashing(None, None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{replay}");
    bench.assert_invariant(outcome_of(end), &replay);
    let recovery_operations = bench.host.operations();

    let mut covered = 0;
    for point in every_point(recovery_operations) {
        let (bench, mut replay) = waiting();
        let end = bench.recover_crashing(Some(point), None, &mut replay);
        assert_eq!(end, End::Crashed(point), "{replay}");
        let end = bench.recover_crashing(None, None, &mut replay);
        bench.assert_invariant(outcome_of(end), &replay);
        covered += 1;
    }
    eprintln!("[recovery after needs_operator] crash points covered: {covered}");
    assert!(covered >= 2 * recovery_operations as usize);
}

// With `--resume` or `--rollback`, any crash of an upgrade recovers in the chosen direction.
#[test]
fn every_crash_point_recovers_in_the_direction_the_operator_chooses() {
    let scenario = Scenario::Upgrade;
    let (operations, _, _) = clean_run(scenario);
    let mut covered = 0;
    for point in every_point(operations) {
        for direction in [Direction::Forward, Direction::Rollback] {
            let bench = Bench::new(scenario);
            let mut replay = Replay::new(scenario);
            bench.transact_crashing(Some(point), &mut replay);
            replay.phases.push(format!("operator chose {direction:?}"));
            let end = bench.recover_crashing(None, Some(direction), &mut replay);
            let arrangement = bench.assert_invariant(outcome_of(end), &replay);
            let expected = match (end, direction) {
                (End::Finished(_), Direction::Forward) => Arrangement::New,
                (End::Finished(_), Direction::Rollback) => Arrangement::Old,
                // Nothing pending: the crash came before `begin` or after `finish`.
                _ => bench.decided_arrangement(),
            };
            assert_eq!(arrangement, expected, "{replay}");
            covered += 1;
        }
    }
    eprintln!("[chosen direction] crash points covered: {covered}");
    assert!(covered >= 4 * operations as usize);
}

// A recovery that cannot observe the host waits for the operator; fixed, it recovers.
#[test]
fn a_recovery_that_cannot_observe_waits_for_the_operator() {
    let scenario = Scenario::Upgrade;
    let (_, _, log) = clean_run(scenario);
    let [stop] = operations_where(&log, |d| d == "stop jail db")[..] else {
        panic!("the upgrade must stop db once: {log:?}");
    };
    let [swap] = operations_where(&log, |d| d == format!("rename {NEW_NAME} -> {LIVE}"))[..] else {
        panic!("the upgrade must swap once: {log:?}");
    };
    // Each crash leaves the step it names uncertain; the fault hides it.
    let cases = [
        (stop, OperationKind::Status, Some("db")),
        (swap, OperationKind::Inode, None),
    ];
    let mut covered = 0;
    for (operation, kind, subject) in cases {
        let first = CrashPoint {
            operation,
            moment: Moment::After,
        };
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        bench.transact_crashing(Some(first), &mut replay);
        replay
            .phases
            .push(format!("fault {kind:?} {subject:?}, FailAlways"));
        bench.host.inject(Fault {
            kind,
            subject: subject.map(str::to_string),
            mode: FaultMode::FailAlways,
        });
        let end = bench.recover_crashing(None, None, &mut replay);
        assert_eq!(end, End::Finished(Outcome::NeedsOperator), "{replay}");
        let pending = Journal::open_read(&bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .unwrap_or_else(|| panic!("{replay}: the transaction must stay pending"));
        let attention = pending.attention.unwrap_or_default();
        assert!(
            attention.contains("cannot observe"),
            "{replay}: attention must say what cannot be observed: {attention:?}"
        );
        bench
            .nothing_deleted()
            .unwrap_or_else(|violation| panic!("{replay}: {violation}"));
        bench.host.clear_faults();
        replay.phases.push("fault cleared".to_string());
        let end = bench.recover_crashing(None, None, &mut replay);
        bench.assert_invariant(outcome_of(end), &replay);
        eprintln!("{replay}");
        covered += 1;
    }
    assert!(covered >= 2, "too few cases: {covered}");
}

// After two interrupted recoveries the third rolls back, even past the swap.
#[test]
fn two_interrupted_recoveries_make_the_third_roll_back() {
    let scenario = Scenario::Upgrade;
    let (_, _, log) = clean_run(scenario);
    let swap = operations_where(&log, |d| d == format!("rename {NEW_NAME} -> {LIVE}"));
    let [swap] = swap[..] else {
        panic!("the upgrade must swap exactly once: {log:?}");
    };
    let first = CrashPoint {
        operation: swap,
        moment: Moment::After,
    };
    // Uninterrupted, the recovery of this state rolls forward.
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    bench.transact_crashing(Some(first), &mut replay);
    let end = bench.recover_crashing(None, None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::Committed), "{replay}");
    let recovery_operations = bench.host.operations();

    let mut covered = 0;
    // The first operation of a recovery counts it; any later crash, up to
    // the commit that finishes it, interrupts it.
    for operation in 1..recovery_operations {
        let point = CrashPoint {
            operation,
            moment: Moment::After,
        };
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        bench.transact_crashing(Some(first), &mut replay);
        let first_recovery = bench.recover_crashing(Some(point), None, &mut replay);
        assert_eq!(first_recovery, End::Crashed(point), "{replay}");
        let just_counted = CrashPoint {
            operation: 1,
            moment: Moment::After,
        };
        let second_recovery = bench.recover_crashing(Some(just_counted), None, &mut replay);
        assert_eq!(second_recovery, End::Crashed(just_counted), "{replay}");
        let pending = Journal::open_read(&bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .unwrap_or_else(|| panic!("{replay}: the transaction must still be pending"));
        assert_eq!(pending.interrupted_recoveries, 2, "{replay}");
        let third = bench.recover_crashing(None, None, &mut replay);
        assert_eq!(third, End::Finished(Outcome::RolledBack), "{replay}");
        let arrangement = bench.assert_invariant(outcome_of(third), &replay);
        assert_eq!(arrangement, Arrangement::Old, "{replay}");
        covered += 1;
    }
    eprintln!("[loop breaker] crash points covered: {covered}");
    assert!(covered as u64 + 1 >= recovery_operations);
}

/// One row of the fault matrix.
#[derive(Clone, Debug)]
struct FaultCase {
    kind: OperationKind,
    subject: Option<&'static str>,
    mode: FaultMode,
}

impl FaultCase {
    /// Whether a rollback needs the faulty operation to succeed again: then
    /// a fault that persists leaves the transaction to the operator.
    fn needed_by_rollback(&self) -> bool {
        match self.kind {
            // Undoing an unmount mounts, undoing a stop starts, and a
            // rollback ends with the old template's health checks.
            OperationKind::Mount | OperationKind::Start | OperationKind::Health => true,
            // Undoing the first rename renames to the live name again.
            OperationKind::Rename => self.subject == Some(LIVE),
            // The carry's undo is a carry too: needed once the carry took
            // effect, which only a hang after the effect lets happen.
            OperationKind::Carry => self.mode == FaultMode::HangAfterEffect,
            _ => false,
        }
    }

    fn expected(&self) -> Outcome {
        match self.mode {
            // Health checks are retried until their timeout.
            FaultMode::FailOnce if self.kind == OperationKind::Health => Outcome::Committed,
            FaultMode::FailOnce => Outcome::RolledBack,
            _ if self.needed_by_rollback() => Outcome::NeedsOperator,
            _ => Outcome::RolledBack,
        }
    }

    /// What the journal's `attention` must mention: the failing operation.
    fn needle(&self) -> String {
        match (self.kind, self.subject) {
            (OperationKind::Mount, Some(jail)) => format!("jails/{jail}"),
            (OperationKind::Start, Some(jail)) => format!("start jail {jail}"),
            (OperationKind::Health, Some(jail)) => format!("health-check jail {jail}"),
            (OperationKind::Rename, _) => format!("rename {OLD_NAME} -> {LIVE}"),
            (OperationKind::Carry, _) => format!("rename {LIVE}/{CARRY} -> {OLD_NAME}/{CARRY}"),
            _ => String::new(),
        }
    }
}

const FAULT_MODES: [FaultMode; 4] = [
    FaultMode::FailOnce,
    FaultMode::FailAlways,
    FaultMode::Hang,
    FaultMode::HangAfterEffect,
];

fn fault_matrix() -> Vec<FaultCase> {
    let targets: [(OperationKind, Option<&'static str>); 11] = [
        (OperationKind::Stop, Some("web")),
        (OperationKind::Stop, Some("db")),
        (OperationKind::Unmount, Some("db")),
        (OperationKind::VerifyUnused, None),
        (OperationKind::Rename, Some(OLD_NAME)),
        (OperationKind::Rename, Some(LIVE)),
        (OperationKind::Carry, None),
        (OperationKind::Mount, Some("db")),
        (OperationKind::Start, Some("db")),
        (OperationKind::Start, Some("web")),
        (OperationKind::Health, Some("db")),
    ];
    targets
        .into_iter()
        .flat_map(|(kind, subject)| {
            FAULT_MODES.into_iter().map(move |mode| FaultCase {
                kind,
                subject,
                mode,
            })
        })
        .collect()
}

/// Runs an upgrade with one fault, checks what it left, then clears the
/// fault, recovers and checks the invariant.
fn run_fault_case(case: &FaultCase) {
    let scenario = Scenario::Upgrade;
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    replay.phases.push(format!("fault {case:?}"));
    bench.host.inject(Fault {
        kind: case.kind,
        subject: case.subject.map(str::to_string),
        mode: case.mode,
    });
    let end = bench.transact_crashing(None, &mut replay);
    let faulted: Vec<String> = bench
        .host
        .log()
        .into_iter()
        .filter(|line| line.contains("[fault"))
        .collect();
    replay
        .phases
        .push(format!("faulted operations {faulted:?}"));
    let expected = case.expected();
    assert_eq!(end, End::Finished(expected), "{replay}");
    if expected == Outcome::NeedsOperator {
        bench
            .nothing_deleted()
            .unwrap_or_else(|violation| panic!("{replay}: {violation}"));
        let pending = Journal::open_read(&bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .unwrap_or_else(|| {
                panic!("{replay}: needs_operator must leave the transaction pending")
            });
        assert_eq!(pending.state, TxnState::NeedsOperator, "{replay}");
        let attention = pending.attention.unwrap_or_default();
        assert!(
            attention.contains(&case.needle()),
            "{replay}: attention must name the failing step ({:?}): {attention:?}",
            case.needle()
        );
    } else {
        bench.assert_invariant(Some(expected), &replay);
    }
    bench.host.clear_faults();
    let end = bench.recover_crashing(None, None, &mut replay);
    if expected == Outcome::NeedsOperator {
        assert_eq!(end, End::Finished(Outcome::RolledBack), "{replay}");
    } else {
        assert_eq!(end, End::NothingPending, "{replay}");
    }
    bench.assert_invariant(outcome_of(end), &replay);
}

// Each step kind failing or hanging rolls back or waits for the operator; fixed, it recovers.
#[test]
fn fault_matrix_rolls_back_or_waits_for_the_operator() {
    let mut covered = 0;
    for case in fault_matrix() {
        run_fault_case(&case);
        covered += 1;
    }
    eprintln!("[fault matrix] cases covered: {covered}");
    assert_eq!(covered, 11 * FAULT_MODES.len());
}

// When neither direction can complete, every recovery ends in needs_operator, never loops.
#[test]
fn neither_direction_completing_ends_in_needs_operator_without_looping() {
    let scenario = Scenario::Upgrade;
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    bench.host.inject(Fault {
        kind: OperationKind::Mount,
        subject: Some("db".to_string()),
        mode: FaultMode::FailAlways,
    });
    let end = bench.transact_crashing(None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::NeedsOperator), "{replay}");
    for chosen in [
        None,
        Some(Direction::Forward),
        Some(Direction::Rollback),
        None,
    ] {
        replay.phases.push(format!("recover {chosen:?}"));
        let end = bench.recover_crashing(None, chosen, &mut replay);
        assert_eq!(end, End::Finished(Outcome::NeedsOperator), "{replay}");
        let pending = Journal::open_read(&bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .unwrap_or_else(|| panic!("{replay}: the transaction must stay pending"));
        assert_eq!(pending.state, TxnState::NeedsOperator, "{replay}");
        let attention = pending.attention.unwrap_or_default();
        assert!(
            attention.contains("jails/db") && attention.contains("simulated failure"),
            "{replay}: attention must name the failing mount: {attention:?}"
        );
        bench
            .nothing_deleted()
            .unwrap_or_else(|violation| panic!("{replay}: {violation}"));
    }
    bench.host.clear_faults();
    let end = bench.recover_crashing(None, None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{replay}");
    bench.assert_invariant(outcome_of(end), &replay);
}

// The invariant check rejects each kind of broken world, so the crash tests can fail.
#[test]
fn the_invariant_check_catches_broken_worlds() {
    let fresh = || {
        let bench = Bench::new(Scenario::Upgrade);
        assert_eq!(bench.invariant(None), Ok(Arrangement::Old));
        bench
    };
    let jail = |bench: &Bench, name: &str| {
        bench
            .config
            .jails
            .iter()
            .find(|jail| jail.name == name)
            .cloned()
            .expect("the jail is configured")
    };

    let bench = fresh();
    bench.host.stop_jail(&jail(&bench, "web")).unwrap();
    assert!(bench.invariant(None).unwrap_err().contains("not running"));

    let bench = fresh();
    let db = jail(&bench, "db");
    bench.host.mount(&db.mounts[0]).unwrap();
    assert!(bench.invariant(None).unwrap_err().contains("mount table"));

    let bench = fresh();
    let new_id = TemplateId::Inode(bench.swap.to_inode);
    bench
        .host
        .rename_template(NEW_NAME, "elsewhere", &new_id)
        .unwrap();
    assert!(bench.invariant(None).unwrap_err().contains("store"));

    let bench = fresh();
    let carried = TemplateId::Inode(bench.carry_inode);
    bench
        .host
        .move_inside(
            &format!("{LIVE}/{CARRY}"),
            &format!("{NEW_NAME}/{CARRY}"),
            &carried,
        )
        .unwrap();
    assert!(bench.invariant(None).unwrap_err().contains("carried"));

    let bench = fresh();
    let mail = jail(&bench, "mail");
    bench.host.stop_jail(&mail).unwrap();
    bench.host.unmount(&mail.mounts[1].target).unwrap();
    bench.host.unmount(&mail.mounts[0].target).unwrap();
    let mut writable = mail.mounts[0].clone();
    writable.options = vec!["rw".to_string()];
    bench.host.mount(&writable).unwrap();
    bench.host.mount(&mail.mounts[1]).unwrap();
    bench.host.start_jail(&mail).unwrap();
    assert!(bench.invariant(None).unwrap_err().contains("mount table"));

    let bench = fresh();
    bench
        .host
        .set_template_healthy(bench.swap.from_inode, false);
    assert!(bench.invariant(None).unwrap_err().contains("not healthy"));

    let bench = fresh();
    let mut replay = Replay::new(Scenario::Upgrade);
    let (_, _, log) = clean_run(Scenario::Upgrade);
    let crash = CrashPoint {
        operation: operations_where(&log, |d| d == "commit intent")[0],
        moment: Moment::After,
    };
    assert_eq!(
        bench.transact_crashing(Some(crash), &mut replay),
        End::Crashed(crash)
    );
    assert!(bench.invariant(None).unwrap_err().contains("pending"));
}

// Regressions: the fault matrix found that an undo which took effect and
// then reported a failure was marked `undo_failed` without a look and
// repeated blindly by every recovery (fixed in executor.rs
// `Actor::state_after_failure` and recover.rs, which now observe it).

// An undo rename that took effect, then failed (fsync after rename(2)), is not repeated.
#[test]
fn an_undo_rename_that_took_effect_is_not_repeated() {
    run_fault_case(&FaultCase {
        kind: OperationKind::Rename,
        subject: Some(LIVE),
        mode: FaultMode::HangAfterEffect,
    });
}

// An undo carry that took effect, then failed, is not repeated.
#[test]
fn an_undo_carry_that_took_effect_is_not_repeated() {
    run_fault_case(&FaultCase {
        kind: OperationKind::Carry,
        subject: None,
        mode: FaultMode::HangAfterEffect,
    });
}

// An undo mount that took effect, then hung past its timeout, is not mounted twice.
#[test]
fn an_undo_mount_that_took_effect_is_not_repeated() {
    run_fault_case(&FaultCase {
        kind: OperationKind::Mount,
        subject: Some("db"),
        mode: FaultMode::HangAfterEffect,
    });
}

// Past the swap, a recovery that could not observe the host still rolls forward once fixed.
#[test]
fn past_the_swap_a_recovery_that_could_not_observe_still_rolls_forward() {
    let scenario = Scenario::Upgrade;
    let (_, _, log) = clean_run(scenario);
    let [swap] = operations_where(&log, |d| d == format!("rename {NEW_NAME} -> {LIVE}"))[..] else {
        panic!("the upgrade must swap once: {log:?}");
    };
    let bench = Bench::new(scenario);
    let mut replay = Replay::new(scenario);
    let first = CrashPoint {
        operation: swap,
        moment: Moment::After,
    };
    assert_eq!(
        bench.transact_crashing(Some(first), &mut replay),
        End::Crashed(first)
    );
    replay.phases.push("fault Inode, FailAlways".to_string());
    bench.host.inject(Fault {
        kind: OperationKind::Inode,
        subject: None,
        mode: FaultMode::FailAlways,
    });
    let end = bench.recover_crashing(None, None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::NeedsOperator), "{replay}");
    bench.host.clear_faults();
    replay.phases.push("fault cleared".to_string());
    let end = bench.recover_crashing(None, None, &mut replay);
    assert_eq!(end, End::Finished(Outcome::Committed), "{replay}");
    let arrangement = bench.assert_invariant(outcome_of(end), &replay);
    assert_eq!(arrangement, Arrangement::New, "{replay}");
}
