//! What each action does to the host, and how to see whether it did it.
//!
//! [`Actor::perform`] carries out one action through the host;
//! [`Actor::observe`] looks at the host to tell whether an action took
//! effect (is the jail running, is the mount point mounted, which name holds
//! the template the rename moved). Recovery observes before it acts, and
//! every action is idempotent once observed.

use super::Observation;
use crate::config::JailSpec;
use crate::health;
use crate::host::{Entry, Host, HostError};
use crate::journal::StepState;
use crate::output::Reporter;
use crate::plan::{Action, Plan, StepOutput};
use crate::template::TemplateId;
use std::sync::Mutex;
use std::time::Instant;

type HostResult<T> = Result<T, HostError>;

/// What acts on the host; shared by the worker threads of a wave.
pub struct Actor<'a, H: Host + ?Sized> {
    pub host: &'a H,
    pub plan: &'a Plan,
    pub reporter: &'a Reporter,
    /// Set by recovery: the host may have changed since the journal was
    /// written (a reboot remounts fstab and starts jails), so every action
    /// first looks whether it is already in effect and then does nothing.
    pub recovering: bool,
    /// The identity of a stage's copy, once the copy step made (or recovery
    /// read) it: publishing renames exactly that directory.
    pub copy: Mutex<Option<TemplateId>>,
}

impl<'a, H: Host + ?Sized> Actor<'a, H> {
    pub fn new(host: &'a H, plan: &'a Plan, reporter: &'a Reporter, recovering: bool) -> Self {
        Actor {
            host,
            plan,
            reporter,
            recovering,
            copy: Mutex::new(None),
        }
    }

    fn copy_id(&self) -> Option<TemplateId> {
        self.copy.lock().ok().and_then(|copy| copy.clone())
    }

