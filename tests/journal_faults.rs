//! The journal failing under a transaction, as SQLite tests its own I/O:
//! for every N, the N-th journal write of an upgrade, of a failing upgrade
//! (whose rollback writes too), of a rollback and of a recovery fails as on
//! a full disk (ENOSPC, SQLITE_FULL) and, separately, as on a failing disk
//! (EIO, SQLITE_IOERR); once, and again from then on. Each time the host
//! ends whole (the whole invariant of SPEC.md on the simulated host) and
//! the outcome says what happened: 0 committed, 1 rolled back and recorded,
//! 2 not recorded (the host is whole and `recover` finishes the record), 74
//! only when nothing was changed.

mod simulated;

use jailswap::error::Error;
use jailswap::executor::Outcome;
use jailswap::host::simulated::{CrashPoint, Moment};
use jailswap::journal::{Fault, Journal};
use simulated::*;
use std::collections::BTreeMap;

/// How one faulted process ended, as its exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Committed,
    RolledBack,
    /// Exit 2: the end could not be recorded.
    Unrecorded,
    /// Exit 74: refused before anything changed.
    Refused,
}

/// The number of journal commits a clean run of `scenario` makes.
fn commits(scenario: Scenario) -> u64 {
    let (_, _, log) = clean_run(scenario);
    log.iter().filter(|line| line.contains(" commit ")).count() as u64
}

fn pending(bench: &Bench) -> bool {
    Journal::open_read(&bench.journal_path)
        .ok()
        .flatten()
        .and_then(|journal| journal.pending().ok().flatten())
        .is_some()
}

/// Which arrangement the world holds, if it is whole.
fn whole(bench: &Bench) -> Result<Arrangement, String> {
    match bench.world_invariant(Arrangement::Old) {
        Ok(()) => Ok(Arrangement::Old),
        Err(old) => bench
            .world_invariant(Arrangement::New)
            .map(|()| Arrangement::New)
            .map_err(|new| format!("neither arrangement: old: {old}; new: {new}")),
    }
}

/// Checks what a faulted process left, then (if its end was not recorded)
/// clears the fault, recovers and checks again. Returns its fate.
fn settle(bench: &Bench, result: Result<Outcome, Error>, replay: &Replay) -> Fate {
    let injected = bench
        .journal_faults
        .lock()
        .map(|faults| faults.injected)
        .unwrap_or(false);
    let clear = || {
        if let Ok(mut faults) = bench.journal_faults.lock() {
            faults.nth = None;
        }
    };
    match result {
        Ok(Outcome::Committed) => {
            let arrangement = bench.assert_invariant(Some(Outcome::Committed), replay);
            assert_eq!(arrangement, Arrangement::New, "{replay}");
            Fate::Committed
        }
        Ok(Outcome::RolledBack) => {
            let arrangement = bench.assert_invariant(Some(Outcome::RolledBack), replay);
            assert_eq!(arrangement, Arrangement::Old, "{replay}");
            Fate::RolledBack
        }
        Ok(Outcome::NeedsOperator) => {
            assert!(injected, "{replay}: needs_operator without a fault");
            // The host is whole although the journal could not say so; it
            // still says a transaction is pending, and recovery finishes
            // the record without moving the host.
            let arrangement = whole(bench).unwrap_or_else(|why| panic!("{replay}: {why}"));
            assert!(
                pending(bench),
                "{replay}: the journal must say what is pending"
            );
            clear();
            bench.host.restart();
            let recovered = bench.recover(None);
            let outcome = match recovered {
                Ok(Some(outcome)) => outcome,
                other => panic!("{replay}: recovery after the fault: {other:?}"),
            };
            let after = bench.assert_invariant(Some(outcome), replay);
            assert_eq!(after, arrangement, "{replay}: recovery moved a whole host");
            Fate::Unrecorded
        }
        Ok(Outcome::Paused) => panic!("{replay}: paused without a pause"),
        Err(Error::Journal(error)) => {
            assert!(injected, "{replay}: journal error without a fault: {error}");
            // 74: nothing was changed, nothing is pending.
            assert!(!pending(bench), "{replay}: 74 with a pending transaction");
            bench
                .world_invariant(Arrangement::Old)
                .unwrap_or_else(|why| panic!("{replay}: 74 but the host changed: {why}"));
            Fate::Refused
        }
        Err(other) => panic!("{replay}: {other}"),
    }
}

fn arm(bench: &Bench, nth: u64, fault: Fault, always: bool) {
    let mut faults = bench.journal_faults.lock().unwrap();
    faults.nth = Some(nth);
    faults.fault = Some(fault);
    faults.always = always;
    faults.injected = false;
}

const FAULTS: [(Fault, bool); 4] = [
    (Fault::DiskFull, false),
    (Fault::DiskFull, true),
    (Fault::IoError, false),
    (Fault::IoError, true),
];

