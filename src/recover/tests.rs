//! The recovery decision as a table: plan, step states, observations and
//! the operator's choice in, direction (or wait, or operator) out.

use super::*;
use crate::plan::{Step, Strategy};
use crate::template::TemplateId;

fn plan(kind: TransactionKind) -> Plan {
    let actions = [
        Action::Stop { jail: "a".into() },
        Action::Rename {
            from: "mroot".into(),
            to: "mroot.old".into(),
            id: TemplateId::Inode(1),
        },
        Action::Rename {
            from: "mroot.new".into(),
            to: "mroot".into(),
            id: TemplateId::Inode(2),
        },
        Action::Start { jail: "a".into() },
        Action::Health { jail: "a".into() },
    ];
    Plan {
        kind,
        strategy: Strategy::AllAtOnce,
        store: "/home/j".into(),
        store_kind: Default::default(),
        live: "mroot".into(),
        target: "mroot.new".into(),
        archive_as: "mroot.old".into(),
        from_label: "mroot.old".into(),
        to_label: "mroot.new".into(),
        live_id: TemplateId::Inode(1),
        target_id: TemplateId::Inode(2),
        parallel: 1,
        jails: Vec::new(),
        steps: actions
            .into_iter()
            .enumerate()
            .map(|(index, action)| Step {
                seq: index as u32 + 1,
                wave: index as u32,
                phase: Phase::Forward,
                batch: None,
                action,
            })
            .collect(),
        notes: Vec::new(),
    }
}

fn records(plan: &Plan, states: [StepState; 5], undo_began: bool) -> Vec<StepRecord> {
    plan.steps
        .iter()
        .zip(states)
        .map(|(step, state)| StepRecord {
            seq: step.seq,
            wave: step.wave,
            phase: step.phase,
            batch: None,
            action: step.action.clone(),
            state,
            started_at: None,
            finished_at: None,
            error: None,
            undo_started_at: undo_began.then(|| "2026-01-01T00:00:00.000Z".to_string()),
            undo_finished_at: None,
            undo_error: None,
            result: None,
        })
        .collect()
}

use Direction::{Forward, Rollback};
use StepState::{Done, Planned, Started, UndoFailed};

#[derive(Debug, PartialEq)]
enum Expect {
    Go(Direction),
    Wait,
    LookFirst,
    Operator,
}

