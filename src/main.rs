//! The jailswap executable: parse, run, map the result to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match jailswap::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are not errors; every usage error is 64,
            // never clap's own 2, which means "needs operator" here.
            let code = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 64,
                _ => 64,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    jailswap::app::init_logging(&cli);
    match jailswap::app::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("jailswap: error: {}", error.message);
            if let Some(help) = &error.help {
                eprintln!("help: {help}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
