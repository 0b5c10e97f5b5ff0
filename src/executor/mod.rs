//! Runs a plan against the host, writing ahead to the journal.
//!
//! The protocol (docs/design.md has the full argument):
//! 1. the whole plan is durable before the first action (`Journal::begin`);
//! 2. before a wave runs, one commit marks its steps `started` (intent);
//! 3. the wave's steps run, `parallel` jails at a time, a jail's own steps
//!    in order;
//! 4. one commit records each step's outcome before the next wave starts,
//!    so a step's completion is durable before any step that depends on it.
//!
//! Any failure after the first stop turns the transaction to `rolling_back`
//! (durable before the first undo). An all-at-once transaction undoes its
//! completed steps in reverse, wave by wave, and then health-checks the old
//! template's jails; a rolling one swaps the names back and restarts the
//! jails that had moved, and only those, on the old template. A failed
//! undo, or an unhealthy old template, leaves the transaction pending as
//! `needs_operator`: nothing is deleted, and `recover` finishes it once the
//! cause is fixed. The same code finishes interrupted transactions: recovery
//! only decides the direction and marks what it observed.
//!
//! The journal can fail too (a full disk, an I/O error). A full disk first
//! gets the journal's reserve back and the write tried again. A write that
//! still fails ends the journaled run: the executor rolls back what it did
//! from what it holds in memory, writing nothing, and then records the end
//! in one commit if it can (exit 1), or leaves the transaction pending for
//! `recover`, which observes the host before it acts (exit 2).

mod actions;
mod downtime;
mod wave;

pub use actions::Actor;

use crate::config::JailSpec;
use crate::host::Host;
use crate::journal::{Journal, JournalError, StepRecord, StepState, TxnState};
use crate::plan::{Action, Phase, StepOutput, Strategy};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

/// The number of the signal that interrupted the transaction (0 while none
/// has), set by the signal handlers the commands install, so that the cause
/// says which one: SIGINT is a hand at the keyboard, SIGTERM a service manager
/// or a shutdown.
pub static INTERRUPTING_SIGNAL: LazyLock<Arc<AtomicUsize>> =
    LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// The cause recorded for an interrupted transaction.
fn interruption() -> String {
    let number = INTERRUPTING_SIGNAL.load(Ordering::SeqCst);
    match i32::try_from(number)
        .ok()
        .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
    {
        Some(signal) => format!("interrupted by {}", signal.as_str()),
        None => "interrupted by a signal".to_string(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    RolledBack,
    NeedsOperator,
    /// A rolling upgrade stopped after `--pause-after` healthy batches.
    Paused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::NeedsOperator => "needs_operator",
            Outcome::Paused => "paused",
        }
    }

    /// The documented exit code: 0 committed or paused, 1 rolled back, 2
    /// needs operator.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Committed | Outcome::Paused => crate::error::code::SUCCESS,
            Outcome::RolledBack => crate::error::code::ROLLED_BACK,
            Outcome::NeedsOperator => crate::error::code::NEEDS_OPERATOR,
        }
    }
}

/// Whether an action has taken effect on the host, as far as can be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    Done,
    NotDone,
    Unknown,
}

/// The process stops here and writes nothing more: a simulated crash of the
/// crash tests.
#[cfg(feature = "fault-injection")]
#[derive(Debug)]
pub struct Crash;

/// Real runs never stop that way: without the crash tests' machinery there
/// is no value of this type.
#[cfg(not(feature = "fault-injection"))]
#[derive(Debug)]
pub enum Crash {}

/// When a step and its undo ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub undo_started: Option<DateTime<Utc>>,
    pub undo_finished: Option<DateTime<Utc>>,
}

/// How the forward run ended.
enum Forward {
    Done,
    Paused,
    Failed(String),
}

/// A transaction being carried out.
pub struct Executor<'a, H: Host + ?Sized> {
    pub actor: Actor<'a, H>,
    pub journal: &'a mut Journal,
    pub id: i64,
    /// The state of every step, as this process knows it: after each wave
    /// the same as the journal's, unless the journal failed.
    pub states: BTreeMap<u32, StepState>,
    pub timing: BTreeMap<u32, Timing>,
    /// Set by SIGINT/SIGTERM: finish the running wave, then roll back.
    pub interrupted: &'a AtomicBool,
    /// A rolling upgrade already went past its `--pause-after` batch (the
    /// operator resumed it, or a later batch had begun): it does not pause
    /// again. Set by recovery.
    pub past_pause: bool,
    /// The journal failed: nothing more is written until the end.
    lost: Option<JournalError>,
    /// Which way the run goes now: going back, waves run even when the
    /// journal cannot record their intent (the rollback from memory).
    direction: Direction,
    /// Why it rolls back, kept for a journal that could not record it yet.
    cause: Option<String>,
}

