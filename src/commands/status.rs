//! `status`: what is live, every template and its role, what each jail runs
//! on, and what is pending: a transaction in progress (its holder lives) or
//! an interrupted one, with what `recover` will do and why.
//!
//! It reads the host first and the journal second, so that a damaged
//! journal still leaves the operator with a picture of the host (and exit
//! 74). A store without its live template exits 2: the operator must act.

use super::Context;
use crate::config::Config;
use crate::error::{code, Result};
use crate::executor::Direction;
use crate::host::{Host, Template, TemplateId};
use crate::journal::{Journal, StepState, TxnRecord, TxnState};
use crate::lock::Lock;
use crate::plan::StepOutput;
use crate::preflight;
use crate::recover::{decide, Decision, Situation};
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct JailView {
    name: String,
    running: Option<bool>,
    mounted: usize,
    mounts: usize,
    /// The label of the template the jail's root shows.
    template: Option<String>,
    read_only: Option<bool>,
}

/// What the journal says about the templates.
#[derive(Default)]
struct Known {
    /// The live template's label, when jailswap made it live.
    live_label: Option<String>,
    /// The rollback target's name.
    previous: Option<String>,
    /// Archive names with the identity they were archived with.
    archived: Vec<(String, TemplateId)>,
    /// Fingerprints recorded, by identity.
    fingerprints: BTreeMap<String, String>,
    drift: Option<String>,
}

pub fn run(context: &Context) -> Result<u8> {
    let config = context.config()?;
    let host = super::host(&config);
    let templates = preflight::templates(&*host, &config).unwrap_or_default();
    let live = templates.iter().find(|t| t.name == config.live).cloned();
    let (journal, journal_error) = match Journal::open_read(&config.journal) {
        Ok(journal) => (journal, None),
        Err(error) => (None, Some(error)),
    };
    let known = journal
        .as_ref()
        .map(|journal| known(journal, &templates, live.as_ref()))
        .unwrap_or_default();
    let pending = journal.as_ref().and_then(|j| j.pending().ok().flatten());
    let pending_detail = pending.as_ref().and_then(|record| {
        journal
            .as_ref()
            .map(|j| describe_pending(&config, j, record))
    });
    let label_of = |name: &str| -> String {
        if name == config.live {
            known
                .live_label
                .clone()
                .unwrap_or_else(|| config.live.clone())
        } else {
            name.to_string()
        }
    };
    let jails = observe_jails(&*host, &config, &templates, &label_of);
    let role = |template: &Template| -> &'static str {
        if template.name == config.live {
            "live"
        } else if known.previous.as_deref() == Some(template.name.as_str()) {
            "previous"
        } else if known
            .archived
            .iter()
            .any(|(name, id)| *name == template.name && *id == template.found.id)
        {
            "archived"
        } else {
            "staged"
        }
    };
    let now = chrono::Utc::now().timestamp();
    if context.json() {
        let jail_values: Vec<Value> = jails
            .iter()
            .map(|j| json!({"name": j.name, "running": j.running, "mounted": j.mounted == j.mounts, "mounts_mounted": j.mounted, "mounts": j.mounts, "template": j.template, "read_only": j.read_only}))
            .collect();
        let template_values: Vec<Value> = templates
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "label": label_of(&t.name),
                    "role": role(t),
                    "id": t.found.id.to_text(),
                    "inode": t.found.id.inode(),
                    "modified": chrono::DateTime::from_timestamp(t.found.modified, 0).map(|d| d.to_rfc3339()),
                    "age_days": (now - t.found.modified).max(0) / 86_400,
                    "fingerprint": known.fingerprints.get(&t.found.id.to_text()),
                })
            })
            .collect();
        context.output.value(&json!({
            "live": live.as_ref().map(|_| label_of(&config.live)),
            "live_inode": live.as_ref().map(|t| t.found.id.inode()),
            "live_id": live.as_ref().map(|t| t.found.id.to_text()),
            "previous": known.previous,
            "pending": pending.as_ref().map(|p| p.id),
            "pending_detail": pending_detail,
            "drift": known.drift,
            "store_kind": host.store_kind().as_str(),
            "templates": template_values,
            "jails": jail_values,
            "journal_error": journal_error.as_ref().map(|e| e.to_string()),
        }));
    } else {
        let mut text = match &live {
            Some(template) => format!(
                "live      {} (as {}, {}{})\n",
                label_of(&config.live),
                config.live,
                template.found.id,
                if known.live_label.is_none() {
                    "; not yet made live by jailswap"
                } else {
                    ""
                }
            ),
            None => format!(
                "live      MISSING: there is no {:?} in {:?}\n",
                config.live,
                config.store.display().to_string()
            ),
        };
        text.push_str(&format!(
            "previous  {}\n",
            known.previous.as_deref().unwrap_or("-")
        ));
        text.push_str(&format!(
            "store     {} ({})\n",
            config.store.display(),
            host.store_kind().as_str()
        ));
        if let Some(drift) = &known.drift {
            text.push_str(&format!("warning   {drift}\n"));
        }
        match &pending_detail {
            None => text.push_str("pending   none\n"),
            Some(detail) => {
                text.push_str(&format!(
                    "pending   {}\n",
                    detail["summary"].as_str().unwrap_or("")
                ));
                for key in ["holder", "step", "direction", "attention", "run"] {
                    if let Some(value) = detail[key].as_str() {
                        text.push_str(&format!("          {key}: {value}\n"));
                    }
                }
            }
        }
        text.push('\n');
        context.output.text(&text);
        let rows: Vec<[String; 4]> = templates
            .iter()
            .map(|t| {
                let age = (now - t.found.modified).max(0) / 86_400;
                [
                    t.name.clone(),
                    role(t).to_string(),
                    format!("{age} d"),
                    known
                        .fingerprints
                        .get(&t.found.id.to_text())
                        .cloned()
                        .unwrap_or_else(|| t.found.id.to_string()),
                ]
            })
            .collect();
        context.output.table(
            &["TEMPLATE", "ROLE", "AGE", "IDENTITY / FINGERPRINT"],
            &rows,
        );
        context.output.line("");
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
        context
            .output
            .table(&["JAIL", "RUNNING", "MOUNTS", "TEMPLATE"], &rows);
    }
    if let Some(error) = journal_error {
        return Err(error.into());
    }
    Ok(if live.is_none() {
        code::NEEDS_OPERATOR
    } else {
        code::SUCCESS
    })
}

