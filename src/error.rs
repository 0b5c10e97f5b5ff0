//! The top-level error, and the one place where exit codes are decided.
//!
//! Each module reports the world's failures through its own error type;
//! they fold into [`Error`], whose [`Error::exit_code`] maps every kind to
//! the documented sysexits code. Outcomes of a transaction that are not
//! errors of jailswap (rolled back, needs operator, paused) are results,
//! not errors: see `executor::Outcome`. Exit 70 is kept for jailswap's own
//! bugs: a failure of the world (a mount refused, a disk full, a command
//! missing) always has a code of its own.

use crate::config::ConfigError;
use crate::host::HostError;
use crate::journal::JournalError;
use crate::preflight::PreflightError;

/// Exit codes with a documented meaning (SPEC.md, "Exit codes").
pub mod code {
    pub const SUCCESS: u8 = 0;
    pub const ROLLED_BACK: u8 = 1;
    pub const NEEDS_OPERATOR: u8 = 2;
    pub const USAGE: u8 = 64;
    pub const INVALID: u8 = 65;
    pub const CONFIG_MISSING: u8 = 66;
    pub const INTERNAL: u8 = 70;
    pub const JOURNAL: u8 = 74;
    pub const BUSY: u8 = 75;
    pub const PERMISSION: u8 = 77;
    pub const CONFIG: u8 = 78;
}

/// Everything that can stop a command before it reaches an outcome.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 64: the command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// 66, 77 or 78: the configuration is missing, unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// 65 (75 when a transaction is pending; the host's and the journal's
    /// own codes when they failed): preflight stopped; nothing was changed.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// 65 (77 when the system denied the privilege): the host failed before
    /// anything was changed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// 74: the journal cannot be read, trusted or written; nothing was changed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// 75: another jailswap holds the lock, or a transaction is pending.
    #[error("{message}")]
    Busy { message: String, help: String },
    /// 77: root is needed.
    #[error("{0}")]
    NotRoot(String),
    /// 74: a read-only command could not write its output.
    #[error("cannot write the output: {0}")]
    OutputLost(String),
    /// 70: a bug in jailswap.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => code::USAGE,
            Error::Config(ConfigError::Missing { .. }) => code::CONFIG_MISSING,
            Error::Config(error) if error.permission_denied() => code::PERMISSION,
            Error::Config(ConfigError::Unreadable { .. }) => code::CONFIG_MISSING,
            Error::Config(ConfigError::Invalid { .. }) => code::CONFIG,
            Error::Preflight(PreflightError::Refused { .. }) => code::INVALID,
            Error::Preflight(PreflightError::Pending { .. }) => code::BUSY,
            Error::Preflight(PreflightError::Host(HostError::Denied(_))) => code::PERMISSION,
            Error::Preflight(PreflightError::Host(_)) => code::INVALID,
            Error::Preflight(PreflightError::Journal(_)) => code::JOURNAL,
            Error::Host(HostError::Denied(_)) => code::PERMISSION,
            Error::Host(_) => code::INVALID,
            Error::Journal(_) => code::JOURNAL,
            Error::Busy { .. } => code::BUSY,
            Error::NotRoot(_) => code::PERMISSION,
            Error::OutputLost(_) => code::JOURNAL,
            Error::Internal(_) => code::INTERNAL,
        }
    }

    /// What the operator can do next, for the `help:` line.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Usage(_) => Some("`jailswap --help` lists the commands and options".into()),
            Error::Config(error) => error.help(),
            Error::Preflight(
                PreflightError::Refused { help, .. } | PreflightError::Pending { help, .. },
            ) => Some(help.clone()),
            Error::Preflight(PreflightError::Host(error)) => Error::Host(error.clone()).help(),
            Error::Preflight(PreflightError::Journal(error)) => Some(error.help()),
            Error::Host(HostError::Denied(_)) => Some("run jailswap as root".into()),
            Error::Host(_) => {
                Some("nothing was changed; fix the cause and run the command again".into())
            }
            Error::Journal(error) => Some(error.help()),
            Error::Busy { help, .. } => Some(help.clone()),
            Error::NotRoot(_) => Some("run it as root (for example with sudo)".into()),
            Error::OutputLost(_) => None,
            Error::Internal(_) => Some(
                "this is a bug in jailswap; `jailswap status` shows the state of the host".into(),
            ),
        }
    }

    pub fn busy(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Busy {
            message: message.into(),
            help: help.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    // Each kind of failure has its documented code, and no failure of the
    // world is reported as an internal error.
    #[test]
    fn exit_codes() {
        let table: Vec<(Error, u8)> = vec![
            (Error::Usage("x".into()), 64),
            (Error::Config(ConfigError::Missing { file: "f".into() }), 66),
            (
                Error::Config(ConfigError::Unreadable {
                    file: "f".into(),
                    error: std::io::Error::from_raw_os_error(libc::EACCES),
                }),
                77,
            ),
            (
                Error::Config(ConfigError::Invalid {
                    message: "m".into(),
                    help: None,
                }),
                78,
            ),
            (Error::Host(HostError::Failed("mount refused".into())), 65),
            (Error::Host(HostError::Denied("EPERM".into())), 77),
            (Error::busy("held", "wait"), 75),
            (Error::NotRoot("root".into()), 77),
            (Error::OutputLost("EPIPE".into()), 74),
            (Error::Internal("bug".into()), 70),
        ];
        for (error, expected) in table {
            assert_eq!(error.exit_code(), expected, "{error:?}");
        }
    }
}