fn parse_time(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl<'a, H: Host + ?Sized> Executor<'a, H> {
    pub fn new(
        actor: Actor<'a, H>,
        journal: &'a mut Journal,
        id: i64,
        interrupted: &'a AtomicBool,
    ) -> Self {
        Executor {
            actor,
            journal,
            id,
            states: BTreeMap::new(),
            timing: BTreeMap::new(),
            interrupted,
            past_pause: false,
            lost: None,
            direction: Direction::Forward,
            cause: None,
        }
    }

    /// Takes over what the journal holds of an interrupted run: states,
    /// times, and what its steps produced (a stage's copy).
    pub fn resume_from(&mut self, steps: &[StepRecord]) {
        for step in steps {
            self.states.insert(step.seq, step.state);
            self.timing.insert(
                step.seq,
                Timing {
                    started: parse_time(&step.started_at),
                    finished: parse_time(&step.finished_at),
                    undo_started: parse_time(&step.undo_started_at),
                    undo_finished: parse_time(&step.undo_finished_at),
                },
            );
            let output = step
                .result
                .as_deref()
                .and_then(|text| serde_json::from_str::<StepOutput>(text).ok());
            if let Some(StepOutput::Copy { id, .. }) = output {
                if let Ok(mut copy) = self.actor.copy.lock() {
                    *copy = Some(id);
                }
            }
        }
    }

    /// Carries the transaction to a final state in `direction`, to
    /// `needs_operator`, or (rolling, with a pause) to `paused`.
    pub fn drive(&mut self, direction: Direction) -> Result<Outcome, Crash> {
        if direction == Direction::Forward {
            self.record(|journal, id| journal.set_state(id, TxnState::Running, None, None))?;
            let cause = match self.forward()? {
                Forward::Done => return self.finish(TxnState::Committed),
                Forward::Paused => {
                    self.record(|journal, id| journal.set_state(id, TxnState::Paused, None, None))?;
                    if self.lost.is_none() {
                        return Ok(Outcome::Paused);
                    }
                    self.lost_message()
                }
                Forward::Failed(cause) => cause,
            };
            self.actor
                .reporter
                .line(&format!("failed: {cause}; rolling back"));
            self.cause = Some(cause.clone());
            self.record(|journal, id| {
                journal.set_state(id, TxnState::RollingBack, None, Some(&cause))
            })?;
        } else {
            self.record(|journal, id| journal.set_state(id, TxnState::RollingBack, None, None))?;
        }
        self.rollback()
    }

    fn lost_message(&self) -> String {
        match &self.lost {
            Some(error) => format!("the journal cannot be written: {error}"),
            None => String::new(),
        }
    }

    /// Writes to the journal unless it already failed. A full disk gets the
    /// reserve back and one more try; a write that still fails marks the
    /// journal lost, and the caller rolls back from memory.
    fn record(
        &mut self,
        mut write: impl FnMut(&mut Journal, i64) -> Result<(), JournalError>,
    ) -> Result<(), Crash> {
        if self.lost.is_some() {
            return Ok(());
        }
        let mut result = write(self.journal, self.id);
        if let Err(error) = &result {
            if error.disk_full() && self.journal.release_reserve() {
                self.actor.reporter.line(
                    "the journal's disk is full: gave back the space set aside for it and wrote again",
                );
                result = write(self.journal, self.id);
            }
        }
        match result {
            Ok(()) => Ok(()),
            #[cfg(feature = "fault-injection")]
            Err(error) if error.crashed() => Err(Crash),
            Err(error) => {
                self.actor.reporter.line(&format!(
                    "the journal cannot be written ({error}); undoing what was done, from memory"
                ));
                self.lost = Some(error);
                Ok(())
            }
        }
    }

    fn forward(&mut self) -> Result<Forward, Crash> {
        let plan = self.actor.plan;
        let waves = plan.waves(Phase::Forward);
        for wave in &waves {
            let seqs: Vec<u32> = plan
                .steps
                .iter()
                .filter(|step| {
                    step.wave == *wave
                        && step.phase == Phase::Forward
                        && self.states.get(&step.seq) != Some(&StepState::Done)
                })
                .map(|step| step.seq)
                .collect();
            if self.pauses_before(*wave) {
                return Ok(Forward::Paused);
            }
            if seqs.is_empty() {
                continue;
            }
            if self.lost.is_some() {
                return Ok(Forward::Failed(self.lost_message()));
            }
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok(Forward::Failed(interruption()));
            }
            if let Some(error) = self.run_wave(&seqs, false, false)? {
                return Ok(Forward::Failed(error));
            }
            if self.lost.is_some() {
                return Ok(Forward::Failed(self.lost_message()));
            }
        }
        Ok(Forward::Done)
    }

    /// Whether a rolling upgrade pauses before `wave`: its first wave of
    /// the batch after the one `--pause-after` names, once every batch up
    /// to that one passed its health checks (the waves before ran), unless
    /// it went past the pause before. Checked before the wave, so that a
    /// recovery whose batches up to the pause needed nothing more stops
    /// there too.
    fn pauses_before(&self, wave: u32) -> bool {
        let plan = self.actor.plan;
        let Strategy::Rolling {
            batches,
            pause_after: Some(pause),
        } = plan.strategy
        else {
            return false;
        };
        if self.past_pause || pause >= batches {
            return false;
        }
        let first_after_pause = plan
            .steps
            .iter()
            .filter(|step| step.phase == Phase::Forward && step.batch == Some(pause + 1))
            .map(|step| step.wave)
            .min();
        if first_after_pause != Some(wave) {
            return false;
        }
        self.actor.reporter.line(&format!(
            "paused after batch {pause} of {batches}: `jailswap recover --resume` continues, `jailswap recover --rollback` undoes"
        ));
        true
    }

    fn needs_operator(&mut self, attention: String) -> Result<Outcome, Crash> {
        self.actor.reporter.line(&attention);
        if self.lost.is_some() {
            self.record_despite_loss(TxnState::NeedsOperator, Some(&attention));
            return Ok(Outcome::NeedsOperator);
        }
        self.record(|journal, id| {
            journal.set_state(id, TxnState::NeedsOperator, Some(&attention), None)
        })?;
        self.record(|journal, id| journal.set_interrupted_recoveries(id, 0))?;
        Ok(Outcome::NeedsOperator)
    }

    fn rollback(&mut self) -> Result<Outcome, Crash> {
        self.direction = Direction::Rollback;
        let plan = self.actor.plan;
        let undoable = |state: Option<&StepState>| {
            matches!(
                state,
                Some(StepState::Done | StepState::Undoing | StepState::UndoFailed)
            )
        };
        // A rolling upgrade undoes only the renames; the jails that moved
        // restart below. The jails it must restart are decided first.
        let rolling = plan.rolling();
        let moved: BTreeSet<String> = plan
            .steps
            .iter()
            .filter(|step| {
                step.phase == Phase::Forward
                    && self
                        .states
                        .get(&step.seq)
                        .is_some_and(|state| state.may_be_in_effect())
            })
            .chain(plan.steps.iter().filter(|step| {
                // A restart that already began is finished, whatever else.
                step.phase == Phase::AfterRollback
                    && self
                        .states
                        .get(&step.seq)
                        .is_some_and(|state| *state != StepState::Planned)
            }))
            .filter_map(|step| step.action.jail().map(str::to_string))
            .collect();
        for wave in plan.waves(Phase::Forward).into_iter().rev() {
            let mut seqs: Vec<u32> = plan
                .steps
                .iter()
                .filter(|step| {
                    step.wave == wave
                        && step.phase == Phase::Forward
                        && step.action.undo().is_some()
                        && (!rolling || step.action.jail().is_none())
                        && undoable(self.states.get(&step.seq))
                })
                .map(|step| step.seq)
                .collect();
            if seqs.is_empty() {
                continue;
            }
            seqs.reverse();
            if let Some(error) = self.run_wave(&seqs, true, false)? {
                return self.needs_operator(format!(
                    "rollback could not be completed: {error}; fix the cause, then run `jailswap recover` (it retries the rollback)"
                ));
            }
        }
        let moved = if rolling {
            self.with_disturbed(moved)?
        } else {
            moved
        };
        for wave in plan.waves(Phase::AfterRollback) {
            let seqs: Vec<u32> = plan
                .steps
                .iter()
                .filter(|step| step.wave == wave && step.phase == Phase::AfterRollback)
                .filter(|step| {
                    !rolling
                        || (step.action.jail().is_some_and(|jail| moved.contains(jail))
                            && (matches!(step.action, Action::Health { .. })
                                || self.states.get(&step.seq) != Some(&StepState::Done)))
                })
                .map(|step| step.seq)
                .collect();
            if seqs.is_empty() {
                continue;
            }
            if let Some(error) = self.run_wave(&seqs, false, true)? {
                return self.needs_operator(format!(
                    "rolled back to {}, but its jails are not healthy: {error}; fix them, then run `jailswap recover`",
                    plan.from_label
                ));
            }
        }
        self.finish(TxnState::RolledBack)
    }

    /// The jails a rolling rollback restarts: those that moved, and those
    /// that did not but no longer run as the upgrade found them (one died,
    /// or a reboot mounted the new template under it), so that afterwards
    /// every jail runs on the old template. A jail that cannot be looked at
    /// restarts too: each step of a restart first looks whether it is
    /// needed, so a healthy jail's restart does nothing it need not.
    fn with_disturbed(&self, mut moved: BTreeSet<String>) -> Result<BTreeSet<String>, Crash> {
        let plan = self.actor.plan;
        let host = self.actor.host;
        let unmoved: Vec<JailSpec> = plan
            .jails
            .iter()
            .filter(|jail| !moved.contains(&jail.name))
            .cloned()
            .collect();
        if unmoved.is_empty() {
            return Ok(moved);
        }
        let live = plan.store.join(&plan.live);
        let running = host.jails_running(&unmoved, plan.parallel);
        for (jail, running) in unmoved.iter().zip(running) {
            let ran = plan.steps.iter().any(|step| {
                step.phase == Phase::Forward
                    && matches!(&step.action, Action::Start { jail: name } if *name == jail.name)
            });
            let dead = match running {
                Ok(running) => ran && running == Some(false),
                #[cfg(feature = "fault-injection")]
                Err(crate::host::HostError::Crashed) => return Err(Crash),
                Err(_) => true,
            };
            let elsewhere = match jail.mounts.iter().find(|mount| mount.source == live) {
                None => false,
                Some(root) => match host.template_at(&root.target) {
                    Ok(id) => id.as_ref() != Some(&plan.live_id),
                    #[cfg(feature = "fault-injection")]
                    Err(crate::host::HostError::Crashed) => return Err(Crash),
                    Err(_) => true,
                },
            };
            if dead || elsewhere {
                self.actor.reporter.line(&format!(
                    "jail {} had not moved, but it {}: it restarts on {} too",
                    jail.name,
                    if dead {
                        "no longer runs"
                    } else {
                        "no longer runs on the old template"
                    },
                    plan.from_label
                ));
                moved.insert(jail.name.clone());
            }
        }
        Ok(moved)
    }

    /// Makes the transaction final, in the journal if it can.
    fn finish(&mut self, state: TxnState) -> Result<Outcome, Crash> {
        let outcome = if state == TxnState::Committed {
            Outcome::Committed
        } else {
            Outcome::RolledBack
        };
        if self.lost.is_some() {
            if self.record_despite_loss(state, None) {
                return Ok(outcome);
            }
            return Ok(Outcome::NeedsOperator);
        }
        let (total, per_jail) = self.downtime();
        self.record(|journal, id| journal.finish(id, state, (total, Some(&per_jail)), &[], None))?;
        if self.lost.is_some() && !self.record_despite_loss(state, None) {
            return Ok(Outcome::NeedsOperator);
        }
        Ok(outcome)
    }

    /// After the journal failed: one commit that records every step as this
    /// process knows it and the end it reached. Returns whether it took.
    fn record_despite_loss(&mut self, state: TxnState, attention: Option<&str>) -> bool {
        let steps: Vec<(u32, StepState)> = self.states.iter().map(|(s, st)| (*s, *st)).collect();
        let (total, per_jail) = self.downtime();
        let attempt = |journal: &mut Journal| -> Result<(), JournalError> {
            if state.is_final() {
                journal.finish(
                    self.id,
                    state,
                    (total, Some(&per_jail)),
                    &steps,
                    self.cause.as_deref(),
                )
            } else {
                journal.set_step_states(self.id, &steps)?;
                journal.set_state(self.id, state, attention, self.cause.as_deref())
            }
        };
        let mut result = attempt(self.journal);
        if result.as_ref().is_err_and(|error| error.disk_full()) && self.journal.release_reserve() {
            result = attempt(self.journal);
        }
        match result {
            Ok(()) => {
                self.actor.reporter.line(&format!(
                    "the journal could be written again: it records the transaction as {}",
                    state.as_str()
                ));
                true
            }
            Err(error) => {
                self.actor.reporter.line(&format!(
                    "the host is back on {} but the journal cannot record it ({error}); free room for it, then run `jailswap recover`, which looks at the host and finishes the record",
                    self.actor.plan.from_label
                ));
                false
            }
        }
    }
}
