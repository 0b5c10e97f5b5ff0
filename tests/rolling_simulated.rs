//! Crash consistency of rolling upgrades, proved by enumeration on the
//! simulated host (`jailswap::host::simulated`), through the production
//! orchestration (`transaction::swap`) and recovery (`recover::recover`).
//!
//! Each rolling transaction below is stopped at every operation (host
//! operations and journal commits share one count), before and after its
//! effect; a new process then recovers in each direction (a bare
//! `recover`, `--resume`, `--rollback`). A transaction that ends paused is
//! checked against the paused invariant (every jail runs, healthy, on the
//! template the journal records for it) and then continued or undone by
//! the operator; every other end is checked against the whole invariant of
//! SPEC.md. After a rollback, a jail the journal never moved must never
//! have been stopped or started by any process.
//!
//! The bench's jails are `db`, `web` (depends on db) and `mail`; in
//! dependency order, then configuration order, they restart as db, mail,
//! web. `mail` has no status command, so recovery cannot see whether it
//! runs.
//!
//! The file is long because its enumerations share one harness (`Case`,
//! `Run`) that a split would have to export; the regressions come first,
//! the enumerations after them.

mod simulated;

use jailswap::executor::{Direction, Outcome};
use jailswap::host::simulated::{CrashPoint, Fault, FaultMode, Moment, OperationKind};
use jailswap::host::Host;
use jailswap::journal::{Journal, StepState, TxnState};
use jailswap::plan::Phase;
use simulated::*;
use std::collections::{BTreeMap, BTreeSet};

use Direction::{Forward, Rollback};

/// One rolling transaction under test.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    scenario: Scenario,
    sizes: &'static str,
    pause: Option<u32>,
    /// The jails of each batch, in order.
    batches: &'static [&'static [&'static str]],
    /// Injected into the world before the transaction runs.
    fault: Option<(OperationKind, &'static str, FaultMode)>,
    /// How a run that nothing interrupts ends.
    clean: Outcome,
    /// Where going forward leads once the swap took effect: `None` when it
    /// depends on whether the injected fault was already spent.
    forward: Option<Arrangement>,
}

const ONE_BY_ONE: &[&[&str]] = &[&["db"], &["mail"], &["web"]];

fn upgrade(pause: Option<u32>) -> Case {
    Case {
        name: "upgrade, batches of 1",
        scenario: Scenario::Upgrade,
        sizes: "1",
        pause,
        batches: ONE_BY_ONE,
        fault: None,
        clean: if pause.is_some() {
            Outcome::Paused
        } else {
            Outcome::Committed
        },
        forward: Some(Arrangement::New),
    }
}

/// The last batch's jail fails to start once: the two batches before it
/// moved and must go back, and `web` restarts on the old template.
fn last_batch_fails() -> Case {
    Case {
        name: "the last batch fails",
        scenario: Scenario::Upgrade,
        sizes: "1",
        pause: None,
        batches: ONE_BY_ONE,
        fault: Some((OperationKind::Start, "web", FaultMode::FailOnce)),
        clean: Outcome::RolledBack,
        forward: None,
    }
}

impl Case {
    fn bench(&self) -> Bench {
        let bench = Bench::rolling(self.scenario, self.sizes, self.pause);
        if let Some((kind, subject, mode)) = self.fault {
            bench.host.inject(Fault {
                kind,
                subject: Some(subject.to_string()),
                mode,
            });
        }
        bench
    }

    /// The jails of the batches up to and including `batch`.
    fn moved_by(&self, batch: u32) -> Vec<String> {
        let mut jails: Vec<String> = self.batches[..batch as usize]
            .iter()
            .flat_map(|batch| batch.iter().map(|jail| jail.to_string()))
            .collect();
        jails.sort();
        jails
    }
}

/// The processes run on one bench, with their logs, for the checks that
/// span processes.
struct Run<'a> {
    case: &'a Case,
    bench: &'a Bench,
    replay: Replay,
    /// Each process's log, with the point it crashed at.
    logs: Vec<(Vec<String>, Option<CrashPoint>)>,
    /// Jails the test itself disturbed (killed): a rollback restarts them
    /// whether they moved or not.
    disturbed: Vec<String>,
    /// Jails of which the journal recorded a forward step as begun at the
    /// end of some process that left the transaction pending.
    ever_moved: BTreeSet<String>,
}

