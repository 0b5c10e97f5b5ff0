//! The transactions from request to outcome: `upgrade` and `rollback`
//! (all at once or rolling), `stage` and `prune`. Each resolves names,
//! runs preflight, builds the plan and, unless it is a dry run, sets the
//! journal's reserve aside, records the plan and hands it to the executor.
//! Everything before the first action happens here, outside the downtime
//! window. Generic over the host: the commands run these on the real host,
//! the crash tests on the simulated one.

use crate::config::{Batches, Config};
use crate::error::{Error, Result};
use crate::executor::{Actor, Crash, Direction, Executor, Outcome};
use crate::host::{Entry, Host};
use crate::journal::{Audit, Journal};
use crate::output::Reporter;
use crate::plan::{self, Plan, Request, TransactionKind};
use crate::preflight::{self, refuse};
use crate::template::{staging_name, TemplateId};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What the operator asked of an upgrade or rollback.
#[derive(Clone, Debug)]
pub struct Swap {
    pub kind: TransactionKind,
    /// The template to make live; for a rollback, `None` is the previous one.
    pub to: Option<String>,
    pub archive_as: Option<String>,
    pub force: bool,
    pub adopt: bool,
    pub reason: Option<String>,
    /// Batch sizes and the pause, for a rolling upgrade.
    pub rolling: Option<(Batches, Option<u32>)>,
}

/// What the operator asked of a stage.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    /// The template to copy; `None` is the live one.
    pub from: Option<String>,
    pub command: Option<String>,
    pub timeout: Duration,
    pub reason: Option<String>,
}

/// The result of a transaction.
pub enum Finished {
    /// A dry run: the plan, nothing changed.
    Planned(Plan),
    /// Carried out (to a final state, a pause, or the operator).
    Done {
        id: i64,
        plan: Plan,
        outcome: Outcome,
    },
}

#[cfg(feature = "fault-injection")]
fn crashed(_: Crash) -> Error {
    Error::Internal("simulated crash: the process stops here".to_string())
}

#[cfg(not(feature = "fault-injection"))]
fn crashed(crash: Crash) -> Error {
    match crash {}
}

/// The journal's reserve: room for every write the rest of a transaction
/// may make, in either direction (the plan once, each step's row a few
/// times, the audit hash), with a floor for the small ones.
fn reserve_for(plan: &Plan) -> u64 {
    let plan_bytes = serde_json::to_string(plan).map(|t| t.len()).unwrap_or(0) as u64;
    (2 * plan_bytes + 2048 * plan.steps.len() as u64).max(1 << 20)
}

