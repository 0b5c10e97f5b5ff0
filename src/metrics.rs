//! Prometheus metrics for node_exporter's textfile collector, written from
//! the journal after each transaction when the configuration has
//! `metrics = "/var/lib/node_exporter/textfile/jailswap.prom"`.
//!
//! The file is replaced atomically (a temporary file in the same
//! directory, fsynced, renamed over the old one, directory fsynced), so the
//! collector never reads half a file. The temporary file's name does not
//! end in `.prom`, so the collector ignores it.
//!
//! `jailswap_last_transaction_*` describe the newest transaction in the
//! journal, pending or not; its downtime, duration and end time appear only
//! once it has them.

use crate::journal::{Journal, TxnRecord, TxnState};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every transaction state, in the order the metrics list them.
const STATES: [TxnState; 5] = [
    TxnState::Committed,
    TxnState::RolledBack,
    TxnState::NeedsOperator,
    TxnState::Running,
    TxnState::RollingBack,
];

/// The outcomes `jailswap_transactions_total` counts: the SPEC's outcomes
/// of a transaction that ended or stopped for the operator.
const COUNTED: [TxnState; 3] = [
    TxnState::Committed,
    TxnState::RolledBack,
    TxnState::NeedsOperator,
];

/// Writes the metrics for `journal` to `path`, atomically, mode 0644.
pub fn write(path: &Path, journal: &Journal) -> std::io::Result<()> {
    let history = journal.history(None).map_err(std::io::Error::other)?;
    let pending = journal.pending().map_err(std::io::Error::other)?.is_some();
    write_text(path, &render(&history, pending))
}

/// The metrics text for a history (newest first) and the pending flag.
pub fn render(history: &[TxnRecord], pending: bool) -> String {
    let mut text = String::new();
    let last = history.first();

    header(
        &mut text,
        "jailswap_last_transaction_outcome",
        "Outcome of the newest transaction: 1 for its state, 0 for the others.",
        "gauge",
    );
    for state in STATES {
        let value = u8::from(last.is_some_and(|record| record.state == state));
        let _ = writeln!(
            text,
            "jailswap_last_transaction_outcome{{outcome=\"{}\"}} {value}",
            state.as_str()
        );
    }

    if let Some(record) = last {
        header(
            &mut text,
            "jailswap_last_transaction_info",
            "The newest transaction: its number, kind and templates (labels).",
            "gauge",
        );
        let _ = writeln!(
            text,
            "jailswap_last_transaction_info{{id=\"{}\",kind=\"{}\",from=\"{}\",to=\"{}\"}} 1",
            record.id,
            label(record.kind.as_str()),
            label(&record.from_label),
            label(&record.to_label)
        );

        let started = seconds_since_epoch(&record.started_at);
        let finished = record.finished_at.as_deref().and_then(seconds_since_epoch);
        if let Some(started) = started {
            sample(
                &mut text,
                "jailswap_last_transaction_start_timestamp_seconds",
                "When the newest transaction started, in seconds since the epoch.",
                started,
            );
        }
        if let Some(finished) = finished {
            sample(
                &mut text,
                "jailswap_last_transaction_end_timestamp_seconds",
                "When the newest transaction ended, in seconds since the epoch.",
                finished,
            );
        }
        if let (Some(started), Some(finished)) = (started, finished) {
            sample(
                &mut text,
                "jailswap_last_transaction_duration_seconds",
                "How long the newest transaction took, from start to end.",
                finished - started,
            );
        }
        if let Some(downtime_ms) = record.downtime_ms {
            sample(
                &mut text,
                "jailswap_last_transaction_downtime_seconds",
                "How long the newest transaction kept jails down, first stop to last start.",
                downtime_ms as f64 / 1000.0,
            );
        }
    }

    header(
        &mut text,
        "jailswap_transactions_total",
        "Transactions recorded in the journal, by outcome.",
        "counter",
    );
    for state in COUNTED {
        let count = history
            .iter()
            .filter(|record| record.state == state)
            .count();
        let _ = writeln!(
            text,
            "jailswap_transactions_total{{outcome=\"{}\"}} {count}",
            state.as_str()
        );
    }

    header(
        &mut text,
        "jailswap_pending_transaction",
        "1 while a transaction is pending (interrupted or waiting for the operator): `jailswap recover` finishes it.",
        "gauge",
    );
    let _ = writeln!(text, "jailswap_pending_transaction {}", u8::from(pending));
    text
}

/// Replaces `path` with `text`: temporary file in the same directory,
/// fsync, rename, fsync of the directory.
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file name", path.display())))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut temporary = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(directory)?;
    temporary.write_all(text.as_bytes())?;
    // node_exporter runs as its own user: the file must be world-readable.
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    std::fs::File::open(directory)?.sync_all()
}

/// A gauge without labels, with its HELP and TYPE lines. A metric that has
/// no value is left out entirely, never written as a header alone.
fn sample(text: &mut String, name: &str, help: &str, value: f64) {
    header(text, name, help, "gauge");
    let _ = writeln!(text, "{name} {}", number(value));
}

fn header(text: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

/// A label value in the exposition format's escaping.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds_since_epoch(rfc3339: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(at.timestamp_millis() as f64 / 1000.0)
}

/// A sample value: integral values without a fraction, others with up to
/// millisecond precision.
fn number(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    format!("{rounded}")
}