impl<'a> Run<'a> {
    fn new(case: &'a Case, bench: &'a Bench) -> Run<'a> {
        let mut replay = Replay::new(case.scenario);
        replay.phases.push(format!(
            "{}: --rolling --batch {}{}",
            case.name,
            case.sizes,
            case.pause
                .map(|n| format!(" --pause-after {n}"))
                .unwrap_or_default()
        ));
        Run {
            case,
            bench,
            replay,
            logs: Vec::new(),
            disturbed: Vec::new(),
            ever_moved: BTreeSet::new(),
        }
    }

    fn keep_log(&mut self, end: End) -> End {
        let crashed = match end {
            End::Crashed(point) => Some(point),
            _ => None,
        };
        self.logs.push((self.bench.host.log(), crashed));
        // What a process that ended the transaction left is in the journal
        // at the end; what one that left it pending recorded, a later
        // recovery may set back to planned.
        let ended = matches!(
            end,
            End::Finished(Outcome::Committed | Outcome::RolledBack) | End::NothingPending
        );
        if !ended {
            self.ever_moved.extend(self.moved_in_journal());
        }
        end
    }

    /// The jails of which the journal records a forward step as begun.
    fn moved_in_journal(&self) -> Vec<String> {
        let Some(journal) = Journal::open_read(&self.bench.journal_path).ok().flatten() else {
            return Vec::new();
        };
        let swap = &self.bench.swap;
        let Some(record) = journal.history(None).ok().and_then(|history| {
            history.into_iter().find(|record| {
                record.kind == swap.kind
                    && record.target == swap.target
                    && record.archive_as == swap.archive_as
            })
        }) else {
            return Vec::new();
        };
        journal
            .steps(record.id)
            .expect("the steps are readable")
            .into_iter()
            .filter(|step| step.phase == Phase::Forward && step.state != StepState::Planned)
            .filter_map(|step| step.action.jail().map(str::to_string))
            .collect()
    }

    fn transact(&mut self, point: Option<CrashPoint>) -> End {
        let end = self.bench.transact_crashing(point, &mut self.replay);
        self.keep_log(end)
    }

    fn recover(&mut self, point: Option<CrashPoint>, chosen: Option<Direction>) -> End {
        if let Some(direction) = chosen {
            self.replay
                .phases
                .push(format!("operator chose {direction:?}"));
        }
        let end = self.bench.recover_crashing(point, chosen, &mut self.replay);
        self.keep_log(end)
    }

    /// Every process's log, one after another.
    fn all_logs(&self) -> Vec<String> {
        self.logs.iter().flat_map(|(log, _)| log.clone()).collect()
    }

    /// The state of the pending transaction, if one is pending.
    fn pending(&self) -> Option<TxnState> {
        Journal::open_read(&self.bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .map(|record| record.state)
    }

    /// Checks a paused transaction, including which jails moved.
    fn check_paused(&self) {
        let state = self.bench.assert_paused(&self.replay);
        let pause = self.case.pause.expect("only a case with a pause pauses");
        assert_eq!(state.paused_after, pause, "{}", self.replay);
        assert_eq!(
            state.moved,
            self.case.moved_by(pause),
            "{}: the jails of the batches up to the pause, and only those, run on the new template",
            self.replay
        );
    }

    /// Carries the transaction to its end from `end`: a paused transaction
    /// is checked, then continued (`resume`) or undone by the operator.
    /// Checks the whole invariant and that a rollback never touched a jail
    /// the journal never moved; returns the arrangement and the direction
    /// the operator chose at a pause, if it paused.
    fn finish(&mut self, mut end: End, resume: bool) -> (Arrangement, Option<Direction>) {
        let mut chose = None;
        for _ in 0..3 {
            if end == End::Finished(Outcome::NeedsOperator) && self.case.fault.is_some() {
                self.fix_the_fault();
                end = self.recover(None, None);
                continue;
            }
            if end != End::Finished(Outcome::Paused) {
                break;
            }
            self.check_paused();
            let direction = if resume { Forward } else { Rollback };
            chose = Some(direction);
            end = self.recover(None, Some(direction));
        }
        let arrangement = self.bench.assert_invariant(outcome_of(end), &self.replay);
        if arrangement == Arrangement::Old {
            self.check_unmoved_untouched();
        }
        (arrangement, chose)
    }

    /// The injected fault made a jail fail to start on the old template as
    /// well (it was spent by a rollback's restart, not by the upgrade): the
    /// transaction waits for the operator, naming the jail; the operator
    /// fixes the cause.
    fn fix_the_fault(&mut self) {
        let (kind, subject, _) = self.case.fault.expect("a case with a fault");
        let attention = Journal::open_read(&self.bench.journal_path)
            .ok()
            .flatten()
            .and_then(|journal| journal.pending().ok().flatten())
            .and_then(|pending| pending.attention)
            .unwrap_or_default();
        let verb = match kind {
            OperationKind::Start => "start",
            other => panic!("no attention text known for a {other:?} fault"),
        };
        assert!(
            attention.contains(&format!("{verb} jail {subject}")),
            "{}: needs_operator must name the faulty step: {attention:?}",
            self.replay
        );
        let faulted = self
            .logs
            .iter()
            .any(|(log, _)| log.iter().any(|line| line.contains("[fault")));
        assert!(faulted, "{}: needs_operator without a fault", self.replay);
        self.bench.host.clear_faults();
        self.replay.phases.push("fault fixed".to_string());
    }

    /// A jail of which no process began a forward step (as the journal
    /// recorded at the end of each process) was never stopped or started
    /// by any process, unless the test itself disturbed it.
    fn check_unmoved_untouched(&mut self) {
        self.ever_moved.extend(self.moved_in_journal());
        let acted_on: BTreeSet<String> = self
            .logs
            .iter()
            .flat_map(|(log, crashed)| jails_acted_on(log, *crashed))
            .collect();
        for jail in acted_on {
            assert!(
                self.ever_moved.contains(&jail) || self.disturbed.contains(&jail),
                "{}: jail {jail} never moved, but a process stopped or started it: {:?}",
                self.replay,
                self.logs
            );
        }
    }
}

