//! Crash consistency of `stage`, proved by enumeration on the simulated
//! host (`jailswap::host::simulated`, through the shared bench in
//! `tests/simulated`).
//!
//! A stage is stopped at every operation (host operations and journal
//! commits share one count), before and after the operation takes effect;
//! then a new process recovers, in the direction recovery decides and in
//! each direction an operator can choose, and a recovery is itself stopped
//! at every operation and recovered again. After each, the stage's
//! invariant is checked: nothing is pending; the store holds either no
//! NAME and no staging copy, or a complete NAME (a copy of the source with
//! its links and paths, on which the command ran), never a staging copy;
//! the journal says committed exactly when NAME is there; the source, the
//! other templates, the mounts, the jails and their data are exactly as
//! before. The simulated world copies a template in one operation; a real
//! copy cut short half-way is covered by tests/stage.rs on real mounts.

mod simulated;

use jailswap::error::Error;
use jailswap::executor::{Direction, Outcome};
use jailswap::host::simulated::{CrashPoint, Fault, FaultMode, Moment, OperationKind, World};
use jailswap::journal::{Journal, TxnState};
use jailswap::output::Reporter;
use jailswap::plan::TransactionKind;
use jailswap::transaction::{self, Finished, Stage};
use simulated::*;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const NAME: &str = "mroot.20240801";
const STAGING: &str = ".jailswap-stage.mroot.20240801";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The command passes: the stage commits.
    Passing,
    /// The command fails: the stage rolls back after running it.
    Failing,
}

/// A bench with every jail running, and the world as it was before the
/// stage, to compare with.
struct StageBench {
    bench: Bench,
    before: World,
}

impl StageBench {
    fn new(kind: Kind) -> StageBench {
        let bench = Bench::new(Scenario::Upgrade);
        if kind == Kind::Failing {
            bench.host.inject(Fault {
                kind: OperationKind::Command,
                subject: None,
                mode: FaultMode::FailAlways,
            });
        }
        let before = bench.host.snapshot();
        StageBench { bench, before }
    }

    fn request(&self) -> Stage {
        Stage {
            name: NAME.to_string(),
            from: None,
            // `${dir}` only: the simulated command marks every template
            // whose path it names as changed, and the source must not be.
            command: Some("freebsd-update -b ${dir} install".to_string()),
            timeout: Duration::from_secs(60),
            reason: None,
        }
    }

    /// One process running `jailswap stage`, crashing at `point`.
    fn stage_crashing(&self, point: Option<CrashPoint>, replay: &mut Replay) -> End {
        let bench = &self.bench;
        bench.host.restart();
        if let Some(point) = point {
            bench.host.crash_at(point);
        }
        let result = (|| -> Result<Outcome, Error> {
            let mut journal = bench.journal()?;
            let reporter = Reporter::new(true);
            let interrupted = AtomicBool::new(false);
            match transaction::stage(
                &bench.host,
                &bench.config,
                &mut journal,
                &self.request(),
                false,
                &reporter,
                &interrupted,
            )? {
                Finished::Done { outcome, .. } => Ok(outcome),
                Finished::Planned(_) => Err(Error::Internal("not a dry run".into())),
            }
        })();
        let end = bench.end(result, replay, &format!("stage to crash at {point:?}"));
        replay.phases.push(bench.describe("stage", end));
        end
    }

