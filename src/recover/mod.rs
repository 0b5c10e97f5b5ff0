//! Finishing an interrupted transaction: observe, decide, finish.
//!
//! Recovery never trusts what it cannot see. First it observes the host for
//! every step whose completion is not durable (`started`, `undoing`), and
//! for every rename the journal says is done (a run whose journal failed
//! may have undone it from memory without a record); it writes what it saw;
//! only then does it act, through the same executor as a fresh transaction.
//! Which way it goes is [`decide`], a pure function of the plan, the step
//! states and the observations, which `status` also uses to say what
//! `recover` would do.

use crate::executor::{Actor, Crash, Direction, Executor, Observation, Outcome};
use crate::host::{Host, HostError};
use crate::journal::{Journal, JournalError, StepRecord, StepState, TxnRecord, TxnState};
use crate::output::Reporter;
use crate::plan::{Action, Phase, Plan, TransactionKind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;

/// After this many interrupted recoveries, recovery rolls back.
pub const MAX_INTERRUPTED_RECOVERIES: u32 = 2;

/// What recovery knows when it decides.
pub struct Situation<'a> {
    pub plan: &'a Plan,
    pub state: TxnState,
    pub interrupted_recoveries: u32,
    pub steps: &'a [StepRecord],
    /// What was seen of the steps it looked at; empty when nobody looked.
    pub observed: &'a BTreeMap<u32, Observation>,
    /// The operator's `--resume` / `--rollback`.
    pub chosen: Option<Direction>,
    /// For a paused rolling upgrade: whether every jail still runs where the
    /// journal says (`None` when nobody looked).
    pub undisturbed: Option<bool>,
}

/// Which way recovery goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Go {
        direction: Direction,
        because: String,
    },
    /// A paused rolling upgrade that nothing disturbed: left for the operator.
    Wait { because: String },
    /// Recovery must look at the host before it can say.
    LookFirst { because: String },
    /// The store is not as the journal says: the operator must put it back.
    Operator { because: String },
}

fn go(direction: Direction, because: impl Into<String>) -> Decision {
    Decision::Go {
        direction,
        because: because.into(),
    }
}

/// Whether any step of the transaction was ever undone or being undone.
pub fn rollback_began(steps: &[StepRecord]) -> bool {
    steps.iter().any(|step| {
        matches!(
            step.state,
            StepState::Undoing | StepState::Undone | StepState::UndoFailed
        ) || step.undo_started_at.is_some()
    })
}

/// The direction recovery takes. The operator's choice wins; a prune always
/// finishes (deleting cannot be undone); a paused upgrade waits unless
/// disturbed; two interrupted recoveries, or a rollback already begun, go
/// back; otherwise the swap decides: forward once it took effect (the point
/// of no return), back before.
pub fn decide(situation: &Situation) -> Decision {
    let plan = situation.plan;
    if plan.kind == TransactionKind::Prune {
        return go(
            situation.chosen.unwrap_or(Direction::Forward),
            "forward: deleting cannot be undone, so a prune always finishes",
        );
    }
    if let Some(direction) = situation.chosen {
        let way = match direction {
            Direction::Forward => "forward",
            Direction::Rollback => "back",
        };
        return go(direction, format!("{way}: the operator chose it"));
    }
    if situation.state == TxnState::Paused {
        return match situation.undisturbed {
            Some(true) => Decision::Wait {
                because: "the rolling upgrade is paused and every jail runs where the journal says; `jailswap recover --resume` continues with the next batch, `jailswap recover --rollback` undoes it".into(),
            },
            Some(false) => go(
                Direction::Rollback,
                "back: the paused upgrade was disturbed (a jail no longer runs where the journal says, after a crash or a reboot)",
            ),
            None => Decision::LookFirst {
                because: "paused: `recover` leaves it paused if every jail still runs where the journal says, and rolls it back otherwise".into(),
            },
        };
    }
    if situation.interrupted_recoveries >= MAX_INTERRUPTED_RECOVERIES {
        return go(
            Direction::Rollback,
            format!("back: {MAX_INTERRUPTED_RECOVERIES} recoveries were themselves interrupted, and it rolls back rather than loop"),
        );
    }
    if situation.state == TxnState::RollingBack || rollback_began(situation.steps) {
        return go(Direction::Rollback, "back: it was already rolling back");
    }
    let moved_by_hand = plan.steps.iter().find(|step| {
        matches!(step.action, Action::Rename { .. } | Action::Publish { .. })
            && situation.observed.get(&step.seq) == Some(&Observation::Unknown)
    });
    if let Some(step) = moved_by_hand {
        return Decision::Operator {
            because: format!(
                "step {} ({}): neither name holds the template this transaction moved; the store was changed by hand",
                step.seq,
                step.action.describe()
            ),
        };
    }
    let swap = plan.swap_seq();
    let state = situation
        .steps
        .iter()
        .find(|step| step.seq == swap)
        .map(|step| step.state);
    let swapped = match (situation.observed.get(&swap), state) {
        (Some(Observation::Done), _) => true,
        (Some(_), _) => false,
        (None, Some(StepState::Started)) => {
            return Decision::LookFirst {
                because: "forward if the swap took effect, back otherwise (recovery looks first)"
                    .into(),
            }
        }
        (None, Some(state)) => matches!(
            state,
            StepState::Done | StepState::Undoing | StepState::UndoFailed
        ),
        (None, None) => false,
    };
    if swapped {
        let through = if plan.kind == TransactionKind::Stage {
            "the new template is published: it finishes"
        } else {
            "the swap took effect (the point of no return): it finishes the upgrade through the health checks"
        };
        go(Direction::Forward, format!("forward: {through}"))
    } else {
        go(
            Direction::Rollback,
            "back: it was interrupted before the swap, so the template that was live stays live",
        )
    }
}