/// What the journal says of the templates found.
fn known(journal: &Journal, templates: &[Template], live: Option<&Template>) -> Known {
    let mut known = Known::default();
    let history = journal.history(None).unwrap_or_default();
    if let Ok(Some(last)) = journal.last_final() {
        let (id, label) = preflight::left_live(&last);
        match live {
            Some(live) if live.found.id == *id => known.live_label = Some(label.to_string()),
            Some(_) => {
                known.drift = Some(format!(
                    "the live template is not the one transaction {} left live: the store was changed by hand",
                    last.id
                ))
            }
            None => {}
        }
    }
    if let Ok(Some(last)) = journal.last_committed() {
        let present = templates
            .iter()
            .any(|t| t.name == last.archive_as && t.found.id == last.from_id);
        if present {
            known.previous = Some(last.archive_as.clone());
        }
    }
    // A pending upgrade or rollback past its swap (a paused rolling one,
    // say) has made its target live and archived the old template: they
    // are labelled as it will leave them, and no drift is reported.
    if let Ok(Some(pending)) = journal.pending() {
        let swaps = matches!(
            pending.kind,
            crate::plan::TransactionKind::Upgrade | crate::plan::TransactionKind::Rollback
        );
        if swaps && live.is_some_and(|live| live.found.id == pending.to_id) {
            known.live_label = Some(pending.to_label.clone());
            known.drift = None;
            let archived = templates
                .iter()
                .any(|t| t.name == pending.archive_as && t.found.id == pending.from_id);
            if archived {
                known.previous = Some(pending.archive_as.clone());
            }
        }
    }
    for record in &history {
        if record.state == TxnState::Committed {
            known
                .archived
                .push((record.archive_as.clone(), record.from_id.clone()));
        }
        // A stage learns its copy's identity and fingerprint as it goes:
        // they are in its steps' results, not in its record.
        if record.kind == crate::plan::TransactionKind::Stage && record.state == TxnState::Committed
        {
            let results = journal.steps(record.id).unwrap_or_default();
            let outputs: Vec<StepOutput> = results
                .iter()
                .filter_map(|step| step.result.as_deref())
                .filter_map(|text| serde_json::from_str(text).ok())
                .collect();
            let copy = outputs.iter().find_map(|output| match output {
                StepOutput::Copy { id, .. } => Some(id),
                _ => None,
            });
            let fingerprint = outputs.iter().find_map(|output| match output {
                StepOutput::Fingerprint { fingerprint } => Some(fingerprint),
                _ => None,
            });
            if let (Some(id), Some(fingerprint)) = (copy, fingerprint) {
                known
                    .fingerprints
                    .entry(id.to_text())
                    .or_insert_with(|| format!("{id}, {fingerprint}"));
            }
        }
        for (id, fingerprint) in [
            (&record.from_id, &record.from_fingerprint),
            (&record.to_id, &record.to_fingerprint),
        ] {
            if let Some(fingerprint) = fingerprint {
                known
                    .fingerprints
                    .entry(id.to_text())
                    .or_insert_with(|| fingerprint.clone());
            }
        }
    }
    known
}

