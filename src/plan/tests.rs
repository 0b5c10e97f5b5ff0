//! Plan tests: plain tables of inputs and expected steps. The configuration
//! is resolved against an in-memory file system, so nothing touches disk.

use super::*;
use crate::config::{parse, Batches, Config, Files};
use std::collections::BTreeMap;
use std::path::Path;

/// An in-memory file system: fstab texts by path; every path is its own
/// resolution and the store exists.
struct Memory(BTreeMap<PathBuf, String>);

impl Files for Memory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    }
    fn directory(&self, _: &Path) -> std::io::Result<bool> {
        Ok(true)
    }
    fn resolve(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// Jails `(name, depends)`, each with the Handbook's two fstab lines and a
/// tcp health check.
fn config(jails: &[(&str, &[&str])]) -> Config {
    let mut text = String::from("store = \"/home/j\"\n");
    let mut files = BTreeMap::new();
    for (name, depends) in jails {
        let fstab = format!("/etc/fstab.{name}");
        files.insert(
            PathBuf::from(&fstab),
            format!("/home/j/mroot /home/j/{name} nullfs ro 0 0\n/home/js/{name} /home/j/{name}/s nullfs rw 0 0\n"),
        );
        text.push_str(&format!(
            "[[jail]]\nname = \"{name}\"\nfstab = \"{fstab}\"\ndepends = {depends:?}\n[[jail.health]]\ntcp = \"127.0.0.1:1\"\n"
        ));
    }
    parse(&text, Path::new("t.toml"))
        .unwrap()
        .resolve(&Memory(files))
        .unwrap()
}

fn request(rolling: Option<&str>, pause_after: Option<u32>) -> Request {
    Request {
        kind: TransactionKind::Upgrade,
        target: "mroot.new".into(),
        archive_as: "mroot.old".into(),
        from_label: "mroot.old".into(),
        to_label: "mroot.new".into(),
        rolling: rolling.map(|sizes| (Batches::parse(sizes).unwrap(), pause_after)),
    }
}

fn observed(config: &Config) -> Observed {
    Observed {
        live_id: TemplateId::Inode(1),
        target_id: TemplateId::Inode(2),
        mounted: config
            .jails
            .iter()
            .flat_map(|j| j.mounts.iter().map(|m| m.target.clone()))
            .collect(),
        ..Default::default()
    }
}

fn lines(plan: &Plan, phase: Phase) -> Vec<(u32, Option<u32>, String)> {
    plan.steps
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| (s.wave, s.batch, s.action.describe()))
        .collect()
}

fn table(rows: &[(u32, Option<u32>, &str)]) -> Vec<(u32, Option<u32>, String)> {
    rows.iter()
        .map(|(w, b, s)| (*w, *b, s.to_string()))
        .collect()
}

// The forward steps follow the Handbook's order, dependencies respected.
#[test]
fn all_at_once_order() {
    let config = config(&[("web", &["db"]), ("db", &[])]);
    let plan = build(&config, &request(None, None), &observed(&config));
    let expected = table(&[
        (0, None, "stop jail web"),
        (1, None, "stop jail db"),
        (2, None, "unmount /home/j/web/s"),
        (2, None, "unmount /home/j/web"),
        (2, None, "unmount /home/j/db/s"),
        (2, None, "unmount /home/j/db"),
        (3, None, "verify nothing mounts mroot"),
        (4, None, "rename mroot -> mroot.old"),
        (5, None, "rename mroot.new -> mroot"),
        (
            6,
            None,
            "mount /home/j/mroot on /home/j/web (nullfs, read-only)",
        ),
        (6, None, "mount /home/js/web on /home/j/web/s (nullfs)"),
        (
            6,
            None,
            "mount /home/j/mroot on /home/j/db (nullfs, read-only)",
        ),
        (6, None, "mount /home/js/db on /home/j/db/s (nullfs)"),
        (7, None, "start jail db"),
        (8, None, "start jail web"),
        (9, None, "health-check jail web"),
        (9, None, "health-check jail db"),
    ]);
    assert_eq!(lines(&plan, Phase::Forward), expected);
    assert_eq!(
        lines(&plan, Phase::AfterRollback),
        table(&[
            (10, None, "health-check jail web"),
            (10, None, "health-check jail db")
        ])
    );
    assert_eq!(plan.swap_seq(), 9);
    assert_eq!(plan.strategy, Strategy::AllAtOnce);
    assert!(plan.notes.is_empty());
}

