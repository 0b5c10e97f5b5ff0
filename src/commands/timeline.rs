//! `show ID --timeline`: a transaction drawn in the terminal.
//!
//! One row per jail, time across; each phase has its letter (undos in lower
//! case), the template renames have a row of their own, and the outage
//! window (first stop to last start) is marked below, so the slow jail and
//! the slow phase stand out at a glance.

use crate::journal::StepRecord;
use crate::plan::Action;
use chrono::{DateTime, Utc};

const WIDTH: usize = 64;

fn letter(action: &Action) -> char {
    match action {
        Action::Stop { .. } => 'S',
        Action::Unmount { .. } => 'U',
        Action::VerifyUnused { .. } => 'V',
        Action::Rename { .. } => 'R',
        Action::Carry { .. } => 'C',
        Action::Mount { .. } => 'M',
        Action::Start { .. } => 'T',
        Action::Health { .. } => 'H',
        Action::Delete { .. } => 'D',
        Action::VerifyReleased { .. } => 'V',
        Action::Copy { .. } => 'C',
        Action::Discard { .. } => 'D',
        Action::Run { .. } => 'X',
        Action::CheckLinks { .. } => 'L',
        Action::Fingerprint { .. } => 'F',
        Action::Publish { .. } => 'R',
    }
}

fn parse(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The spans of a step: (start, end, letter) for the action and its undo.
fn spans(step: &StepRecord) -> Vec<(DateTime<Utc>, DateTime<Utc>, char)> {
    let mut found = Vec::new();
    let mark = letter(&step.action);
    if let (Some(start), Some(end)) = (parse(&step.started_at), parse(&step.finished_at)) {
        found.push((start, end, mark));
    }
    if let (Some(start), Some(end)) = (parse(&step.undo_started_at), parse(&step.undo_finished_at))
    {
        found.push((start, end, mark.to_ascii_lowercase()));
    }
    found
}

/// Renders the chart as text.
pub fn render(title: &str, steps: &[StepRecord]) -> String {
    let all: Vec<_> = steps.iter().flat_map(spans).collect();
    let (Some(first), Some(last)) = (all.iter().map(|s| s.0).min(), all.iter().map(|s| s.1).max())
    else {
        return format!("{title}\n(no step has run yet)\n");
    };
    let total_ms = (last - first).num_milliseconds().max(1) as f64;
    let column = |at: DateTime<Utc>| -> usize {
        (((at - first).num_milliseconds() as f64 / total_ms) * (WIDTH - 1) as f64).round() as usize
    };
    let mut rows: Vec<(String, Vec<char>)> = Vec::new();
    let row_of = |name: &str, rows: &mut Vec<(String, Vec<char>)>| -> usize {
        match rows.iter().position(|(n, _)| n == name) {
            Some(index) => index,
            None => {
                rows.push((name.to_string(), vec!['.'; WIDTH]));
                rows.len() - 1
            }
        }
    };
    for step in steps {
        let name = step.action.jail().unwrap_or("(store)");
        let index = row_of(name, &mut rows);
        for (start, end, mark) in spans(step) {
            let (from, to) = (column(start), column(end).max(column(start)));
            for cell in &mut rows[index].1[from..=to.min(WIDTH - 1)] {
                *cell = mark;
            }
        }
    }
    // The outage: from the first stop to the last (re)start.
    let stops = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Stop { .. }))
        .filter_map(|s| parse(&s.started_at))
        .min();
    let restarts = steps
        .iter()
        .flat_map(|s| match s.action {
            Action::Start { .. } => parse(&s.finished_at).into_iter().collect::<Vec<_>>(),
            Action::Stop { .. } => parse(&s.undo_finished_at).into_iter().collect(),
            _ => Vec::new(),
        })
        .max();
    let name_width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(7);
    let mut out = format!("{title}\n");
    out.push_str(&format!(
        "{:name_width$}  0 ms{:>width$}\n",
        "",
        format!("{} ms", total_ms as i64),
        width = WIDTH - 4
    ));
    for (name, cells) in &rows {
        out.push_str(&format!(
            "{name:name_width$}  {}\n",
            cells.iter().collect::<String>()
        ));
    }
    if let (Some(down), Some(up)) = (stops, restarts) {
        let mut cells = vec![' '; WIDTH];
        for cell in &mut cells[column(down)..=column(up).min(WIDTH - 1)] {
            *cell = '=';
        }
        out.push_str(&format!(
            "{:name_width$}  {}  {} ms\n",
            "outage",
            cells.iter().collect::<String>(),
            (up - down).num_milliseconds()
        ));
    }
    out.push_str("S stop  U unmount  V verify  R rename  C carry  M mount  T start  H health  D delete  (lower case: undo)\n");
    out
}
