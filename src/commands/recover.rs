//! `recover [--resume | --rollback]`: finish an interrupted transaction, or
//! continue or undo a paused one. With nothing pending it says so and exits
//! 0 (refreshing the metrics, as the boot-time run does).

use super::{transact, Context};
use crate::cli::RecoverArgs;
use crate::error::{Error, Result};
use crate::executor::{Direction, Outcome};
use crate::journal::{Journal, TxnState};
use crate::lock::Lock;
use crate::recover::RecoverError;
use serde_json::json;

pub fn run(args: &RecoverArgs, context: &Context) -> Result<u8> {
    let direction = match (args.resume, args.rollback) {
        (true, _) => Some(Direction::Forward),
        (_, true) => Some(Direction::Rollback),
        _ => None,
    };
    let config = context.config()?;
    crate::logging::set_target(config.log);
    let _lock = Lock::acquire(&config.journal)?;
    let mut journal = Journal::open(&config.journal)?;
    super::install_faults(&mut journal);
    let Some(pending) = journal.pending()? else {
        if context.json() {
            context.output.value(&json!({"id": null, "kind": null, "outcome": "nothing_pending", "from": null, "to": null, "downtime_ms": null, "steps": []}));
        } else {
            context
                .output
                .line("nothing to recover: no transaction is pending");
        }
        transact::write_metrics(&config, &journal, context);
        return Ok(0);
    };
    // The plan names the store and its kind: recovery never reads them
    // from the configuration, which may have changed since.
    let plan = pending.plan().map_err(|why| {
        Error::Journal(crate::journal::JournalError {
            path: config.journal.clone(),
            cause: crate::journal::Cause::Corrupt(why),
        })
    })?;
    let host = crate::host::system(config.backend, &plan.store, plan.store_kind);
    let interrupted = super::transaction_signals();
    let outcome = match crate::recover::recover(
        &host,
        &mut journal,
        &pending,
        direction,
        &context.reporter,
        &interrupted,
    ) {
        Ok(outcome) => outcome,
        Err(RecoverError::Journal(error)) => return Err(error.into()),
        #[cfg(feature = "fault-injection")]
        Err(RecoverError::Crash) => {
            return Err(Error::Internal(
                "simulated crash: the process stops here".into(),
            ))
        }
    };
    // A paused upgrade that recovery left as it found it. (One that was
    // interrupted and that recovery brought to its pause is reported as
    // a pause, like an upgrade that paused.)
    if outcome == Outcome::Paused && direction.is_none() && pending.state == TxnState::Paused {
        return Err(Error::busy(
            format!(
                "transaction {} ({} {} -> {}) is paused and every jail runs where the journal says; nothing was changed",
                pending.id, pending.kind, pending.from_label, pending.to_label
            ),
            "`jailswap recover --resume` continues with the next batch; `jailswap recover --rollback` undoes the upgrade",
        ));
    }
    transact::report(&config, &journal, pending.id, outcome, context)
}
