//! The commands: each turns parsed arguments into an exit code, printing its
//! result on stdout (human or `--json`) and progress on stderr.

use crate::cli::{Cli, Command, InitArgs};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::error::{Error, Kind, Result};
use crate::executor::{Direction, Outcome};
use crate::host::{self, store, Host};
use crate::journal::{Journal, StepRecord, TxnRecord};
use crate::lock::Lock;
use crate::plan::{Phase, TransactionKind};
use crate::report::Reporter;
use crate::transaction::{self, Options};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn run(cli: Cli) -> Result<u8> {
    let reporter = Reporter::new(cli.quiet || cli.json && !cli.verbose);
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match &cli.command {
        Command::Upgrade(args) => {
            let options = options(Some(args.to.clone()), &args.common);
            transact(
                &cli,
                &config_path,
                TransactionKind::Upgrade,
                &options,
                args.common.dry_run,
                &reporter,
            )
        }
        Command::Rollback(args) => {
            let options = options(args.to.clone(), &args.common);
            transact(
                &cli,
                &config_path,
                TransactionKind::Rollback,
                &options,
                args.common.dry_run,
                &reporter,
            )
        }
        Command::Recover(args) => {
            let direction = if args.resume {
                Some(Direction::Forward)
            } else if args.rollback {
                Some(Direction::Rollback)
            } else {
                None
            };
            recover(&cli, &config_path, direction, &reporter)
        }
        Command::Status => crate::status::status(&cli, &Config::load(&config_path)?),
        Command::History { limit } => history(&cli, &Config::load(&config_path)?, *limit),
        Command::Show {
            id,
            timeline: false,
        } => show(&cli, &Config::load(&config_path)?, *id),
        Command::Show { id, timeline: true } => {
            crate::timeline::show(&Config::load(&config_path)?, *id)
        }
        Command::Verify => verify(&cli, &Config::load(&config_path)?),
        Command::Prune { keep, dry_run } => crate::prune::prune(
            &cli,
            &Config::load(&config_path)?,
            *keep,
            *dry_run,
            &reporter,
        ),
        Command::Check => check(&cli, &Config::load(&config_path)?),
        Command::Init(args) => init(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "jailswap", &mut std::io::stdout());
            Ok(0)
        }
        Command::Demo { keep } => crate::demo::run(*keep),
        Command::Serve(args) => crate::service::serve(args),
    }
}

fn options(to: Option<String>, common: &crate::cli::TransactionArgs) -> Options {
    Options {
        to,
        archive_as: common.archive_as.clone(),
        force: common.force,
        adopt: common.adopt,
        reason: common.reason.clone(),
    }
}

/// SIGINT/SIGTERM: the first asks for a rollback after the running step;
/// a second one ends the process at once (exit 75), leaving the
/// transaction pending for `recover`.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 75, Arc::clone(&flag));
        let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
    }
    flag
}

fn transact(
    cli: &Cli,
    config_path: &std::path::Path,
    kind: TransactionKind,
    options: &Options,
    dry_run: bool,
    reporter: &Reporter,
) -> Result<u8> {
    let config = Config::load(config_path)?;
    let host = host::system(config.backend);
    if dry_run {
        // A dry run records nothing and takes no lock: it reads the journal
        // only to know labels and whether a transaction is pending.
        // On a host without a journal yet, an empty one in a temporary
        // directory stands in, removed again when the dry run ends.
        let scratch_directory = tempfile::tempdir().map_err(|error| {
            Error::internal(format!("cannot create a temporary directory: {error}"))
        })?;
        let mut scratch = match Journal::open_read(&config.journal)? {
            Some(journal) => journal,
            None => Journal::open(&scratch_directory.path().join("journal.sqlite"))?,
        };
        let interrupted = AtomicBool::new(false);
        let finished = transaction::run(
            &*host,
            &config,
            &mut scratch,
            kind,
            options,
            true,
            reporter,
            &interrupted,
        )?;
        print_plan(cli, &finished.plan);
        return Ok(0);
    }
    crate::logging::set_target(config.log);
    let _lock = Lock::acquire(&config.journal)?;
    let mut journal = Journal::open(&config.journal)?;
    install_kill_switch(&mut journal);
    let interrupted = interrupt_flag();
    let finished = transaction::run(
        &*host,
        &config,
        &mut journal,
        kind,
        options,
        false,
        reporter,
        &interrupted,
    )?;
    let (Some(id), Some(outcome)) = (finished.id, finished.outcome) else {
        return Err(Error::internal("transaction ended without an outcome"));
    };
    finished_transaction(&config, &journal, id, outcome, reporter);
    reporter.finish();
    print_outcome(cli, &journal, id, outcome)
}

