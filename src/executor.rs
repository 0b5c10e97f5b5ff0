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
//! (durable before the first undo), undoes the completed steps in reverse,
//! wave by wave, and then health-checks the old template's jails. A failed
//! undo, or an unhealthy old template, leaves the transaction pending as
//! `needs_operator`: nothing is deleted, and `recover` finishes it once the
//! cause is fixed. The same code finishes interrupted transactions: recovery
//! only decides the direction and marks what it observed.

use crate::config::JailSpec;
use crate::error::{Error, Result};
use crate::health;
use crate::host::{Host, HostError};
use crate::journal::{Journal, StepResult, StepState, TxnState};
use crate::plan::{Action, Phase, Plan};
use crate::report::Reporter;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::NeedsOperator => "needs_operator",
        }
    }

    /// The documented exit code: 0 committed, 1 rolled back, 2 needs operator.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Committed => 0,
            Outcome::RolledBack => 1,
            Outcome::NeedsOperator => 2,
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

/// What acts on the host; shared by the worker threads of a wave.
pub struct Actor<'a, H: Host + ?Sized> {
    pub host: &'a H,
    pub plan: &'a Plan,
    pub reporter: &'a Reporter,
    /// Set by recovery: the host may have changed since the journal was
    /// written (a reboot remounts fstab and starts jails), so every action
    /// first looks whether it is already in effect and then does nothing.
    pub recovering: bool,
}

/// A transaction being carried out.
pub struct Executor<'a, H: Host + ?Sized> {
    pub actor: Actor<'a, H>,
    pub journal: &'a mut Journal,
    pub id: i64,
    /// The state of every step, as the journal holds it.
    pub states: BTreeMap<u32, StepState>,
    /// Set by SIGINT/SIGTERM: finish the running wave, then roll back.
    pub interrupted: &'a AtomicBool,
}

fn crashed() -> Error {
    Error::internal("simulated crash: the process stops here")
}

impl<'a, H: Host + ?Sized> Executor<'a, H> {
    /// Carries the transaction to a final state in `direction`, or to
    /// `needs_operator`.
    pub fn drive(&mut self, direction: Direction) -> Result<Outcome> {
        if direction == Direction::Forward {
            self.journal
                .set_state(self.id, TxnState::Running, None, None)?;
            match self.forward()? {
                None => {
                    let (total, per_jail) = self.downtime()?;
                    self.journal
                        .finish(self.id, TxnState::Committed, total, Some(&per_jail))?;
                    return Ok(Outcome::Committed);
                }
                Some(error) => {
                    self.actor
                        .reporter
                        .line(&format!("failed: {error}; rolling back"));
                    self.journal
                        .set_state(self.id, TxnState::RollingBack, None, Some(&error))?;
                }
            }
        } else {
            self.journal
                .set_state(self.id, TxnState::RollingBack, None, None)?;
        }
        self.rollback()
    }

    fn forward(&mut self) -> Result<Option<String>> {
        for wave in self.actor.plan.waves(Phase::Forward) {
            let seqs: Vec<u32> = self
                .actor
                .plan
                .steps
                .iter()
                .filter(|step| {
                    step.wave == wave && self.states.get(&step.seq) != Some(&StepState::Done)
                })
                .map(|step| step.seq)
                .collect();
            if seqs.is_empty() {
                continue;
            }
            if self.interrupted.load(Ordering::SeqCst) {
                return Ok(Some("interrupted by a signal".to_string()));
            }
            if let Some(error) = self.run_wave(&seqs, false)? {
                return Ok(Some(error));
            }
        }
        Ok(None)
    }

