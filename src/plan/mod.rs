//! The plan of a transaction: configuration plus observed host in, ordered
//! steps out, each knowing its undo. Pure: no I/O, tested with tables.
//!
//! Steps are grouped in *waves*. A wave's steps may run at the same time,
//! except that steps of the same jail run one after another in `seq` order
//! (a jail's fstab is unmounted in reverse and mounted in order). Waves run
//! one after another, and share journal commits: the number of commits of a
//! transaction grows with the number of waves (dependency levels, batches),
//! not with the number of jails.
//!
//! The builders ([`build`]) follow SPEC.md: the Handbook's procedure for an
//! all-at-once upgrade or rollback, the names swapped first and then the
//! jails restarted a batch at a time for a rolling one, a copy checked and
//! published for `stage`, deletions for `prune`. Each transaction has one
//! point of no return ([`Plan::swap_seq`]): before it recovery rolls back,
//! after it forward.

mod build;

pub use build::{build, build_prune, build_stage, Observed, Request};

use crate::config::{JailSpec, StoreKind};
use crate::fstab::MountSpec;
use crate::template::{Fingerprint, TemplateId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Stop {
        jail: String,
    },
    /// Unmounts one fstab entry of a jail. `template` is the template the
    /// jail's root shows while this mount is the one meant (the old one
    /// before the swap, the new one after): recovery tells this
    /// transaction's mounts from those a rollback restored by it.
    Unmount {
        jail: String,
        mount: MountSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<TemplateId>,
    },
    /// Nothing may still mount the live template once the jails are down.
    VerifyUnused {
        template: String,
    },
    /// Nothing below one jail's root may still mount `template` once its
    /// fstab is unmounted (a rolling restart).
    VerifyReleased {
        jail: String,
        template: String,
    },
    /// Renames one template of the store; `id` identifies the template
    /// being moved: the rename refuses anything else, and its position can
    /// be observed after a crash.
    Rename {
        from: String,
        to: String,
        #[serde(alias = "inode")]
        id: TemplateId,
    },
    /// Moves `store/from/path` to `store/to/path`.
    Carry {
        path: String,
        from: String,
        to: String,
        #[serde(alias = "inode")]
        id: TemplateId,
    },
    /// Mounts one fstab entry of a jail; `template` as for `Unmount`.
    Mount {
        jail: String,
        mount: MountSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<TemplateId>,
    },
    Start {
        jail: String,
    },
    Health {
        jail: String,
    },
    /// Deletes an archived template (`prune` only); `id` guards against
    /// deleting another directory that took its name.
    Delete {
        template: String,
        #[serde(alias = "inode")]
        id: TemplateId,
    },
    /// Copies template `from` (which must be `id`) to the staging name `to`
    /// by the store's cheapest faithful copy (`stage`).
    Copy {
        from: String,
        to: String,
        id: TemplateId,
        /// Paths left out of the copy: the `carry` paths, which the
        /// upgrade moves into the new template rather than copies.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
    },
    /// Removes a staging copy: the undo of [`Action::Copy`], the one
    /// deletion a transaction other than `prune` makes.
    Discard {
        template: String,
    },
    /// Runs the stage's command, `${dir}` and `${from}` already substituted.
    Run {
        command: String,
        timeout_ms: u64,
    },
    /// `template` has every top-level symbolic link `like` has.
    CheckLinks {
        template: String,
        like: String,
    },
    /// Records the fingerprint of `template`.
    Fingerprint {
        template: String,
    },
    /// Renames the checked staging copy to its name: the point of no return
    /// of a stage. Its identity is the one the copy step recorded.
    Publish {
        from: String,
        to: String,
    },
}

