//! `serve` (hidden): the small HTTP service the demo's and the tests' jails run.

use crate::cli::ServeArgs;
use crate::error::Result;

pub fn run(args: &ServeArgs) -> Result<u8> {
    crate::service::serve(args)
}