/// The steps recovery must look at: those whose completion is not durable,
/// failed undos (which may have taken effect all the same), and every
/// rename recorded as done.
fn uncertain(step: &StepRecord) -> bool {
    matches!(
        step.state,
        StepState::Started | StepState::Undoing | StepState::UndoFailed
    ) || (step.state == StepState::Done
        && matches!(
            step.action,
            Action::Rename { .. } | Action::Carry { .. } | Action::Publish { .. }
        ))
}

/// Resolves one observed step's state for the chosen direction. What cannot
/// be seen (a health check, a jail without status command) is assumed done
/// when going back, so that its undo runs, and not done when going forward,
/// so that it runs again: both are idempotent.
fn resolve(before: StepState, seen: Observation, direction: Direction) -> StepState {
    match (before, seen) {
        (StepState::Started, Observation::Done) => StepState::Done,
        (StepState::Started, Observation::NotDone) => StepState::Planned,
        (StepState::Started, Observation::Unknown) => match direction {
            Direction::Forward => StepState::Planned,
            Direction::Rollback => StepState::Done,
        },
        (StepState::Undoing | StepState::UndoFailed, Observation::NotDone) => StepState::Undone,
        (StepState::Done, Observation::NotDone) => match direction {
            Direction::Forward => StepState::Planned,
            Direction::Rollback => StepState::Undone,
        },
        (_, _) => StepState::Done,
    }
}

/// What disturbed a paused rolling upgrade, if anything: every jail must
/// run on the template the journal says (the new one once its batch
/// passed, the old one otherwise), and run at all if it ran when the
/// upgrade began.
fn paused_disturbance<H: Host + ?Sized>(
    host: &H,
    plan: &Plan,
    steps: &[StepRecord],
) -> Result<Option<String>, HostError> {
    let running = host.jails_running(&plan.jails, plan.parallel);
    for (jail, running) in plan.jails.iter().zip(running) {
        let forward = |wanted: &dyn Fn(&Action) -> bool| {
            steps.iter().any(|step| {
                step.phase == Phase::Forward
                    && step.action.jail() == Some(jail.name.as_str())
                    && wanted(&step.action)
            })
        };
        let was_running = forward(&|action| matches!(action, Action::Stop { .. }));
        let moved = steps.iter().any(|step| {
            step.phase == Phase::Forward
                && step.action.jail() == Some(jail.name.as_str())
                && matches!(step.action, Action::Mount { .. })
                && step.state == StepState::Done
        });
        if was_running && running? == Some(false) {
            return Ok(Some(format!("jail {} no longer runs", jail.name)));
        }
        let live = plan.store.join(&plan.live);
        let Some(root) = jail.mounts.iter().find(|mount| mount.source == live) else {
            continue;
        };
        let expected = if moved {
            &plan.target_id
        } else {
            &plan.live_id
        };
        if host.template_at(&root.target)?.as_ref() != Some(expected) {
            let recorded = if moved { "new" } else { "old" };
            return Ok(Some(format!(
                "jail {} no longer runs on the {recorded} template, as the journal records",
                jail.name
            )));
        }
    }
    Ok(None)
}

/// Whether a rolling upgrade went past its `--pause-after` batch: a step
/// of a later batch left `planned` in the journal (its intent was recorded,
/// whatever was observed of it since).
fn past_pause(plan: &Plan, steps: &[StepRecord]) -> bool {
    let crate::plan::Strategy::Rolling {
        pause_after: Some(pause),
        ..
    } = plan.strategy
    else {
        return false;
    };
    steps.iter().any(|step| {
        step.phase == Phase::Forward
            && step.batch.is_some_and(|batch| batch > pause)
            && step.state != StepState::Planned
    })
}

