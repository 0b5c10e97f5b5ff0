//! `show ID --timeline`: a transaction drawn in the terminal, or the same
//! chart as data with `--json`.
//!
//! One row per jail, time across; each step has its letter (undos in lower
//! case), the template renames have a row of their own, a row marks the
//! batches of a rolling upgrade, and the outage (any jail down) is marked
//! below. The scale gives every step at least one column of its own, so a
//! 0 ms mount next to a 2 s stop stays visible: columns are shared out by
//! waves (steps that run side by side), each wave at least as wide as the
//! most steps one jail has in it, the rest of the width by time. When a
//! transaction was interrupted, the stretch with nothing recorded (from the
//! interruption to `recover`) is drawn with `~`.
//!
//! `layout.rs` computes where every step lands; this file builds the chart
//! from it and renders it as text and as JSON.

mod layout;

use crate::journal::{StepRecord, TxnRecord};
use crate::plan::Action;
use chrono::{DateTime, Utc};
use layout::{column_of, outages, place, segments, share_columns, spans, Span};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The width the chart aims at; it grows when the steps need more columns.
const WIDTH: usize = 64;

/// The row of steps that belong to no jail (renames, carries, copies).
const STORE_ROW: &str = "(store)";

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

/// The legend, in the order the letters are listed.
const LEGEND: [(char, &str); 13] = [
    ('S', "stop"),
    ('U', "unmount"),
    ('V', "verify"),
    ('R', "rename"),
    ('C', "carry/copy"),
    ('M', "mount"),
    ('T', "start"),
    ('H', "health"),
    ('D', "delete"),
    ('X', "run"),
    ('L', "links"),
    ('F', "fingerprint"),
    ('~', "interrupted"),
];

/// When any jail was down: from the first outage to the last, the
/// downtime recorded, and the cells marked.
struct Outage {
    start_ms: i64,
    end_ms: i64,
    downtime_ms: i64,
    columns: (usize, usize),
    cells: Vec<bool>,
}

/// The stretch with nothing recorded, between an interruption and `recover`.
struct Interruption {
    start_ms: i64,
    end_ms: i64,
    columns: (usize, usize),
}

/// The whole chart: text and JSON are both drawn from it.
pub struct Chart {
    origin: Option<DateTime<Utc>>,
    total_ms: i64,
    width: usize,
    rows: Vec<(String, Vec<char>)>,
    spans: Vec<Span>,
    steps: BTreeMap<u32, (String, Option<String>)>,
    batches: Vec<(u32, (usize, usize))>,
    outage: Option<Outage>,
    interruption: Option<Interruption>,
}