// Stopped jails are remounted but neither stopped nor started, and the
// plan says so; mounts that are not mounted are not unmounted.
#[test]
fn stopped_jails_and_missing_mounts() {
    let config = config(&[("web", &["db"]), ("db", &[])]);
    let mut observed = Observed::default();
    observed.stopped_jails.insert("web".into());
    let plan = build(&config, &request(None, None), &observed);
    assert!(!plan.steps.iter().any(|s| s.action.jail() == Some("web")
        && matches!(
            s.action,
            Action::Stop { .. } | Action::Start { .. } | Action::Health { .. }
        )));
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Unmount { .. })));
    let mounts = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Mount { .. }))
        .count();
    assert_eq!(mounts, 4);
    assert_eq!(plan.notes.len(), 1);
    assert!(
        plan.notes[0].contains("jail web is not running"),
        "{:?}",
        plan.notes
    );
}

// A rolling upgrade swaps the names first, then restarts the canary and
// the following batches in dependency order; after a rollback every jail
// may restart on the old template.
#[test]
fn rolling_order() {
    let config = config(&[("web", &["db"]), ("db", &[]), ("mail", &[])]);
    let plan = build(&config, &request(Some("1,2"), Some(1)), &observed(&config));
    let expected = table(&[
        (0, None, "rename mroot -> mroot.old"),
        (1, None, "rename mroot.new -> mroot"),
        // The canary: db comes first, as web depends on it.
        (2, Some(1), "stop jail db"),
        (3, Some(1), "unmount /home/j/db/s"),
        (3, Some(1), "unmount /home/j/db"),
        (4, Some(1), "verify nothing in jail db mounts mroot.old"),
        (
            5,
            Some(1),
            "mount /home/j/mroot on /home/j/db (nullfs, read-only)",
        ),
        (5, Some(1), "mount /home/js/db on /home/j/db/s (nullfs)"),
        (6, Some(1), "start jail db"),
        (7, Some(1), "health-check jail db"),
        // Then mail (level 0) and web (level 1) together: web stops first.
        (8, Some(2), "stop jail web"),
        (9, Some(2), "stop jail mail"),
        (10, Some(2), "unmount /home/j/mail/s"),
        (10, Some(2), "unmount /home/j/mail"),
        (10, Some(2), "unmount /home/j/web/s"),
        (10, Some(2), "unmount /home/j/web"),
        (11, Some(2), "verify nothing in jail mail mounts mroot.old"),
        (11, Some(2), "verify nothing in jail web mounts mroot.old"),
        (
            12,
            Some(2),
            "mount /home/j/mroot on /home/j/mail (nullfs, read-only)",
        ),
        (
            12,
            Some(2),
            "mount /home/js/mail on /home/j/mail/s (nullfs)",
        ),
        (
            12,
            Some(2),
            "mount /home/j/mroot on /home/j/web (nullfs, read-only)",
        ),
        (12, Some(2), "mount /home/js/web on /home/j/web/s (nullfs)"),
        (13, Some(2), "start jail mail"),
        (14, Some(2), "start jail web"),
        (15, Some(2), "health-check jail mail"),
        (15, Some(2), "health-check jail web"),
    ]);
    assert_eq!(lines(&plan, Phase::Forward), expected);
    assert_eq!(plan.swap_seq(), 2);
    assert_eq!(
        plan.strategy,
        Strategy::Rolling {
            batches: 2,
            pause_after: Some(1)
        }
    );
    let after: Vec<String> = lines(&plan, Phase::AfterRollback)
        .into_iter()
        .map(|(_, _, line)| line)
        .collect();
    assert_eq!(after.first().map(String::as_str), Some("stop jail web"));
    assert!(after.contains(&"verify nothing in jail db mounts mroot.new".to_string()));
    assert_eq!(
        after.last().map(String::as_str),
        Some("health-check jail web")
    );
}