    /// After a step failed, whether it nevertheless took effect (and so must
    /// be undone): a start that failed may have left the jail running and
    /// holding its mounts; a stop that timed out may have stopped it. After
    /// an undo failed, whether the undo took effect all the same.
    pub fn state_after_failure(&self, action: &Action, undo: bool) -> StepState {
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

    fn jail(&self, name: &str) -> HostResult<&JailSpec> {
        self.plan
            .jail(name)
            .ok_or_else(|| HostError::Failed(format!("jail {name:?} is not in the plan")))
    }

    /// Carries out one action on the host; with `observe_first` (recovery,
    /// and the restarts after a rolling upgrade's rollback) an action whose
    /// effect is already there is not repeated.
    pub fn perform(&self, action: &Action, observe_first: bool) -> HostResult<Option<StepOutput>> {
        let observe_first = observe_first || self.recovering;
        if observe_first
            && (action.undo().is_some() || matches!(action, Action::Discard { .. }))
            && self.observe(action)? == Observation::Done
        {
            return Ok(None);
        }
        let host = self.host;
        match action {
            Action::Stop { jail } => host.stop_jail(self.jail(jail)?).map(|_| None),
            Action::Start { jail } => host.start_jail(self.jail(jail)?).map(|_| None),
            Action::Unmount { mount, .. } => host.unmount(&mount.target).map(|_| None),
            Action::Mount { mount, .. } => host.mount(mount).map(|_| None),
            Action::VerifyUnused { template } => {
                let users = host.template_users(template)?;
                if users.is_empty() {
                    return Ok(None);
                }
                Err(HostError::Failed(format!(
                    "{template} is still mounted at {}; a jail without fstab must unmount it in its stop command",
                    shown(&users)
                )))
            }
            Action::VerifyReleased { jail, template } => {
                let root = &self.jail(jail)?.path;
                let users: Vec<_> = host
                    .template_users(template)?
                    .into_iter()
                    .filter(|point| point.starts_with(root))
                    .collect();
                if users.is_empty() {
                    return Ok(None);
                }
                Err(HostError::Failed(format!(
                    "jail {jail} still mounts {template} at {}; a jail without fstab must unmount it in its stop command",
                    shown(&users)
                )))
            }
            Action::Rename { from, to, id } => host.rename_template(from, to, id).map(|_| None),
            Action::Carry { path, from, to, id } => host
                .move_inside(&format!("{from}/{path}"), &format!("{to}/{path}"), id)
                .map(|_| None),
            Action::Health { jail } => health::check_jail(host, self.jail(jail)?)
                .map(|_| None)
                .map_err(HostError::Failed),
            Action::Delete { template, id } => {
                host.delete_template(template, Some(id)).map(|_| None)
            }
            Action::Copy {
                from,
                to,
                id,
                exclude,
            } => {
                let started = Instant::now();
                let copy = host.copy_template(from, to, id, exclude)?;
                let took_ms = started.elapsed().as_millis() as u64;
                self.reporter
                    .line(&format!("copied {from} to {to} in {took_ms} ms"));
                if let Ok(mut slot) = self.copy.lock() {
                    *slot = Some(copy.clone());
                }
                Ok(Some(StepOutput::Copy { id: copy, took_ms }))
            }
            Action::Discard { template } => {
                // Only a staging copy is ever discarded; its identity is the
                // copy's when known (a copy cut short has none recorded).
                if !template.starts_with(&crate::template::staging_name("")) {
                    return Err(HostError::Failed(format!(
                        "{template:?} is not a staging copy; not removing it"
                    )));
                }
                host.delete_template(template, self.copy_id().as_ref())
                    .map(|_| None)
            }
            Action::Run {
                command,
                timeout_ms,
            } => {
                let timeout = std::time::Duration::from_millis(*timeout_ms);
                let run = host.run_command(command, &[], timeout)?;
                let output = StepOutput::Command {
                    status: run.status,
                    timed_out: run.timed_out,
                    output_tail: run.output_tail.clone(),
                };
                if run.success() {
                    return Ok(Some(output));
                }
                let why = match (run.timed_out, run.status) {
                    (true, _) => format!("timed out after {}", humantime::format_duration(timeout)),
                    (false, Some(status)) => format!("exited with status {status}"),
                    (false, None) => "was killed by a signal".to_string(),
                };
                let tail: Vec<&str> = run.output_tail.lines().rev().take(3).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(HostError::Failed(format!(
                    "`{command}` {why}{}{}",
                    if tail.is_empty() { "" } else { ": " },
                    tail.join(" | ")
                )))
            }
            Action::CheckLinks { template, like } => {
                let wanted = host.top_level_symlinks(like)?;
                let present = host.top_level_symlinks(template)?;
                let missing: Vec<&str> = wanted
                    .iter()
                    .filter(|link| !present.contains(link))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    return Ok(None);
                }
                Err(HostError::Failed(format!(
                    "{template} lacks top-level symbolic links that {like} has: {}; recreate them (the Handbook's `ln -s s/etc etc` step) in the stage command",
                    missing.join(", ")
                )))
            }
            Action::Fingerprint { template } => {
                let fingerprint = host.fingerprint(template)?;
                Ok(Some(StepOutput::Fingerprint { fingerprint }))
            }
            Action::Publish { from, to } => {
                let Some(copy) = self.copy_id() else {
                    return Err(HostError::Failed(format!(
                        "the identity of the copy {from:?} is not recorded; not renaming it"
                    )));
                };
                host.rename_template(from, to, &copy).map(|_| None)
            }
        }
    }