/// Records the plan and carries it out.
fn carry_out<H: Host + ?Sized>(
    host: &H,
    journal: &mut Journal,
    plan: Plan,
    audit: &Audit,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Finished> {
    // Room to finish, checked before anything changes: no room is a 74
    // with the host untouched.
    journal.ensure_reserve(reserve_for(&plan))?;
    let id = journal.begin(&plan, audit)?;
    crate::process::set_transaction(id);
    crate::process::track_commands_in(&crate::recover::command_directory(journal.path()));
    reporter.line(&format!(
        "transaction {id}: {} {} -> {}",
        plan.kind, plan.from_label, plan.to_label
    ));
    let outcome = {
        let mut executor = Executor::new(
            Actor::new(host, &plan, reporter, false),
            journal,
            id,
            interrupted,
        );
        executor.drive(Direction::Forward).map_err(crashed)?
    };
    Ok(Finished::Done { id, plan, outcome })
}

/// Refuses while a transaction is pending.
fn nothing_pending(journal: &Journal) -> Result<()> {
    match journal.pending()? {
        Some(pending) => Err(preflight::pending_error(&pending).into()),
        None => Ok(()),
    }
}

/// `upgrade` and `rollback`: preflight, plan and, unless `dry_run`, run.
#[allow(clippy::too_many_arguments)]
pub fn swap<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    journal: &mut Journal,
    request: &Swap,
    dry_run: bool,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Finished> {
    nothing_pending(journal)?;
    let live = preflight::live_template(host, config, Some(journal), request.adopt)?;
    let (target, what) = match (&request.to, request.kind) {
        (Some(to), TransactionKind::Rollback) => (to.clone(), "rollback --to"),
        (Some(to), _) => (to.clone(), "--to"),
        (None, TransactionKind::Rollback) => (
            preflight::previous_template(host, journal)?,
            "rollback target",
        ),
        (None, _) => return Err(Error::Usage("upgrade needs --to NAME".into())),
    };
    if request.rolling.is_some() && !host.store_kind().renames_in_use() {
        return Err(refuse(
            format!(
                "a rolling upgrade cannot run on a {} store: a mounted template cannot change its name under running jails",
                host.store_kind().as_str()
            ),
            "run the upgrade without --rolling",
        ));
    }
    let archive_as = match &request.archive_as {
        Some(name) => name.clone(),
        None => preflight::default_archive_name(host, config, &live)?,
    };
    let target_id = preflight::check_target(
        host,
        config,
        &live,
        what,
        &target,
        &archive_as,
        request.force,
    )?;
    let observed = preflight::observe_host(host, config, &live, target_id.clone())?;
    let plan = plan::build(
        config,
        &Request {
            kind: request.kind,
            target: target.clone(),
            archive_as: archive_as.clone(),
            from_label: live.label.clone().unwrap_or_else(|| archive_as.clone()),
            to_label: target.clone(),
            rolling: request.rolling.clone(),
        },
        &observed,
    );
    if dry_run {
        return Ok(Finished::Planned(plan));
    }
    // Fingerprints are taken here, before the first stop: reading a whole
    // template must not lengthen the outage.
    reporter.line("fingerprinting the templates");
    let mut audit = Audit::current(request.reason.clone());
    audit.from_fingerprint = Some(format!("{}, {}", live.id, host.fingerprint(&config.live)?));
    audit.to_fingerprint = Some(format!("{target_id}, {}", host.fingerprint(&target)?));
    carry_out(host, journal, plan, &audit, reporter, interrupted)
}

/// `stage`: build a new template beside the others without touching the
/// live one or any jail.
pub fn stage<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    journal: &mut Journal,
    request: &Stage,
    dry_run: bool,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Finished> {
    nothing_pending(journal)?;
    preflight::plain_name("--as", &request.name)?;
    let name = &request.name;
    if name == &config.live || host.examine(name)?.exists() {
        return Err(refuse(
            format!("the name {name:?} is already taken in the store"),
            "choose another name with --as (`jailswap status` lists the templates)",
        ));
    }
    let from = request.from.clone().unwrap_or_else(|| config.live.clone());
    preflight::plain_name("--from", &from)?;
    let from_id: TemplateId = match host.examine(&from)? {
        Entry::Directory(found) => found.id,
        Entry::Absent => {
            return Err(refuse(
                format!("there is no template {from:?} in the store to stage from"),
                "name an existing template with --from (`jailswap status` lists them)",
            ))
        }
        Entry::Foreign(why) => {
            return Err(refuse(
                format!("{from:?} cannot be staged from: {why}"),
                "name a template of the store with --from",
            ))
        }
        _ => {
            return Err(refuse(
                format!("{from:?} in the store is not a template directory"),
                "name a template of the store with --from",
            ))
        }
    };
    let staging = staging_name(name);
    if host.examine(&staging)?.exists() {
        return Err(refuse(
            format!("an unfinished staging copy {staging:?} is in the store"),
            format!(
                "no transaction is pending, so nothing will finish it: remove {:?} by hand",
                config.store.join(&staging).display().to_string()
            ),
        ));
    }
    let command = request.command.as_ref().map(|command| {
        command
            .replace("${dir}", &config.store.join(&staging).to_string_lossy())
            .replace("${from}", &config.store.join(&from).to_string_lossy())
    });
    let plan = plan::build_stage(
        config,
        host.store_kind(),
        &from,
        &from_id,
        name,
        &staging,
        command,
        request.timeout.as_millis() as u64,
    );
    if dry_run {
        return Ok(Finished::Planned(plan));
    }
    let audit = Audit::current(request.reason.clone());
    carry_out(host, journal, plan, &audit, reporter, interrupted)
}

/// `prune`: what would be deleted, and, unless `dry_run`, the deletion.
pub struct Pruned {
    pub names: Vec<String>,
    /// Archived templates found (kept or deleted).
    pub archived: usize,
    pub finished: Option<Finished>,
}

/// `prune --keep N`: delete archived templates beyond the N newest; never
/// the live one, the rollback target, a staged one, or one still mounted.
pub fn prune<H: Host + ?Sized>(
    host: &H,
    config: &Config,
    journal: &mut Journal,
    keep: usize,
    dry_run: bool,
    reporter: &Reporter,
    interrupted: &AtomicBool,
) -> Result<Pruned> {
    nothing_pending(journal)?;
    let previous = preflight::previous_template(host, journal).ok();
    // Archived: a template some committed transaction moved out of the live
    // name, still under that name with that identity. Newest first.
    let present: Vec<(String, TemplateId)> = preflight::templates(host, config)?
        .into_iter()
        .map(|template| (template.name, template.found.id))
        .collect();
    let mut archived: Vec<(String, TemplateId)> = Vec::new();
    for record in journal.history(None)? {
        let swap = matches!(
            record.kind,
            TransactionKind::Upgrade | TransactionKind::Rollback
        );
        let committed = record.state == crate::journal::TxnState::Committed;
        let still_there = present
            .iter()
            .any(|(name, id)| *name == record.archive_as && *id == record.from_id);
        if swap
            && committed
            && still_there
            && record.archive_as != config.live
            && !archived.iter().any(|(name, _)| *name == record.archive_as)
        {
            archived.push((record.archive_as.clone(), record.from_id.clone()));
        }
    }
    let mut doomed = Vec::new();
    for (index, (name, id)) in archived.iter().enumerate() {
        if index < keep || previous.as_deref() == Some(name.as_str()) {
            continue;
        }
        let users = host.template_users(name)?;
        if let Some(user) = users.first() {
            reporter.line(&format!(
                "keeping {name}: still mounted at {}",
                user.display()
            ));
            continue;
        }
        doomed.push((name.clone(), id.clone()));
    }
    let names: Vec<String> = doomed.iter().map(|(name, _)| name.clone()).collect();
    if doomed.is_empty() || dry_run {
        return Ok(Pruned {
            names,
            archived: archived.len(),
            finished: None,
        });
    }
    let plan = plan::build_prune(config, host.store_kind(), &doomed, keep);
    let audit = Audit::current(Some(format!("prune --keep {keep}")));
    let finished = carry_out(host, journal, plan, &audit, reporter, interrupted)?;
    Ok(Pruned {
        names,
        archived: archived.len(),
        finished: Some(finished),
    })
}