impl Action {
    /// The action that reverses this one, if it changes the host.
    pub fn undo(&self) -> Option<Action> {
        Some(match self {
            Action::Stop { jail } => Action::Start { jail: jail.clone() },
            Action::Start { jail } => Action::Stop { jail: jail.clone() },
            Action::Unmount {
                jail,
                mount,
                template,
            } => Action::Mount {
                jail: jail.clone(),
                mount: mount.clone(),
                template: template.clone(),
            },
            Action::Mount {
                jail,
                mount,
                template,
            } => Action::Unmount {
                jail: jail.clone(),
                mount: mount.clone(),
                template: template.clone(),
            },
            Action::Rename { from, to, id } => Action::Rename {
                from: to.clone(),
                to: from.clone(),
                id: id.clone(),
            },
            Action::Carry { path, from, to, id } => Action::Carry {
                path: path.clone(),
                from: to.clone(),
                to: from.clone(),
                id: id.clone(),
            },
            Action::Copy { to, .. } => Action::Discard {
                template: to.clone(),
            },
            Action::Publish { from, to } => Action::Publish {
                from: to.clone(),
                to: from.clone(),
            },
            Action::VerifyUnused { .. }
            | Action::VerifyReleased { .. }
            | Action::Health { .. }
            | Action::Delete { .. }
            | Action::Discard { .. }
            | Action::Run { .. }
            | Action::CheckLinks { .. }
            | Action::Fingerprint { .. } => return None,
        })
    }

    /// A short verb, as `show` and the JSON `action` field print it.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Stop { .. } => "stop",
            Action::Unmount { .. } => "unmount",
            Action::VerifyUnused { .. } => "verify_unused",
            Action::VerifyReleased { .. } => "verify_released",
            Action::Rename { .. } => "rename",
            Action::Carry { .. } => "carry",
            Action::Mount { .. } => "mount",
            Action::Start { .. } => "start",
            Action::Health { .. } => "health",
            Action::Delete { .. } => "delete",
            Action::Copy { .. } => "copy",
            Action::Discard { .. } => "discard",
            Action::Run { .. } => "run",
            Action::CheckLinks { .. } => "check_links",
            Action::Fingerprint { .. } => "fingerprint",
            Action::Publish { .. } => "publish",
        }
    }

    pub fn jail(&self) -> Option<&str> {
        match self {
            Action::Stop { jail }
            | Action::Start { jail }
            | Action::Health { jail }
            | Action::Unmount { jail, .. }
            | Action::VerifyReleased { jail, .. }
            | Action::Mount { jail, .. } => Some(jail),
            _ => None,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Action::Stop { jail } => format!("stop jail {jail}"),
            Action::Start { jail } => format!("start jail {jail}"),
            Action::Health { jail } => format!("health-check jail {jail}"),
            Action::Unmount { mount, .. } => format!("unmount {}", mount.target.display()),
            Action::Mount { mount, .. } => format!(
                "mount {} on {} ({}{})",
                mount.source.display(),
                mount.target.display(),
                mount.fstype,
                if mount.read_only() { ", read-only" } else { "" }
            ),
            Action::VerifyUnused { template } => format!("verify nothing mounts {template}"),
            Action::VerifyReleased { jail, template } => {
                format!("verify nothing in jail {jail} mounts {template}")
            }
            Action::Rename { from, to, .. } => format!("rename {from} -> {to}"),
            Action::Carry { path, from, to, .. } => format!("move {from}/{path} -> {to}/{path}"),
            Action::Delete { template, .. } => format!("delete archived template {template}"),
            Action::Copy { from, to, .. } => format!("copy {from} -> {to}"),
            Action::Discard { template } => format!("remove the unfinished copy {template}"),
            Action::Run { command, .. } => format!("run `{command}`"),
            Action::CheckLinks { template, like } => {
                format!("check {template} has the top-level links of {like}")
            }
            Action::Fingerprint { template } => format!("fingerprint {template}"),
            Action::Publish { from, to } => format!("rename {from} -> {to}"),
        }
    }
}