/// Runs `case` once without interruption; returns its number of operations.
fn clean_rolling(case: &Case) -> u64 {
    let bench = case.bench();
    let mut run = Run::new(case, &bench);
    let end = run.transact(None);
    assert_eq!(end, End::Finished(case.clean), "{}", run.replay);
    let operations = bench.host.operations();
    match case.clean {
        Outcome::Paused => run.check_paused(),
        outcome => {
            bench.assert_invariant(Some(outcome), &run.replay);
            if outcome == Outcome::RolledBack {
                run.check_unmoved_untouched();
            }
        }
    }
    operations
}

/// Brings `case` to its pause; returns the bench and its run's replay.
fn paused(case: &Case) -> (Bench, Replay) {
    let bench = case.bench();
    let mut run = Run::new(case, &bench);
    assert_eq!(
        run.transact(None),
        End::Finished(Outcome::Paused),
        "{}",
        run.replay
    );
    run.check_paused();
    let replay = run.replay.clone();
    (bench, replay)
}

// Regressions: each test below failed before the change to the engine its
// second comment line names.

/// The operation number of the last line of `log` that reads `wanted`.
fn last_operation(log: &[String], wanted: &str) -> u64 {
    *operations_where(log, |description| description == wanted)
        .last()
        .unwrap_or_else(|| panic!("{wanted:?} is not in the log: {log:?}"))
}

// `recover --resume` of a paused upgrade goes on to the end instead of pausing again at once.
// (executor: `past_pause`, checked before the first wave of the next batch.)
#[test]
fn resume_goes_past_the_pause() {
    let case = upgrade(Some(1));
    let (bench, replay) = paused(&case);
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    let end = run.recover(None, Some(Forward));
    assert_eq!(end, End::Finished(Outcome::Committed), "{}", run.replay);
    let (arrangement, _) = run.finish(end, true);
    assert_eq!(arrangement, Arrangement::New, "{}", run.replay);
}

