//! The journal protocol as the kernel sees it: an upgrade traced with
//! strace shows, for each template rename, the journal's intent synced
//! first, then the rename, then the store directory fsynced, then the
//! completion synced, before the next rename.

mod common;

use common::{describe, Env};

#[derive(Debug, PartialEq)]
enum Event {
    JournalSync,
    Rename(String, String),
    StoreSync,
}

fn events(trace: &str, store: &str) -> Vec<Event> {
    let mut found = Vec::new();
    for line in trace.lines() {
        // -y shows the paths behind descriptors. Only the main thread is traced:
        // it runs the journal and every one-step wave (the renames).
        let call = line.trim_start();
        if !call.ends_with("= 0") {
            continue;
        }
        if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            if call.contains("journal.sqlite-wal>") || call.contains("journal.sqlite>") {
                found.push(Event::JournalSync);
            } else if call.contains(&format!("<{store}>")) {
                found.push(Event::StoreSync);
            }
        } else if call.starts_with("renameat2(") && call.contains(&format!("<{store}>")) {
            let names: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
            if names.len() == 2 {
                found.push(Event::Rename(names[0].to_string(), names[1].to_string()));
            }
        }
    }
    found
}

#[test]
fn renames_are_written_ahead_and_synced() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        panic!("strace is required (apt-get install strace; .ci/run installs it)");
    }
    let env = Env::standard();
    let trace_file = env.dir.path().join("trace");
    let output = std::process::Command::new("strace")
        .args(["-y", "-qq", "-e", "trace=renameat2,fsync,fdatasync", "-o"])
        .arg(&trace_file)
        .arg(common::PROGRAM)
        .arg("-c")
        .arg(&env.sandbox.config)
        .args(["upgrade", "--to", "mroot.2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let store = std::fs::canonicalize(env.store())
        .unwrap()
        .display()
        .to_string();
    let events = events(&trace, &store);
    let renames: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Rename(..)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        renames.len(),
        2,
        "expected the two template renames: {events:?}"
    );
    assert!(
        matches!(&events[renames[0]], Event::Rename(from, _) if from == "mroot"),
        "{events:?}"
    );
    assert_eq!(
        events[renames[1]],
        Event::Rename("mroot.2".into(), "mroot".into())
    );
    for (index, &at) in renames.iter().enumerate() {
        // Intent: the journal was synced before the rename, after anything
        // that came before it (the previous rename's completion included).
        let previous = if index == 0 { 0 } else { renames[index - 1] };
        let syncs_before = events[previous..at]
            .iter()
            .filter(|e| **e == Event::JournalSync)
            .count();
        assert!(
            syncs_before >= if index == 0 { 1 } else { 2 },
            "rename {index}: journal not synced before it: {events:?}"
        );
        assert_eq!(
            events[at - 1],
            Event::JournalSync,
            "rename {index}: the intent commit is not right before it: {events:?}"
        );
        // Then the store directory, then the completion commit.
        assert_eq!(
            events.get(at + 1),
            Some(&Event::StoreSync),
            "rename {index}: store not fsynced right after: {events:?}"
        );
        assert_eq!(
            events.get(at + 2),
            Some(&Event::JournalSync),
            "rename {index}: completion not committed next: {events:?}"
        );
    }
    // synchronous=FULL: every commit of the transaction reached the disk:
    // the plan, the state, two per wave (8 waves here) and the final state.
    let syncs = events.iter().filter(|e| **e == Event::JournalSync).count();
    assert!(
        syncs > 1 + 1 + 2 * 8,
        "only {syncs} journal syncs: {events:?}"
    );
}
