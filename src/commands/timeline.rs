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
//! The file is longer than most: the layout (segments, their columns, the
//! placing of each step) and its two renderings, text and JSON, read the
//! same intermediate results and are kept together.

use crate::journal::{StepRecord, StepState, TxnRecord};
use crate::plan::Action;
use chrono::{DateTime, Utc};
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

fn parse(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// One drawn span: a step's action or its undo.
#[derive(Clone, Debug)]
struct Span {
    seq: u32,
    row: usize,
    letter: char,
    undo: bool,
    wave: u32,
    batch: Option<u32>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// False when the step started but its end was never recorded (the
    /// process was killed while it ran): drawn as one cell at its start.
    finished: bool,
    columns: (usize, usize),
}

/// A stretch of the time axis and the columns it got.
#[derive(Clone, Debug)]
struct Segment {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// The spans drawn in it (indices into `spans`); none for an idle gap.
    spans: Vec<usize>,
    minimum: usize,
    columns: (usize, usize),
}

impl Segment {
    fn duration_ms(&self) -> i64 {
        (self.end - self.start).num_milliseconds().max(0)
    }

    /// The column of `at`, inside this segment (its end maps to the column
    /// after the segment's last).
    fn column(&self, at: DateTime<Utc>) -> usize {
        let width = self.columns.1 - self.columns.0;
        let duration = self.duration_ms();
        if duration == 0 {
            return self.columns.0;
        }
        let offset = (at - self.start).num_milliseconds().clamp(0, duration);
        self.columns.0 + ((offset as f64 / duration as f64) * width as f64).round() as usize
    }
}

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

/// Whether a step's action may have run: an intent whose step recovery
/// found not done, or that a sibling's failure kept from starting, is
/// `planned` again.
fn ran(step: &StepRecord) -> bool {
    step.state != StepState::Planned
}

/// Whether a step's undo may have run.
fn undone(step: &StepRecord) -> bool {
    matches!(
        step.state,
        StepState::Undoing | StepState::Undone | StepState::UndoFailed
    )
}

/// The spans of every step, with the row each goes in.
fn spans(steps: &[StepRecord], rows: &mut Vec<String>) -> Vec<Span> {
    let mut found = Vec::new();
    for step in steps {
        let name = step.action.jail().unwrap_or(STORE_ROW);
        let row = match rows.iter().position(|n| n == name) {
            Some(index) => index,
            None => {
                rows.push(name.to_string());
                rows.len() - 1
            }
        };
        let mark = letter(&step.action);
        let timed = [
            (&step.started_at, &step.finished_at, false, ran(step)),
            (
                &step.undo_started_at,
                &step.undo_finished_at,
                true,
                undone(step),
            ),
        ];
        for (started, finished, undo, happened) in timed {
            let Some(start) = parse(started).filter(|_| happened) else {
                continue;
            };
            let end = parse(finished).filter(|end| *end >= start);
            found.push(Span {
                seq: step.seq,
                row,
                letter: if undo {
                    mark.to_ascii_lowercase()
                } else {
                    mark
                },
                undo,
                wave: step.wave,
                batch: step.batch,
                start,
                end: end.unwrap_or(start),
                finished: end.is_some(),
                columns: (0, 0),
            });
        }
    }
    found
}

/// Each jail's outages: from a stop's start (or a start's undo) to the next
/// start's end (or a stop's undo); a jail never brought back is down to the
/// chart's end.
fn outages(
    steps: &[StepRecord],
    rows: &[String],
    last: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut events: BTreeMap<&str, Vec<(DateTime<Utc>, bool)>> = BTreeMap::new();
    for step in steps {
        let Some(jail) = step.action.jail() else {
            continue;
        };
        match step.action {
            Action::Stop { .. } => {
                if let Some(down) = parse(&step.started_at).filter(|_| ran(step)) {
                    events.entry(jail).or_default().push((down, false));
                }
                if let Some(up) = parse(&step.undo_finished_at).filter(|_| undone(step)) {
                    events.entry(jail).or_default().push((up, true));
                }
            }
            Action::Start { .. } => {
                if let Some(up) = parse(&step.finished_at).filter(|_| ran(step)) {
                    events.entry(jail).or_default().push((up, true));
                }
                // A rollback stops the jail again: a second outage.
                if let Some(down) = parse(&step.undo_started_at).filter(|_| undone(step)) {
                    events.entry(jail).or_default().push((down, false));
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for name in rows {
        let Some(list) = events.get_mut(name.as_str()) else {
            continue;
        };
        list.sort();
        let mut down_since = None;
        for (at, up) in list.iter().copied() {
            match (up, down_since) {
                (false, None) => down_since = Some(at),
                (true, Some(since)) => {
                    found.push((since, at));
                    down_since = None;
                }
                _ => {}
            }
        }
        if let Some(since) = down_since {
            found.push((since, last));
        }
    }
    found
}

/// Groups the spans into segments: one per wave (its forward steps, or its
/// undos), waves that overlap in time merged, idle gaps between them.
fn segments(spans: &[Span]) -> Vec<Segment> {
    let mut waves: BTreeMap<(u32, bool), Vec<usize>> = BTreeMap::new();
    for (index, span) in spans.iter().enumerate() {
        waves.entry((span.wave, span.undo)).or_default().push(index);
    }
    let mut groups: Vec<(DateTime<Utc>, DateTime<Utc>, Vec<usize>)> = waves
        .into_values()
        .map(|members| {
            let start = members.iter().map(|&i| spans[i].start).min();
            let end = members.iter().map(|&i| spans[i].end).max();
            (start.unwrap_or_default(), end.unwrap_or_default(), members)
        })
        .collect();
    groups.sort_by_key(|group| (group.0, group.1));
    let mut merged: Vec<Segment> = Vec::new();
    for (start, end, members) in groups {
        match merged.last_mut() {
            Some(last) if start < last.end => {
                last.end = last.end.max(end);
                last.spans.extend(members);
            }
            _ => {
                if let Some(last) = merged.last() {
                    if start > last.end {
                        merged.push(Segment {
                            start: last.end,
                            end: start,
                            spans: Vec::new(),
                            minimum: 0,
                            columns: (0, 0),
                        });
                    }
                }
                merged.push(Segment {
                    start,
                    end,
                    spans: members,
                    minimum: 0,
                    columns: (0, 0),
                });
            }
        }
    }
    for segment in &mut merged {
        let mut per_row: BTreeMap<usize, usize> = BTreeMap::new();
        for &index in &segment.spans {
            *per_row.entry(spans[index].row).or_default() += 1;
        }
        segment.minimum = per_row.values().copied().max().unwrap_or(0);
    }
    merged
}

/// Shares the columns out: each segment its minimum, the rest by time
/// (largest remainder), so the chart is `WIDTH` wide unless the minimums
/// need more.
fn share_columns(segments: &mut [Segment]) -> usize {
    let minimum: usize = segments.iter().map(|s| s.minimum).sum();
    let spare = WIDTH.saturating_sub(minimum);
    let total_ms: i64 = segments.iter().map(Segment::duration_ms).sum();
    let mut extra: Vec<usize> = vec![0; segments.len()];
    if spare > 0 && total_ms > 0 {
        let exact: Vec<f64> = segments
            .iter()
            .map(|s| s.duration_ms() as f64 * spare as f64 / total_ms as f64)
            .collect();
        for (slot, value) in extra.iter_mut().zip(&exact) {
            *slot = value.floor() as usize;
        }
        let mut left = spare - extra.iter().sum::<usize>();
        let mut order: Vec<usize> = (0..segments.len()).collect();
        order.sort_by(|&a, &b| {
            let remainder = |i: usize| exact[i] - exact[i].floor();
            remainder(b).total_cmp(&remainder(a)).then(a.cmp(&b))
        });
        for index in order {
            if left == 0 {
                break;
            }
            if exact[index] > 0.0 {
                extra[index] += 1;
                left -= 1;
            }
        }
    }
    let mut column = 0;
    for (segment, extra) in segments.iter_mut().zip(extra) {
        let width = segment.minimum + extra;
        segment.columns = (column, column + width);
        column += width;
    }
    column
}

/// Places the spans of one segment: by time, then pushed apart so that each
/// has at least one column and a jail's spans never share one.
fn place(segment: &Segment, spans: &mut [Span]) {
    let mut per_row: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &index in &segment.spans {
        per_row.entry(spans[index].row).or_default().push(index);
    }
    let (low, high) = segment.columns;
    for members in per_row.values_mut() {
        members.sort_by_key(|&i| (spans[i].start, spans[i].end, spans[i].seq, spans[i].undo));
        let mut wanted: Vec<(usize, usize)> = members
            .iter()
            .map(|&i| {
                let from = segment.column(spans[i].start).min(high - 1);
                (from, segment.column(spans[i].end).max(from + 1))
            })
            .collect();
        // Forward: one after another, one column at least.
        let mut next = low;
        for span in &mut wanted {
            span.0 = span.0.max(next);
            span.1 = span.1.max(span.0 + 1);
            next = span.1;
        }
        // Backward: inside the segment, which is as wide as the most
        // spans a row has, so each keeps a column.
        let mut limit = high;
        for span in wanted.iter_mut().rev() {
            span.1 = span.1.min(limit);
            span.0 = span.0.min(span.1 - 1);
            limit = span.0;
        }
        for (&index, columns) in members.iter().zip(wanted) {
            spans[index].columns = columns;
        }
    }
}

/// The column of an instant anywhere on the chart.
fn column_of(segments: &[Segment], at: DateTime<Utc>) -> usize {
    segments
        .iter()
        .find(|s| at <= s.end)
        .map(|s| s.column(at))
        .unwrap_or_else(|| segments.last().map(|s| s.columns.1).unwrap_or(0))
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