// A resumed upgrade killed once a later batch began is finished by a bare recover, without pausing again.
// (recover: `past_pause` reads the journal's states before observation.)
#[test]
fn a_resumed_upgrade_interrupted_in_a_later_batch_does_not_pause_again() {
    let case = upgrade(Some(1));
    // `mail`, the second batch, has no status command: recovery cannot see
    // that its stop took effect.
    let (bench, _) = paused(&case);
    let mut run = Run::new(&case, &bench);
    run.recover(None, Some(Forward));
    let stop = last_operation(&run.logs[0].0, "stop jail mail");

    let (bench, replay) = paused(&case);
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    let point = CrashPoint {
        operation: stop,
        moment: Moment::After,
    };
    assert_eq!(
        run.recover(Some(point), Some(Forward)),
        End::Crashed(point),
        "{}",
        run.replay
    );
    let end = run.recover(None, None);
    assert_eq!(end, End::Finished(Outcome::Committed), "{}", run.replay);
    run.finish(end, true);
}

// `recover --resume` after a rolling rollback restarted a jail on the old template moves that jail again.
// (recover: the jails a rolling rollback began to restart move again.)
#[test]
fn resume_after_a_rolling_rollback_began_moves_the_restarted_jails_again() {
    let case = last_batch_fails();
    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    run.transact(None);
    // The rollback's restart of db on the old template: its second start.
    let start = last_operation(&run.logs[0].0, "start jail db");

    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    let point = CrashPoint {
        operation: start,
        moment: Moment::After,
    };
    assert_eq!(
        run.transact(Some(point)),
        End::Crashed(point),
        "{}",
        run.replay
    );
    // The fault that made the upgrade fail was spent: going forward now
    // succeeds, and every jail must end on the new template.
    let end = run.recover(None, Some(Forward));
    assert_eq!(end, End::Finished(Outcome::Committed), "{}", run.replay);
    let (arrangement, _) = run.finish(end, true);
    assert_eq!(arrangement, Arrangement::New, "{}", run.replay);
}

/// What a paused transaction is disturbed by before `recover` looks.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    /// The canary, which moved, no longer runs.
    MovedJailDies,
    /// A jail that did not move yet no longer runs.
    UnmovedJailDies,
    /// The host rebooted: every jail stopped, its mounts gone, then each
    /// fstab mounted again (the live name gives the new template) and every
    /// jail started.
    Reboot,
}

/// Disturbs the paused upgrade; returns the jails that no longer run.
fn disturb(bench: &Bench, disturbance: Disturbance) -> Vec<String> {
    let jail = |name: &str| {
        bench
            .config
            .jails
            .iter()
            .find(|jail| jail.name == name)
            .cloned()
            .expect("a configured jail")
    };
    let killed = match disturbance {
        Disturbance::MovedJailDies => {
            bench.host.kill_jail("db");
            vec!["db".to_string()]
        }
        Disturbance::UnmovedJailDies => {
            bench.host.kill_jail("web");
            vec!["web".to_string()]
        }
        Disturbance::Reboot => {
            for spec in &bench.config.jails {
                bench.host.kill_jail(&spec.name);
            }
            for spec in bench.config.jails.iter().rev() {
                for mount in spec.mounts.iter().rev() {
                    bench
                        .host
                        .unmount(&mount.target)
                        .expect("unmount at reboot");
                }
            }
            for name in ["db", "mail", "web"] {
                let spec = jail(name);
                for mount in &spec.mounts {
                    bench.host.mount(mount).expect("mount at boot");
                }
                bench.host.start_jail(&spec).expect("start at boot");
            }
            // Every jail now runs on the new template: a rollback must
            // restart them all.
            bench.config.jails.iter().map(|j| j.name.clone()).collect()
        }
    };
    bench.host.restart();
    killed
}

// A paused upgrade whose unmoved jail died rolls back with every jail running on the old template.
// (executor: `with_disturbed`.)
#[test]
fn a_rolling_rollback_restarts_an_unmoved_jail_that_died() {
    let case = upgrade(Some(1));
    let (bench, replay) = paused(&case);
    let disturbed = disturb(&bench, Disturbance::UnmovedJailDies);
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    run.disturbed = disturbed;
    let end = run.recover(None, None);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{}", run.replay);
    let (arrangement, _) = run.finish(end, true);
    assert_eq!(arrangement, Arrangement::Old, "{}", run.replay);
}