/// What a step produced, kept in the journal with the step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// The copy a stage made, and how long it took.
    Copy { id: TemplateId, took_ms: u64 },
    /// A stage command's exit status and the last lines of its output.
    Command {
        status: Option<i32>,
        timed_out: bool,
        output_tail: String,
    },
    /// A template's fingerprint.
    Fingerprint { fingerprint: Fingerprint },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Runs on the way to the new template; undone in reverse on rollback.
    Forward,
    /// Runs only after a rollback: the old template's jails must be healthy
    /// (and, after a rolling upgrade, the jails already moved restart).
    AfterRollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::AfterRollback => "after_rollback",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        match text {
            "forward" => Some(Phase::Forward),
            "after_rollback" => Some(Phase::AfterRollback),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub seq: u32,
    pub wave: u32,
    pub phase: Phase,
    /// The batch of a rolling upgrade the step belongs to (1 is the canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Upgrade,
    Rollback,
    Prune,
    Stage,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Upgrade => "upgrade",
            TransactionKind::Rollback => "rollback",
            TransactionKind::Prune => "prune",
            TransactionKind::Stage => "stage",
        }
    }

    pub fn parse(text: &str) -> Option<TransactionKind> {
        match text {
            "upgrade" => Some(TransactionKind::Upgrade),
            "rollback" => Some(TransactionKind::Rollback),
            "prune" => Some(TransactionKind::Prune),
            "stage" => Some(TransactionKind::Stage),
            _ => None,
        }
    }
}

impl std::fmt::Display for TransactionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the jails move to the new template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every jail stops, the names swap, every jail starts (the Handbook's).
    #[default]
    AllAtOnce,
    /// The names swap under running jails, which then restart a batch at a
    /// time; `pause_after` stops after that many healthy batches.
    Rolling {
        batches: u32,
        pause_after: Option<u32>,
    },
}

/// Everything a transaction needs, durable in the journal before the first
/// action: recovery reads this, never the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: TransactionKind,
    #[serde(default)]
    pub strategy: Strategy,
    pub store: PathBuf,
    #[serde(default)]
    pub store_kind: StoreKind,
    pub live: String,
    pub target: String,
    pub archive_as: String,
    pub from_label: String,
    pub to_label: String,
    #[serde(alias = "live_inode")]
    pub live_id: TemplateId,
    #[serde(alias = "target_inode")]
    pub target_id: TemplateId,
    pub parallel: usize,
    /// The jails the plan acts on, with every setting recovery needs.
    pub jails: Vec<JailSpec>,
    pub steps: Vec<Step>,
    /// What the operator should know about the plan (jails left alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Plan {
    /// The step past which recovery goes forward: the second rename of an
    /// upgrade or rollback (the swap), the publishing rename of a stage.
    pub fn swap_seq(&self) -> u32 {
        self.steps
            .iter()
            .find(|step| match &step.action {
                Action::Rename { to, .. } => step.phase == Phase::Forward && *to == self.live,
                Action::Publish { .. } => step.phase == Phase::Forward,
                _ => false,
            })
            .map(|step| step.seq)
            .unwrap_or(u32::MAX)
    }

    pub fn jail(&self, name: &str) -> Option<&JailSpec> {
        self.jails.iter().find(|jail| jail.name == name)
    }

    pub fn step(&self, seq: u32) -> Option<&Step> {
        self.steps
            .get((seq as usize).wrapping_sub(1))
            .filter(|step| step.seq == seq)
    }

    /// The numbers of the waves, in order.
    pub fn waves(&self, phase: Phase) -> Vec<u32> {
        let waves: BTreeSet<u32> = self
            .steps
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.wave)
            .collect();
        waves.into_iter().collect()
    }

    /// Whether jails restart a batch at a time.
    pub fn rolling(&self) -> bool {
        matches!(self.strategy, Strategy::Rolling { .. })
    }

    /// The copy step of a stage, whose result identifies the copy.
    pub fn copy_seq(&self) -> Option<u32> {
        self.steps
            .iter()
            .find(|step| matches!(step.action, Action::Copy { .. }))
            .map(|step| step.seq)
    }
}

#[cfg(test)]
mod tests;