    fn rollback(&mut self) -> Result<Outcome> {
        let undoable = |state: Option<&StepState>| {
            matches!(
                state,
                Some(StepState::Done | StepState::Undoing | StepState::UndoFailed)
            )
        };
        for wave in self.actor.plan.waves(Phase::Forward).into_iter().rev() {
            let mut seqs: Vec<u32> = self
                .actor
                .plan
                .steps
                .iter()
                .filter(|step| {
                    step.wave == wave
                        && step.action.undo().is_some()
                        && undoable(self.states.get(&step.seq))
                })
                .map(|step| step.seq)
                .collect();
            if seqs.is_empty() {
                continue;
            }
            seqs.reverse();
            if let Some(error) = self.run_wave(&seqs, true)? {
                let attention = format!(
                    "rollback could not be completed: {error}; fix the cause, then run `jailswap recover` (it retries the rollback)"
                );
                self.actor.reporter.line(&attention);
                self.journal
                    .set_state(self.id, TxnState::NeedsOperator, Some(&attention), None)?;
                self.journal.set_interrupted_recoveries(self.id, 0)?;
                return Ok(Outcome::NeedsOperator);
            }
        }
        let checks: Vec<u32> = self
            .actor
            .plan
            .steps
            .iter()
            .filter(|step| step.phase == Phase::AfterRollback)
            .map(|step| step.seq)
            .collect();
        if !checks.is_empty() {
            if let Some(error) = self.run_wave(&checks, false)? {
                let attention = format!(
                    "rolled back to {}, but its jails are not healthy: {error}; fix them, then run `jailswap recover`",
                    self.actor.plan.from_label
                );
                self.actor.reporter.line(&attention);
                self.journal
                    .set_state(self.id, TxnState::NeedsOperator, Some(&attention), None)?;
                self.journal.set_interrupted_recoveries(self.id, 0)?;
                return Ok(Outcome::NeedsOperator);
            }
        }
        let (total, per_jail) = self.downtime()?;
        self.journal
            .finish(self.id, TxnState::RolledBack, total, Some(&per_jail))?;
        Ok(Outcome::RolledBack)
    }

