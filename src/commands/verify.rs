//! `verify`: the journal's integrity and its audit hash chain; 0 intact, 74
//! naming the first record that does not match.

use super::Context;
use crate::error::Result;
use crate::journal::{Cause, Journal, JournalError, Verdict};
use serde_json::json;

pub fn run(context: &Context) -> Result<u8> {
    let config = context.config()?;
    let shown = config.journal.display().to_string();
    let Some(journal) = Journal::open_read(&config.journal)? else {
        if context.json() {
            context
                .output
                .value(&json!({"intact": true, "records": 0, "journal": config.journal}));
        } else {
            context
                .output
                .line(format!("no journal yet at {shown:?}: nothing to verify"));
        }
        return Ok(0);
    };
    match journal.verify()? {
        Verdict::Intact { records } => {
            if context.json() {
                context
                    .output
                    .value(&json!({"intact": true, "records": records, "journal": config.journal}));
            } else {
                context.output.line(format!(
                    "journal {shown:?} is intact: integrity check passed, {records} finished transactions chained"
                ));
            }
            Ok(0)
        }
        Verdict::Broken { id, reason } => {
            if context.json() {
                context.output.value(
                    &json!({"intact": false, "first_mismatch": id, "reason": reason, "journal": config.journal}),
                );
            }
            let which = id
                .map(|id| format!("transaction {id}"))
                .unwrap_or_else(|| "the database".into());
            Err(JournalError {
                path: config.journal.clone(),
                cause: Cause::Tampered(format!("{which}: {reason}")),
            }
            .into())
        }
    }
}