/// Why recovery could not proceed.
#[derive(Debug)]
pub enum RecoverError {
    Journal(JournalError),
    /// The process is considered dead (crash tests only).
    #[cfg(feature = "fault-injection")]
    Crash,
}

impl From<JournalError> for RecoverError {
    fn from(error: JournalError) -> Self {
        #[cfg(feature = "fault-injection")]
        if error.crashed() {
            return RecoverError::Crash;
        }
        RecoverError::Journal(error)
    }
}

#[cfg(feature = "fault-injection")]
impl From<Crash> for RecoverError {
    fn from(_: Crash) -> Self {
        RecoverError::Crash
    }
}

#[cfg(not(feature = "fault-injection"))]
impl From<Crash> for RecoverError {
    fn from(crash: Crash) -> Self {
        match crash {}
    }
}

/// Finishes the pending transaction `record`. A paused transaction that
/// nothing disturbed, without a chosen direction, stays paused
/// (`Outcome::Paused`).
pub fn recover<H: Host + ?Sized>(
    host: &H,
    journal: &mut Journal,
    record: &TxnRecord,
    chosen: Option<Direction>,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Outcome, RecoverError> {
    let plan = record.plan().map_err(|why| JournalError {
        path: journal.path().to_path_buf(),
        cause: crate::journal::Cause::Corrupt(why),
    })?;
    let steps = journal.steps(record.id)?;
    let mut undisturbed = None;
    let mut disturbance = None;
    if record.state == TxnState::Paused && chosen.is_none() {
        match paused_disturbance(host, &plan, &steps) {
            // Left as it is, and not counted as an interrupted recovery.
            Ok(None) => return Ok(Outcome::Paused),
            Ok(Some(why)) => {
                undisturbed = Some(false);
                disturbance = Some(why);
            }
            #[cfg(feature = "fault-injection")]
            Err(HostError::Crashed) => return Err(RecoverError::Crash),
            Err(error) => {
                return needs_operator(
                    journal,
                    record.id,
                    reporter,
                    &format!("cannot look at the jails of the paused upgrade: {error}"),
                )
            }
        }
    }
    // Durable before acting: if this recovery is interrupted too, the next
    // one knows, and after two it stops trying to go forward.
    journal.set_interrupted_recoveries(record.id, record.interrupted_recoveries + 1)?;
    crate::process::set_transaction(record.id);
    let limit = plan
        .jails
        .iter()
        .map(|jail| jail.timeout_ms.max(jail.health_timeout_ms))
        .chain(plan.steps.iter().filter_map(|step| match step.action {
            Action::Run { timeout_ms, .. } => Some(timeout_ms),
            _ => None,
        }))
        .max()
        .unwrap_or(0);
    let commands = command_directory(journal.path());
    let leftovers = crate::process::settle_leftover_commands(
        record.id,
        &commands,
        std::time::Duration::from_millis(limit),
    );
    crate::process::track_commands_in(&commands);
    if leftovers > 0 {
        reporter.line(&format!(
            "waited for {leftovers} command(s) the interrupted run left behind"
        ));
    }

    let mut executor = Executor::new(
        Actor::new(host, &plan, reporter, true),
        journal,
        record.id,
        interrupted,
    );
    executor.resume_from(&steps);
    // The operator's `--resume` continues past the pause; a bare recovery
    // stops there as the interrupted run would have, unless that run had
    // already gone past it.
    executor.past_pause = chosen == Some(Direction::Forward) || past_pause(&plan, &steps);
    // Observe the uncertain steps first. A failed forward step is not
    // observed again: the rollback's own undos (restarting a jail, say)
    // would make it look done.
    let mut seen: BTreeMap<u32, Observation> = BTreeMap::new();
    for step in steps.iter().filter(|step| uncertain(step)) {
        let observation = match executor.actor.observe(&step.action) {
            Ok(observation) => observation,
            #[cfg(feature = "fault-injection")]
            Err(HostError::Crashed) => return Err(RecoverError::Crash),
            Err(error) => {
                return needs_operator(
                    executor.journal,
                    record.id,
                    reporter,
                    &format!("cannot observe `{}`: {error}", step.action.describe()),
                )
            }
        };
        if step.state != StepState::Done || observation != Observation::Done {
            reporter.line(&format!(
                "observed: {} -> {observation:?}",
                step.action.describe()
            ));
        }
        seen.insert(step.seq, observation);
    }
    let decision = decide(&Situation {
        plan: &plan,
        state: record.state,
        interrupted_recoveries: record.interrupted_recoveries,
        steps: &steps,
        observed: &seen,
        chosen,
        undisturbed,
    });
    let (direction, because) = match decision {
        Decision::Go { direction, because } => (direction, because),
        Decision::Operator { because }
        | Decision::Wait { because }
        | Decision::LookFirst { because } => {
            return needs_operator(executor.journal, record.id, reporter, &because)
        }
    };
    reporter.line(&format!(
        "recovering transaction {} ({} {} -> {}): {because}",
        record.id, record.kind, record.from_label, record.to_label
    ));

    let mut resolved = Vec::new();
    for (seq, observation) in &seen {
        let before = executor
            .states
            .get(seq)
            .copied()
            .unwrap_or(StepState::Planned);
        // A rolling rollback's restart steps are actions of their own, not
        // undos: what cannot be seen of them runs again (each is idempotent).
        let restart = plan
            .step(*seq)
            .is_some_and(|step| step.phase == Phase::AfterRollback);
        let way = if restart {
            Direction::Forward
        } else {
            direction
        };
        let after = resolve(before, *observation, way);
        if after != before {
            resolved.push((*seq, after));
        }
        executor.states.insert(*seq, after);
    }
    // Going forward after a rolling rollback began: the jails it restarted
    // (or may have begun to restart: its intent is recorded, whatever was
    // observed since) on the old template must move again, every step of
    // theirs from the stop on, and should the upgrade fail again their
    // restart starts afresh. Their forward steps still say `done`, because
    // a rolling rollback restarts jails rather than undoing steps.
    if direction == Direction::Forward && plan.rolling() {
        let restarted: BTreeSet<&str> = steps
            .iter()
            .filter(|step| step.phase == Phase::AfterRollback && step.state != StepState::Planned)
            .filter_map(|step| step.action.jail())
            .collect();
        for step in &plan.steps {
            let again = step
                .action
                .jail()
                .is_some_and(|jail| restarted.contains(jail))
                && executor
                    .states
                    .get(&step.seq)
                    .is_some_and(|state| *state != StepState::Planned);
            if again {
                executor.states.insert(step.seq, StepState::Planned);
                resolved.push((step.seq, StepState::Planned));
            }
        }
    }
    // Going forward, what the journal records as done after the swap may
    // have vanished since (a reboot stops jails; boot mounts may differ):
    // mounts and starts whose effect is gone run again, and the health
    // checks always run again before the commit.
    if direction == Direction::Forward {
        let swap = plan.swap_seq();
        for step in &steps {
            let after_swap = step.seq > swap && step.phase == Phase::Forward;
            if !after_swap || executor.states.get(&step.seq) != Some(&StepState::Done) {
                continue;
            }
            let again = match &step.action {
                Action::Health { .. } => true,
                Action::Mount { .. } | Action::Start { .. } => matches!(
                    executor.actor.observe(&step.action),
                    Ok(Observation::NotDone)
                ),
                _ => false,
            };
            if again {
                executor.states.insert(step.seq, StepState::Planned);
                resolved.push((step.seq, StepState::Planned));
            }
        }
    }
    executor.journal.set_step_states(record.id, &resolved)?;
    // The cause `history` gives: the interruption and the way recovery
    // took, or why a paused upgrade did not go on.
    let cause = if record.state == TxnState::Paused {
        match (&disturbance, direction) {
            (Some(why), _) => Some(format!(
                "the paused upgrade was disturbed: {why}; recovery rolled it back"
            )),
            (None, Direction::Rollback) => Some(
                "the operator rolled the paused upgrade back (`recover --rollback`)".to_string(),
            ),
            (None, Direction::Forward) => None,
        }
    } else {
        let at = steps
            .iter()
            .filter(|step| step.state != StepState::Planned)
            .max_by_key(|step| step.seq)
            .map(|step| format!(" during step {} ({})", step.seq, step.action.describe()))
            .unwrap_or_default();
        Some(format!("interrupted{at}; recovery went {because}"))
    };
    if let (None, Some(cause)) = (&record.error, cause) {
        executor.journal.set_state(
            record.id,
            record.state,
            record.attention.as_deref(),
            Some(&cause),
        )?;
    }
    Ok(executor.drive(direction)?)
}

fn needs_operator(
    journal: &mut Journal,
    id: i64,
    reporter: &Reporter,
    why: &str,
) -> Result<Outcome, RecoverError> {
    let attention = format!("{why}; put the store back as the journal describes (`jailswap show {id}`), then run `jailswap recover`");
    reporter.line(&attention);
    journal.set_state(id, TxnState::NeedsOperator, Some(&attention), None)?;
    journal.set_interrupted_recoveries(id, 0)?;
    Ok(Outcome::NeedsOperator)
}

/// Where the leaders of running jail commands are recorded: next to the journal.
pub fn command_directory(journal: &std::path::Path) -> std::path::PathBuf {
    journal
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join("commands")
}

#[cfg(test)]
mod tests;
