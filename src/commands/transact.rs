//! `upgrade`, `rollback` and `stage`: one transaction each, planned and run
//! by `transaction.rs`; here the journal is opened and locked, signals are
//! handled, and the plan or the outcome is printed.

use super::{render, Context};
use crate::cli::{RollbackArgs, StageArgs, TransactionArgs, UpgradeArgs};
use crate::config::Config;
use crate::error::Result;
use crate::executor::Outcome;
use crate::journal::Journal;
use crate::lock::Lock;
use crate::plan::TransactionKind;
use crate::transaction::{self, Finished, Stage, Swap};
use std::sync::atomic::AtomicBool;

fn swap_request(
    kind: TransactionKind,
    to: Option<String>,
    common: &TransactionArgs,
    config: &Config,
) -> Swap {
    Swap {
        kind,
        to,
        archive_as: common.archive_as.clone(),
        force: common.force,
        adopt: common.adopt,
        reason: common.reason.clone(),
        rolling: common.rolling.then(|| {
            (
                common
                    .batch
                    .clone()
                    .unwrap_or_else(|| config.rolling_batches.clone()),
                common.pause_after,
            )
        }),
    }
}

pub fn upgrade(args: &UpgradeArgs, context: &Context) -> Result<u8> {
    swap(
        TransactionKind::Upgrade,
        Some(args.to.clone()),
        &args.common,
        context,
    )
}

pub fn rollback(args: &RollbackArgs, context: &Context) -> Result<u8> {
    swap(
        TransactionKind::Rollback,
        args.to.clone(),
        &args.common,
        context,
    )
}

/// `upgrade` and `rollback`: the same transaction, to a named template or
/// (a rollback without `--to`) the previous one.
fn swap(
    kind: TransactionKind,
    to: Option<String>,
    common: &TransactionArgs,
    context: &Context,
) -> Result<u8> {
    let config = context.config()?;
    let request = swap_request(kind, to, common, &config);
    run(
        &config,
        context,
        common.dry_run,
        |host, journal, dry_run, interrupted| {
            transaction::swap(
                host,
                &config,
                journal,
                &request,
                dry_run,
                &context.reporter,
                interrupted,
            )
        },
    )
}

pub fn stage(args: &StageArgs, context: &Context) -> Result<u8> {
    let config = context.config()?;
    let request = Stage {
        name: args.name.clone(),
        from: args.from.clone(),
        command: args.run.clone(),
        timeout: args.timeout,
        reason: args.reason.clone(),
    };
    run(
        &config,
        context,
        args.dry_run,
        |host, journal, dry_run, interrupted| {
            transaction::stage(
                host,
                &config,
                journal,
                &request,
                dry_run,
                &context.reporter,
                interrupted,
            )
        },
    )
}

/// Opens the journal (a dry run reads it, or a scratch one, and locks
/// nothing), runs the transaction and prints what came of it.
fn run(
    config: &Config,
    context: &Context,
    dry_run: bool,
    transact: impl FnOnce(&dyn crate::host::Host, &mut Journal, bool, &AtomicBool) -> Result<Finished>,
) -> Result<u8> {
    let host = super::host(config);
    if dry_run {
        // A dry run records nothing and takes no lock: it reads the journal
        // only to know labels and whether a transaction is pending. On a
        // host without a journal yet, an empty one in a temporary directory
        // stands in, removed again when the dry run ends.
        let scratch = tempfile::tempdir().map_err(|error| {
            crate::error::Error::Host(crate::host::HostError::from_io(
                "cannot create a temporary directory".into(),
                &error,
            ))
        })?;
        let mut journal = match Journal::open_read(&config.journal)? {
            Some(journal) => journal,
            None => Journal::open(&scratch.path().join("journal.sqlite"))?,
        };
        let interrupted = AtomicBool::new(false);
        if let Finished::Planned(plan) = transact(&*host, &mut journal, true, &interrupted)? {
            render::plan(context, &plan);
        }
        return Ok(0);
    }
    crate::logging::set_target(config.log);
    let _lock = Lock::acquire(&config.journal)?;
    let mut journal = Journal::open(&config.journal)?;
    super::install_faults(&mut journal);
    let interrupted = super::transaction_signals();
    match transact(&*host, &mut journal, false, &interrupted)? {
        Finished::Planned(plan) => {
            render::plan(context, &plan);
            Ok(0)
        }
        Finished::Done { id, outcome, .. } => report(config, &journal, id, outcome, context),
    }
}

/// After a transaction: one structured log line, the metrics file, and the
/// outcome on stdout.
pub fn report(
    config: &Config,
    journal: &Journal,
    id: i64,
    outcome: Outcome,
    context: &Context,
) -> Result<u8> {
    context.reporter.finish();
    // The journal may have failed mid-transaction: the outcome still stands.
    let record = match journal.transaction(id) {
        Ok(Some(record)) => record,
        _ => {
            context.output.line(format!(
                "{}: transaction {id} (the journal cannot be read back; `jailswap status` says what it holds)",
                outcome.as_str()
            ));
            return Ok(outcome.exit_code());
        }
    };
    log_outcome(&record, outcome);
    write_metrics(config, journal, context);
    let steps = journal.steps(id).unwrap_or_default();
    Ok(render::outcome(context, &record, &steps, outcome))
}

fn log_outcome(record: &crate::journal::TxnRecord, outcome: Outcome) {
    let message = format!(
        "transaction {} {}: {} {} -> {}",
        record.id,
        outcome.as_str(),
        record.kind,
        record.from_label,
        record.to_label
    );
    let (kind, from, to) = (
        record.kind.as_str(),
        record.from_label.as_str(),
        record.to_label.as_str(),
    );
    let (transaction, downtime_ms, outcome_name) =
        (record.id, record.downtime_ms, outcome.as_str());
    match outcome {
        Outcome::Committed | Outcome::Paused => {
            tracing::info!(target: "jailswap", transaction, kind, outcome = outcome_name, downtime_ms, from, to, "{message}")
        }
        Outcome::RolledBack => {
            tracing::warn!(target: "jailswap", transaction, kind, outcome = outcome_name, downtime_ms, from, to, "{message}")
        }
        Outcome::NeedsOperator => {
            tracing::error!(target: "jailswap", transaction, kind, outcome = outcome_name, downtime_ms, from, to, "{message}")
        }
    }
}

/// Refreshes the Prometheus textfile, when the configuration names one.
pub fn write_metrics(config: &Config, journal: &Journal, context: &Context) {
    if let Some(path) = &config.metrics {
        if let Err(error) = crate::metrics::write(path, journal) {
            context.reporter.line(&format!(
                "warning: could not write metrics to {:?}: {error}",
                path.display().to_string()
            ));
        }
    }
}
