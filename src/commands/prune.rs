//! `prune --keep N [--dry-run]`: delete archived templates beyond the N
//! newest, as a journaled transaction (the only command that deletes).

use super::{transact, Context};
use crate::error::Result;
use crate::journal::Journal;
use crate::lock::Lock;
use crate::transaction::{self, Finished};
use serde_json::json;
use std::sync::atomic::AtomicBool;

pub fn run(keep: usize, dry_run: bool, context: &Context) -> Result<u8> {
    let config = context.config()?;
    let _lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(&config.journal)?)
    };
    if Journal::open_read(&config.journal)?.is_none() {
        context
            .output
            .line("nothing to prune: no transaction was ever recorded, so no template is archived");
        return Ok(0);
    }
    let mut journal = if dry_run {
        Journal::open_read(&config.journal)?.ok_or_else(|| {
            crate::error::Error::Internal("the journal vanished while it was read".into())
        })?
    } else {
        Journal::open(&config.journal)?
    };
    if !dry_run {
        crate::logging::set_target(config.log);
        super::install_faults(&mut journal);
    }
    let host = super::host(&config);
    let interrupted = if dry_run {
        std::sync::Arc::new(AtomicBool::new(false))
    } else {
        super::transaction_signals()
    };
    let pruned = transaction::prune(
        &*host,
        &config,
        &mut journal,
        keep,
        dry_run,
        &context.reporter,
        &interrupted,
    )?;
    match pruned.finished {
        Some(Finished::Done { id, outcome, .. }) => {
            transact::report(&config, &journal, id, outcome, context)
        }
        _ => {
            if context.json() {
                let outcome = if pruned.names.is_empty() {
                    "nothing_pending"
                } else {
                    "planned"
                };
                context.output.value(
                    &json!({"id": null, "kind": "prune", "outcome": outcome, "delete": pruned.names, "keep": keep}),
                );
            } else if pruned.names.is_empty() {
                context.output.line(format!(
                    "nothing to prune: {} archived template(s), keeping the {keep} newest (the live template, the rollback target and staged templates are never pruned)",
                    pruned.archived
                ));
            } else {
                context
                    .output
                    .line(format!("would delete: {}", pruned.names.join(", ")));
                context
                    .output
                    .line("dry run: nothing was deleted and nothing was recorded");
            }
            Ok(0)
        }
    }
}
