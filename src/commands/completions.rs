//! `completions bash|zsh|fish`: a shell completion script on stdout.

use super::Context;
use crate::cli::{Cli, Shell};
use crate::error::Result;

pub fn run(shell: Shell, context: &Context) -> Result<u8> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Generated into memory first: the generator panics on a write error,
    // and the output's writes never do.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "jailswap", &mut script);
    context.output.bytes(&script);
    Ok(0)
}