// A paused upgrade after a reboot (every jail on the new template) rolls back with every jail on the old one.
// (executor: `with_disturbed`.)
#[test]
fn a_rolling_rollback_after_a_reboot_restarts_every_jail_on_the_old_template() {
    let case = upgrade(Some(1));
    let (bench, replay) = paused(&case);
    let disturbed = disturb(&bench, Disturbance::Reboot);
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    run.disturbed = disturbed;
    let end = run.recover(None, None);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{}", run.replay);
    let (arrangement, _) = run.finish(end, true);
    assert_eq!(arrangement, Arrangement::Old, "{}", run.replay);
}

// A rolling rollback killed as it was about to stop a jail without status command finishes that jail's restart.
// (recover: a restart step that cannot be seen runs again.)
#[test]
fn a_rolling_rollback_killed_at_an_unobservable_restart_finishes_it() {
    let case = last_batch_fails();
    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    run.transact(None);
    // The rollback's stop of mail, which has no status command: its intent
    // is recorded, the jail still runs, and recovery cannot see it.
    let stop = last_operation(&run.logs[0].0, "stop jail mail");

    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    let point = CrashPoint {
        operation: stop,
        moment: Moment::Before,
    };
    assert_eq!(
        run.transact(Some(point)),
        End::Crashed(point),
        "{}",
        run.replay
    );
    let end = run.recover(None, None);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{}", run.replay);
    let (arrangement, _) = run.finish(end, true);
    assert_eq!(arrangement, Arrangement::Old, "{}", run.replay);
}

// The enumerations: every crash point of each rolling transaction, in
// every direction.

/// No jail starts on the new template: the canary fails.
fn canary_fails() -> Case {
    Case {
        name: "the canary fails",
        scenario: Scenario::FailingUpgrade,
        sizes: "1,25%",
        pause: None,
        batches: ONE_BY_ONE,
        fault: None,
        clean: Outcome::RolledBack,
        forward: Some(Arrangement::Old),
    }
}

/// One batch holding a dependency and its dependant: web stops before db
/// and starts after it.
fn one_batch() -> Case {
    Case {
        name: "one batch of every jail",
        scenario: Scenario::Upgrade,
        sizes: "100%",
        pause: None,
        batches: &[&["db", "mail", "web"]],
        fault: None,
        clean: Outcome::Committed,
        forward: Some(Arrangement::New),
    }
}

/// A rolling rollback transaction (after a committed upgrade), paused
/// after its canary.
fn rollback_paused() -> Case {
    Case {
        name: "rolling rollback, paused after 1",
        scenario: Scenario::Rollback,
        sizes: "1,2",
        pause: Some(1),
        batches: &[&["db"], &["mail", "web"]],
        fault: None,
        clean: Outcome::Paused,
        forward: Some(Arrangement::New),
    }
}

/// Crashes the transaction of `case` at every point and recovers in every
/// direction; returns the number of (point, direction) pairs covered.
fn enumerate_transaction(case: &Case) -> usize {
    let operations = clean_rolling(case);
    let mut covered = 0;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for point in every_point(operations) {
        for chosen in [None, Some(Forward), Some(Rollback)] {
            let bench = case.bench();
            let mut run = Run::new(case, &bench);
            let end = run.transact(Some(point));
            assert_eq!(
                end,
                End::Crashed(point),
                "{}: the run must reach its crash point",
                run.replay
            );
            let pending = run.pending();
            let swapped = bench.host.snapshot().templates.get(LIVE) == Some(&bench.swap.to_inode);
            let end = run.recover(None, chosen);
            let resume = point.operation % 2 == 0;
            let (arrangement, at_pause) = run.finish(end, resume);
            let expected = match (pending, chosen, at_pause) {
                // Nothing was pending: the crash came before the plan was
                // recorded or after the final commit.
                (None, _, _) => None,
                (Some(_), _, Some(Rollback)) => Some(Arrangement::Old),
                (Some(_), Some(Rollback), _) => Some(Arrangement::Old),
                (Some(_), Some(Forward), _) => case.forward,
                (Some(TxnState::RollingBack), _, _) => Some(Arrangement::Old),
                (Some(_), None, _) if !swapped => Some(Arrangement::Old),
                (Some(_), _, _) => case.forward,
            };
            if let Some(expected) = expected {
                assert_eq!(
                    arrangement, expected,
                    "{}: recovery went the wrong way",
                    run.replay
                );
            }
            *seen
                .entry(format!("{chosen:?} -> {arrangement:?}"))
                .or_insert(0) += 1;
            covered += 1;
        }
    }
    eprintln!(
        "[{}] {covered} crash points x directions covered ({operations} operations in a clean run): {seen:?}",
        case.name
    );
    assert!(covered >= 6 * operations as usize);
    covered
}

