//! The command line. The doc comments are the help text and the man page.
//! Typed arguments only: nothing here touches the system.

use crate::config::Batches;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Swap the read-only template under running jails as a transaction.
///
/// Every step (stop, unmount, rename, remount, start) is written ahead to a
/// journal, so an interrupted upgrade resumes or rolls back; health checks
/// after start commit the upgrade or roll it back automatically.
#[derive(Parser, Debug)]
#[command(
    name = "jailswap",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file [default: /usr/local/etc/jailswap.toml on FreeBSD, /etc/jailswap.toml elsewhere]
    #[arg(
        short,
        long,
        global = true,
        env = "JAILSWAP_CONFIG",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,

    /// Print the result as JSON on stdout
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// More detail on stderr
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "quiet",
        help_heading = "Global options"
    )]
    pub verbose: bool,

    /// No progress on stderr, only errors
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make a staged template live
    Upgrade(UpgradeArgs),
    /// Make the previous template (or an archived one) live again
    Rollback(RollbackArgs),
    /// Build a new staged template from an existing one
    Stage(StageArgs),
    /// Finish an interrupted (or continue a paused) transaction
    Recover(RecoverArgs),
    /// Show the live template, the templates, the jails and what is pending
    Status,
    /// List past transactions, newest first
    History {
        /// Show at most N transactions
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show one transaction with its steps
    Show {
        /// The transaction's number, as `history` lists it
        id: i64,
        /// Draw the transaction as a chart: one row per jail, time across, every step visible (with --json: the chart as data)
        #[arg(long)]
        timeline: bool,
    },
    /// Check the journal's integrity and its audit hash chain
    Verify,
    /// Delete archived templates beyond the N newest
    Prune {
        /// How many archived templates to keep
        #[arg(long, value_name = "N")]
        keep: usize,
        /// Print what would be deleted, and delete nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration, run preflight and health checks; change nothing
    Check,
    /// Print a jailswap.toml for the jails a host already has
    Init(InitArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        shell: Shell,
    },
    /// Build a throwaway sandbox, upgrade it, fail an upgrade, show history
    Demo {
        /// Keep the sandbox directory instead of removing it
        #[arg(long)]
        keep: bool,
    },
    /// The small HTTP service the demo and the tests run in their jails
    #[command(hide = true)]
    Serve(ServeArgs),
}

/// The shells completion scripts are made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug, Clone)]
pub struct TransactionArgs {
    /// Print the ordered plan, each step with its undo, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Why: recorded in the journal and shown by history
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Name the outgoing template gets [default: the label it went live under]
    #[arg(long, value_name = "NAME")]
    pub archive_as: Option<String>,

    /// Skip the check that the target has the live template's top-level symlinks
    #[arg(long)]
    pub force: bool,

    /// Accept a store that was changed by hand since the last transaction
    #[arg(long)]
    pub adopt: bool,

    /// Restart the jails a batch at a time instead of all at once
    #[arg(long)]
    pub rolling: bool,

    /// Batch sizes of a rolling upgrade, as Ansible's serial: counts or percentages, the last repeating [default: the configuration's, or 1,25%]
    #[arg(long, value_name = "SIZES", requires = "rolling", value_parser = parse_batches)]
    pub batch: Option<Batches>,

    /// Stop a rolling upgrade after N batches passed their health checks
    #[arg(long, value_name = "N", requires = "rolling", value_parser = clap::value_parser!(u32).range(1..))]
    pub pause_after: Option<u32>,
}

fn parse_batches(text: &str) -> Result<Batches, String> {
    Batches::parse(text)
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The staged template to make live (a name in the store, such as mroot.20240601)
    #[arg(long, value_name = "NAME")]
    pub to: String,

    #[command(flatten)]
    pub common: TransactionArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The archived template to make live [default: the one the last committed transaction archived]
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,

    #[command(flatten)]
    pub common: TransactionArgs,
}

#[derive(Args, Debug)]
pub struct StageArgs {
    /// The name of the new template (a plain name not taken in the store)
    #[arg(long = "as", value_name = "NAME")]
    pub name: String,

    /// The template to copy [default: the live one]
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,

    /// A command run in the copy through /bin/sh -c, with ${dir} (the copy) and ${from} (the source) substituted
    #[arg(long, value_name = "COMMAND")]
    pub run: Option<String>,

    /// Bound on the command
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,

    /// Why: recorded in the journal and shown by history
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match crate::config::parse_duration(text) {
        Some(duration) if !duration.is_zero() => Ok(duration),
        Some(_) => Err("the timeout must be longer than zero".into()),
        None => Err(format!(
            "{text:?} is not a duration; write for example \"90m\""
        )),
    }
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// Roll forward whatever the journal says (continues a paused upgrade)
    #[arg(long, conflicts_with = "rollback")]
    pub resume: bool,

    /// Roll back whatever the journal says (undoes a paused upgrade)
    #[arg(long)]
    pub rollback: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Read the jails from a jail.conf(5)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "from_fstab",
        required_unless_present = "from_fstab"
    )]
    pub from_jail_conf: Option<PathBuf>,

    /// Read the jails from a system fstab that mounts the template into each jail
    #[arg(long, value_name = "FILE")]
    pub from_fstab: Option<PathBuf>,

    /// The store: the directory that holds the live template
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The jail root: the service answers with the contents of ROOT/VERSION
    #[arg(long)]
    pub root: PathBuf,
    /// Address to listen on
    #[arg(long)]
    pub listen: String,
    /// Write the service's pid here once it listens
    #[arg(long)]
    pub pidfile: PathBuf,
    /// Start in the background and return once it listens
    #[arg(long)]
    pub detach: bool,
    /// Sleep this long before listening (a slow start)
    #[arg(long, default_value = "0ms")]
    pub start_delay: String,
    /// Ignore SIGTERM, like a jail that will not stop
    #[cfg(feature = "fault-injection")]
    #[arg(long)]
    pub ignore_term: bool,
}
