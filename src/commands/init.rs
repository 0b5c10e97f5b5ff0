//! `init --from-jail-conf FILE | --from-fstab FILE --store DIR`: print a
//! jailswap.toml for the jails a host already has.

use super::Context;
use crate::cli::InitArgs;
use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::preflight::refuse;

pub fn run(args: &InitArgs, context: &Context) -> Result<u8> {
    let (path, from_jail_conf) = match (&args.from_jail_conf, &args.from_fstab) {
        (Some(path), _) => (path, true),
        (None, Some(path)) => (path, false),
        (None, None) => {
            return Err(Error::Usage(
                "init needs --from-jail-conf FILE or --from-fstab FILE".into(),
            ))
        }
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ConfigError::Missing {
            file: shown.clone(),
        },
        _ => ConfigError::Unreadable {
            file: shown.clone(),
            error,
        },
    })?;
    let generated = if from_jail_conf {
        // Absolute, so that the jail.conf.d next to it and an `.include` of
        // that directory by its full name are seen to be the same directory.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        crate::import::from_jail_conf(&text, &path, &args.store, &crate::import::HostFiles)
    } else {
        crate::import::from_fstab(&text, path, &args.store)
    };
    match generated {
        Ok(toml) => {
            context.output.bytes(toml.as_bytes());
            Ok(0)
        }
        Err(error) => Err(refuse(
            error.to_string(),
            "fix the file, or write jailswap.toml by hand (see jailswap(8))",
        )),
    }
}
