//! The chart's layout: each step's span, the segments of the time axis
//! (one per wave, idle gaps between), the columns each segment gets, and
//! where each span lands in them. Text and JSON are both drawn from it.

use super::{letter, STORE_ROW, WIDTH};
use crate::journal::{StepRecord, StepState};
use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

fn parse(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// One drawn span: a step's action or its undo.
#[derive(Clone, Debug)]
pub(super) struct Span {
    pub(super) seq: u32,
    pub(super) row: usize,
    pub(super) letter: char,
    pub(super) undo: bool,
    pub(super) wave: u32,
    pub(super) batch: Option<u32>,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    /// False when the step started but its end was never recorded (the
    /// process was killed while it ran): drawn as one cell at its start.
    pub(super) finished: bool,
    pub(super) columns: (usize, usize),
}

/// A stretch of the time axis and the columns it got.
#[derive(Clone, Debug)]
pub(super) struct Segment {
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    /// The spans drawn in it (indices into `spans`); none for an idle gap.
    pub(super) spans: Vec<usize>,
    pub(super) minimum: usize,
    pub(super) columns: (usize, usize),
}

impl Segment {
    pub(super) fn duration_ms(&self) -> i64 {
        (self.end - self.start).num_milliseconds().max(0)
    }

    /// The column of `at`, inside this segment (its end maps to the column
    /// after the segment's last).
    pub(super) fn column(&self, at: DateTime<Utc>) -> usize {
        let width = self.columns.1 - self.columns.0;
        let duration = self.duration_ms();
        if duration == 0 {
            return self.columns.0;
        }
        let offset = (at - self.start).num_milliseconds().clamp(0, duration);
        self.columns.0 + ((offset as f64 / duration as f64) * width as f64).round() as usize
    }
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
pub(super) fn spans(steps: &[StepRecord], rows: &mut Vec<String>) -> Vec<Span> {
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
pub(super) fn outages(
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
pub(super) fn segments(spans: &[Span]) -> Vec<Segment> {
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
pub(super) fn share_columns(segments: &mut [Segment]) -> usize {
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
pub(super) fn place(segment: &Segment, spans: &mut [Span]) {
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
pub(super) fn column_of(segments: &[Segment], at: DateTime<Utc>) -> usize {
    segments
        .iter()
        .find(|s| at <= s.end)
        .map(|s| s.column(at))
        .unwrap_or_else(|| segments.last().map(|s| s.columns.1).unwrap_or(0))
}