    /// Looks at the host to tell whether an action took effect.
    pub fn observe(&self, action: &Action) -> HostResult<Observation> {
        let host = self.host;
        let running = |jail: &str| host.jail_running(self.jail(jail)?);
        let at = |relative: &str| -> HostResult<Option<TemplateId>> {
            Ok(host
                .examine(relative)?
                .found()
                .map(|found| found.id.clone()))
        };
        let moved = |from: &str, to: &str, id: &TemplateId| -> HostResult<Observation> {
            if at(to)?.as_ref() == Some(id) {
                Ok(Observation::Done)
            } else if at(from)?.as_ref() == Some(id) {
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
            Action::Unmount {
                jail,
                mount,
                template,
            } => match self.mounted_as(jail, &mount.target, template.as_ref())? {
                true => Observation::NotDone,
                false => Observation::Done,
            },
            Action::Mount {
                jail,
                mount,
                template,
            } => match self.mounted_as(jail, &mount.target, template.as_ref())? {
                true => Observation::Done,
                false => Observation::NotDone,
            },
            Action::Rename { from, to, id } => moved(from, to, id)?,
            Action::Carry { path, to, id, .. } => self.observe_carry(path, to, id)?,
            Action::Delete { template, id } => match at(template)? {
                None if !host.examine(template)?.exists() => Observation::Done,
                Some(found) if found == *id => Observation::NotDone,
                _ => Observation::Unknown,
            },
            Action::Copy { to, .. } => match host.examine(to)? {
                Entry::Absent => Observation::NotDone,
                _ => Observation::Done,
            },
            Action::Discard { template } => match host.examine(template)? {
                Entry::Absent => Observation::Done,
                _ => Observation::NotDone,
            },
            Action::Publish { from, to } => match self.copy_id() {
                Some(copy) => moved(from, to, &copy)?,
                None => Observation::Unknown,
            },
            Action::VerifyUnused { .. }
            | Action::VerifyReleased { .. }
            | Action::Health { .. }
            | Action::Run { .. }
            | Action::CheckLinks { .. }
            | Action::Fingerprint { .. } => Observation::Unknown,
        })
    }
}

impl<H: Host + ?Sized> Actor<'_, H> {
    /// Whether `target` is mounted as this step means it: when the step
    /// names the template the jail's root shows with it, that root must
    /// show that template (a mount a rollback restored on the old template
    /// is not the upgrade's mount on the new one).
    fn mounted_as(
        &self,
        jail: &str,
        target: &std::path::Path,
        template: Option<&TemplateId>,
    ) -> HostResult<bool> {
        if !self.host.mount_points()?.contains(target) {
            return Ok(false);
        }
        let Some(template) = template else {
            return Ok(true);
        };
        let live = self.plan.store.join(&self.plan.live);
        let Some(root) = self
            .jail(jail)?
            .mounts
            .iter()
            .find(|mount| mount.source == live)
        else {
            return Ok(true);
        };
        // A root that shows neither of the transaction's templates (a
        // mount the host cannot identify) leaves the mount table to say.
        let seen = self.host.template_at(&root.target)?;
        let ours = [&self.plan.live_id, &self.plan.target_id];
        Ok(match seen {
            Some(seen) if ours.contains(&&seen) => seen == *template,
            _ => true,
        })
    }

    /// Where a carried path is, by the identity of the templates rather
    /// than their names: names change under a rollback (the renames are
    /// undone after the carry's undo, and a rollback from memory may have
    /// undone all of them unrecorded). Moving into the live name is moving
    /// into the new template; moving back is moving into the old one.
    fn observe_carry(&self, path: &str, to: &str, id: &TemplateId) -> HostResult<Observation> {
        let plan = self.plan;
        let (into, out_of) = if to == plan.live {
            (&plan.target_id, &plan.live_id)
        } else {
            (&plan.live_id, &plan.target_id)
        };
        let templates = self.host.templates()?;
        let holds = |template: &TemplateId| -> HostResult<bool> {
            let Some(found) = templates.iter().find(|t| t.found.id == *template) else {
                return Ok(false);
            };
            let inside = format!("{}/{path}", found.name);
            Ok(self.host.examine(&inside)?.found().map(|f| &f.id) == Some(id))
        };
        Ok(if holds(into)? {
            Observation::Done
        } else if holds(out_of)? {
            Observation::NotDone
        } else {
            Observation::Unknown
        })
    }
}

fn shown(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}
