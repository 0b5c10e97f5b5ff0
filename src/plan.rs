//! The plan of a transaction: configuration plus observed host in, ordered
//! steps out, each knowing its undo. Pure: no I/O, tested with tables.
//!
//! Steps are grouped in *waves*. A wave's steps may run at the same time,
//! except that steps of the same jail run one after another in `seq` order
//! (a jail's fstab is unmounted in reverse and mounted in order). Waves run
//! one after another, and share journal commits: the number of commits of a
//! transaction grows with the number of waves (dependency levels), not with
//! the number of jails.
//!
//! The order of the forward waves is the Handbook's procedure: stop
//! (reverse dependency order), unmount, verify nothing still mounts the live
//! template, rename live to the archive name, rename the target to the live
//! name (the *swap*: the point of no return), carry paths, mount, start
//! (dependency order), health checks. A rollback undoes the completed
//! forward steps in reverse, then runs the `AfterRollback` health checks of
//! the old template's jails.

use crate::config::{Config, JailSpec};
use crate::fstab::MountSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Stop {
        jail: String,
    },
    Unmount {
        jail: String,
        mount: MountSpec,
    },
    /// Nothing may still mount the live template once the jails are down.
    VerifyUnused {
        template: String,
    },
    /// Renames one entry of the store; `inode` identifies the directory
    /// being moved, so its position can be observed after a crash.
    Rename {
        from: String,
        to: String,
        inode: u64,
    },
    /// Moves `store/from/path` to `store/to/path`.
    Carry {
        path: String,
        from: String,
        to: String,
        inode: u64,
    },
    Mount {
        jail: String,
        mount: MountSpec,
    },
    Start {
        jail: String,
    },
    Health {
        jail: String,
    },
    /// Deletes an archived template (`prune` only); `inode` guards against
    /// deleting another directory that took its name.
    Delete {
        template: String,
        inode: u64,
    },
}

impl Action {
    /// The action that reverses this one, if it changes the host.
    pub fn undo(&self) -> Option<Action> {
        Some(match self {
            Action::Stop { jail } => Action::Start { jail: jail.clone() },
            Action::Start { jail } => Action::Stop { jail: jail.clone() },
            Action::Unmount { jail, mount } => Action::Mount {
                jail: jail.clone(),
                mount: mount.clone(),
            },
            Action::Mount { jail, mount } => Action::Unmount {
                jail: jail.clone(),
                mount: mount.clone(),
            },
            Action::Rename { from, to, inode } => Action::Rename {
                from: to.clone(),
                to: from.clone(),
                inode: *inode,
            },
            Action::Carry {
                path,
                from,
                to,
                inode,
            } => Action::Carry {
                path: path.clone(),
                from: to.clone(),
                to: from.clone(),
                inode: *inode,
            },
            Action::VerifyUnused { .. } | Action::Health { .. } | Action::Delete { .. } => {
                return None
            }
        })
    }

    /// A short verb, as `show` and the JSON `action` field print it.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Stop { .. } => "stop",
            Action::Unmount { .. } => "unmount",
            Action::VerifyUnused { .. } => "verify_unused",
            Action::Rename { .. } => "rename",
            Action::Carry { .. } => "carry",
            Action::Mount { .. } => "mount",
            Action::Start { .. } => "start",
            Action::Health { .. } => "health",
            Action::Delete { .. } => "delete",
        }
    }

    pub fn jail(&self) -> Option<&str> {
        match self {
            Action::Stop { jail }
            | Action::Start { jail }
            | Action::Health { jail }
            | Action::Unmount { jail, .. }
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
            Action::Rename { from, to, .. } => format!("rename {from} -> {to}"),
            Action::Carry { path, from, to, .. } => format!("move {from}/{path} -> {to}/{path}"),
            Action::Delete { template, .. } => format!("delete archived template {template}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Runs on the way to the new template; undone in reverse on rollback.
    Forward,
    /// Runs only after a rollback: the old template's jails must be healthy.
    AfterRollback,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub seq: u32,
    pub wave: u32,
    pub phase: Phase,
    pub action: Action,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Upgrade,
    Rollback,
    Prune,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Upgrade => "upgrade",
            TransactionKind::Rollback => "rollback",
            TransactionKind::Prune => "prune",
        }
    }
}

/// Everything a transaction needs, durable in the journal before the first
/// action: recovery reads this, never the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: TransactionKind,
    pub store: PathBuf,
    pub live: String,
    pub target: String,
    pub archive_as: String,
    pub from_label: String,
    pub to_label: String,
    pub live_inode: u64,
    pub target_inode: u64,
    pub parallel: usize,
    /// The jails the plan stops and starts (those running at planning time),
    /// with every setting recovery needs.
    pub jails: Vec<JailSpec>,
    pub steps: Vec<Step>,
}

