//! `history [--limit N]`: past transactions, newest first, as an aligned
//! table or a JSON array.

use super::{render, Context};
use crate::error::Result;
use crate::journal::Journal;
use serde_json::Value;

pub fn run(limit: Option<u32>, context: &Context) -> Result<u8> {
    let config = context.config()?;
    let (records, total) = match Journal::open_read(&config.journal)? {
        Some(journal) => (journal.history(limit)?, journal.count()?),
        None => (Vec::new(), 0),
    };
    if context.json() {
        context.output.value(&Value::Array(
            records.iter().map(render::transaction).collect(),
        ));
        return Ok(0);
    }
    if records.is_empty() {
        context.output.line(if total == 0 {
            "no transactions recorded yet".to_string()
        } else {
            format!("{total} transaction(s) recorded; --limit 0 shows none of them")
        });
        return Ok(0);
    }
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|record| {
            // What went wrong outranks why it was run: a rollback's cause,
            // or the interruption a committed transaction recovered from.
            let cause = match &record.error {
                Some(error) => error.clone(),
                None => record.reason.clone().unwrap_or_default(),
            };
            [
                record.id.to_string(),
                record.kind.to_string(),
                render::outcome_name(record.kind, record.outcome()),
                format!("{} -> {}", record.from_label, record.to_label),
                record
                    .started_at
                    .get(..19)
                    .unwrap_or(&record.started_at)
                    .replace('T', " "),
                record
                    .downtime_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
                record.user.clone(),
                cause,
            ]
        })
        .collect();
    context.output.table(
        &[
            "ID",
            "KIND",
            "OUTCOME",
            "TEMPLATES",
            "STARTED (UTC)",
            "DOWNTIME",
            "USER",
            "REASON OR CAUSE",
        ],
        &rows,
    );
    Ok(0)
}
