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

mod simulated;

use jailswap::executor::{Direction, Outcome};
use jailswap::host::simulated::{CrashPoint, Fault, FaultMode, Moment, OperationKind};
use jailswap::host::{Host, TemplateId};
use jailswap::journal::{Journal, TxnState};
use simulated::*;
use std::collections::BTreeMap;

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