/// What the planner needs to know about the host, observed by preflight.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub live_inode: u64,
    pub target_inode: u64,
    /// Jails known to be stopped; they are neither stopped nor started.
    pub stopped_jails: BTreeSet<String>,
    /// Mount points that are currently mounted.
    pub mounted: BTreeSet<PathBuf>,
    /// Inode of each carried path in the live template.
    pub carry_inodes: Vec<u64>,
}

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: TransactionKind,
    pub target: String,
    pub archive_as: String,
    pub from_label: String,
    pub to_label: String,
}

/// Builds the ordered steps of a transaction.
pub fn build(config: &Config, request: &Request, observed: &Observed) -> Plan {
    let mut steps = Vec::new();
    let mut wave = 0u32;
    let mut push_wave = |actions: Vec<Action>, phase: Phase, steps: &mut Vec<Step>| {
        if actions.is_empty() {
            return;
        }
        for action in actions {
            let seq = steps.len() as u32 + 1;
            steps.push(Step {
                seq,
                wave,
                phase,
                action,
            });
        }
        wave += 1;
    };
    let running = |index: &usize| !observed.stopped_jails.contains(&config.jails[*index].name);

    // Stop in reverse dependency order: dependants before what they need.
    for level in config.levels.iter().rev() {
        let actions = level
            .iter()
            .filter(|i| running(i))
            .map(|&i| Action::Stop {
                jail: config.jails[i].name.clone(),
            })
            .collect();
        push_wave(actions, Phase::Forward, &mut steps);
    }
    let unmounts = config
        .jails
        .iter()
        .flat_map(|jail| {
            jail.mounts
                .iter()
                .rev()
                .filter(|mount| observed.mounted.contains(&mount.target))
                .map(|mount| Action::Unmount {
                    jail: jail.name.clone(),
                    mount: mount.clone(),
                })
        })
        .collect();
    push_wave(unmounts, Phase::Forward, &mut steps);
    push_wave(
        vec![Action::VerifyUnused {
            template: config.live.clone(),
        }],
        Phase::Forward,
        &mut steps,
    );
    push_wave(
        vec![Action::Rename {
            from: config.live.clone(),
            to: request.archive_as.clone(),
            inode: observed.live_inode,
        }],
        Phase::Forward,
        &mut steps,
    );
    push_wave(
        vec![Action::Rename {
            from: request.target.clone(),
            to: config.live.clone(),
            inode: observed.target_inode,
        }],
        Phase::Forward,
        &mut steps,
    );
    let carries = config
        .carry
        .iter()
        .zip(&observed.carry_inodes)
        .map(|(path, inode)| Action::Carry {
            path: path.clone(),
            from: request.archive_as.clone(),
            to: config.live.clone(),
            inode: *inode,
        })
        .collect();
    push_wave(carries, Phase::Forward, &mut steps);
    let mounts = config
        .jails
        .iter()
        .flat_map(|jail| {
            jail.mounts.iter().map(|mount| Action::Mount {
                jail: jail.name.clone(),
                mount: mount.clone(),
            })
        })
        .collect();
    push_wave(mounts, Phase::Forward, &mut steps);
    for level in &config.levels {
        let actions = level
            .iter()
            .filter(|i| running(i))
            .map(|&i| Action::Start {
                jail: config.jails[i].name.clone(),
            })
            .collect();
        push_wave(actions, Phase::Forward, &mut steps);
    }
    let health = || -> Vec<Action> {
        config
            .jails
            .iter()
            .filter(|jail| !observed.stopped_jails.contains(&jail.name) && !jail.health.is_empty())
            .map(|jail| Action::Health {
                jail: jail.name.clone(),
            })
            .collect()
    };
    push_wave(health(), Phase::Forward, &mut steps);
    push_wave(health(), Phase::AfterRollback, &mut steps);

    Plan {
        kind: request.kind,
        store: config.store.clone(),
        live: config.live.clone(),
        target: request.target.clone(),
        archive_as: request.archive_as.clone(),
        from_label: request.from_label.clone(),
        to_label: request.to_label.clone(),
        live_inode: observed.live_inode,
        target_inode: observed.target_inode,
        parallel: config.parallel,
        jails: config
            .jails
            .iter()
            .filter(|jail| !observed.stopped_jails.contains(&jail.name))
            .cloned()
            .collect(),
        steps,
    }
}

impl Plan {
    /// The second rename, which makes the target live: the point of no
    /// return. Before it, recovery rolls back; after it, forward.
    pub fn swap_seq(&self) -> u32 {
        self.steps
            .iter()
            .find(|step| matches!(&step.action, Action::Rename { to, .. } if *to == self.live))
            .map(|step| step.seq)
            .unwrap_or(u32::MAX)
    }