    /// Checks the stage's invariant; returns whether NAME is there.
    fn invariant(&self, last: Option<Outcome>, chosen: Option<Direction>, replay: &Replay) -> bool {
        let fail = |why: String| -> ! { panic!("{replay}: invariant violated: {why}") };
        let journal = Journal::open_read(&self.bench.journal_path)
            .unwrap_or_else(|error| fail(format!("cannot read the journal: {error}")));
        let (pending, stage) = match &journal {
            Some(journal) => (
                journal.pending().unwrap(),
                journal
                    .history(None)
                    .unwrap()
                    .into_iter()
                    .find(|record| record.kind == TransactionKind::Stage),
            ),
            None => (None, None),
        };
        if let Some(pending) = pending {
            fail(format!(
                "transaction {} is still pending ({})",
                pending.id,
                pending.state.as_str()
            ));
        }
        let world = self.bench.host.snapshot();
        let made = world.templates.get(NAME).copied();
        let committed = stage.as_ref().map(|record| record.state);
        match (made, committed) {
            (Some(_), Some(TxnState::Committed)) | (None, None | Some(TxnState::RolledBack)) => {}
            other => fail(format!(
                "the store and the journal disagree: NAME {:?}, stage {:?}",
                other.0, other.1
            )),
        }
        match (last, made) {
            (Some(Outcome::Committed), None) | (Some(Outcome::RolledBack), Some(_)) => {
                fail(format!("outcome {last:?} with NAME {made:?}"))
            }
            (Some(Outcome::NeedsOperator | Outcome::Paused), _) => {
                fail(format!("outcome {last:?}"))
            }
            _ => {}
        }
        // Exactly the templates there were, and NAME if it was made.
        let mut expected = self.before.templates.clone();
        if let Some(inode) = made {
            expected.insert(NAME.to_string(), inode);
        }
        if world.templates != expected {
            fail(format!(
                "the store holds {:?}, expected {expected:?} (a staging copy is {STAGING})",
                world.templates
            ));
        }
        if !world.intruders.is_empty() {
            fail(format!("the store holds {:?}", world.intruders));
        }
        // NAME is complete: the source's links and paths, new inodes, and
        // the command's change on the source's contents.
        if let Some(inode) = made {
            let source = self.before.templates[LIVE];
            // The command ran on it to the end; once, unless the operator
            // chose to go forward after a crash during the command, which
            // runs the interrupted command again on the same copy (as one
            // reruns freebsd-update or pkg after an interruption).
            let version = format!("{}+updated", self.before.versions[&source]);
            let found = world.versions.get(&inode).cloned().unwrap_or_default();
            let again = chosen == Some(Direction::Forward)
                && found.starts_with(&version)
                && found[version.len()..].split("+updated").all(str::is_empty);
            if found != version && !again {
                fail(format!("{NAME} holds {found:?}, expected {version:?}"));
            }
            if world.links.get(&inode) != self.before.links.get(&source) {
                fail(format!("{NAME} lacks the source's links"));
            }
            let paths = |inode: u64, world: &World| -> Vec<String> {
                world.contents[&inode].keys().cloned().collect()
            };
            // The carried path stays out of a copy: the upgrade moves it.
            let mut expected = paths(source, &self.before);
            expected.retain(|path| path != CARRY);
            if paths(inode, &world) != expected
                || world.contents[&inode]
                    .values()
                    .any(|inside| self.before.contents[&source].values().any(|o| o == inside))
            {
                fail(format!(
                    "{NAME} is not a copy of the source: {:?}",
                    world.contents[&inode]
                ));
            }
        }
        // Nothing else changed: the templates that were there, their
        // contents, the mounts, the jails and their data.
        for (name, inode) in &self.before.templates {
            if world.versions.get(inode) != self.before.versions.get(inode)
                || world.contents.get(inode) != self.before.contents.get(inode)
                || world.links.get(inode) != self.before.links.get(inode)
            {
                fail(format!("template {name} changed"));
            }
        }
        if world.mounts != self.before.mounts {
            fail(format!("the mounts changed: {:#?}", world.mounts));
        }
        if world.jails != self.before.jails {
            fail(format!("the jails changed: {:#?}", world.jails));
        }
        made.is_some()
    }
}

/// The operations of a stage that nothing interrupts, and its outcome.
fn clean_stage(kind: Kind) -> (u64, Outcome, Vec<String>) {
    let stage = StageBench::new(kind);
    let mut replay = Replay::new(Scenario::Upgrade);
    let end = stage.stage_crashing(None, &mut replay);
    let End::Finished(outcome) = end else {
        panic!("{replay}: a clean stage must finish");
    };
    let made = stage.invariant(Some(outcome), None, &replay);
    assert_eq!(made, kind == Kind::Passing, "{replay}");
    (
        stage.bench.host.operations(),
        outcome,
        stage.bench.host.log(),
    )
}

