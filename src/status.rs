//! `status`: what is live, what each jail sees, what is pending.
//!
//! It reads the host first and the journal second, so that a damaged
//! journal still leaves the operator with a picture of the host (and exit 74).

use crate::app::{print_table, templates};
use crate::cli::Cli;
use crate::config::Config;
use crate::error::Result;
use crate::executor::Direction;
use crate::host::{self, Host};
use crate::journal::{Journal, StepState, TxnRecord};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;

struct JailView {
    name: String,
    running: Option<bool>,
    mounted: usize,
    mounts: usize,
    template: Option<String>,
    read_only: Option<bool>,
}

pub fn status(cli: &Cli, config: &Config) -> Result<u8> {
    let host = host::system(config.backend);
    let found = templates(config);
    let live = found
        .iter()
        .find(|(name, _)| *name == config.live)
        .map(|(_, info)| *info);
    let jails = observe_jails(&*host, config, &found);

    let (journal, journal_error) = match Journal::open_read(&config.journal) {
        Ok(journal) => (journal, None),
        Err(error) => (None, Some(error)),
    };
    let last_final = journal.as_ref().and_then(|j| j.last_final().ok().flatten());
    let last_committed = journal
        .as_ref()
        .and_then(|j| j.last_committed().ok().flatten());
    let pending = journal.as_ref().and_then(|j| j.pending().ok().flatten());
    let label = match (&last_final, live) {
        (Some(last), Some(info)) => {
            let (inode, label) = if last.state == crate::journal::TxnState::Committed {
                (last.to_inode, &last.to_label)
            } else {
                (last.from_inode, &last.from_label)
            };
            (inode == info.inode).then(|| label.clone())
        }
        _ => None,
    };
    let drift = match (&last_final, live, &label) {
        (Some(last), Some(_), None) => Some(format!("the live template is not the one transaction {} left live: the store was changed by hand", last.id)),
        _ => None,
    };
    let previous = last_committed
        .as_ref()
        .filter(|last| {
            found
                .iter()
                .any(|(name, info)| *name == last.archive_as && info.inode == last.from_inode)
        })
        .map(|last| last.archive_as.clone());
    let pending_detail = pending
        .as_ref()
        .map(|record| describe_pending(journal.as_ref(), record));
    let archived: std::collections::BTreeSet<String> = journal
        .as_ref()
        .and_then(|j| j.history(None).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.archive_as)
        .collect();
    let role = |name: &str| -> &'static str {
        if name == config.live {
            "live"
        } else if previous.as_deref() == Some(name) {
            "previous"
        } else if archived.contains(name) {
            "archived"
        } else {
            "staged"
        }
    };

    if cli.json {
        let jail_values: Vec<Value> = jails
            .iter()
            .map(|j| json!({"name": j.name, "running": j.running, "mounted": j.mounted == j.mounts, "mounts_mounted": j.mounted, "mounts": j.mounts, "template": j.template, "read_only": j.read_only}))
            .collect();
        let template_values: Vec<Value> = found
            .iter()
            .map(|(name, info)| json!({"name": name, "inode": info.inode, "role": role(name)}))
            .collect();
        println!(
            "{}",
            json!({
                "live": label.clone().or_else(|| live.map(|_| config.live.clone())),
                "live_inode": live.map(|info| info.inode),
                "previous": previous,
                "pending": pending.as_ref().map(|p| p.id),
                "pending_detail": pending_detail,
                "drift": drift,
                "templates": template_values,
                "jails": jail_values,
                "journal_error": journal_error.as_ref().map(|e| e.message.clone()),
            })
        );
    } else {
        match (live, &label) {
            (Some(info), Some(label)) => println!(
                "live      {label} (as {}, inode {})",
                config.live, info.inode
            ),
            (Some(info), None) => println!(
                "live      {} (inode {}; not yet made live by jailswap)",
                config.live, info.inode
            ),
            (None, _) => println!(
                "live      MISSING: there is no {:?} in {:?}",
                config.live,
                config.store.display().to_string()
            ),
        }
        println!("previous  {}", previous.as_deref().unwrap_or("-"));
        let others: Vec<String> = found
            .iter()
            .filter(|(n, _)| *n != config.live)
            .map(|(n, _)| format!("{n} ({})", role(n)))
            .collect();
        println!(
            "templates {}",
            if others.is_empty() {
                "-".to_string()
            } else {
                others.join(", ")
            }
        );
        if let Some(drift) = &drift {
            println!("warning   {drift}");
        }
        match &pending_detail {
            None => println!("pending   none"),
            Some(detail) => {
                println!("pending   {}", detail["summary"].as_str().unwrap_or(""));
                for key in ["step", "direction", "attention", "run"] {
                    if let Some(text) = detail[key].as_str() {
                        println!("          {key}: {text}");
                    }
                }
            }
        }
        println!();
        let rows: Vec<[String; 4]> = jails
            .iter()
            .map(|j| {
                [
                    j.name.clone(),
                    match j.running {
                        Some(true) => "yes".into(),
                        Some(false) => "no".into(),
                        None => "?".into(),
                    },
                    format!("{}/{}", j.mounted, j.mounts),
                    match (&j.template, j.read_only) {
                        (Some(t), Some(true)) => format!("{t} (read-only)"),
                        (Some(t), Some(false)) => format!("{t} (READ-WRITE)"),
                        (Some(t), None) => t.clone(),
                        (None, _) => "-".into(),
                    },
                ]
            })
            .collect();
        print_table(&["JAIL", "RUNNING", "MOUNTS", "TEMPLATE"], &rows);
    }
    match journal_error {
        Some(error) => Err(error),
        None => Ok(0),
    }
}

