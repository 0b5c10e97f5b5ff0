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

/// What the builder knows of the jails: the configuration, which jails
/// run, which mount points are mounted.
struct HostView<'a> {
    config: &'a Config,
    running: &'a dyn Fn(usize) -> bool,
    mounted: &'a dyn Fn(&PathBuf) -> bool,
}

impl HostView<'_> {
    /// Whether the jail mounts the live template at its root (so that which
    /// template its mounts belong to can be seen there).
    fn has_root(&self, jail: &crate::config::JailSpec) -> bool {
        has_root(self.config, jail)
    }
}

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

    /// The jail steps that move `jails` (indexes into the configuration)
    /// onto whatever the live name holds: stop (dependants first), unmount
    /// (each fstab in reverse), verify, mount, start (dependencies first),
    /// health. `verify` is what no jail may still mount after unmounting.
    #[allow(clippy::too_many_arguments)]
    fn restart(
        &mut self,
        host: &HostView,
        jails: &[usize],
        verify: Option<&str>,
        templates: (Option<&TemplateId>, Option<&TemplateId>),
        phase: Phase,
        batch: Option<u32>,
    ) {
        let (unmounting, mounting) = templates;
        let (config, running, mounted) = (host.config, host.running, host.mounted);
        let levels: Vec<Vec<usize>> = config
            .levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .copied()
                    .filter(|i| jails.contains(i))
                    .collect()
            })
            .collect();
        for level in levels.iter().rev() {
            let stops = level
                .iter()
                .filter(|&&i| running(i))
                .map(|&i| Action::Stop {
                    jail: config.jails[i].name.clone(),
                })
                .collect();
            self.wave(stops, phase, batch);
        }
        let unmounts = jails
            .iter()
            .flat_map(|&i| {
                let jail = &config.jails[i];
                jail.mounts
                    .iter()
                    .rev()
                    .filter(|mount| mounted(&mount.target))
                    .map(|mount| Action::Unmount {
                        jail: jail.name.clone(),
                        mount: mount.clone(),
                        template: unmounting.filter(|_| host.has_root(jail)).cloned(),
                    })
            })
            .collect();
        self.wave(unmounts, phase, batch);
        if let Some(template) = verify {
            let verifies = jails
                .iter()
                .map(|&i| Action::VerifyReleased {
                    jail: config.jails[i].name.clone(),
                    template: template.to_string(),
                })
                .collect();
            self.wave(verifies, phase, batch);
        }
        let mounts = jails
            .iter()
            .flat_map(|&i| {
                let jail = &config.jails[i];
                jail.mounts.iter().map(|mount| Action::Mount {
                    jail: jail.name.clone(),
                    mount: mount.clone(),
                    template: mounting.filter(|_| host.has_root(jail)).cloned(),
                })
            })
            .collect();
        self.wave(mounts, phase, batch);
        for level in &levels {
            let starts = level
                .iter()
                .filter(|&&i| running(i))
                .map(|&i| Action::Start {
                    jail: config.jails[i].name.clone(),
                })
                .collect();
            self.wave(starts, phase, batch);
        }
        let checks = jails
            .iter()
            .filter(|&&i| running(i) && !config.jails[i].health.is_empty())
            .map(|&i| Action::Health {
                jail: config.jails[i].name.clone(),
            })
            .collect();
        self.wave(checks, phase, batch);
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
    let strategy = match &request.rolling {
        None => {
            // The Handbook's order: every jail stops and unmounts, the
            // names swap, every jail mounts and starts.
            let levels: Vec<&Vec<usize>> = config.levels.iter().collect();
            for level in levels.iter().rev() {
                let stops = level
                    .iter()
                    .filter(|&&i| running(i))
                    .map(|&i| Action::Stop {
                        jail: config.jails[i].name.clone(),
                    })
                    .collect();
                builder.wave(stops, Phase::Forward, None);
            }
            let unmounts = config
                .jails
                .iter()
                .flat_map(|jail| {
                    jail.mounts
                        .iter()
                        .rev()
                        .filter(|mount| mounted(&mount.target))
                        .map(|mount| Action::Unmount {
                            jail: jail.name.clone(),
                            mount: mount.clone(),
                            template: has_root(config, jail).then(|| observed.live_id.clone()),
                        })
                })
                .collect();
            builder.wave(unmounts, Phase::Forward, None);
            builder.wave(
                vec![Action::VerifyUnused {
                    template: config.live.clone(),
                }],
                Phase::Forward,
                None,
            );
            builder.wave(vec![rename_live], Phase::Forward, None);
            builder.wave(vec![swap], Phase::Forward, None);
            builder.wave(carries, Phase::Forward, None);
            let mounts = config
                .jails
                .iter()
                .flat_map(|jail| {
                    jail.mounts.iter().map(|mount| Action::Mount {
                        jail: jail.name.clone(),
                        mount: mount.clone(),
                        template: has_root(config, jail).then(|| observed.target_id.clone()),
                    })
                })
                .collect();
            builder.wave(mounts, Phase::Forward, None);
            for level in &config.levels {
                let starts = level
                    .iter()
                    .filter(|&&i| running(i))
                    .map(|&i| Action::Start {
                        jail: config.jails[i].name.clone(),
                    })
                    .collect();
                builder.wave(starts, Phase::Forward, None);
            }
            let health = || -> Vec<Action> {
                all.iter()
                    .filter(|&&i| running(i) && !config.jails[i].health.is_empty())
                    .map(|&i| Action::Health {
                        jail: config.jails[i].name.clone(),
                    })
                    .collect()
            };
            builder.wave(health(), Phase::Forward, None);
            builder.wave(health(), Phase::AfterRollback, None);
            Strategy::AllAtOnce
        }
        Some((batches, pause_after)) => {
            // The names swap under running jails (a mount holds the
            // directory, not its name); then each batch restarts onto the
            // live name, which now gives the new template.
            builder.wave(vec![rename_live], Phase::Forward, None);
            builder.wave(vec![swap], Phase::Forward, None);
            builder.wave(carries, Phase::Forward, None);
            // Dependency order, then configuration order.
            let order: Vec<usize> = config.levels.iter().flatten().copied().collect();
            let lengths = batches.lengths(order.len());
            let mut start = 0;
            for (index, length) in lengths.iter().enumerate() {
                let members = &order[start..start + length];
                start += length;
                builder.restart(
                    &HostView {
                        config,
                        running: &running,
                        mounted: &mounted,
                    },
                    members,
                    Some(&request.archive_as),
                    (Some(&observed.live_id), Some(&observed.target_id)),
                    Phase::Forward,
                    Some(index as u32 + 1),
                );
            }
            // After a rollback, the jails that moved restart on the old
            // template (the executor picks which); with the names swapped
            // back, the new template is the target again. Every mount is
            // taken down and made again, whatever it was.
            builder.restart(
                &HostView {
                    config,
                    running: &running,
                    mounted: &|_| true,
                },
                &order,
                Some(&request.target),
                // Whatever a moved jail shows comes down; the old one goes up.
                (None, Some(&observed.live_id)),
                Phase::AfterRollback,
                None,
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
