//! How transactions, steps and plans read, as JSON (stable snake_case field
//! names; new fields may be added, none renamed) and as text for humans.

use super::Context;
use crate::executor::Outcome;
use crate::journal::{StepRecord, TxnRecord};
use crate::plan::{Phase, Plan, StepOutput, TransactionKind};
use serde_json::{json, Value};
use std::io::Write;

/// The outcome as the JSON and the text name it: a committed stage is
/// `staged`.
pub fn outcome_name(kind: TransactionKind, outcome: &str) -> String {
    if kind == TransactionKind::Stage && outcome == "committed" {
        "staged".to_string()
    } else {
        outcome.to_string()
    }
}

/// One transaction, as `history` lists it and `show` begins it.
pub fn transaction(record: &TxnRecord) -> Value {
    let per_jail: Value = record
        .downtime_jails
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": record.id,
        "kind": record.kind.as_str(),
        "from": record.from_label,
        "to": record.to_label,
        "outcome": outcome_name(record.kind, record.outcome()),
        "state": record.state.as_str(),
        "archive_as": record.archive_as,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "downtime_ms": record.downtime_ms,
        "downtime_jails": per_jail,
        "user": record.user,
        "hostname": record.hostname,
        "command_line": record.command_line,
        "reason": record.reason,
        "error": record.error,
        "attention": record.attention,
        "from_id": record.from_id.to_text(),
        "to_id": record.to_id.to_text(),
        "from_fingerprint": record.from_fingerprint,
        "to_fingerprint": record.to_fingerprint,
    })
}

pub fn step(step: &StepRecord) -> Value {
    let result: Value = step
        .result
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    json!({
        "seq": step.seq,
        "wave": step.wave,
        "batch": step.batch,
        "phase": step.phase.as_str(),
        "action": step.action.verb(),
        "jail": step.action.jail(),
        "description": step.action.describe(),
        "state": step.state.as_str(),
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "error": step.error,
        "undo_started_at": step.undo_started_at,
        "undo_finished_at": step.undo_finished_at,
        "undo_error": step.undo_error,
        "result": result,
    })
}

/// Prints a transaction object with its `steps`, one step at a time: a
/// transaction of a thousand jails has eight thousand steps, which need not
/// all be held as JSON values at once.
pub fn with_steps(context: &Context, object: Value, steps: &[StepRecord]) {
    let head = object.to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    let separator = if head.ends_with('{') { "" } else { "," };
    let mut out = context.output.writer();
    let mut write = || -> std::io::Result<()> {
        write!(out, "{head}{separator}\"steps\":[")?;
        for (index, record) in steps.iter().enumerate() {
            if index > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, &step(record))?;
        }
        writeln!(out, "]}}")
    };
    // A failed write is kept by the output; the rest is not attempted.
    let _ = write();
}

/// The plan of a dry run: every step with its undo.
pub fn plan(context: &Context, plan: &Plan) {
    if context.json() {
        let steps: Vec<Value> = plan
            .steps
            .iter()
            .map(|step| {
                json!({
                    "seq": step.seq,
                    "wave": step.wave,
                    "batch": step.batch,
                    "phase": step.phase.as_str(),
                    "action": step.action.verb(),
                    "jail": step.action.jail(),
                    "description": step.action.describe(),
                    "undo": step.action.undo().map(|undo| undo.describe()),
                })
            })
            .collect();
        context.output.value(&json!({
            "id": null, "kind": plan.kind.as_str(), "outcome": "planned",
            "from": plan.from_label, "to": plan.to_label, "archive_as": plan.archive_as,
            "strategy": plan.strategy, "notes": plan.notes,
            "downtime_ms": null, "steps": steps,
        }));
        return;
    }
    let mut text = match plan.kind {
        TransactionKind::Stage => format!(
            "plan: stage {} from {} (built as {})\n",
            plan.to_label, plan.from_label, plan.archive_as
        ),
        _ => format!(
            "plan: {} {} -> {} (outgoing template archived as {}){}\n",
            plan.kind,
            plan.from_label,
            plan.to_label,
            plan.archive_as,
            if plan.rolling() { ", rolling" } else { "" }
        ),
    };
    for note in &plan.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    let width = plan
        .steps
        .iter()
        .map(|s| s.action.describe().len())
        .max()
        .unwrap_or(0);
    let mut phase = Phase::Forward;
    let mut batch = None;
    for step in &plan.steps {
        if step.phase != phase {
            phase = step.phase;
            batch = None;
            text.push_str(if plan.rolling() {
                "only after a rollback (the jails that moved restart on the old template):\n"
            } else {
                "only after a rollback:\n"
            });
        }
        if step.batch != batch && step.phase == Phase::Forward {
            batch = step.batch;
            if let Some(number) = batch {
                let canary = if number == 1 { " (the canary)" } else { "" };
                text.push_str(&format!("batch {number}{canary}:\n"));
            }
        }
        let undo = match step.action.undo() {
            Some(undo) => format!("undo: {}", undo.describe()),
            None => "undo: nothing to undo".to_string(),
        };
        text.push_str(&format!(
            "{:>4}  {:<width$}  {undo}\n",
            step.seq,
            step.action.describe()
        ));
    }
    text.push_str("dry run: nothing was changed and nothing was recorded\n");
    context.output.text(&text);
}

