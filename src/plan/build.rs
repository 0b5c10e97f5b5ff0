//! The plan builders: configuration and what preflight observed in, the
//! ordered steps out. Pure functions, tested with tables.

use super::{Action, Phase, Plan, Step, Strategy, TransactionKind};
use crate::config::{Batches, Config, StoreKind};
use crate::template::TemplateId;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What the planner needs to know about the host, observed by preflight.
#[derive(Clone, Debug)]
pub struct Observed {
    pub store_kind: StoreKind,
    pub live_id: TemplateId,
    pub target_id: TemplateId,
    /// Jails known to be stopped; they are neither stopped nor started.
    pub stopped_jails: BTreeSet<String>,
    /// Mount points that are currently mounted.
    pub mounted: BTreeSet<PathBuf>,
    /// The identity of each carried path in the live template.
    pub carry_ids: Vec<TemplateId>,
}

impl Default for Observed {
    fn default() -> Observed {
        Observed {
            store_kind: StoreKind::Directory,
            live_id: TemplateId::Inode(0),
            target_id: TemplateId::Inode(0),
            stopped_jails: BTreeSet::new(),
            mounted: BTreeSet::new(),
            carry_ids: Vec::new(),
        }
    }
}

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct Request {
    pub kind: TransactionKind,
    pub target: String,
    pub archive_as: String,
    pub from_label: String,
    pub to_label: String,
    /// Batch sizes and the pause, for a rolling upgrade.
    pub rolling: Option<(Batches, Option<u32>)>,
}

/// What the builder knows of the jails (the configuration, which jails
/// run, which mount points are mounted), and the jail steps it makes of
/// them. Jails are indexes into the configuration.
struct Jails<'a> {
    config: &'a Config,
    running: &'a dyn Fn(usize) -> bool,
    mounted: &'a dyn Fn(&PathBuf) -> bool,
}

impl Jails<'_> {
    /// `jails` by dependency level, lowest first.
    fn levels(&self, jails: &[usize]) -> Vec<Vec<usize>> {
        self.config
            .levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .copied()
                    .filter(|i| jails.contains(i))
                    .collect()
            })
            .collect()
    }

    fn name(&self, index: usize) -> String {
        self.config.jails[index].name.clone()
    }

    /// One wave of stops per level, dependants first; stopped jails stay so.
    fn stops(&self, jails: &[usize]) -> Vec<Vec<Action>> {
        let mut levels = self.levels(jails);
        levels.reverse();
        levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .filter(|&&i| (self.running)(i))
                    .map(|&i| Action::Stop { jail: self.name(i) })
                    .collect()
            })
            .collect()
    }

    /// One wave of starts per level, dependencies first.
    fn starts(&self, jails: &[usize]) -> Vec<Vec<Action>> {
        self.levels(jails)
            .iter()
            .map(|level| {
                level
                    .iter()
                    .filter(|&&i| (self.running)(i))
                    .map(|&i| Action::Start { jail: self.name(i) })
                    .collect()
            })
            .collect()
    }

    /// Each jail's mounted fstab entries, in reverse; `template` is the one
    /// its root shows with them (for recovery to tell whose they are).
    fn unmounts(&self, jails: &[usize], template: Option<&TemplateId>) -> Vec<Action> {
        jails
            .iter()
            .flat_map(|&i| {
                let jail = &self.config.jails[i];
                let template = template.filter(|_| has_root(self.config, jail));
                jail.mounts
                    .iter()
                    .rev()
                    .filter(|mount| (self.mounted)(&mount.target))
                    .map(move |mount| Action::Unmount {
                        jail: jail.name.clone(),
                        mount: mount.clone(),
                        template: template.cloned(),
                    })
            })
            .collect()
    }

    /// Each jail's fstab entries, in order.
    fn mounts(&self, jails: &[usize], template: Option<&TemplateId>) -> Vec<Action> {
        jails
            .iter()
            .flat_map(|&i| {
                let jail = &self.config.jails[i];
                let template = template.filter(|_| has_root(self.config, jail));
                jail.mounts.iter().map(move |mount| Action::Mount {
                    jail: jail.name.clone(),
                    mount: mount.clone(),
                    template: template.cloned(),
                })
            })
            .collect()
    }

    /// The health checks of the running jails that have some.
    fn checks(&self, jails: &[usize]) -> Vec<Action> {
        jails
            .iter()
            .filter(|&&i| (self.running)(i) && !self.config.jails[i].health.is_empty())
            .map(|&i| Action::Health { jail: self.name(i) })
            .collect()
    }
}