// Any crash of a rolling upgrade, recovered in any direction, ends committed or rolled back.
#[test]
fn every_crash_point_of_a_rolling_upgrade_recovers_in_every_direction() {
    let covered = enumerate_transaction(&upgrade(None));
    assert!(covered > 250, "too few crash points: {covered}");
}

// Any crash of a rolling upgrade that pauses after the canary: paused, committed or rolled back.
#[test]
fn every_crash_point_of_a_rolling_upgrade_paused_after_the_canary_recovers() {
    let covered = enumerate_transaction(&upgrade(Some(1)));
    assert!(covered > 250, "too few crash points: {covered}");
}

// Any crash of a rolling upgrade that pauses after two batches of three recovers.
#[test]
fn every_crash_point_of_a_rolling_upgrade_paused_after_two_batches_recovers() {
    let covered = enumerate_transaction(&upgrade(Some(2)));
    assert!(covered > 250, "too few crash points: {covered}");
}

// Any crash of a rolling upgrade whose canary fails recovers to the old template.
#[test]
fn every_crash_point_of_a_failing_canary_recovers_to_the_old_template() {
    let covered = enumerate_transaction(&canary_fails());
    assert!(covered > 150, "too few crash points: {covered}");
}

// Any crash of a rolling upgrade whose last batch fails recovers, never touching unmoved jails.
#[test]
fn every_crash_point_of_a_failing_last_batch_recovers() {
    let covered = enumerate_transaction(&last_batch_fails());
    assert!(covered > 250, "too few crash points: {covered}");
}

// Any crash of a single batch holding a dependency chain recovers.
#[test]
fn every_crash_point_of_a_single_batch_recovers() {
    let covered = enumerate_transaction(&one_batch());
    assert!(covered > 150, "too few crash points: {covered}");
}

// Any crash of a rolling rollback transaction paused after its canary recovers.
#[test]
fn every_crash_point_of_a_paused_rolling_rollback_recovers() {
    let covered = enumerate_transaction(&rollback_paused());
    assert!(covered > 250, "too few crash points: {covered}");
}

// A paused upgrade's `--resume` or `--rollback`, crashed at any point, is finished by the next recovery.
#[test]
fn every_crash_point_of_a_paused_upgrade_resumed_or_rolled_back_recovers() {
    let case = upgrade(Some(1));
    let mut covered = 0;
    for direction in [Forward, Rollback] {
        // How many operations the operator's recovery takes.
        let (bench, _) = paused(&case);
        let mut run = Run::new(&case, &bench);
        let end = run.recover(None, Some(direction));
        let expected = match direction {
            Forward => Outcome::Committed,
            Rollback => Outcome::RolledBack,
        };
        assert_eq!(end, End::Finished(expected), "{}", run.replay);
        run.finish(end, true);
        let operations = bench.host.operations();

        for point in every_point(operations) {
            let (bench, replay) = paused(&case);
            let mut run = Run::new(&case, &bench);
            run.replay = replay;
            let end = run.recover(Some(point), Some(direction));
            assert_eq!(end, End::Crashed(point), "{}", run.replay);
            let pending = run.pending();
            let end = run.recover(None, None);
            let (arrangement, at_pause) = run.finish(end, point.operation % 2 == 1);
            let expected = match (pending, at_pause) {
                (Some(TxnState::RollingBack), _) => Some(Arrangement::Old),
                (_, Some(Rollback)) => Some(Arrangement::Old),
                (Some(TxnState::Running), _) | (_, Some(Forward)) => Some(Arrangement::New),
                _ => None,
            };
            if let Some(expected) = expected {
                assert_eq!(arrangement, expected, "{}", run.replay);
            }
            covered += 1;
        }
    }
    eprintln!("[paused, then --resume or --rollback] crash points covered: {covered}");
    assert!(covered > 200, "too few crash points: {covered}");
}

