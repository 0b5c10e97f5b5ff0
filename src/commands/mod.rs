//! The commands, one file per verb: each turns parsed arguments into an
//! exit code, printing its result through [`Output`] (human or `--json`)
//! and its progress through [`Reporter`].
//!
//! Two kinds of command differ in what a lost output means. A command that
//! changes the host (`upgrade`, `rollback`, `stage`, `recover`, `prune`)
//! finishes its transaction and exits with the transaction's code whatever
//! happened to its output, and a SIGHUP (a closed terminal, a dropped ssh
//! session) does not interrupt it. A read-only command whose output could
//! not be written exits 74, so a script never takes a truncated answer for
//! a whole one.

mod check;
mod completions;
mod demo;
mod history;
mod init;
mod prune;
mod recover;
pub mod render;
mod serve;
mod show;
mod status;
mod timeline;
mod transact;
mod verify;

use crate::cli::{Cli, Command};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::output::{Output, Reporter};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What every command gets besides its arguments.
pub struct Context {
    pub output: Output,
    pub reporter: Reporter,
    pub config_path: PathBuf,
    pub verbose: bool,
}

impl Context {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.config_path)?)
    }

    pub fn json(&self) -> bool {
        self.output.json()
    }
}

/// Whether a command changes the host (and so needs root and keeps going
/// through a lost terminal).
fn changes_host(command: &Command) -> bool {
    match command {
        Command::Upgrade(args) => !args.common.dry_run,
        Command::Rollback(args) => !args.common.dry_run,
        Command::Stage(args) => !args.dry_run,
        Command::Prune { dry_run, .. } => !dry_run,
        Command::Recover(_) => true,
        _ => false,
    }
}

/// Runs a command and returns its exit code; errors are printed here.
pub fn run(cli: Cli, config_from_command_line: bool) -> u8 {
    let quiet = cli.quiet || (cli.json && !cli.verbose);
    let context = Context {
        output: Output::new(cli.json),
        reporter: Reporter::new(quiet),
        config_path: cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
        verbose: cli.verbose,
    };
    let transaction = changes_host(&cli.command);
    let result = refuse_ignored_options(&cli, config_from_command_line)
        .and_then(|()| require_root(&cli.command, transaction))
        .and_then(|()| dispatch(&cli.command, &context));
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            crate::output::error(&error.to_string(), error.help().as_deref());
            error.exit_code()
        }
    };
    if !transaction && code != crate::error::code::JOURNAL {
        if let Some(failure) = context.output.failure() {
            let error = Error::OutputLost(failure);
            crate::output::error(&error.to_string(), None);
            return error.exit_code();
        }
    }
    code
}

/// `init`, `completions` and `demo` read no configuration and print no
/// JSON: say so rather than ignore the options.
fn refuse_ignored_options(cli: &Cli, config_from_command_line: bool) -> Result<()> {
    let name = match cli.command {
        Command::Init(_) => "init",
        Command::Completions { .. } => "completions",
        Command::Demo { .. } => "demo",
        _ => return Ok(()),
    };
    if config_from_command_line || cli.json {
        let option = if cli.json { "--json" } else { "-c/--config" };
        return Err(Error::Usage(format!(
            "`jailswap {name}` takes no {option}: it reads no configuration and prints no JSON"
        )));
    }
    Ok(())
}

/// Commands that change the host need root; say so before anything else.
fn require_root(command: &Command, transaction: bool) -> Result<()> {
    if transaction && !nix::unistd::geteuid().is_root() {
        let name = match command {
            Command::Upgrade(_) => "upgrade",
            Command::Rollback(_) => "rollback",
            Command::Stage(_) => "stage",
            Command::Prune { .. } => "prune",
            _ => "recover",
        };
        return Err(Error::NotRoot(format!(
            "`jailswap {name}` must run as root: it mounts, renames templates and runs the jails' commands"
        )));
    }
    Ok(())
}