/// Crashes a stage at every point, recovers in `chosen`'s direction (the
/// decided one for `None`), checks the invariant; returns how many points
/// ended with NAME made and without.
fn enumerate(kind: Kind, chosen: Option<Direction>) -> BTreeMap<bool, usize> {
    let (operations, _, log) = clean_stage(kind);
    let mut ends = BTreeMap::new();
    for point in every_point(operations) {
        let stage = StageBench::new(kind);
        let mut replay = Replay::new(Scenario::Upgrade);
        replay.phases.push(format!("{kind:?} stage"));
        let end = stage.stage_crashing(Some(point), &mut replay);
        assert_eq!(
            end,
            End::Crashed(point),
            "{replay}: the stage must reach its crash point (clean log: {log:?})"
        );
        replay.phases.push(format!("recovery chose {chosen:?}"));
        let end = stage.bench.recover_crashing(None, chosen, &mut replay);
        let made = stage.invariant(outcome_of(end), chosen, &replay);
        if let (End::Finished(_), Some(Direction::Rollback)) = (end, chosen) {
            assert!(!made, "{replay}: a rollback keeps nothing");
        }
        *ends.entry(made).or_insert(0) += 1;
    }
    let covered: usize = ends.values().sum();
    eprintln!(
        "[{kind:?} stage, recovery {chosen:?}] crash points covered: {covered} ({operations} operations in a clean run; NAME made: {ends:?})"
    );
    assert_eq!(covered, 2 * operations as usize);
    ends
}

// Every crash point of a passing stage, recovered as recovery decides: no
// NAME and no copy before the publishing rename, a complete NAME after.
#[test]
fn every_crash_point_of_a_stage_recovers() {
    let (operations, outcome, log) = clean_stage(Kind::Passing);
    assert_eq!(outcome, Outcome::Committed, "{log:?}");
    let ends = enumerate(Kind::Passing, None);
    // Both ends are reached: early crashes discard, late ones publish.
    assert!(
        ends.get(&true) > Some(&0) && ends.get(&false) > Some(&0),
        "{ends:?}"
    );
    assert!(operations >= 15, "{log:?}");
}

// Every crash point of a passing stage, recovered in the direction the
// operator chooses (`recover --resume`, `recover --rollback`).
#[test]
fn every_crash_point_of_a_stage_recovers_in_either_chosen_direction() {
    let forward = enumerate(Kind::Passing, Some(Direction::Forward));
    assert!(forward.get(&true) > Some(&0), "{forward:?}");
    let back = enumerate(Kind::Passing, Some(Direction::Rollback));
    // Only a crash after the final commit leaves NAME: nothing is pending.
    assert!(back.get(&false) > back.get(&true), "{back:?}");
}

// Every crash point of a stage whose command fails, in every direction:
// NAME is never made and the copy never kept.
#[test]
fn every_crash_point_of_a_failing_stage_leaves_nothing() {
    let (_, outcome, log) = clean_stage(Kind::Failing);
    assert_eq!(outcome, Outcome::RolledBack, "{log:?}");
    for chosen in [None, Some(Direction::Forward), Some(Direction::Rollback)] {
        let ends = enumerate(Kind::Failing, chosen);
        assert_eq!(ends.get(&true), None, "{chosen:?}: {ends:?}");
    }
}

// A recovery of a stage, itself stopped at any point, is finished by the next.
#[test]
fn every_crash_point_of_a_stage_recovery_is_recovered() {
    let (_, _, log) = clean_stage(Kind::Passing);
    // The states a crash can leave differ at the journal's commits and at
    // the copy, the deletion and the renames.
    let firsts: Vec<CrashPoint> = operations_where(&log, |description| {
        description.starts_with("commit ")
            || description.starts_with("copy ")
            || description.starts_with("rename ")
    })
    .into_iter()
    .flat_map(|operation| {
        [Moment::Before, Moment::After]
            .into_iter()
            .map(move |moment| CrashPoint { operation, moment })
    })
    .collect();
    assert!(firsts.len() >= 20, "too few states: {firsts:?}");
    let mut covered = 0;
    for first in firsts {
        let operations = {
            let stage = StageBench::new(Kind::Passing);
            let mut replay = Replay::new(Scenario::Upgrade);
            stage.stage_crashing(Some(first), &mut replay);
            let end = stage.bench.recover_crashing(None, None, &mut replay);
            stage.invariant(outcome_of(end), None, &replay);
            stage.bench.host.operations()
        };
        for point in every_point(operations) {
            let stage = StageBench::new(Kind::Passing);
            let mut replay = Replay::new(Scenario::Upgrade);
            stage.stage_crashing(Some(first), &mut replay);
            let end = stage.bench.recover_crashing(Some(point), None, &mut replay);
            assert_eq!(end, End::Crashed(point), "{replay}");
            let end = stage.bench.recover_crashing(None, None, &mut replay);
            stage.invariant(outcome_of(end), None, &replay);
            covered += 1;
        }
    }
    eprintln!("[stage recovery] crash points covered: {covered}");
    assert!(covered > 100, "{covered}");
}
