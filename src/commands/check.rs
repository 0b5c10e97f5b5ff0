//! `check`: validate the configuration and run, without changing anything,
//! every check `upgrade` runs before it needs a target (the live template,
//! the store, the journal, the jails' status commands), then the health
//! checks. Exit 0 when all pass; the code `upgrade` would give for the first
//! problem that would refuse it; 1 when only health checks failed.

use super::Context;
use crate::error::{code, Error, Result};
use crate::host::Host;
use crate::journal::Journal;
use crate::preflight;
use serde_json::{json, Value};
use std::path::Path;

/// One finding: what was checked, and the error (with its exit code) if it failed.
struct Finding {
    what: String,
    problem: Option<(String, u8)>,
}

fn finding(what: impl Into<String>, result: Result<String>) -> Finding {
    match result {
        Ok(detail) => Finding {
            what: format!("{}{detail}", what.into()),
            problem: None,
        },
        Err(error) => Finding {
            what: what.into(),
            problem: Some((
                match error.help() {
                    Some(help) => format!("{error} (help: {help})"),
                    None => error.to_string(),
                },
                error.exit_code(),
            )),
        },
    }
}

/// Whether the journal could be created where the configuration says:
/// the nearest existing directory above it must be writable.
fn journal_creatable(path: &Path) -> Result<String> {
    let mut ancestor = path.parent();
    // Bounded by the depth of the path.
    while let Some(directory) = ancestor {
        if directory.exists() {
            let writable = nix::unistd::access(directory, nix::unistd::AccessFlags::W_OK).is_ok();
            if directory.is_dir() && writable {
                return Ok(": it will be created on the first transaction".into());
            }
            return Err(Error::Journal(crate::journal::JournalError {
                path: path.to_path_buf(),
                cause: crate::journal::Cause::Io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "it cannot be created: {:?} is not a writable directory",
                        directory.display().to_string()
                    ),
                )),
            }));
        }
        ancestor = directory.parent();
    }
    Ok(String::new())
}

pub fn run(context: &Context) -> Result<u8> {
    let config = context.config()?;
    let host = super::host(&config);
    let mut findings = Vec::new();
    findings.push(Finding {
        what: format!(
            "configuration {:?} is valid: {} jails",
            config.file.display().to_string(),
            config.jails.len()
        ),
        problem: None,
    });
    findings.push(Finding {
        what: format!(
            "store {:?} is a {} store",
            config.store.display().to_string(),
            host.store_kind().as_str()
        ),
        problem: None,
    });
    let journal = match Journal::open_read(&config.journal) {
        Ok(Some(journal)) => {
            findings.push(Finding {
                what: format!(
                    "journal {:?} is readable and trusted",
                    config.journal.display().to_string()
                ),
                problem: None,
            });
            Some(journal)
        }
        Ok(None) => {
            findings.push(finding(
                format!("journal {:?}", config.journal.display().to_string()),
                journal_creatable(&config.journal),
            ));
            None
        }
        Err(error) => {
            findings.push(finding("journal", Err(error.into())));
            None
        }
    };
    if let Some(journal) = &journal {
        let pending = journal
            .pending()
            .map_err(Error::from)
            .and_then(|pending| match pending {
                Some(record) => Err(preflight::pending_error(&record).into()),
                None => Ok(String::new()),
            });
        findings.push(finding("no transaction is pending", pending));
    }
    let live = preflight::live_template(&*host, &config, journal.as_ref(), false).map(|live| {
        format!(
            ": {} ({})",
            live.label.unwrap_or_else(|| config.live.clone()),
            live.id
        )
    });
    findings.push(finding(
        format!("live template {:?}", config.live),
        live.map_err(Error::from),
    ));
    let status = preflight::observe_host_jails(&*host, &config).map(|stopped| {
        if stopped.is_empty() {
            ": every jail runs".to_string()
        } else {
            format!(": not running: {}", stopped.join(", "))
        }
    });
    findings.push(finding(
        "status commands answer",
        status.map_err(Error::from),
    ));

    let mut health = Vec::new();
    for jail in &config.jails {
        for check in &jail.health {
            let outcome = host.probe(
                jail,
                check,
                std::time::Duration::from_millis(jail.health_timeout_ms),
            );
            health.push((jail.name.clone(), check.describe(), outcome));
        }
    }
    let health_failed = health
        .iter()
        .filter(|(_, _, outcome)| outcome.is_err())
        .count();
    let problem = findings
        .iter()
        .find_map(|f| f.problem.as_ref().map(|(_, code)| *code));
    if context.json() {
        let checks: Vec<Value> = health
            .iter()
            .map(|(jail, check, outcome)| json!({"jail": jail, "check": check, "ok": outcome.is_ok(), "error": outcome.as_ref().err()}))
            .collect();
        let preflight: Vec<Value> = findings
            .iter()
            .map(|f| json!({"check": f.what, "ok": f.problem.is_none(), "error": f.problem.as_ref().map(|(e, _)| e)}))
            .collect();
        context.output.value(&json!({
            "config": config.file, "valid": true, "store_kind": host.store_kind().as_str(),
            "jails": config.jails.len(), "preflight": preflight, "checks": checks, "failed": health_failed,
        }));
    } else {
        let mut text = String::new();
        for f in &findings {
            match &f.problem {
                None => text.push_str(&format!("  ok      {}\n", f.what)),
                Some((error, _)) => text.push_str(&format!("  FAILED  {}: {error}\n", f.what)),
            }
        }
        for (jail, check, outcome) in &health {
            match outcome {
                Ok(()) => text.push_str(&format!("  ok      {jail}: {check}\n")),
                Err(error) => text.push_str(&format!("  FAILED  {jail}: {check}: {error}\n")),
            }
        }
        context.output.text(&text);
    }
    Ok(match (problem, health_failed) {
        (Some(code), _) => code,
        (None, 0) => code::SUCCESS,
        (None, _) => code::ROLLED_BACK,
    })
}
