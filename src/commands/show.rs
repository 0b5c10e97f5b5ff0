//! `show ID [--timeline]`: one transaction with its steps, their states,
//! times and errors, and what its steps produced; `--timeline` draws it
//! (as data with `--json`).

use super::{render, timeline, Context};
use crate::error::Result;
use crate::journal::{Journal, StepRecord, StepState, TxnRecord, TxnState};
use crate::output::printable_inline;
use crate::plan::Phase;
use crate::preflight::refuse;

/// A transaction and its steps, or 65 naming the transaction when there is none.
pub fn load(context: &Context, id: i64) -> Result<(TxnRecord, Vec<StepRecord>)> {
    let config = context.config()?;
    let not_found = || -> crate::error::Error {
        refuse(
            format!("there is no transaction {id}"),
            "`jailswap history` lists them",
        )
    };
    let journal = Journal::open_read(&config.journal)?.ok_or_else(not_found)?;
    let record = journal.transaction(id)?.ok_or_else(not_found)?;
    let steps = journal.steps(id)?;
    Ok((record, steps))
}

/// A step's state as shown: the checks kept for a rollback that never
/// came are not waiting for anything.
fn shown_state(record: &TxnRecord, step: &StepRecord) -> &'static str {
    if step.phase == Phase::AfterRollback
        && step.state == StepState::Planned
        && record.state == TxnState::Committed
    {
        "skipped"
    } else {
        step.state.as_str()
    }
}

pub fn run(id: i64, draw: bool, context: &Context) -> Result<u8> {
    let (record, mut steps) = load(context, id)?;
    if draw {
        let chart = timeline::Chart::new(&record, &steps);
        if context.json() {
            context.output.value(&chart.json(&record));
            return Ok(0);
        }
        let title = format!(
            "transaction {}: {} {} -> {} ({})",
            record.id,
            record.kind,
            record.from_label,
            record.to_label,
            render::outcome_name(record.kind, record.outcome())
        );
        context.output.text(&chart.text(&title));
        return Ok(0);
    }
    if context.json() {
        let skipped: Vec<u32> = steps
            .iter()
            .filter(|step| shown_state(&record, step) == "skipped")
            .map(|step| step.seq)
            .collect();
        let mut object = render::transaction(&record);
        for step in &mut steps {
            if skipped.contains(&step.seq) {
                step.state = StepState::Planned;
            }
        }
        object["skipped_steps"] = serde_json::json!(skipped);
        render::with_steps(context, object, &steps);
        return Ok(0);
    }
    let outcome = render::outcome_name(record.kind, record.outcome());
    let mut text = format!(
        "transaction {}: {} {} -> {} ({outcome})\n",
        record.id, record.kind, record.from_label, record.to_label
    );
    text.push_str(&format!(
        "  started   {}  by {} on {}\n",
        record.started_at, record.user, record.hostname
    ));
    text.push_str(&format!(
        "  finished  {}\n",
        record.finished_at.as_deref().unwrap_or("-")
    ));
    text.push_str(&format!("  command   {}\n", record.command_line));
    if let Some(fingerprint) = &record.from_fingerprint {
        text.push_str(&format!(
            "  from      {}: {fingerprint}\n",
            record.from_label
        ));
    }
    if let Some(fingerprint) = &record.to_fingerprint {
        text.push_str(&format!("  to        {}: {fingerprint}\n", record.to_label));
    }
    if let Some(reason) = &record.reason {
        text.push_str(&format!("  reason    {}\n", printable_inline(reason)));
    }
    if let Some(ms) = record.downtime_ms {
        text.push_str(&format!(
            "  downtime  {ms} ms{}\n",
            render::slowest_jail(&record)
        ));
    }
    if let Some(error) = &record.error {
        text.push_str(&format!("  cause     {}\n", printable_inline(error)));
    }
    if let Some(attention) = &record.attention {
        text.push_str(&format!("  attention {}\n", printable_inline(attention)));
    }
    for line in render::stage_results(&steps) {
        text.push_str(&format!("  {line}\n"));
    }
    context.output.text(&text);
    let took = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => match (
            chrono::DateTime::parse_from_rfc3339(a),
            chrono::DateTime::parse_from_rfc3339(b),
        ) {
            (Ok(a), Ok(b)) => format!("{} ms", (b - a).num_milliseconds()),
            _ => "-".into(),
        },
        _ => "-".into(),
    };
    let rows: Vec<[String; 6]> = steps
        .iter()
        .map(|step| {
            let mut error = step.error.clone().unwrap_or_default();
            if let Some(undo_error) = &step.undo_error {
                error = format!("{error} undo: {undo_error}").trim().to_string();
            }
            [
                step.seq.to_string(),
                step.batch
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                shown_state(&record, step).to_string(),
                took(&step.started_at, &step.finished_at),
                step.action.describe(),
                error,
            ]
        })
        .collect();
    context
        .output
        .table(&["SEQ", "BATCH", "STATE", "TOOK", "STEP", "ERROR"], &rows);
    Ok(0)
}
