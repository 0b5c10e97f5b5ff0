//! One wave of steps: the intent commit, the actions (a jail's steps in
//! order, jails in parallel, `parallel` at a time), the completion commit.

use super::{Crash, Direction, Executor};
use crate::host::{Host, HostError};
use crate::journal::{StepResult, StepState};
use chrono::Utc;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

impl<H: Host + ?Sized> Executor<'_, H> {
    /// Runs one wave: intent commit, the actions, completion commit.
    /// Returns the first failure of the wave, if any.
    pub(super) fn run_wave(
        &mut self,
        seqs: &[u32],
        undo: bool,
        observe_first: bool,
    ) -> Result<Option<String>, Crash> {
        // Intent: durable before any action of the wave. A crash after this
        // commit leaves the steps `started`/`undoing`, which recovery
        // resolves by observing the host before it acts.
        self.record(|journal, id| journal.mark_started(id, seqs, undo))?;
        if self.lost.is_some() && self.direction == Direction::Forward {
            // Going forward, nothing runs without its intent on record.
            // Going back, the rollback from memory runs what it must.
            return Ok(Some(self.lost_message()));
        }
        for seq in seqs {
            self.states.insert(
                *seq,
                if undo {
                    StepState::Undoing
                } else {
                    StepState::Started
                },
            );
        }

        // Group by jail: a jail's steps run in the given order, jails in parallel.
        let mut groups: Vec<(Option<String>, Vec<u32>)> = Vec::new();
        for seq in seqs {
            let Some(step) = self.actor.plan.step(*seq) else {
                continue;
            };
            let key = step.action.jail().map(str::to_string);
            match groups
                .iter_mut()
                .find(|(group_key, _)| key.is_some() && *group_key == key)
            {
                Some((_, members)) => members.push(*seq),
                None => groups.push((key, vec![*seq])),
            }
        }
        let queue = Mutex::new(groups.into_iter().collect::<VecDeque<_>>());
        let results = Mutex::new(Vec::with_capacity(seqs.len()));
        let failed = AtomicBool::new(false);
        let crash = AtomicBool::new(false);
        let workers = self
            .actor
            .plan
            .parallel
            .max(1)
            .min(queue.lock().map(|q| q.len()).unwrap_or(1))
            .max(1);

        let actor = &self.actor;
        let work = || loop {
            let next = queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some((_, members)) = next else { break };
            for seq in members {
                if failed.load(Ordering::SeqCst) || crash.load(Ordering::SeqCst) {
                    // A sibling failed: steps that did not start keep their state.
                    let state = if undo {
                        StepState::Done
                    } else {
                        StepState::Planned
                    };
                    if let Ok(mut r) = results.lock() {
                        r.push((
                            StepResult {
                                seq,
                                state,
                                started_at: None,
                                finished_at: None,
                                error: None,
                                output: None,
                            },
                            false,
                        ));
                    }
                    continue;
                }
                let Some(step) = actor.plan.step(seq) else {
                    continue;
                };
                let action = if undo {
                    step.action.undo()
                } else {
                    Some(step.action.clone())
                };
                let Some(action) = action else { continue };
                let started_at = Utc::now();
                let outcome = actor.perform(&action, observe_first);
                let finished_at = Utc::now();
                let (state, error, output, counted) = match outcome {
                    Ok(output) => (
                        if undo {
                            StepState::Undone
                        } else {
                            StepState::Done
                        },
                        None,
                        output,
                        false,
                    ),
                    #[cfg(feature = "fault-injection")]
                    Err(HostError::Crashed) => {
                        crash.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(HostError::Failed(message) | HostError::Denied(message)) => {
                        failed.store(true, Ordering::SeqCst);
                        (
                            actor.state_after_failure(&step.action, undo),
                            Some(message),
                            None,
                            true,
                        )
                    }
                };
                actor
                    .reporter
                    .step(&action, started_at, finished_at, error.as_deref(), undo);
                if let Ok(mut r) = results.lock() {
                    r.push((
                        StepResult {
                            seq,
                            state,
                            started_at: Some(started_at),
                            finished_at: Some(finished_at),
                            error,
                            output: output.and_then(|o| serde_json::to_string(&o).ok()),
                        },
                        counted,
                    ));
                }
            }
        };
        if workers == 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(work);
                }
            });
        }
        #[cfg(feature = "fault-injection")]
        if crash.load(Ordering::SeqCst) {
            return Err(Crash);
        }
        let mut collected = results.into_inner().unwrap_or_default();
        collected.sort_by_key(|(result, _)| result.seq);
        let first_error = collected
            .iter()
            .find(|(_, counted)| *counted)
            .and_then(|(result, _)| {
                let step = self.actor.plan.step(result.seq)?;
                let error = result.error.clone().unwrap_or_default();
                Some(match (undo, step.action.undo()) {
                    (true, Some(reverse)) => format!(
                        "undo of step {} ({}): {}: {error}",
                        step.seq,
                        step.action.describe(),
                        reverse.describe()
                    ),
                    _ => format!("{}: {error}", step.action.describe()),
                })
            });
        let results: Vec<StepResult> = collected.into_iter().map(|(result, _)| result).collect();
        // Memory first: if the completion cannot be written, the rollback
        // from memory knows exactly what this wave did.
        for result in &results {
            self.states.insert(result.seq, result.state);
            let timing = self.timing.entry(result.seq).or_default();
            if undo {
                timing.undo_started = result.started_at.or(timing.undo_started);
                timing.undo_finished = result.finished_at.or(timing.undo_finished);
            } else {
                timing.started = result.started_at.or(timing.started);
                timing.finished = result.finished_at.or(timing.finished);
            }
        }
        // Completion: durable before the next wave, which may depend on it.
        self.record(|journal, id| journal.mark_finished(id, &results, undo))?;
        Ok(first_error)
    }
}
