//! Progress on stderr while a transaction runs: one line per step with its
//! elapsed time, plain text (no terminal control), quiet with `-q`.

use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::time::Instant;

pub struct Reporter {
    quiet: bool,
    started: Instant,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            quiet,
            started: Instant::now(),
        }
    }

    pub fn line(&self, text: &str) {
        tracing::info!(target: "jailswap", "{text}");
        if !self.quiet {
            let _ = writeln!(
                std::io::stderr().lock(),
                "[{:>7.3}s] {text}",
                self.started.elapsed().as_secs_f64()
            );
        }
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
        match error {
            None => {
                tracing::info!(target: "jailswap", step = action.verb(), jail = action.jail(), undo, ms = took, "{prefix}{} ok", action.describe());
                if !self.quiet {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "[{:>7.3}s] {prefix}{} ... ok ({took} ms)",
                        self.started.elapsed().as_secs_f64(),
                        action.describe()
                    );
                }
            }
            Some(error) => {
                tracing::warn!(target: "jailswap", step = action.verb(), jail = action.jail(), undo, ms = took, "{prefix}{} failed: {error}", action.describe());
                if !self.quiet {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "[{:>7.3}s] {prefix}{} ... FAILED ({took} ms): {error}",
                        self.started.elapsed().as_secs_f64(),
                        action.describe()
                    );
                }
            }
        }
    }
}
