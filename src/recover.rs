//! Finishing an interrupted transaction: observe, decide, finish.
//!
//! Recovery never trusts what it cannot see. First it observes the host for
//! every step whose completion is not durable (`started`, `undoing`) and
//! writes what it saw; only then does it act, through the same executor as
//! a fresh transaction. The direction:
//! - the operator's `--resume`/`--rollback` when given;
//! - back, when two earlier recoveries were themselves interrupted (no
//!   crash loops);
//! - back, when the transaction was already rolling back;
//! - forward, when the swap (the second rename) took effect, through the
//!   health checks, which still decide between commit and rollback;
//! - back otherwise.

use crate::error::{Error, Result};
use crate::executor::{Actor, Direction, Executor, Observation, Outcome};
use crate::host::{Host, HostError};
use crate::journal::{Journal, StepState, TxnRecord, TxnState};
use crate::report::Reporter;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// After this many interrupted recoveries, recovery rolls back.
pub const MAX_INTERRUPTED_RECOVERIES: u32 = 2;

/// The direction recovery takes when the operator does not choose one.
/// `rollback_began` says whether any undo was ever attempted: a transaction
/// left `needs_operator` because a recovery could not even observe the host
/// has not turned back, and past the swap it still goes forward.
pub fn default_direction(record: &TxnRecord, swap_done: bool, rollback_began: bool) -> Direction {
    let stuck = record.interrupted_recoveries >= MAX_INTERRUPTED_RECOVERIES;
    let already_back = record.state == TxnState::RollingBack || rollback_began;
    if swap_done && !stuck && !already_back {
        Direction::Forward
    } else {
        Direction::Rollback
    }
}

/// Whether any step of the transaction was ever undone or being undone.
pub fn rollback_began(steps: &[crate::journal::StepRecord]) -> bool {
    steps.iter().any(|step| {
        matches!(
            step.state,
            StepState::Undoing | StepState::Undone | StepState::UndoFailed
        ) || step.undo_started_at.is_some()
    })
}

pub fn recover<H: Host + ?Sized>(
    host: &H,
    journal: &mut Journal,
    record: &TxnRecord,
    chosen: Option<Direction>,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Outcome> {
    let plan = record
        .plan()
        .map_err(|error| crate::journal::journal_error(journal.path(), error))?;
    // Durable before acting: if this recovery is interrupted too, the next
    // one knows, and after two it stops trying to go forward.
    journal.set_interrupted_recoveries(record.id, record.interrupted_recoveries + 1)?;
    crate::process::set_transaction(record.id);
    let limit = plan
        .jails
        .iter()
        .map(|jail| jail.timeout_ms.max(jail.health_timeout_ms))
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
    let steps = journal.steps(record.id)?;
    let mut states: BTreeMap<u32, StepState> =
        steps.iter().map(|step| (step.seq, step.state)).collect();

    let mut executor = Executor {
        actor: Actor {
            host,
            plan: &plan,
            reporter,
            recovering: true,
        },
        journal,
        id: record.id,
        states: BTreeMap::new(),
        interrupted,
    };
    // Observe the uncertain steps first: those whose completion is not
    // durable, and failed undos, which may have taken effect all the same.
    // A failed forward step is not observed again: the rollback's own undos
    // (restarting a jail, say) would make it look done.
    let mut seen: BTreeMap<u32, Observation> = BTreeMap::new();
    for step in &steps {
        if matches!(
            step.state,
            StepState::Started | StepState::Undoing | StepState::UndoFailed
        ) {
            let observation = match executor.actor.observe(&step.action) {
                Ok(observation) => observation,
                Err(HostError::Crashed) => {
                    return Err(Error::internal("simulated crash: the process stops here"))
                }
                Err(HostError::Failed(message)) => {
                    return needs_operator(
                        executor.journal,
                        record.id,
                        reporter,
                        &format!("cannot observe `{}`: {message}", step.action.describe()),
                    )
                }
            };
            reporter.line(&format!(
                "observed: {} -> {:?}",
                step.action.describe(),
                observation
            ));
            seen.insert(step.seq, observation);
        }
    }
    let swap_seq = plan.swap_seq();
    let swap_done = match (states.get(&swap_seq), seen.get(&swap_seq)) {
        (_, Some(Observation::Done)) => true,
        (_, Some(Observation::NotDone)) => false,
        (_, Some(Observation::Unknown)) => {
            return needs_operator(
                executor.journal,
                record.id,
                reporter,
                &format!("neither {:?} nor {:?} is the template this transaction moved; the store was changed by hand", plan.target, plan.live),
            )
        }
        (Some(state), None) => matches!(state, StepState::Done | StepState::UndoFailed | StepState::Undoing),
        (None, None) => false,
    };
    // Deleting is idempotent and cannot be undone: a prune always finishes.
    let direction = if plan.kind == crate::plan::TransactionKind::Prune {
        chosen.unwrap_or(Direction::Forward)
    } else {
        chosen.unwrap_or_else(|| default_direction(record, swap_done, rollback_began(&steps)))
    };
    reporter.line(&format!(
        "recovering transaction {} ({} {} -> {}): {}",
        record.id,
        record.kind,
        record.from_label,
        record.to_label,
        if direction == Direction::Forward {
            "rolling forward"
        } else {
            "rolling back"
        }
    ));

    // Resolve each uncertain step from what was seen. What cannot be seen
    // (a health check, a jail without status command) is assumed done when
    // going back, so that its undo runs, and not done when going forward,
    // so that it runs again: both are idempotent.
    let mut resolved = Vec::new();
    for (seq, observation) in &seen {
        let before = states.get(seq).copied().unwrap_or(StepState::Planned);
        let after = match (before, observation) {
            (StepState::Started, Observation::Done) => StepState::Done,
            (StepState::Started, Observation::NotDone) => StepState::Planned,
            (StepState::Started, Observation::Unknown) => {
                if direction == Direction::Forward {
                    StepState::Planned
                } else {
                    StepState::Done
                }
            }
            (StepState::Undoing | StepState::UndoFailed, Observation::NotDone) => StepState::Undone,
            (_, _) => StepState::Done,
        };
        states.insert(*seq, after);
        resolved.push((*seq, after));
    }
    // Going forward, what the journal records as done after the swap may
    // have vanished since (a reboot stops jails; boot mounts may differ):
    // mounts and starts whose effect is gone run again, and the health
    // checks always run again before the commit.
    if direction == Direction::Forward {
        for step in &steps {
            let after_swap = step.seq > swap_seq && step.phase == crate::plan::Phase::Forward;
            if !after_swap || states.get(&step.seq) != Some(&StepState::Done) {
                continue;
            }
            let again = match &step.action {
                crate::plan::Action::Health { .. } => true,
                crate::plan::Action::Mount { .. } | crate::plan::Action::Start { .. } => {
                    matches!(
                        executor.actor.observe(&step.action),
                        Ok(Observation::NotDone)
                    )
                }
                _ => false,
            };
            if again {
                states.insert(step.seq, StepState::Planned);
                resolved.push((step.seq, StepState::Planned));
            }
        }
    }
    executor.journal.set_step_states(record.id, &resolved)?;
    executor.states = states;
    executor.drive(direction)
}

fn needs_operator(
    journal: &mut Journal,
    id: i64,
    reporter: &Reporter,
    why: &str,
) -> Result<Outcome> {
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
