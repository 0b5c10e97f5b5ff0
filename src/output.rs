//! The one module that writes to stdout and stderr.
//!
//! Results go to stdout ([`Output`]: lines, aligned tables, JSON), progress
//! and milestones to stderr ([`Reporter`]). Output that cannot be written (a
//! closed pipe, a full disk, a terminal that went away with its ssh session)
//! never panics and never changes what a transaction does or its exit code:
//! every write's error is kept, not raised, and only a read-only command
//! turns it into its exit code (74) once it is done.
//!
//! Progress, each step with its elapsed time: on a terminal the successful
//! steps overwrite one live status line (a dozen jails do not scroll the
//! screen away) and only failures and milestones stay; otherwise (a log
//! file, CI, a pipe) every step is a plain line of its own. Quiet with
//! `-q`. Each step and milestone is also a tracing event, which the
//! syslog/journald sink records.

use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

/// `text` with every control character but the line feed written as an
/// escape (`\r`, `\t`, `\x1b`, `\u{9b}`), so that what a reason, a command's
/// output or an error message holds cannot move the cursor, recolour or
/// retitle the operator's terminal.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_controls(text, true)
}

/// [`printable`], with line feeds escaped too: for one-line fields and
/// table cells, which a line feed would break.
pub fn printable_inline(text: &str) -> Cow<'_, str> {
    escape_controls(text, false)
}

fn escape_controls(text: &str, keep_newline: bool) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_newline && c == '\n');
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !escaped(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Results on stdout.
pub struct Output {
    json: bool,
    /// The first write that failed.
    failure: Mutex<Option<String>>,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output {
            json,
            failure: Mutex::new(None),
        }
    }

    /// Whether the result is wanted as JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    fn note(&self, error: std::io::Error) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| error.to_string());
        }
    }

    /// Writes bytes to stdout as they are.
    pub fn bytes(&self, bytes: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = stdout.write_all(bytes).and_then(|_| stdout.flush()) {
            self.note(error);
        }
    }

    /// Text for a human on stdout, its control characters but line feeds
    /// escaped ([`printable`]).
    pub fn text(&self, text: &str) {
        self.bytes(printable(text).as_bytes());
    }

    /// One line of text on stdout, as [`Output::text`] writes it.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut text = printable(text.as_ref()).into_owned();
        text.push('\n');
        self.bytes(text.as_bytes());
    }

    /// A JSON value on one line.
    pub fn value(&self, value: &serde_json::Value) {
        self.line(value.to_string());
    }

    /// A writer on stdout whose failures are kept as [`Output::line`] keeps
    /// them; for output streamed piece by piece.
    pub fn writer(&self) -> OutputWriter<'_> {
        OutputWriter {
            output: self,
            inner: std::io::BufWriter::new(std::io::stdout().lock()),
        }
    }

    /// Prints rows as an aligned table; the last column is not padded. A
    /// cell's control characters, line feeds included, are escaped.
    pub fn table<const N: usize>(&self, header: &[&str; N], rows: &[[String; N]]) {
        let rows: Vec<[String; N]> = rows
            .iter()
            .map(|row| row.clone().map(|cell| printable_inline(&cell).into_owned()))
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (index, cell) in row.iter().enumerate() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let mut line = |cells: Vec<&str>| {
            let mut row = String::new();
            for (index, cell) in cells.iter().enumerate() {
                if index + 1 == N {
                    row.push_str(cell);
                } else {
                    let pad = widths[index].saturating_sub(cell.chars().count());
                    row.push_str(cell);
                    row.push_str(&" ".repeat(pad + 2));
                }
            }
            text.push_str(row.trim_end());
            text.push('\n');
        };
        line(header.to_vec());
        for row in &rows {
            line(row.iter().map(String::as_str).collect());
        }
        self.bytes(text.as_bytes());
    }

    /// The first write that failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|failure| failure.clone())
    }
}

/// See [`Output::writer`].
pub struct OutputWriter<'a> {
    output: &'a Output,
    inner: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Write for OutputWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.inner.write(bytes).inspect_err(|error| {
            self.output
                .note(std::io::Error::new(error.kind(), error.to_string()))
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|error| {
            self.output
                .note(std::io::Error::new(error.kind(), error.to_string()))
        })
    }
}

impl Drop for OutputWriter<'_> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Writes a warning to stderr (lost, like everything else, when stderr is gone).
pub fn warning(message: &str) {
    let message = printable(message);
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("jailswap: warning: {message}\n").as_bytes());
}

/// Writes an error and its help line to stderr; a stderr that cannot be
/// written loses them, as it loses everything else.
pub fn error(message: &str, help: Option<&str>) {
    let mut text = format!("jailswap: error: {}\n", printable(message));
    if let Some(help) = help {
        text.push_str(&format!("help: {}\n", printable(help)));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Progress on stderr.
pub struct Reporter {
    quiet: bool,
    live: bool,
    started: Instant,
}

impl Default for Reporter {
    /// A reporter that says nothing (for callers that report nothing).
    fn default() -> Reporter {
        Reporter {
            quiet: true,
            live: false,
            started: Instant::now(),
        }
    }
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
        let stamp = format!(
            "[{:>7.3}s] {}",
            self.started.elapsed().as_secs_f64(),
            printable_inline(text)
        );
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