/// Whether the jail mounts the live template at its root (so that which
/// template its mounts belong to can be seen there).
fn has_root(config: &Config, jail: &crate::config::JailSpec) -> bool {
    let live = config.store.join(&config.live);
    jail.mounts.iter().any(|mount| mount.source == live)
}

/// Appends steps wave by wave, numbering them.
struct Builder {
    steps: Vec<Step>,
    wave: u32,
}

impl Builder {
    fn wave(&mut self, actions: Vec<Action>, phase: Phase, batch: Option<u32>) {
        if actions.is_empty() {
            return;
        }
        for action in actions {
            let seq = self.steps.len() as u32 + 1;
            self.steps.push(Step {
                seq,
                wave: self.wave,
                phase,
                batch,
                action,
            });
        }
        self.wave += 1;
    }

    fn waves(&mut self, waves: Vec<Vec<Action>>, phase: Phase, batch: Option<u32>) {
        for actions in waves {
            self.wave(actions, phase, batch);
        }
    }

    /// The steps that move `jails` onto whatever the live name holds:
    /// stop (dependants first), unmount (each fstab in reverse), verify
    /// that no jail still mounts `verify`, mount, start (dependencies
    /// first), health. `templates` are the ones the jails' roots show
    /// before and after.
    fn restart(
        &mut self,
        jails: &Jails,
        members: &[usize],
        verify: &str,
        templates: (Option<&TemplateId>, Option<&TemplateId>),
        at: (Phase, Option<u32>),
    ) {
        let (phase, batch) = at;
        self.waves(jails.stops(members), phase, batch);
        self.wave(jails.unmounts(members, templates.0), phase, batch);
        let verifies = members
            .iter()
            .map(|&i| Action::VerifyReleased {
                jail: jails.name(i),
                template: verify.to_string(),
            })
            .collect();
        self.wave(verifies, phase, batch);
        self.wave(jails.mounts(members, templates.1), phase, batch);
        self.waves(jails.starts(members), phase, batch);
        self.wave(jails.checks(members), phase, batch);
    }
}

/// Builds the ordered steps of an upgrade or rollback.
pub fn build(config: &Config, request: &Request, observed: &Observed) -> Plan {
    let mut builder = Builder {
        steps: Vec::new(),
        wave: 0,
    };
    let running = |i: usize| !observed.stopped_jails.contains(&config.jails[i].name);
    let mounted = |target: &PathBuf| observed.mounted.contains(target);
    let rename_live = Action::Rename {
        from: config.live.clone(),
        to: request.archive_as.clone(),
        id: observed.live_id.clone(),
    };
    let swap = Action::Rename {
        from: request.target.clone(),
        to: config.live.clone(),
        id: observed.target_id.clone(),
    };
    let carries: Vec<Action> = config
        .carry
        .iter()
        .zip(&observed.carry_ids)
        .map(|(path, id)| Action::Carry {
            path: path.clone(),
            from: request.archive_as.clone(),
            to: config.live.clone(),
            id: id.clone(),
        })
        .collect();
    let all: Vec<usize> = (0..config.jails.len()).collect();
    let jails = Jails {
        config,
        running: &running,
        mounted: &mounted,
    };
    let forward = Phase::Forward;
    let strategy = match &request.rolling {
        None => {
            // The Handbook's order: every jail stops and unmounts, the
            // names swap, every jail mounts and starts.
            builder.waves(jails.stops(&all), forward, None);
            builder.wave(jails.unmounts(&all, Some(&observed.live_id)), forward, None);
            let verify = Action::VerifyUnused {
                template: config.live.clone(),
            };
            builder.wave(vec![verify], forward, None);
            builder.wave(vec![rename_live], forward, None);
            builder.wave(vec![swap], forward, None);
            builder.wave(carries, forward, None);
            builder.wave(jails.mounts(&all, Some(&observed.target_id)), forward, None);
            builder.waves(jails.starts(&all), forward, None);
            builder.wave(jails.checks(&all), forward, None);
            builder.wave(jails.checks(&all), Phase::AfterRollback, None);
            Strategy::AllAtOnce
        }
        Some((batches, pause_after)) => {
            // The names swap under running jails (a mount holds the
            // directory, not its name); then each batch restarts onto the
            // live name, which now gives the new template.
            builder.wave(vec![rename_live], forward, None);
            builder.wave(vec![swap], forward, None);
            builder.wave(carries, forward, None);
            // Dependency order, then configuration order.
            let order: Vec<usize> = config.levels.iter().flatten().copied().collect();
            let lengths = batches.lengths(order.len());
            let mut start = 0;
            for (index, length) in lengths.iter().enumerate() {
                let members = &order[start..start + length];
                start += length;
                builder.restart(
                    &jails,
                    members,
                    &request.archive_as,
                    (Some(&observed.live_id), Some(&observed.target_id)),
                    (forward, Some(index as u32 + 1)),
                );
            }
            // After a rollback, the jails that moved restart on the old
            // template (the executor picks which); with the names swapped
            // back, the new template is the target again. Every mount is
            // taken down and made again, whatever it was, and whatever a
            // moved jail shows comes down.
            let all_mounted = Jails {
                config,
                running: &running,
                mounted: &|_| true,
            };
            builder.restart(
                &all_mounted,
                &order,
                &request.target,
                (None, Some(&observed.live_id)),
                (Phase::AfterRollback, None),
            );
            Strategy::Rolling {
                batches: lengths.len() as u32,
                pause_after: *pause_after,
            }
        }
    };
    let notes = config
        .jails
        .iter()
        .filter(|jail| observed.stopped_jails.contains(&jail.name))
        .map(|jail| {
            format!(
                "jail {} is not running: it is remounted on the new template but neither stopped nor started",
                jail.name
            )
        })
        .collect();
    Plan {
        kind: request.kind,
        strategy,
        store: config.store.clone(),
        store_kind: observed.store_kind,
        live: config.live.clone(),
        target: request.target.clone(),
        archive_as: request.archive_as.clone(),
        from_label: request.from_label.clone(),
        to_label: request.to_label.clone(),
        live_id: observed.live_id.clone(),
        target_id: observed.target_id.clone(),
        parallel: config.parallel,
        jails: config.jails.clone(),
        steps: builder.steps,
        notes,
    }
}