// A stage copies, runs, checks, fingerprints and publishes, in that order,
// and the publishing rename is its point of no return.
#[test]
fn stage_order() {
    let config = config(&[("db", &[])]);
    let plan = build_stage(
        &config,
        StoreKind::Directory,
        "mroot",
        &TemplateId::Inode(1),
        "mroot.next",
        ".jailswap-stage.mroot.next",
        Some("pkg -r /home/j/.jailswap-stage.mroot.next upgrade -y".into()),
        60_000,
    );
    let described: Vec<String> = plan.steps.iter().map(|s| s.action.describe()).collect();
    assert_eq!(
        described,
        [
            "copy mroot -> .jailswap-stage.mroot.next",
            "run `pkg -r /home/j/.jailswap-stage.mroot.next upgrade -y`",
            "check .jailswap-stage.mroot.next has the top-level links of mroot",
            "fingerprint .jailswap-stage.mroot.next",
            "rename .jailswap-stage.mroot.next -> mroot.next",
        ]
    );
    assert_eq!(plan.swap_seq(), 5);
    assert_eq!(plan.copy_seq(), Some(1));
}

// Every action that changes the host is undone by its inverse.
#[test]
fn undo_is_an_involution() {
    let mount = MountSpec {
        source: "/a".into(),
        target: "/b".into(),
        fstype: "nullfs".into(),
        options: vec!["ro".into()],
    };
    for action in [
        Action::Stop { jail: "a".into() },
        Action::Mount {
            jail: "a".into(),
            mount,
            template: Some(TemplateId::Inode(2)),
        },
        Action::Rename {
            from: "x".into(),
            to: "y".into(),
            id: TemplateId::Inode(3),
        },
        Action::Carry {
            path: "usr/ports".into(),
            from: "x".into(),
            to: "y".into(),
            id: TemplateId::Inode(4),
        },
        Action::Publish {
            from: ".s".into(),
            to: "n".into(),
        },
    ] {
        let undo = action.undo().unwrap();
        assert_ne!(undo, action);
        assert_eq!(undo.undo().unwrap(), action);
    }
    assert_eq!(
        Action::Copy {
            from: "a".into(),
            to: ".s".into(),
            id: TemplateId::Inode(1),
            exclude: Vec::new(),
        }
        .undo(),
        Some(Action::Discard {
            template: ".s".into()
        })
    );
    assert_eq!(Action::Health { jail: "a".into() }.undo(), None);
}

// A plan written by an earlier jailswap, with inodes, still reads.
#[test]
fn plans_with_inodes_still_read() {
    let step = r#"{"action":"rename","from":"mroot","to":"mroot.old","inode":42}"#;
    let action: Action = serde_json::from_str(step).unwrap();
    assert_eq!(
        action,
        Action::Rename {
            from: "mroot".into(),
            to: "mroot.old".into(),
            id: TemplateId::Inode(42)
        }
    );
    let config = config(&[("db", &[])]);
    let plan = build(&config, &request(None, None), &observed(&config));
    let mut json: serde_json::Value = serde_json::to_value(&plan).unwrap();
    let object = json.as_object_mut().unwrap();
    object.remove("strategy");
    object.remove("store_kind");
    let live = object.remove("live_id").unwrap();
    object.insert("live_inode".into(), live);
    let target = object.remove("target_id").unwrap();
    object.insert("target_inode".into(), target);
    let old: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(old, plan);
}