fn observe_jails<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    found: &[(String, crate::host::store::EntryInfo)],
) -> Vec<JailView> {
    let mounts = host.read_only_mounts().unwrap_or_default();
    let live_path = config.store.join(&config.live);
    let running = host.jails_running(&config.jails, config.parallel);
    config
        .jails
        .iter()
        .zip(running)
        .map(|(jail, running)| {
            let root = jail
                .mounts
                .iter()
                .find(|m| m.source == live_path)
                .map(|m| m.target.clone())
                .unwrap_or_else(|| jail.path.clone());
            let template = std::fs::metadata(&root).ok().and_then(|meta| {
                found
                    .iter()
                    // nullfs reports its own device, so on the commands
                    // backend the inode alone names the template
                    // (preflight keeps templates on the store's file system).
                    .find(|(_, info)| {
                        info.inode == meta.ino()
                            && (config.backend == crate::config::Backend::Commands
                                || info.device == meta.dev())
                    })
                    .map(|(name, _)| name.clone())
            });
            JailView {
                name: jail.name.clone(),
                running: running.ok().flatten(),
                mounted: jail
                    .mounts
                    .iter()
                    .filter(|m| mounts.contains_key(&m.target))
                    .count(),
                mounts: jail.mounts.len(),
                template: if mounts.contains_key(&root) {
                    template
                } else {
                    None
                },
                read_only: mounts.get(&root).copied(),
            }
        })
        .collect()
}

/// Which step a pending transaction stopped at, which way recovery will
/// go, and the command to run.
fn describe_pending(journal: Option<&Journal>, record: &TxnRecord) -> Value {
    let steps = journal
        .and_then(|j| j.steps(record.id).ok())
        .unwrap_or_default();
    let plan = record.plan().ok();
    let swap_seq = plan.as_ref().map(|p| p.swap_seq()).unwrap_or(u32::MAX);
    let stuck = steps
        .iter()
        .find(|s| {
            matches!(
                s.state,
                StepState::Started | StepState::Undoing | StepState::Failed | StepState::UndoFailed
            )
        })
        .or_else(|| steps.iter().rev().find(|s| s.state == StepState::Done));
    let swap_state = steps.iter().find(|s| s.seq == swap_seq).map(|s| s.state);
    let direction = match swap_state {
        Some(StepState::Started)
            if !matches!(
                record.state,
                crate::journal::TxnState::RollingBack | crate::journal::TxnState::NeedsOperator
            ) =>
        {
            "forward if the swap took effect, back otherwise (recovery looks first)".to_string()
        }
        _ => {
            let swap_done = matches!(
                swap_state,
                Some(StepState::Done | StepState::Undoing | StepState::UndoFailed)
            );
            match crate::recover::default_direction(record, swap_done, crate::recover::rollback_began(&steps)) {
                Direction::Forward => "forward: the swap took effect; recovery finishes the upgrade through the health checks".to_string(),
                Direction::Rollback => "back to the template that was live before".to_string(),
            }
        }
    };
    let step_text = stuck.map(|s| {
        let mut text = match (s.state, s.action.undo()) {
            (StepState::Undoing | StepState::UndoFailed, Some(reverse)) => format!(
                "undo of step {} ({}): {} ({})",
                s.seq,
                s.action.describe(),
                reverse.describe(),
                s.state.as_str()
            ),
            _ => format!("{} {} ({})", s.seq, s.action.describe(), s.state.as_str()),
        };
        if let Some(error) = s.undo_error.as_ref().or(s.error.as_ref()) {
            text.push_str(&format!(": {error}"));
        }
        text
    });
    json!({
        "id": record.id,
        "summary": format!("transaction {} ({} {} -> {}) is {}", record.id, record.kind, record.from_label, record.to_label, record.state.as_str()),
        "state": record.state.as_str(),
        "step": step_text,
        "direction": direction,
        "attention": record.attention,
        "run": "jailswap recover",
    })
}