fn dispatch(command: &Command, context: &Context) -> Result<u8> {
    match command {
        Command::Upgrade(args) => transact::upgrade(args, context),
        Command::Rollback(args) => transact::rollback(args, context),
        Command::Stage(args) => transact::stage(args, context),
        Command::Recover(args) => recover::run(args, context),
        Command::Status => status::run(context),
        Command::History { limit } => history::run(*limit, context),
        Command::Show { id, timeline } => show::run(*id, *timeline, context),
        Command::Verify => verify::run(context),
        Command::Prune { keep, dry_run } => prune::run(*keep, *dry_run, context),
        Command::Check => check::run(context),
        Command::Init(args) => init::run(args, context),
        Command::Completions { shell } => completions::run(*shell, context),
        Command::Demo { keep } => demo::run(*keep, context),
        Command::Serve(args) => serve::run(args),
    }
}

/// The real host for a configuration (the store kind judged by its live
/// template when the configuration says `auto`).
pub fn host(config: &Config) -> Box<dyn Host> {
    let kind = config
        .store_kind
        .unwrap_or_else(|| crate::host::system::detect_store_kind(&config.store, &config.live));
    Box::new(crate::host::system(config.backend, &config.store, kind))
}

/// Signals during a transaction. SIGHUP (a closed terminal, a dropped ssh
/// session) is caught and changes nothing: the transaction carries on. The
/// first SIGINT or SIGTERM asks for a rollback after the running step; a
/// second one ends the process at once (exit 75), leaving the transaction
/// pending for `recover`. Handlers, unlike ignored signals, are reset when
/// the jails' commands are executed, so their daemons start with the
/// default dispositions.
pub fn transaction_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup);
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            crate::error::code::BUSY.into(),
            Arc::clone(&flag),
        );
        let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
        let _ = signal_hook::flag::register_usize(
            signal,
            Arc::clone(&crate::executor::INTERRUPTING_SIGNAL),
            signal as usize,
        );
    }
    flag
}

/// Fault injection for the crash tests on real mounts, in the spirit of
/// SQLite's: `JAILSWAP_KILL_AT=NAME:N:WHEN` makes jailswap SIGKILL itself at
/// the N-th journal commit called NAME (`begin`, `intent`, `completion`,
/// `observed`, `state`, `recovery_count`, `finish`), `before` or `after` it;
/// `JAILSWAP_FAIL_AT=NAME:N:full|io[:always]` makes that commit fail as on
/// a full or failing disk, once or from then on. Only in builds with the
/// `fault-injection` feature, which release builds do not have.
#[cfg(feature = "fault-injection")]
pub fn install_faults(journal: &mut crate::journal::Journal) {
    use crate::journal::Fault;
    let parse = |variable: &str| -> Option<(String, u32, String, bool)> {
        let spec = std::env::var(variable).ok()?;
        let parts: Vec<&str> = spec.split(':').collect();
        match (
            parts.first(),
            parts.get(1).map(|n| n.parse::<u32>()),
            parts.get(2),
        ) {
            (Some(name), Some(Ok(count)), Some(when)) => Some((
                name.to_string(),
                count,
                when.to_string(),
                parts.get(3) == Some(&"always"),
            )),
            _ => {
                crate::output::error(
                    &format!("ignoring malformed {variable}={spec:?}"),
                    Some("write NAME:N:WHEN"),
                );
                None
            }
        }
    };
    let kill = parse("JAILSWAP_KILL_AT");
    let fail = parse("JAILSWAP_FAIL_AT");
    if kill.is_none() && fail.is_none() {
        return;
    }
    let mut seen: std::collections::BTreeMap<String, u32> = Default::default();
    // Once a failure that lasts has begun, every commit fails, whatever its
    // name, as on a disk that died.
    let mut dying = false;
    journal.set_fault_hook(Some(Box::new(move |commit, after| {
        if !after {
            *seen.entry(commit.to_string()).or_default() += 1;
        }
        let count = seen.get(commit).copied().unwrap_or(0);
        if let Some((name, n, when, _)) = &kill {
            if commit == name && count == *n && (*when == "after") == after {
                let _ = nix::sys::signal::kill(
                    nix::unistd::getpid(),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some((name, n, how, always)) = &fail {
            let hit = !after && ((commit == name && count == *n) || dying);
            if hit && *always {
                dying = true;
            }
            if hit {
                return Some(if how == "io" {
                    Fault::IoError
                } else {
                    Fault::DiskFull
                });
            }
        }
        None
    })));
}

/// Without the `fault-injection` feature there is nothing to install.
#[cfg(not(feature = "fault-injection"))]
pub fn install_faults(_journal: &mut crate::journal::Journal) {}
