//! The top-level error and its exit code.
//!
//! Every module reports failures of the world through its own error type;
//! they fold into [`Error`], whose [`Kind`] decides the documented exit code
//! (sysexits, as FreeBSD tools use). Outcomes of a transaction that are not
//! errors of jailswap itself (rolled back, needs operator) are results, not
//! errors: see `executor::Outcome`.

use std::fmt;

/// What went wrong, as far as the exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 64: the command line is wrong.
    Usage,
    /// 65: the input is wrong (bad template name, preflight refused).
    Invalid,
    /// 66: the configuration file does not exist.
    ConfigMissing,
    /// 70: a bug or an unexpected failure of the host.
    Internal,
    /// 74: the journal cannot be read or written.
    Journal,
    /// 75: another jailswap runs, or a transaction must be recovered first.
    Busy,
    /// 78: the configuration is invalid.
    Config,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 64,
            Kind::Invalid => 65,
            Kind::ConfigMissing => 66,
            Kind::Internal => 70,
            Kind::Journal => 74,
            Kind::Busy => 75,
            Kind::Config => 78,
        }
    }
}

/// An error with the exit code it maps to and, when the operator has a next
/// step, a `help:` line saying what to do.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub help: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Error {
        self.help = Some(help.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Kind::Invalid, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Kind::Internal, message)
    }

    pub fn busy(message: impl Into<String>) -> Error {
        Error::new(Kind::Busy, message)
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