/// Builds a stage: copy `from` under the staging name, run the command in
/// it, check its top-level links, fingerprint it, publish it as `name`.
#[allow(clippy::too_many_arguments)]
pub fn build_stage(
    config: &Config,
    store_kind: StoreKind,
    from: &str,
    from_id: &TemplateId,
    name: &str,
    staging: &str,
    command: Option<String>,
    timeout_ms: u64,
) -> Plan {
    let mut builder = Builder {
        steps: Vec::new(),
        wave: 0,
    };
    builder.wave(
        vec![Action::Copy {
            from: from.to_string(),
            to: staging.to_string(),
            id: from_id.clone(),
            exclude: config.carry.clone(),
        }],
        Phase::Forward,
        None,
    );
    if let Some(command) = command {
        builder.wave(
            vec![Action::Run {
                command,
                timeout_ms,
            }],
            Phase::Forward,
            None,
        );
    }
    builder.wave(
        vec![Action::CheckLinks {
            template: staging.to_string(),
            like: from.to_string(),
        }],
        Phase::Forward,
        None,
    );
    builder.wave(
        vec![Action::Fingerprint {
            template: staging.to_string(),
        }],
        Phase::Forward,
        None,
    );
    builder.wave(
        vec![Action::Publish {
            from: staging.to_string(),
            to: name.to_string(),
        }],
        Phase::Forward,
        None,
    );
    Plan {
        kind: TransactionKind::Stage,
        strategy: Strategy::AllAtOnce,
        store: config.store.clone(),
        store_kind,
        live: config.live.clone(),
        target: name.to_string(),
        archive_as: staging.to_string(),
        from_label: from.to_string(),
        to_label: name.to_string(),
        live_id: from_id.clone(),
        target_id: TemplateId::Inode(0),
        parallel: 1,
        jails: Vec::new(),
        steps: builder.steps,
        notes: Vec::new(),
    }
}

/// Builds a prune: one deletion per template, each checked by identity.
pub fn build_prune(
    config: &Config,
    store_kind: StoreKind,
    doomed: &[(String, TemplateId)],
    keep: usize,
) -> Plan {
    let names: Vec<&str> = doomed.iter().map(|(name, _)| name.as_str()).collect();
    Plan {
        kind: TransactionKind::Prune,
        strategy: Strategy::AllAtOnce,
        store: config.store.clone(),
        store_kind,
        live: config.live.clone(),
        target: String::new(),
        archive_as: String::new(),
        from_label: names.join(","),
        to_label: format!("keep {keep}"),
        live_id: TemplateId::Inode(0),
        target_id: TemplateId::Inode(0),
        parallel: 1,
        jails: Vec::new(),
        steps: doomed
            .iter()
            .enumerate()
            .map(|(index, (template, id))| Step {
                seq: index as u32 + 1,
                wave: 0,
                phase: Phase::Forward,
                batch: None,
                action: Action::Delete {
                    template: template.clone(),
                    id: id.clone(),
                },
            })
            .collect(),
        notes: Vec::new(),
    }
}