    /// Runs one wave: intent commit, the actions, completion commit.
    /// Returns the first failure of the wave, if any.
    fn run_wave(&mut self, seqs: &[u32], undo: bool) -> Result<Option<String>> {
        // Intent: durable before any action of the wave. A crash after this
        // commit leaves the steps `started`/`undoing`, which recovery
        // resolves by observing the host before it acts.
        self.journal.mark_started(self.id, seqs, undo)?;
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
                let outcome = actor.perform(&action);
                let finished_at = Utc::now();
                let (state, error, counted) = match outcome {
                    Ok(()) => (
                        if undo {
                            StepState::Undone
                        } else {
                            StepState::Done
                        },
                        None,
                        false,
                    ),
                    Err(HostError::Crashed) => {
                        crash.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(HostError::Failed(message)) => {
                        failed.store(true, Ordering::SeqCst);
                        (
                            actor.state_after_failure(&step.action, undo),
                            Some(message),
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
        if crash.load(Ordering::SeqCst) {
            return Err(crashed());
        }
        let mut collected = results
            .into_inner()
            .map_err(|_| Error::internal("a worker thread panicked"))?;
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
        // Completion: durable before the next wave, which may depend on it.
        self.journal.mark_finished(self.id, &results, undo)?;
        for result in &results {
            self.states.insert(result.seq, result.state);
        }
        Ok(first_error)
    }

    /// Downtime in total and per jail, from the journal's step times: from
    /// a jail's stop to its start (or, after a rollback, its restart).
    fn downtime(&self) -> Result<(Option<i64>, String)> {
        let steps = self.journal.steps(self.id)?;
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let mut down: BTreeMap<String, (DateTime<Utc>, Option<DateTime<Utc>>)> = BTreeMap::new();
        for step in &steps {
            if let Action::Stop { jail } = &step.action {
                if let Some(start) = parse(&step.started_at) {
                    let back =
                        parse(&step.undo_finished_at).filter(|_| step.state == StepState::Undone);
                    down.insert(jail.clone(), (start, back));
                }
            }
        }
        for step in &steps {
            if let (Action::Start { jail }, StepState::Done) = (&step.action, step.state) {
                if let (Some(entry), Some(end)) = (down.get_mut(jail), parse(&step.finished_at)) {
                    entry.1 = Some(entry.1.map_or(end, |e| e.max(end)));
                }
            }
        }
        let mut per_jail = serde_json::Map::new();
        let mut first: Option<DateTime<Utc>> = None;
        let mut last: Option<DateTime<Utc>> = None;
        for (jail, (start, end)) in &down {
            if let Some(end) = end {
                per_jail.insert(
                    jail.clone(),
                    serde_json::Value::from((*end - *start).num_milliseconds().max(0)),
                );
                first = Some(first.map_or(*start, |f| f.min(*start)));
                last = Some(last.map_or(*end, |l| l.max(*end)));
            }
        }
        let total = match (first, last) {
            (Some(first), Some(last)) => Some((last - first).num_milliseconds().max(0)),
            _ => None,
        };
        Ok((total, serde_json::Value::Object(per_jail).to_string()))
    }
}

impl<'a, H: Host + ?Sized> Actor<'a, H> {
    /// After a step failed, whether it nevertheless took effect (and so must
    /// be undone): a start that failed may have left the jail running and
    /// holding its mounts; a stop that timed out may have stopped it. After
    /// an undo failed, whether the undo took effect all the same.
    fn state_after_failure(&self, action: &Action, undo: bool) -> StepState {
        if undo {
            // An undo that reported failure may still have taken effect (a
            // rename that returned an error after it happened, a start that
            // timed out once the jail was up): repeating it would fail.
            return match self.observe(action) {
                Ok(Observation::NotDone) => StepState::Undone,
                _ => StepState::UndoFailed,
            };
        }
        match self.observe(action) {
            Ok(Observation::Done) => StepState::Done,
            Ok(Observation::Unknown) if matches!(action, Action::Start { .. }) => StepState::Done,
            _ => StepState::Failed,
        }
    }

    fn jail(&self, name: &str) -> std::result::Result<&JailSpec, HostError> {
        self.plan
            .jail(name)
            .ok_or_else(|| HostError::Failed(format!("jail {name:?} is not in the plan")))
    }

    /// Carries out one action on the host.
    pub fn perform(&self, action: &Action) -> std::result::Result<(), HostError> {
        if self.recovering && action.undo().is_some() && self.observe(action)? == Observation::Done
        {
            return Ok(());
        }
        let store = &self.plan.store;
        match action {
            Action::Stop { jail } => self.host.stop_jail(self.jail(jail)?),
            Action::Start { jail } => self.host.start_jail(self.jail(jail)?),
            Action::Unmount { mount, .. } => self.host.unmount(&mount.target),
            Action::Mount { mount, .. } => self.host.mount(mount),
            Action::VerifyUnused { template } => {
                let users = self.host.template_users(store, template)?;
                if users.is_empty() {
                    Ok(())
                } else {
                    let shown: Vec<String> = users
                        .iter()
                        .map(|p| format!("{:?}", p.display().to_string()))
                        .collect();
                    Err(HostError::Failed(format!(
                        "{template} is still mounted at {}; a jail without fstab must unmount it in its stop command",
                        shown.join(", ")
                    )))
                }
            }
            Action::Rename { from, to, .. } => self.host.rename(store, from, to),
            Action::Carry { path, from, to, .. } => {
                self.host
                    .rename(store, &format!("{from}/{path}"), &format!("{to}/{path}"))
            }
            Action::Health { jail } => {
                health::check_jail(self.host, self.jail(jail)?).map_err(HostError::Failed)
            }
            Action::Delete { template, inode } => {
                if self.host.inode(store, template)? != Some(*inode) {
                    return Err(HostError::Failed(format!(
                        "{template:?} is no longer the archived template jailswap recorded; not deleting it"
                    )));
                }
                crate::host::store::remove_template(store, template).map_err(|error| {
                    HostError::Failed(format!("cannot delete {template:?}: {error}"))
                })
            }
        }
    }

    /// Looks at the host to tell whether an action took effect.
    pub fn observe(&self, action: &Action) -> std::result::Result<Observation, HostError> {
        let store = &self.plan.store;
        let running = |jail: &str| -> std::result::Result<Option<bool>, HostError> {
            self.host.jail_running(self.jail(jail)?)
        };
        let moved =
            |from: &str, to: &str, inode: u64| -> std::result::Result<Observation, HostError> {
                if self.host.inode(store, to)? == Some(inode) {
                    Ok(Observation::Done)
                } else if self.host.inode(store, from)? == Some(inode) {
                    Ok(Observation::NotDone)
                } else {
                    Ok(Observation::Unknown)
                }
            };
        Ok(match action {
            Action::Stop { jail } => match running(jail)? {
                Some(false) => Observation::Done,
                Some(true) => Observation::NotDone,
                None => Observation::Unknown,
            },
            Action::Start { jail } => match running(jail)? {
                Some(true) => Observation::Done,
                Some(false) => Observation::NotDone,
                None => Observation::Unknown,
            },
            Action::Unmount { mount, .. } => {
                if self.host.mount_points()?.contains(&mount.target) {
                    Observation::NotDone
                } else {
                    Observation::Done
                }
            }
            Action::Mount { mount, .. } => {
                if self.host.mount_points()?.contains(&mount.target) {
                    Observation::Done
                } else {
                    Observation::NotDone
                }
            }
            Action::Rename { from, to, inode } => moved(from, to, *inode)?,
            Action::Carry {
                path,
                from,
                to,
                inode,
            } => moved(&format!("{from}/{path}"), &format!("{to}/{path}"), *inode)?,
            Action::VerifyUnused { .. } | Action::Health { .. } => Observation::Unknown,
            Action::Delete { template, inode } => match self.host.inode(store, template)? {
                None => Observation::Done,
                Some(found) if found == *inode => Observation::NotDone,
                Some(_) => Observation::Unknown,
            },
        })
    }
}
