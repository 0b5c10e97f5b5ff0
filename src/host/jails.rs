//! Jails as real hosts run them: the administrator's start, stop and status
//! commands through `/bin/sh -c`, each bounded by the jail's timeout.
//!
//! Start and stop commands run one shell each, recorded for recovery
//! ([`process::run_tracked`]); status commands only look, so they share a
//! few shells ([`process::run_many`]).

use super::{CommandRun, HostError, HostResult};
use crate::config::JailSpec;
use crate::process;
use std::time::Duration;

/// Runs one of a jail's commands (start or stop) with its timeout.
pub fn run_jail_command(jail: &JailSpec, template: &str) -> HostResult<()> {
    let command = jail.expand(template);
    let timeout = Duration::from_millis(jail.timeout_ms);
    let outcome = process::run_tracked(&command, timeout)
        .map_err(|error| HostError::Failed(format!("cannot run `{command}`: {error}")))?;
    if outcome.success() {
        Ok(())
    } else {
        Err(HostError::Failed(outcome.failure(&command, timeout)))
    }
}

/// Runs the status commands of many jails: exit 0 means running; a jail
/// without a status command is `None`.
pub fn run_status_commands(jails: &[JailSpec], parallel: usize) -> Vec<HostResult<Option<bool>>> {
    let (indices, commands): (Vec<usize>, Vec<(String, Duration)>) = jails
        .iter()
        .enumerate()
        .filter_map(|(index, jail)| {
            let command = jail.expand(jail.status.as_ref()?);
            Some((index, (command, Duration::from_millis(jail.timeout_ms))))
        })
        .unzip();
    let mut results: Vec<HostResult<Option<bool>>> = jails.iter().map(|_| Ok(None)).collect();
    for (index, outcome) in indices
        .into_iter()
        .zip(process::run_many(&commands, parallel))
    {
        results[index] = outcome.map(Some).map_err(HostError::Failed);
    }
    results
}

/// Runs an administrator's command (a stage's `--run`), recorded for
/// recovery like a jail's start and stop.
pub fn run_command(
    command: &str,
    environment: &[(&str, &str)],
    timeout: Duration,
) -> HostResult<CommandRun> {
    let outcome = process::run_tracked_with(command, environment, timeout)
        .map_err(|error| HostError::Failed(format!("cannot run `{command}`: {error}")))?;
    Ok(CommandRun {
        status: outcome.status.and_then(|status| status.code()),
        timed_out: outcome.timed_out,
        output_tail: outcome.tail,
    })
}