// Every rule of the decision, one row each.
#[test]
fn decision_table() {
    struct Row {
        why: &'static str,
        kind: TransactionKind,
        state: TxnState,
        interrupted: u32,
        steps: [StepState; 5],
        undo_began: bool,
        observed: Vec<(u32, Observation)>,
        chosen: Option<Direction>,
        undisturbed: Option<bool>,
        expect: Expect,
    }
    let row = |why, steps, observed: Vec<(u32, Observation)>, expect| Row {
        why,
        kind: TransactionKind::Upgrade,
        state: TxnState::Running,
        interrupted: 0,
        steps,
        undo_began: false,
        observed,
        chosen: None,
        undisturbed: None,
        expect,
    };
    let rows = vec![
        row(
            "before any rename",
            [Done, Planned, Planned, Planned, Planned],
            vec![],
            Expect::Go(Rollback),
        ),
        row(
            "after the first rename",
            [Done, Done, Planned, Planned, Planned],
            vec![(2, Observation::Done)],
            Expect::Go(Rollback),
        ),
        row(
            "swap recorded and seen",
            [Done, Done, Done, Started, Planned],
            vec![(3, Observation::Done)],
            Expect::Go(Forward),
        ),
        row(
            "swap started, seen done",
            [Done, Done, Started, Planned, Planned],
            vec![(3, Observation::Done)],
            Expect::Go(Forward),
        ),
        row(
            "swap started, seen not done",
            [Done, Done, Started, Planned, Planned],
            vec![(3, Observation::NotDone)],
            Expect::Go(Rollback),
        ),
        row(
            "swap started, nobody looked (status)",
            [Done, Done, Started, Planned, Planned],
            vec![],
            Expect::LookFirst,
        ),
        row(
            "swap recorded, undone from memory since",
            [Done, Done, Done, Planned, Planned],
            vec![(3, Observation::NotDone)],
            Expect::Go(Rollback),
        ),
        row(
            "swap recorded, nobody looked (status)",
            [Done, Done, Done, Done, Done],
            vec![],
            Expect::Go(Forward),
        ),
        row(
            "a rename moved by hand",
            [Done, Done, Done, Planned, Planned],
            vec![(2, Observation::Unknown)],
            Expect::Operator,
        ),
        Row {
            undo_began: true,
            ..row(
                "an undo began",
                [Done, Done, UndoFailed, Planned, Planned],
                vec![],
                Expect::Go(Rollback),
            )
        },
        Row {
            state: TxnState::RollingBack,
            ..row(
                "rolling back",
                [Done, Done, Done, Done, Planned],
                vec![(3, Observation::Done)],
                Expect::Go(Rollback),
            )
        },
        Row {
            interrupted: 2,
            ..row(
                "two interrupted recoveries",
                [Done, Done, Done, Started, Planned],
                vec![(3, Observation::Done)],
                Expect::Go(Rollback),
            )
        },
        Row {
            chosen: Some(Forward),
            ..row(
                "operator: forward",
                [Done, Planned, Planned, Planned, Planned],
                vec![],
                Expect::Go(Forward),
            )
        },
        Row {
            chosen: Some(Rollback),
            ..row(
                "operator: back",
                [Done, Done, Done, Done, Planned],
                vec![(3, Observation::Done)],
                Expect::Go(Rollback),
            )
        },
        Row {
            kind: TransactionKind::Prune,
            ..row(
                "a prune finishes",
                [Started, Planned, Planned, Planned, Planned],
                vec![],
                Expect::Go(Forward),
            )
        },
        Row {
            state: TxnState::Paused,
            undisturbed: Some(true),
            ..row(
                "paused, undisturbed",
                [Done, Done, Done, Done, Done],
                vec![],
                Expect::Wait,
            )
        },
        Row {
            state: TxnState::Paused,
            undisturbed: Some(false),
            ..row(
                "paused, disturbed",
                [Done, Done, Done, Done, Done],
                vec![],
                Expect::Go(Rollback),
            )
        },
        Row {
            state: TxnState::Paused,
            ..row(
                "paused, nobody looked (status)",
                [Done, Done, Done, Done, Done],
                vec![],
                Expect::LookFirst,
            )
        },
        Row {
            state: TxnState::Paused,
            chosen: Some(Forward),
            undisturbed: Some(true),
            ..row(
                "paused, resume",
                [Done, Done, Done, Done, Done],
                vec![],
                Expect::Go(Forward),
            )
        },
    ];
    for row in rows {
        let plan = plan(row.kind);
        let steps = records(&plan, row.steps, row.undo_began);
        let observed: BTreeMap<u32, Observation> = row.observed.into_iter().collect();
        let decision = decide(&Situation {
            plan: &plan,
            state: row.state,
            interrupted_recoveries: row.interrupted,
            steps: &steps,
            observed: &observed,
            chosen: row.chosen,
            undisturbed: row.undisturbed,
        });
        let got = match decision {
            Decision::Go { direction, .. } => Expect::Go(direction),
            Decision::Wait { .. } => Expect::Wait,
            Decision::LookFirst { .. } => Expect::LookFirst,
            Decision::Operator { .. } => Expect::Operator,
        };
        assert_eq!(got, row.expect, "{}", row.why);
    }
}

// Observations resolve uncertain steps for each direction.
#[test]
fn resolution_table() {
    use Observation::{Done as Seen, NotDone as Gone, Unknown};
    let table = [
        (Started, Seen, Forward, Done),
        (Started, Gone, Forward, Planned),
        (Started, Unknown, Forward, Planned),
        (Started, Unknown, Rollback, Done),
        (StepState::Undoing, Gone, Rollback, StepState::Undone),
        (UndoFailed, Seen, Rollback, Done),
        (Done, Gone, Forward, Planned),
        (Done, Gone, Rollback, StepState::Undone),
        (Done, Seen, Forward, Done),
    ];
    for (before, seen, direction, after) in table {
        assert_eq!(
            resolve(before, seen, direction),
            after,
            "{before:?} {seen:?} {direction:?}"
        );
    }
}