impl Chart {
    pub fn new(record: &TxnRecord, steps: &[StepRecord]) -> Chart {
        let mut names = Vec::new();
        let mut spans = spans(steps, &mut names);
        let described = steps
            .iter()
            .map(|s| {
                (
                    s.seq,
                    (s.action.describe(), s.action.jail().map(str::to_string)),
                )
            })
            .collect();
        let first = spans.iter().map(|s| s.start).min();
        let last = spans.iter().map(|s| s.end).max();
        let (Some(first), Some(last)) = (first, last) else {
            return Chart {
                origin: None,
                total_ms: 0,
                width: 0,
                rows: Vec::new(),
                spans: Vec::new(),
                steps: described,
                batches: Vec::new(),
                outage: None,
                interruption: None,
            };
        };
        let mut segments = segments(&spans);
        // The interruption: the longest idle stretch after the first step
        // that never finished (or anywhere, when none was caught running).
        let interrupted = record
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("interrupted"))
            || spans.iter().any(|s| !s.finished);
        let caught = spans
            .iter()
            .filter(|s| !s.finished)
            .map(|s| s.start)
            .min()
            .unwrap_or(first);
        let gap = interrupted
            .then(|| {
                segments
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.spans.is_empty() && s.start >= caught)
                    .max_by_key(|(_, s)| s.duration_ms())
                    .map(|(index, _)| index)
            })
            .flatten();
        if let Some(index) = gap {
            segments[index].minimum = 1;
        }
        let width = share_columns(&mut segments);
        for segment in &segments {
            place(segment, &mut spans);
        }
        let mut rows: Vec<(String, Vec<char>)> = names
            .iter()
            .map(|name| (name.clone(), vec!['.'; width]))
            .collect();
        let interruption = gap.map(|index| {
            let segment = &segments[index];
            for (_, cells) in &mut rows {
                for cell in &mut cells[segment.columns.0..segment.columns.1] {
                    *cell = '~';
                }
            }
            Interruption {
                start_ms: (segment.start - first).num_milliseconds(),
                end_ms: (segment.end - first).num_milliseconds(),
                columns: segment.columns,
            }
        });
        for span in &spans {
            for cell in &mut rows[span.row].1[span.columns.0..span.columns.1] {
                *cell = span.letter;
            }
        }
        let mut batches: Vec<(u32, (usize, usize))> = Vec::new();
        for span in &spans {
            let Some(batch) = span.batch else { continue };
            match batches.iter_mut().find(|(b, _)| *b == batch) {
                Some((_, columns)) => {
                    columns.0 = columns.0.min(span.columns.0);
                    columns.1 = columns.1.max(span.columns.1);
                }
                None => batches.push((batch, span.columns)),
            }
        }
        batches.sort();
        let down = outages(steps, &names, last);
        let outage = (!down.is_empty()).then(|| {
            let mut cells = vec![false; width];
            for (since, until) in &down {
                let from = column_of(&segments, *since).min(width - 1);
                let to = column_of(&segments, *until).max(from + 1).min(width);
                for cell in &mut cells[from..to] {
                    *cell = true;
                }
            }
            let since = down.iter().map(|d| d.0).min().unwrap_or(first);
            let until = down.iter().map(|d| d.1).max().unwrap_or(last);
            let from = cells.iter().position(|c| *c).unwrap_or(0);
            let to = cells.iter().rposition(|c| *c).map_or(0, |c| c + 1);
            Outage {
                start_ms: (since - first).num_milliseconds(),
                end_ms: (until - first).num_milliseconds(),
                downtime_ms: record
                    .downtime_ms
                    .unwrap_or_else(|| (until - since).num_milliseconds()),
                columns: (from, to),
                cells,
            }
        });
        Chart {
            origin: Some(first),
            total_ms: (last - first).num_milliseconds(),
            width,
            rows,
            spans,
            steps: described,
            batches,
            outage,
            interruption,
        }
    }

    /// The chart as text, under `title`.
    pub fn text(&self, title: &str) -> String {
        let mut out = format!("{title}\n");
        if self.origin.is_none() {
            out.push_str("(no step has run yet)\n");
            return out;
        }
        let name_width = self
            .rows
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(0)
            .max("outage".len());
        let end = format!("{} ms", self.total_ms);
        out.push_str(&format!(
            "{:name_width$}  0 ms{end:>width$}\n",
            "",
            width = self.width.saturating_sub(4).max(end.len() + 1)
        ));
        if !self.batches.is_empty() {
            let mut cells = vec![' '; self.width];
            for (batch, (from, to)) in &self.batches {
                let digit = char::from_digit(batch % 10, 10).unwrap_or('?');
                for cell in &mut cells[*from..*to] {
                    *cell = digit;
                }
            }
            out.push_str(&format!(
                "{:name_width$}  {}\n",
                "batch",
                cells.iter().collect::<String>().trim_end()
            ));
        }
        for (name, cells) in &self.rows {
            out.push_str(&format!(
                "{name:name_width$}  {}\n",
                cells.iter().collect::<String>()
            ));
        }
        if let Some(outage) = &self.outage {
            let drawn: String = outage
                .cells
                .iter()
                .map(|c| if *c { '=' } else { ' ' })
                .collect();
            let ms = outage.downtime_ms;
            out.push_str(&format!("{:name_width$}  {drawn}  {ms} ms\n", "outage"));
        }
        if let Some(gap) = &self.interruption {
            let (from, to) = (gap.start_ms, gap.end_ms);
            out.push_str(&format!(
                "interrupted: nothing was recorded from {from} ms to {to} ms (~), between the interruption and `recover`\n"
            ));
        }
        let used: Vec<char> = self
            .rows
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(char::to_ascii_uppercase))
            .collect();
        let legend: Vec<String> = LEGEND
            .iter()
            .filter(|(mark, _)| used.contains(mark))
            .map(|(mark, name)| format!("{mark} {name}"))
            .collect();
        out.push_str(&legend.join("  "));
        out.push_str("  (lower case: undo; time is not to scale: every step keeps a column)\n");
        out
    }

    /// The chart as data: what each row shows, and where each step went.
    pub fn json(&self, record: &TxnRecord) -> Value {
        let at = |time: DateTime<Utc>| -> i64 {
            self.origin
                .map(|origin| (time - origin).num_milliseconds())
                .unwrap_or(0)
        };
        let spans: Vec<Value> = self
            .spans
            .iter()
            .map(|span| {
                let (description, jail) = self.steps.get(&span.seq).cloned().unwrap_or_default();
                json!({
                    "seq": span.seq,
                    "jail": jail,
                    "row": self.rows.get(span.row).map(|(name, _)| name),
                    "description": description,
                    "letter": span.letter.to_string(),
                    "undo": span.undo,
                    "wave": span.wave,
                    "batch": span.batch,
                    "start_ms": at(span.start),
                    "end_ms": at(span.end),
                    "finished": span.finished,
                    "columns": [span.columns.0, span.columns.1],
                })
            })
            .collect();
        json!({
            "id": record.id,
            "kind": record.kind.as_str(),
            "from": record.from_label,
            "to": record.to_label,
            "state": record.state.as_str(),
            "origin": self.origin.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "total_ms": self.total_ms,
            "width": self.width,
            "rows": self.rows.iter().map(|(name, cells)| json!({
                "name": name,
                "cells": cells.iter().collect::<String>(),
            })).collect::<Vec<_>>(),
            "batches": self.batches.iter().map(|(batch, (from, to))| json!({
                "batch": batch, "columns": [from, to],
            })).collect::<Vec<_>>(),
            "outage": self.outage.as_ref().map(|outage| json!({
                "start_ms": outage.start_ms,
                "end_ms": outage.end_ms,
                "downtime_ms": outage.downtime_ms,
                "columns": [outage.columns.0, outage.columns.1],
                "cells": outage.cells.iter().map(|c| if *c { '=' } else { ' ' }).collect::<String>(),
            })),
            "interruption": self.interruption.as_ref().map(|gap| json!({
                "start_ms": gap.start_ms,
                "end_ms": gap.end_ms,
                "columns": [gap.columns.0, gap.columns.1],
            })),
            "spans": spans,
        })
    }
}