fn recover(
    cli: &Cli,
    config_path: &std::path::Path,
    direction: Option<Direction>,
    reporter: &Reporter,
) -> Result<u8> {
    let config = Config::load(config_path)?;
    crate::logging::set_target(config.log);
    let _lock = Lock::acquire(&config.journal)?;
    let mut journal = Journal::open(&config.journal)?;
    install_kill_switch(&mut journal);
    let Some(pending) = journal.pending()? else {
        if cli.json {
            println!(
                "{}",
                json!({"id": null, "kind": null, "outcome": "nothing_pending", "from": null, "to": null, "downtime_ms": null, "steps": []})
            );
        } else {
            println!("nothing to recover: no transaction is pending");
        }
        // The boot-time run refreshes the metrics even when all is well.
        write_metrics(&config, &journal, reporter);
        return Ok(0);
    };
    let host = host::system(config.backend);
    let interrupted = interrupt_flag();
    let outcome = crate::recover::recover(
        &*host,
        &mut journal,
        &pending,
        direction,
        reporter,
        &interrupted,
    )?;
    finished_transaction(&config, &journal, pending.id, outcome, reporter);
    reporter.finish();
    print_outcome(cli, &journal, pending.id, outcome)
}

/// Fault injection for the crash tests on real mounts, in the spirit of
/// SQLite's: `JAILSWAP_KILL_AT=NAME:N:WHEN` makes jailswap SIGKILL itself at
/// the N-th journal commit called NAME (`begin`, `intent`, `completion`,
/// `observed`, `state`, `recovery_count`, `finish`), `before` or `after` it.
/// Nothing else changes; without the variable there is no hook at all.
fn install_kill_switch(journal: &mut Journal) {
    let Ok(spec) = std::env::var("JAILSWAP_KILL_AT") else {
        return;
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (Some(name), Some(Ok(count)), Some(when)) = (
        parts.first(),
        parts.get(1).map(|n| n.parse::<u32>()),
        parts.get(2),
    ) else {
        eprintln!(
            "jailswap: ignoring malformed JAILSWAP_KILL_AT={spec:?} (expected NAME:N:before|after)"
        );
        return;
    };
    let (name, after) = (name.to_string(), *when == "after");
    let mut seen = 0u32;
    journal.set_fault_hook(Some(Box::new(move |commit, is_after| {
        if commit == name && is_after == after {
            seen += 1;
            if seen == count {
                let _ = nix::sys::signal::kill(
                    nix::unistd::getpid(),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        false
    })));
}

/// One structured line per outcome (syslog/journald) and the metrics file.
fn finished_transaction(
    config: &Config,
    journal: &Journal,
    id: i64,
    outcome: Outcome,
    reporter: &Reporter,
) {
    if let Ok(Some(record)) = journal.transaction(id) {
        let message = format!(
            "transaction {id} {}: {} {} -> {}",
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
        let downtime_ms = record.downtime_ms;
        match outcome {
            Outcome::Committed => {
                tracing::info!(target: "jailswap", transaction = id, kind, outcome = outcome.as_str(), downtime_ms, from, to, "{message}")
            }
            Outcome::RolledBack => {
                tracing::warn!(target: "jailswap", transaction = id, kind, outcome = outcome.as_str(), downtime_ms, from, to, "{message}")
            }
            Outcome::NeedsOperator => {
                tracing::error!(target: "jailswap", transaction = id, kind, outcome = outcome.as_str(), downtime_ms, from, to, "{message}")
            }
        }
    }
    write_metrics(config, journal, reporter);
}

fn write_metrics(config: &Config, journal: &Journal, reporter: &Reporter) {
    if let Some(path) = &config.metrics {
        if let Err(error) = crate::metrics::write(path, journal) {
            reporter.line(&format!(
                "warning: could not write metrics to {:?}: {error}",
                path.display().to_string()
            ));
        }
    }
}

fn print_plan(cli: &Cli, plan: &crate::plan::Plan) {
    if cli.json {
        let steps: Vec<Value> = plan
            .steps
            .iter()
            .map(|step| {
                json!({
                    "seq": step.seq,
                    "wave": step.wave,
                    "phase": if step.phase == Phase::Forward { "forward" } else { "after_rollback" },
                    "action": step.action.verb(),
                    "jail": step.action.jail(),
                    "description": step.action.describe(),
                    "undo": step.action.undo().map(|undo| undo.describe()),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"id": null, "kind": plan.kind.as_str(), "outcome": "planned", "from": plan.from_label, "to": plan.to_label,
                   "archive_as": plan.archive_as, "downtime_ms": null, "steps": steps})
        );
        return;
    }
    println!(
        "plan: {} {} -> {} (outgoing template archived as {})",
        plan.kind.as_str(),
        plan.from_label,
        plan.to_label,
        plan.archive_as
    );
    let width = plan
        .steps
        .iter()
        .map(|s| s.action.describe().len())
        .max()
        .unwrap_or(0);
    let mut phase = Phase::Forward;
    for step in &plan.steps {
        if step.phase != phase {
            phase = step.phase;
            println!("only after a rollback:");
        }
        let undo = match step.action.undo() {
            Some(undo) => format!("undo: {}", undo.describe()),
            None => "undo: nothing to undo".to_string(),
        };
        println!(
            "{:>4}  {:<width$}  {undo}",
            step.seq,
            step.action.describe()
        );
    }
    println!("dry run: nothing was changed and nothing was recorded");
}

fn print_outcome(cli: &Cli, journal: &Journal, id: i64, outcome: Outcome) -> Result<u8> {
    let record = journal
        .transaction(id)?
        .ok_or_else(|| Error::internal(format!("transaction {id} vanished from the journal")))?;
    let steps = journal.steps(id)?;
    if cli.json {
        let mut object = txn_json(&record);
        object["outcome"] = json!(outcome.as_str());
        print_with_steps(object, &steps);
        return Ok(outcome.exit_code());
    }
    let downtime = match record.downtime_ms {
        Some(ms) => format!(", downtime {ms} ms{}", slowest_jail(&record)),
        None => String::new(),
    };
    match outcome {
        Outcome::Committed => println!("committed: transaction {id}, {} {} -> {}{downtime}", record.kind, record.from_label, record.to_label),
        Outcome::RolledBack => println!(
            "rolled back: transaction {id}, {} {} -> {} failed and the jails run on {} again{downtime}\n  cause: {}",
            record.kind,
            record.from_label,
            record.to_label,
            record.from_label,
            record.error.as_deref().unwrap_or("unknown")
        ),
        Outcome::NeedsOperator => println!(
            "needs operator: transaction {id}, {} {} -> {} is pending\n  {}\n  cause: {}",
            record.kind,
            record.from_label,
            record.to_label,
            record.attention.as_deref().unwrap_or(""),
            record.error.as_deref().unwrap_or("unknown")
        ),
    }
    Ok(outcome.exit_code())
}

fn slowest_jail(record: &TxnRecord) -> String {
    let per_jail: serde_json::Map<String, Value> = record
        .downtime_jails
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    per_jail
        .iter()
        .filter_map(|(jail, ms)| ms.as_i64().map(|ms| (ms, jail)))
        .max()
        .map(|(ms, jail)| format!(" (longest: jail {jail}, {ms} ms)"))
        .unwrap_or_default()
}

pub fn txn_json(record: &TxnRecord) -> Value {
    let outcome = match record.state {
        crate::journal::TxnState::Running | crate::journal::TxnState::RollingBack => "pending",
        other => other.as_str(),
    };
    let per_jail: Value = record
        .downtime_jails
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": record.id,
        "kind": record.kind,
        "from": record.from_label,
        "to": record.to_label,
        "outcome": outcome,
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
        "from_fingerprint": record.from_fingerprint,
        "to_fingerprint": record.to_fingerprint,
    })
}

/// Prints a transaction object with its `steps`, one step at a time: a
/// transaction of a thousand jails has eight thousand steps, which need not
/// all be held as JSON values at once.
fn print_with_steps(object: Value, steps: &[StepRecord]) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let head = object.to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    let separator = if head.ends_with('{') { "" } else { "," };
    let _ = write!(out, "{head}{separator}\"steps\":[");
    for (index, step) in steps.iter().enumerate() {
        if index > 0 {
            let _ = out.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut out, &step_json(step));
    }
    let _ = writeln!(out, "]}}");
}

pub fn step_json(step: &StepRecord) -> Value {
    json!({
                "seq": step.seq,
        "wave": step.wave,
        "phase": if step.phase == Phase::Forward { "forward" } else { "after_rollback" },
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
    })
}

fn history(cli: &Cli, config: &Config, limit: Option<u32>) -> Result<u8> {
    let records = match Journal::open_read(&config.journal)? {
        Some(journal) => journal.history(limit)?,
        None => Vec::new(),
    };
    if cli.json {
        println!("{}", Value::Array(records.iter().map(txn_json).collect()));
        return Ok(0);
    }
    if records.is_empty() {
        println!("no transactions recorded yet");
        return Ok(0);
    }
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            let outcome = txn_json(r)["outcome"].as_str().unwrap_or("").to_string();
            [
                r.id.to_string(),
                r.kind.clone(),
                outcome,
                format!("{} -> {}", r.from_label, r.to_label),
                r.started_at
                    .get(..19)
                    .unwrap_or(&r.started_at)
                    .replace('T', " "),
                r.downtime_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
                r.user.clone(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "KIND",
            "OUTCOME",
            "TEMPLATES",
            "STARTED (UTC)",
            "DOWNTIME",
            "USER",
            "REASON",
        ],
        &rows,
    );
    Ok(0)
}

/// Prints rows as an aligned table; the last column is not padded.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A transaction and its steps, or 65 naming the transaction when there is none.
pub fn load_transaction(config: &Config, id: i64) -> Result<(TxnRecord, Vec<StepRecord>)> {
    let not_found = || {
        Error::invalid(format!("there is no transaction {id}"))
            .with_help("`jailswap history` lists them")
    };
    let journal = Journal::open_read(&config.journal)?.ok_or_else(not_found)?;
    let record = journal.transaction(id)?.ok_or_else(not_found)?;
    let steps = journal.steps(id)?;
    Ok((record, steps))
}

fn show(cli: &Cli, config: &Config, id: i64) -> Result<u8> {
    let (record, steps) = load_transaction(config, id)?;
    if cli.json {
        print_with_steps(txn_json(&record), &steps);
        return Ok(0);
    }
    let outcome = txn_json(&record)["outcome"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!(
        "transaction {}: {} {} -> {} ({outcome})",
        record.id, record.kind, record.from_label, record.to_label
    );
    println!(
        "  started   {}  by {} on {}",
        record.started_at, record.user, record.hostname
    );
    println!(
        "  finished  {}",
        record.finished_at.as_deref().unwrap_or("-")
    );
    println!("  command   {}", record.command_line);
    if let Some(fingerprint) = &record.from_fingerprint {
        println!("  from      {}: {fingerprint}", record.from_label);
    }
    if let Some(fingerprint) = &record.to_fingerprint {
        println!("  to        {}: {fingerprint}", record.to_label);
    }
    if let Some(reason) = &record.reason {
        println!("  reason    {reason}");
    }
    if let Some(ms) = record.downtime_ms {
        println!("  downtime  {ms} ms{}", slowest_jail(&record));
    }
    if let Some(error) = &record.error {
        println!("  cause     {error}");
    }
    if let Some(attention) = &record.attention {
        println!("  attention {attention}");
    }
    let rows: Vec<[String; 5]> = steps
        .iter()
        .map(|s| {
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
            let mut error = s.error.clone().unwrap_or_default();
            if let Some(undo_error) = &s.undo_error {
                error = format!("{error} undo: {undo_error}").trim().to_string();
            }
            [
                s.seq.to_string(),
                s.state.as_str().to_string(),
                took(&s.started_at, &s.finished_at),
                s.action.describe(),
                error,
            ]
        })
        .collect();
    print_table(&["SEQ", "STATE", "TOOK", "STEP", "ERROR"], &rows);
    Ok(0)
}

fn verify(cli: &Cli, config: &Config) -> Result<u8> {
    let Some(journal) = Journal::open_read(&config.journal)? else {
        if cli.json {
            println!(
                "{}",
                json!({"intact": true, "records": 0, "journal": config.journal})
            );
        } else {
            println!(
                "no journal yet at {:?}: nothing to verify",
                config.journal.display().to_string()
            );
        }
        return Ok(0);
    };
    match journal.verify()? {
        crate::journal::Verdict::Intact { records } => {
            if cli.json {
                println!(
                    "{}",
                    json!({"intact": true, "records": records, "journal": config.journal})
                );
            } else {
                println!("journal {:?} is intact: integrity check passed, {records} finished transactions chained", config.journal.display().to_string());
            }
            Ok(0)
        }
        crate::journal::Verdict::Broken { id, reason } => {
            if cli.json {
                println!(
                    "{}",
                    json!({"intact": false, "first_mismatch": id, "reason": reason, "journal": config.journal})
                );
            }
            let which = id
                .map(|id| format!("transaction {id}"))
                .unwrap_or_else(|| "the database".into());
            let backup = crate::journal::backup_path(&config.journal);
            Err(Error::new(Kind::Journal, format!("journal {:?} does not verify: {which}: {reason}", config.journal.display().to_string()))
                .with_help(format!("compare with the copy at {:?} and with the system logs; the host itself was not changed", backup.display().to_string())))
        }
    }
}

fn check(cli: &Cli, config: &Config) -> Result<u8> {
    let host = host::system(config.backend);
    let mut results = Vec::new();
    for jail in &config.jails {
        for check in &jail.health {
            let outcome = host.probe(
                jail,
                check,
                std::time::Duration::from_millis(jail.health_timeout_ms),
            );
            results.push((jail.name.clone(), check.describe(), outcome));
        }
    }
    let failed = results
        .iter()
        .filter(|(_, _, outcome)| outcome.is_err())
        .count();
    if cli.json {
        let checks: Vec<Value> = results
            .iter()
            .map(|(jail, check, outcome)| json!({"jail": jail, "check": check, "ok": outcome.is_ok(), "error": outcome.as_ref().err()}))
            .collect();
        println!(
            "{}",
            json!({"config": config.file, "valid": true, "jails": config.jails.len(), "checks": checks, "failed": failed})
        );
    } else {
        println!(
            "configuration {:?} is valid: {} jails",
            config.file.display().to_string(),
            config.jails.len()
        );
        for (jail, check, outcome) in &results {
            match outcome {
                Ok(()) => println!("  ok      {jail}: {check}"),
                Err(error) => println!("  FAILED  {jail}: {check}: {error}"),
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn init(args: &InitArgs) -> Result<u8> {
    let (path, from_jail_conf) = match (&args.from_jail_conf, &args.from_fstab) {
        (Some(path), _) => (path, true),
        (None, Some(path)) => (path, false),
        (None, None) => {
            return Err(Error::usage(
                "init needs --from-jail-conf FILE or --from-fstab FILE",
            ))
        }
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        Error::new(
            Kind::ConfigMissing,
            format!("cannot read {:?}: {error}", path.display().to_string()),
        )
    })?;
    let generated = if from_jail_conf {
        crate::import::from_jail_conf(&text, path, &args.store, &crate::import::HostFiles)
    } else {
        crate::import::from_fstab(&text, path, &args.store)
    };
    match generated {
        Ok(toml) => {
            print!("{toml}");
            Ok(0)
        }
        Err(error) => Err(Error::invalid(error.to_string())
            .with_help("fix the file, or write jailswap.toml by hand (see jailswap(8))")),
    }
}

/// Lists the templates in the store: every directory whose name is the
/// live name or starts with it.
pub fn templates(config: &Config) -> Vec<(String, store::EntryInfo)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&config.store) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == config.live || name.starts_with(&format!("{}.", config.live)) {
            if let Ok(Some(info)) = store::entry(&config.store, &name) {
                if info.is_directory {
                    found.push((name, info));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Human log lines on stderr; the syslog or journald sink is switched on
/// once the configuration says which (`logging::set_target`).
pub fn init_logging(cli: &Cli) {
    crate::logging::init(cli.verbose, None);
}