/// The jail that was down longest in all, for the outcome line. A jail
/// that a rolling rollback restarted twice was down twice: its figure is
/// the sum, which may exceed `downtime_ms` (the longest single outage).
pub fn slowest_jail(record: &TxnRecord) -> String {
    let per_jail: serde_json::Map<String, Value> = record
        .downtime_jails
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    per_jail
        .iter()
        .filter_map(|(jail, ms)| ms.as_i64().map(|ms| (ms, jail)))
        .max()
        .map(|(ms, jail)| format!(" (most down: jail {jail}, {ms} ms in all)"))
        .unwrap_or_default()
}

/// What a stage produced: the copy's time, the command's status and tail,
/// the fingerprint.
pub fn stage_results(steps: &[StepRecord]) -> Vec<String> {
    let mut lines = Vec::new();
    for record in steps {
        let Some(output) = record
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str::<StepOutput>(text).ok())
        else {
            continue;
        };
        match output {
            StepOutput::Copy { id, took_ms } => {
                lines.push(format!("copy      {id}, made in {took_ms} ms"))
            }
            StepOutput::Command {
                status,
                timed_out,
                output_tail,
            } => {
                let how = match (timed_out, status) {
                    (true, _) => "timed out".to_string(),
                    (false, Some(code)) => format!("exit status {code}"),
                    (false, None) => "killed by a signal".to_string(),
                };
                lines.push(format!("command   {how}"));
                for line in output_tail.lines() {
                    lines.push(format!("          | {line}"));
                }
            }
            StepOutput::Fingerprint { fingerprint } => {
                lines.push(format!("fingerprint {fingerprint}"))
            }
        }
    }
    lines
}

/// The result of a transaction that ran: JSON, or one line (two for a
/// rollback or a wait) for humans.
pub fn outcome(
    context: &Context,
    record: &TxnRecord,
    steps: &[StepRecord],
    outcome: Outcome,
) -> u8 {
    let name = outcome_name(record.kind, outcome.as_str());
    if context.json() {
        let mut object = transaction(record);
        object["outcome"] = json!(name);
        with_steps(context, object, steps);
        return outcome.exit_code();
    }
    let id = record.id;
    let downtime = match record.downtime_ms {
        Some(ms) => format!(", downtime {ms} ms{}", slowest_jail(record)),
        None => String::new(),
    };
    let kind = record.kind;
    let (from, to) = (&record.from_label, &record.to_label);
    let cause = crate::output::printable_inline(record.error.as_deref().unwrap_or("unknown"));
    let text = match outcome {
        Outcome::Committed if kind == TransactionKind::Stage => {
            let mut text = format!("staged: transaction {id}, {to} built from {from}\n");
            for line in stage_results(steps) {
                text.push_str(&format!("  {line}\n"));
            }
            text
        }
        Outcome::Committed => {
            format!("committed: transaction {id}, {kind} {from} -> {to}{downtime}\n")
        }
        Outcome::RolledBack if kind == TransactionKind::Stage => format!(
            "rolled back: transaction {id}, stage {to} failed; nothing was kept\n  cause: {cause}\n"
        ),
        Outcome::RolledBack => format!(
            "rolled back: transaction {id}, {kind} {from} -> {to} failed and the jails run on {from} again{downtime}\n  cause: {cause}\n"
        ),
        Outcome::NeedsOperator => format!(
            "needs operator: transaction {id}, {kind} {from} -> {to} is pending\n  {}\n  cause: {cause}\n",
            record.attention.as_deref().unwrap_or("run `jailswap status`, then `jailswap recover`"),
        ),
        Outcome::Paused => format!(
            "paused: transaction {id}, {kind} {from} -> {to}: `jailswap status` shows which template each jail runs on; `jailswap recover --resume` continues, `jailswap recover --rollback` undoes\n"
        ),
    };
    context.output.text(&text);
    outcome.exit_code()
}
