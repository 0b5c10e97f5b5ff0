//! `prune --keep N`: delete archived templates beyond the N newest.
//!
//! The only command that deletes anything. It never deletes the live
//! template, the rollback target (the template the last committed
//! transaction archived), a staged template (one that was never live), or
//! a template something still mounts. It is a journaled transaction of its
//! own (kind `prune`, one `delete` step per template), shown in history,
//! and an interrupted prune is finished by `recover`.

use crate::app::templates;
use crate::cli::Cli;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::executor::{Actor, Direction, Executor};
use crate::host::{self, Host};
use crate::journal::{Audit, Journal};
use crate::lock::Lock;
use crate::plan::{Action, Phase, Plan, Step, TransactionKind};
use crate::report::Reporter;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

pub fn prune(
    cli: &Cli,
    config: &Config,
    keep: usize,
    dry_run: bool,
    reporter: &Reporter,
) -> Result<u8> {
    let _lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(&config.journal)?)
    };
    let journal = match Journal::open_read(&config.journal)? {
        Some(journal) => journal,
        None => {
            println!(
                "nothing to prune: no transaction was ever recorded, so no template is archived"
            );
            return Ok(0);
        }
    };
    if let Some(pending) = journal.pending()? {
        return Err(crate::transaction::pending_error(&pending));
    }
    let host = host::system(config.backend);
    let previous = crate::transaction::previous_template(config, &journal).ok();
    // Archived: a template some finished transaction moved out of the live
    // name, still under that name with that inode. Newest archive first.
    let history = journal.history(None)?;
    let present: BTreeMap<String, u64> = templates(config)
        .into_iter()
        .map(|(name, info)| (name, info.inode))
        .collect();
    let mut archived: Vec<(String, u64)> = Vec::new();
    for record in &history {
        let is_final = matches!(record.state, crate::journal::TxnState::Committed);
        let still_there = present.get(&record.archive_as) == Some(&record.from_inode);
        if is_final
            && still_there
            && record.archive_as != config.live
            && !archived.iter().any(|(name, _)| *name == record.archive_as)
        {
            archived.push((record.archive_as.clone(), record.from_inode));
        }
    }
    let mut doomed = Vec::new();
    for (index, (name, inode)) in archived.iter().enumerate() {
        if index < keep || previous.as_deref() == Some(name.as_str()) {
            continue;
        }
        let users = host
            .template_users(&config.store, name)
            .map_err(|e| Error::internal(e.to_string()))?;
        if !users.is_empty() {
            reporter.line(&format!(
                "keeping {name}: still mounted at {}",
                users[0].display()
            ));
            continue;
        }
        doomed.push((name.clone(), *inode));
    }
    let names: Vec<&str> = doomed.iter().map(|(name, _)| name.as_str()).collect();
    if doomed.is_empty() || dry_run {
        if cli.json {
            println!(
                "{}",
                json!({"id": null, "kind": "prune", "outcome": if doomed.is_empty() { "nothing_pending" } else { "planned" }, "delete": names, "keep": keep})
            );
        } else if doomed.is_empty() {
            println!(
                "nothing to prune: {} archived template(s), keeping {keep}",
                archived.len()
            );
        } else {
            println!("would delete: {}", names.join(", "));
            println!("dry run: nothing was deleted and nothing was recorded");
        }
        return Ok(0);
    }
    drop(journal);
    let mut journal = Journal::open(&config.journal)?;
    let plan = Plan {
        kind: TransactionKind::Prune,
        store: config.store.clone(),
        live: config.live.clone(),
        target: String::new(),
        archive_as: String::new(),
        from_label: names.join(","),
        to_label: format!("keep {keep}"),
        live_inode: 0,
        target_inode: 0,
        parallel: 1,
        jails: Vec::new(),
        steps: doomed
            .iter()
            .enumerate()
            .map(|(index, (template, inode))| Step {
                seq: index as u32 + 1,
                wave: 0,
                phase: Phase::Forward,
                action: Action::Delete {
                    template: template.clone(),
                    inode: *inode,
                },
            })
            .collect(),
    };
    let id = journal.begin(&plan, &Audit::current(Some(format!("prune --keep {keep}"))))?;
    let interrupted = AtomicBool::new(false);
    let mut executor = Executor {
        actor: Actor {
            host: &*host,
            plan: &plan,
            reporter,
            recovering: false,
        },
        journal: &mut journal,
        id,
        states: BTreeMap::new(),
        interrupted: &interrupted,
    };
    let outcome = executor.drive(Direction::Forward)?;
    if cli.json {
        println!(
            "{}",
            json!({"id": id, "kind": "prune", "outcome": outcome.as_str(), "delete": names, "keep": keep})
        );
    } else {
        println!(
            "{}: transaction {id}, deleted {}",
            outcome.as_str(),
            names.join(", ")
        );
    }
    Ok(outcome.exit_code())
}