// A recovery of a rolling upgrade killed at any point is finished by the next one.
#[test]
fn every_crash_point_of_a_rolling_recovery_is_recovered() {
    let case = upgrade(Some(2));
    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    run.transact(None);
    // The states a crash leaves differ at the renames and at each wave's
    // commits; a crash between them leaves the same journal.
    let firsts: Vec<CrashPoint> = operations_where(&run.logs[0].0, |description| {
        description == "commit completion" || description.starts_with("rename ")
    })
    .into_iter()
    .map(|operation| CrashPoint {
        operation,
        moment: Moment::After,
    })
    .collect();
    assert!(firsts.len() >= 15, "too few states: {firsts:?}");
    let mut covered = 0;
    for first in firsts {
        let operations = {
            let bench = case.bench();
            let mut run = Run::new(&case, &bench);
            run.transact(Some(first));
            let end = run.recover(None, None);
            run.finish(end, true);
            // Only the first recovery's operations are counted: `finish`
            // may have run another process since.
            run.logs[1].0.len() as u64
        };
        for point in every_point(operations) {
            let bench = case.bench();
            let mut run = Run::new(&case, &bench);
            run.transact(Some(first));
            let end = run.recover(Some(point), None);
            assert_eq!(end, End::Crashed(point), "{}", run.replay);
            let end = run.recover(None, None);
            run.finish(end, point.operation % 2 == 0);
            covered += 1;
        }
    }
    eprintln!("[rolling recovery] crash points covered: {covered}");
    assert!(covered > 1000, "too few crash points: {covered}");
}

// A paused upgrade disturbed (a jail died, or a reboot) rolls back on a bare `recover`, crash or not.
#[test]
fn a_disturbed_paused_upgrade_rolls_back() {
    let case = upgrade(Some(1));
    let mut covered = 0;
    for disturbance in [
        Disturbance::MovedJailDies,
        Disturbance::UnmovedJailDies,
        Disturbance::Reboot,
    ] {
        let operations = {
            let (bench, replay) = paused(&case);
            let disturbed = disturb(&bench, disturbance);
            let mut run = Run::new(&case, &bench);
            run.replay = replay;
            run.disturbed = disturbed;
            run.replay.phases.push(format!("{disturbance:?}"));
            let end = run.recover(None, None);
            assert_eq!(end, End::Finished(Outcome::RolledBack), "{}", run.replay);
            let (arrangement, _) = run.finish(end, true);
            assert_eq!(arrangement, Arrangement::Old, "{}", run.replay);
            bench.host.operations()
        };
        for point in every_point(operations) {
            let (bench, replay) = paused(&case);
            let disturbed = disturb(&bench, disturbance);
            let mut run = Run::new(&case, &bench);
            run.replay = replay;
            run.disturbed = disturbed;
            run.replay.phases.push(format!("{disturbance:?}"));
            let end = run.recover(Some(point), None);
            assert_eq!(end, End::Crashed(point), "{}", run.replay);
            let end = run.recover(None, None);
            let (arrangement, _) = run.finish(end, false);
            assert_eq!(arrangement, Arrangement::Old, "{}", run.replay);
            covered += 1;
        }
    }
    eprintln!("[disturbed pause] crash points covered: {covered}");
    assert!(covered > 100, "too few crash points: {covered}");
}

