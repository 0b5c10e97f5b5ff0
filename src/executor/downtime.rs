//! How long the jails were down, from the steps' times as this process
//! knows them (the journal's, and its own since).

use super::Executor;
use crate::host::Host;
use crate::journal::StepState;
use crate::plan::Action;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

impl<H: Host + ?Sized> Executor<'_, H> {
    /// Downtime in total and per jail, from the steps' times. A jail is down
    /// from a stop's start to the next start's end (or the stop's undo); a
    /// rolling restart after a rollback is a second outage of that jail.
    /// All at once, the total is the host-wide window from the first stop
    /// to the last start; rolling, it is the longest single jail's outage.
    pub fn downtime(&self) -> (Option<i64>, String) {
        let plan = self.actor.plan;
        let mut events: BTreeMap<&str, Vec<(DateTime<Utc>, bool)>> = BTreeMap::new();
        for step in &plan.steps {
            let (Some(jail), Some(timing)) = (step.action.jail(), self.timing.get(&step.seq))
            else {
                continue;
            };
            let state = self.states.get(&step.seq).copied();
            match &step.action {
                Action::Stop { .. } => {
                    if let Some(down) = timing.started.filter(|_| state != Some(StepState::Planned))
                    {
                        events.entry(jail).or_default().push((down, false));
                    }
                    if let Some(up) = timing
                        .undo_finished
                        .filter(|_| state == Some(StepState::Undone))
                    {
                        events.entry(jail).or_default().push((up, true));
                    }
                }
                Action::Start { .. } if state == Some(StepState::Done) => {
                    if let Some(up) = timing.finished {
                        events.entry(jail).or_default().push((up, true));
                    }
                }
                _ => {}
            }
        }
        let mut per_jail = serde_json::Map::new();
        let mut window: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        let mut longest: Option<i64> = None;
        for (jail, mut list) in events {
            list.sort();
            let mut down_since: Option<DateTime<Utc>> = None;
            let mut total = 0i64;
            let mut complete = false;
            for (at, up) in list {
                match (up, down_since) {
                    (false, None) => down_since = Some(at),
                    (true, Some(since)) => {
                        let outage = (at - since).num_milliseconds().max(0);
                        total += outage;
                        longest = Some(longest.unwrap_or(0).max(outage));
                        window = Some(match window {
                            None => (since, at),
                            Some((first, last)) => (first.min(since), last.max(at)),
                        });
                        down_since = None;
                        complete = true;
                    }
                    _ => {}
                }
            }
            if complete {
                per_jail.insert(jail.to_string(), serde_json::Value::from(total));
            }
        }
        let total = if self.actor.plan.rolling() {
            longest
        } else {
            window.map(|(first, last)| (last - first).num_milliseconds().max(0))
        };
        (total, serde_json::Value::Object(per_jail).to_string())
    }
}
