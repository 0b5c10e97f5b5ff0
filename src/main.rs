//! The jailswap executable: parse, run, exit with the documented code.

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = match jailswap::cli::Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => {
            // Help and version are not errors; every usage error is 64,
            // never clap's own 2, which means "needs operator" here.
            let code = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => jailswap::error::code::USAGE,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let config_from_command_line = matches!(
        matches.value_source("config"),
        Some(clap::parser::ValueSource::CommandLine)
    ) || matches.subcommand().is_some_and(|(_, sub)| {
        matches!(
            sub.value_source("config"),
            Some(clap::parser::ValueSource::CommandLine)
        )
    });
    let cli = match jailswap::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(jailswap::error::code::USAGE);
        }
    };
    jailswap::process::raise_open_file_limit();
    jailswap::logging::init(cli.verbose, None);
    ExitCode::from(jailswap::commands::run(cli, config_from_command_line))
}