// A bare `recover` leaves an undisturbed paused upgrade exactly as it was, however often it runs.
#[test]
fn an_undisturbed_paused_upgrade_stays_paused() {
    let case = upgrade(Some(1));
    let (bench, replay) = paused(&case);
    let before = bench.host.snapshot();
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    for _ in 0..3 {
        let end = run.recover(None, None);
        assert_eq!(end, End::Finished(Outcome::Paused), "{}", run.replay);
        run.check_paused();
    }
    let after = bench.host.snapshot();
    assert_eq!(after.templates, before.templates, "{}", run.replay);
    assert_eq!(after.mounts, before.mounts, "{}", run.replay);
    assert_eq!(after.jails, before.jails, "{}", run.replay);
    assert_eq!(
        jails_acted_on(&run.all_logs(), None),
        Vec::<String>::new(),
        "{}: a bare recover of a paused upgrade stopped or started a jail",
        run.replay
    );
    let journal = Journal::open_read(&bench.journal_path)
        .unwrap()
        .expect("a journal");
    let pending = journal.pending().unwrap().expect("still pending");
    assert_eq!(
        pending.interrupted_recoveries, 0,
        "a bare recover of a paused upgrade counts as no interrupted recovery"
    );
}

// The canary fails: only the canary stops and starts again; the others never stop.
#[test]
fn a_failing_canary_restarts_only_the_canary() {
    let case = canary_fails();
    let bench = case.bench();
    let mut run = Run::new(&case, &bench);
    let end = run.transact(None);
    assert_eq!(end, End::Finished(Outcome::RolledBack), "{}", run.replay);
    run.finish(end, true);
    assert_eq!(
        jails_acted_on(&run.all_logs(), None),
        vec!["db".to_string()],
        "{}: {:?}",
        run.replay,
        run.logs
    );
}

// The paused invariant rejects each kind of broken paused world, so the enumerations can fail.
#[test]
fn the_paused_invariant_catches_broken_worlds() {
    let case = upgrade(Some(1));
    let jail = |bench: &Bench, name: &str| {
        bench
            .config
            .jails
            .iter()
            .find(|jail| jail.name == name)
            .cloned()
            .expect("a configured jail")
    };

    let (bench, _) = paused(&case);
    bench.host.kill_jail("mail");
    assert!(bench
        .paused_invariant()
        .unwrap_err()
        .contains("not running"));

    // An unmoved jail restarted onto the new template by hand.
    let (bench, _) = paused(&case);
    let web = jail(&bench, "web");
    bench.host.stop_jail(&web).unwrap();
    bench.host.unmount(&web.mounts[1].target).unwrap();
    bench.host.unmount(&web.mounts[0].target).unwrap();
    bench.host.mount(&web.mounts[0]).unwrap();
    bench.host.mount(&web.mounts[1]).unwrap();
    bench.host.start_jail(&web).unwrap();
    assert!(bench
        .paused_invariant()
        .unwrap_err()
        .contains("the journal records"));

    let (bench, _) = paused(&case);
    let db = jail(&bench, "db");
    bench.host.mount(&db.mounts[1]).unwrap();
    assert!(bench
        .paused_invariant()
        .unwrap_err()
        .contains("mount table"));

    let (bench, _) = paused(&case);
    bench.host.set_jail_healthy("db", false);
    assert!(bench
        .paused_invariant()
        .unwrap_err()
        .contains("not healthy"));

    // Not paused at all: a finished transaction.
    let (bench, replay) = paused(&case);
    let mut run = Run::new(&case, &bench);
    run.replay = replay;
    run.recover(None, Some(Forward));
    assert!(bench
        .paused_invariant()
        .unwrap_err()
        .contains("nothing is pending"));

    // Paused, but the journal says a jail outside the paused batches moved.
    let (bench, _) = paused(&case);
    let journal_path = bench.journal_path.clone();
    let mut journal = Journal::open(&journal_path).unwrap();
    let pending = journal.pending().unwrap().unwrap();
    let steps = journal.steps(pending.id).unwrap();
    let mail_stop = steps
        .iter()
        .find(|s| s.phase == Phase::Forward && s.action.jail() == Some("mail"))
        .unwrap();
    journal
        .set_step_states(pending.id, &[(mail_stop.seq, StepState::Done)])
        .unwrap();
    drop(journal);
    assert!(bench.paused_invariant().unwrap_err().contains("jail mail"));
}