/// Every N, every fault, for one transaction; returns how many ended how.
fn enumerate(scenario: Scenario) -> BTreeMap<(String, Fate), usize> {
    let total = commits(scenario);
    assert!(total >= 10, "[{scenario:?}] too few commits: {total}");
    let mut fates = BTreeMap::new();
    for nth in 1..=total {
        for (fault, always) in FAULTS {
            let bench = Bench::new(scenario);
            let mut replay = Replay::new(scenario);
            replay.phases.push(format!(
                "journal write {nth} of {total} fails: {fault:?}, always {always}"
            ));
            arm(&bench, nth, fault, always);
            bench.host.restart();
            let result = bench.transact(&bench.swap);
            let fate = settle(&bench, result, &replay);
            // What a full disk can and cannot do, given the reserve.
            match (fault, always) {
                (Fault::DiskFull, false) if nth > 1 => assert!(
                    fate == Fate::Committed || (scenario == Scenario::FailingUpgrade && fate == Fate::RolledBack),
                    "{replay}: with the reserve given back, a full disk must not change the outcome: {fate:?}"
                ),
                _ if nth == 1 => assert_eq!(fate, Fate::Refused, "{replay}: the plan's own commit failed"),
                _ => assert_ne!(fate, Fate::Refused, "{replay}: 74 after the transaction began"),
            }
            *fates
                .entry((
                    format!("{fault:?}{}", if always { " always" } else { "" }),
                    fate,
                ))
                .or_insert(0) += 1;
        }
    }
    eprintln!("[{scenario:?}] {total} journal writes x 4 faults: {fates:?}");
    fates
}

// Any journal write of an upgrade failing leaves the host whole, with the exit code SPEC.md gives.
#[test]
fn every_journal_write_of_an_upgrade_may_fail() {
    let fates = enumerate(Scenario::Upgrade);
    // The faults that persist must be seen to leave the end unrecorded.
    assert!(
        fates.keys().any(|(_, fate)| *fate == Fate::Unrecorded),
        "{fates:?}"
    );
    assert!(
        fates.keys().any(|(_, fate)| *fate == Fate::RolledBack),
        "{fates:?}"
    );
}

// Any journal write of an upgrade that rolls back by itself may fail too.
#[test]
fn every_journal_write_of_a_failing_upgrade_may_fail() {
    enumerate(Scenario::FailingUpgrade);
}

// Any journal write of a rollback transaction may fail.
#[test]
fn every_journal_write_of_a_rollback_may_fail() {
    enumerate(Scenario::Rollback);
}

// Any journal write of a recovery may fail: after a crash at each commit
// of an upgrade, the recovery's N-th write fails, and the host ends whole.
#[test]
fn every_journal_write_of_a_recovery_may_fail() {
    let scenario = Scenario::Upgrade;
    let (_, _, log) = clean_run(scenario);
    let crash_points: Vec<CrashPoint> = operations_where(&log, |d| d.starts_with("commit "))
        .into_iter()
        .skip(1)
        .map(|operation| CrashPoint {
            operation,
            moment: Moment::After,
        })
        .collect();
    let mut covered = 0;
    let mut fates: BTreeMap<Fate, usize> = BTreeMap::new();
    for point in crash_points {
        // How many writes this recovery makes, undisturbed.
        let bench = Bench::new(scenario);
        let mut replay = Replay::new(scenario);
        bench.transact_crashing(Some(point), &mut replay);
        bench.host.restart();
        let before = bench.journal_faults.lock().map(|f| f.count).unwrap_or(0);
        let _ = before;
        bench.recover(None).expect("an undisturbed recovery");
        let writes = bench.journal_faults.lock().map(|f| f.count).unwrap_or(0);
        for nth in 1..=writes {
            for (fault, always) in FAULTS {
                let bench = Bench::new(scenario);
                let mut replay = Replay::new(scenario);
                bench.transact_crashing(Some(point), &mut replay);
                replay.phases.push(format!(
                    "recovery write {nth} of {writes} fails: {fault:?}, always {always}"
                ));
                arm(&bench, nth, fault, always);
                bench.host.restart();
                let result = match bench.recover(None) {
                    Ok(Some(outcome)) => Ok(outcome),
                    Ok(None) => panic!("{replay}: nothing pending"),
                    Err(error) => Err(error),
                };
                let fate = match result {
                    // The recovery could not even count itself: nothing
                    // changed, and the next recovery (fault cleared) finishes.
                    Err(Error::Journal(_)) => {
                        if let Ok(mut faults) = bench.journal_faults.lock() {
                            faults.nth = None;
                        }
                        bench.host.restart();
                        let outcome = bench.recover(None).expect("the next recovery");
                        bench.assert_invariant(outcome, &replay);
                        Fate::Refused
                    }
                    result => settle(&bench, result, &replay),
                };
                *fates.entry(fate).or_insert(0) += 1;
                covered += 1;
            }
        }
    }
    eprintln!("[recovery] cases covered: {covered}: {fates:?}");
    assert!(covered >= 100, "too few cases: {covered}");
}