    pub fn jail(&self, name: &str) -> Option<&JailSpec> {
        self.jails.iter().find(|jail| jail.name == name)
    }

    pub fn step(&self, seq: u32) -> Option<&Step> {
        self.steps.iter().find(|step| step.seq == seq)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let dir = std::env::temp_dir().join(format!("jailswap-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["db", "web"] {
            std::fs::write(
                dir.join(format!("fstab.{name}")),
                format!("/home/j/mroot /home/j/{name} nullfs ro 0 0\n/home/js/{name} /home/j/{name}/s nullfs rw 0 0\n"),
            )
            .unwrap();
        }
        let text = format!(
            "store = \"/home\"\n[[jail]]\nname = \"web\"\npath = \"/home/j/web\"\nfstab = \"{0}/fstab.web\"\ndepends = [\"db\"]\n[[jail.health]]\ntcp = \"127.0.0.1:1\"\n[[jail]]\nname = \"db\"\npath = \"/home/j/db\"\nfstab = \"{0}/fstab.db\"\n",
            dir.display()
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn request() -> Request {
        Request {
            kind: TransactionKind::Upgrade,
            target: "mroot.new".into(),
            archive_as: "mroot.old".into(),
            from_label: "mroot.old".into(),
            to_label: "mroot.new".into(),
        }
    }

    // The forward steps follow the Handbook's order, dependencies respected.
    #[test]
    fn order_of_steps() {
        let config = config();
        let mut observed = Observed {
            live_inode: 1,
            target_inode: 2,
            ..Default::default()
        };
        observed.mounted = config
            .jails
            .iter()
            .flat_map(|j| j.mounts.iter().map(|m| m.target.clone()))
            .collect();
        let plan = build(&config, &request(), &observed);
        let lines: Vec<(u32, String)> = plan
            .steps
            .iter()
            .map(|s| (s.wave, s.action.describe()))
            .collect();
        let expected = [
            (0, "stop jail web"),
            (1, "stop jail db"),
            (2, "unmount /home/j/web/s"),
            (2, "unmount /home/j/web"),
            (2, "unmount /home/j/db/s"),
            (2, "unmount /home/j/db"),
            (3, "verify nothing mounts mroot"),
            (4, "rename mroot -> mroot.old"),
            (5, "rename mroot.new -> mroot"),
            (6, "mount /home/j/mroot on /home/j/web (nullfs, read-only)"),
            (6, "mount /home/js/web on /home/j/web/s (nullfs)"),
            (6, "mount /home/j/mroot on /home/j/db (nullfs, read-only)"),
            (6, "mount /home/js/db on /home/j/db/s (nullfs)"),
            (7, "start jail db"),
            (8, "start jail web"),
            (9, "health-check jail web"),
            (10, "health-check jail web"),
        ];
        let expected: Vec<(u32, String)> =
            expected.iter().map(|(w, s)| (*w, s.to_string())).collect();
        assert_eq!(lines, expected);
        assert_eq!(plan.steps.last().unwrap().phase, Phase::AfterRollback);
        assert_eq!(plan.swap_seq(), 9);
    }

    // Stopped jails are left alone and unmounted mounts are not unmounted.
    #[test]
    fn stopped_jails_and_missing_mounts() {
        let config = config();
        let mut observed = Observed::default();
        observed.stopped_jails.insert("web".into());
        let plan = build(&config, &request(), &observed);
        assert!(!plan.steps.iter().any(|s| s.action.jail() == Some("web")
            && matches!(
                s.action,
                Action::Stop { .. } | Action::Start { .. } | Action::Health { .. }
            )));
        assert!(!plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Unmount { .. })));
        assert_eq!(
            plan.steps
                .iter()
                .filter(|s| matches!(s.action, Action::Mount { .. }))
                .count(),
            4
        );
    }

    // Every action that changes the host is undone by its inverse.
    #[test]
    fn undo_is_an_involution() {
        let mount = MountSpec {
            source: "/a".into(),
            target: "/b".into(),
            fstype: "nullfs".into(),
            options: vec!["ro".into()],
        };
        for action in [
            Action::Stop { jail: "a".into() },
            Action::Mount {
                jail: "a".into(),
                mount,
            },
            Action::Rename {
                from: "x".into(),
                to: "y".into(),
                inode: 3,
            },
            Action::Carry {
                path: "usr/ports".into(),
                from: "x".into(),
                to: "y".into(),
                inode: 4,
            },
        ] {
            let undo = action.undo().unwrap();
            assert_ne!(undo, action);
            assert_eq!(undo.undo().unwrap(), action);
        }
        assert_eq!(Action::Health { jail: "a".into() }.undo(), None);
    }
}