fn observe_jails<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    templates: &[Template],
    label_of: &dyn Fn(&str) -> String,
) -> Vec<JailView> {
    let mounts = host.mount_table().unwrap_or_default();
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
            let template = if mounts.contains_key(&root) {
                host.template_at(&root).ok().flatten().and_then(|id| {
                    templates
                        .iter()
                        .find(|t| t.found.id == id)
                        .map(|t| label_of(&t.name))
                })
            } else {
                None
            };
            JailView {
                name: jail.name.clone(),
                running: running.ok().flatten(),
                mounted: jail
                    .mounts
                    .iter()
                    .filter(|m| mounts.contains_key(&m.target))
                    .count(),
                mounts: jail.mounts.len(),
                template,
                read_only: mounts.get(&root).copied(),
            }
        })
        .collect()
}

/// A pending transaction: in progress (a live jailswap holds it) or
/// interrupted, with the step it is at and what `recover` will do.
fn describe_pending(config: &Config, journal: &Journal, record: &TxnRecord) -> Value {
    let steps = journal.steps(record.id).unwrap_or_default();
    let stuck = steps
        .iter()
        .find(|s| {
            matches!(
                s.state,
                StepState::Started | StepState::Undoing | StepState::Failed | StepState::UndoFailed
            )
        })
        .or_else(|| steps.iter().rev().find(|s| s.state == StepState::Done));
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
    let summary = format!(
        "transaction {} ({} {} -> {}) is {}",
        record.id,
        record.kind,
        record.from_label,
        record.to_label,
        record.state.as_str()
    );
    if let Some(holder) = Lock::holder(&config.journal) {
        let running_for = chrono::DateTime::parse_from_rfc3339(&record.started_at)
            .map(|started| {
                let seconds = (chrono::Utc::now() - started.with_timezone(&chrono::Utc))
                    .num_seconds()
                    .max(0);
                format!("{seconds} s")
            })
            .unwrap_or_else(|_| "?".into());
        return json!({
            "id": record.id,
            "summary": format!("{summary}, in progress"),
            "state": record.state.as_str(),
            "in_progress": true,
            "holder": format!("pid {}, running `{}` for {running_for}", holder.pid, record.command_line),
            "pid": holder.pid,
            "command_line": record.command_line,
            "step": step_text,
            "direction": null,
            "attention": record.attention,
            "run": null,
        });
    }
    let direction = match record.plan() {
        Ok(plan) => {
            let observed = BTreeMap::new();
            let decision = decide(&Situation {
                plan: &plan,
                state: record.state,
                interrupted_recoveries: record.interrupted_recoveries,
                steps: &steps,
                observed: &observed,
                chosen: None,
                undisturbed: None,
            });
            match decision {
                Decision::Go {
                    direction: Direction::Forward,
                    because,
                }
                | Decision::Go {
                    direction: Direction::Rollback,
                    because,
                }
                | Decision::Wait { because }
                | Decision::LookFirst { because }
                | Decision::Operator { because } => because,
            }
        }
        Err(why) => format!("unknown: {why}"),
    };
    let run = if record.state == TxnState::Paused {
        "jailswap recover --resume (continue) or jailswap recover --rollback (undo)"
    } else {
        "jailswap recover"
    };
    json!({
        "id": record.id,
        "summary": if record.state == TxnState::Paused {
            format!("{summary}, waiting for the operator")
        } else {
            format!("{summary}, interrupted")
        },
        "state": record.state.as_str(),
        "in_progress": false,
        "step": step_text,
        "direction": direction,
        "attention": record.attention,
        "run": run,
    })
}
