//! Progress on stderr while a transaction runs, each step with its elapsed
//! time. On a terminal the successful steps overwrite one live status line
//! (a dozen jails do not scroll the screen away) and only failures and
//! milestones stay; otherwise (a log file, CI, a pipe) every step is a plain
//! line of its own. Quiet with `-q`. Each step and milestone is also a
//! tracing event, which the syslog/journald sink records.

use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Reporter {
    quiet: bool,
    live: bool,
    started: Instant,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            quiet,
            live: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn write(&self, text: &str, permanent: bool) {
        if self.quiet {
            return;
        }
        let stamp = format!("[{:>7.3}s] {text}", self.started.elapsed().as_secs_f64());
        let mut stderr = std::io::stderr().lock();
        let _ = match (self.live, permanent) {
            // Clear the live line, then write a line that stays.
            (true, true) => writeln!(stderr, "\r\x1b[K{stamp}"),
            // Overwrite the live line in place.
            (true, false) => write!(stderr, "\r\x1b[K{stamp}"),
            (false, _) => writeln!(stderr, "{stamp}"),
        };
        let _ = stderr.flush();
    }

    /// A milestone or a warning: always a line of its own.
    pub fn line(&self, text: &str) {
        tracing::info!(target: "jailswap::progress", "{text}");
        self.write(text, true);
    }

    pub fn step(
        &self,
        action: &Action,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        error: Option<&str>,
        undo: bool,
    ) {
        let took = (finished_at - started_at).num_milliseconds();
        let prefix = if undo { "undo: " } else { "" };
        let description = action.describe();
        match error {
            None => {
                tracing::info!(target: "jailswap::progress", step = action.verb(), jail = action.jail(), undo, ms = took, "{prefix}{description} ok");
                self.write(&format!("{prefix}{description} ... ok ({took} ms)"), false);
            }
            Some(error) => {
                tracing::warn!(target: "jailswap::progress", step = action.verb(), jail = action.jail(), undo, ms = took, "{prefix}{description} failed: {error}");
                self.write(
                    &format!("{prefix}{description} ... FAILED ({took} ms): {error}"),
                    true,
                );
            }
        }
    }

    /// Ends the live line so that what follows starts on a fresh one.
    pub fn finish(&self) {
        if self.live && !self.quiet {
            let _ = writeln!(
                std::io::stderr().lock(),
                "\r\x1b[K[{:>7.3}s] done",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
