//! Templates as btrfs subvolumes, on a real btrfs file system made on a
//! loop device in each test's private mount namespace: stage takes a
//! snapshot, upgrade (all at once and rolling) and rollback rename
//! subvolumes under real jails, prune deletes the subvolume, preflight
//! accepts subvolumes of the store's file system and refuses the rest.
//!
//! Subvolumes are created and inspected with btrfs(8), independently of
//! jailswap's own ioctls, so a UUID jailswap reports is checked against
//! the one btrfs-progs reads. Every loop device attached is detached again
//! by a guard, also when a test fails. Where the kernel has no btrfs or no
//! loop devices, the tests say so on stderr and pass without running.
//!
//! The file is longer than 600 lines because the loop-device harness and
//! the invariant of a btrfs store live here with the only tests that use
//! them.

mod common;

use common::{code, describe, Env, PROGRAM};
use jailswap::sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

// ------------------------------------------------------------ the file system

/// Why btrfs on a loop device cannot be made here, if it cannot.
fn unavailable() -> Option<String> {
    let has_btrfs = || {
        std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|text| text.lines().any(|line| line.trim_end().ends_with("btrfs")))
    };
    if !has_btrfs() {
        let _ = Command::new("modprobe").arg("btrfs").output();
    }
    if !has_btrfs() {
        return Some(
            "the kernel has no btrfs (not in /proc/filesystems, modprobe btrfs failed)".into(),
        );
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("the kernel offers no loop devices (/dev/loop-control is missing)".into());
    }
    None
}

/// Runs a command to the end; panics with its output when it fails.
fn run(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {program} (install btrfs-progs and util-linux; .ci/run does): {error}"
            )
        });
    assert!(
        output.status.success(),
        "{program} {arguments:?}: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A btrfs file system in an image file, attached to a loop device and
/// mounted; unmounted and detached again when dropped.
struct LoopFs {
    image: PathBuf,
    device: Option<String>,
    mount_point: PathBuf,
    mounted: bool,
}

impl LoopFs {
    fn create(image: &Path, mount_point: &Path) -> LoopFs {
        let file = std::fs::File::create(image).expect("image file");
        // Sparse: only what btrfs writes takes room.
        file.set_len(256 << 20).expect("image size");
        drop(file);
        run("mkfs.btrfs", &["-q", &image.to_string_lossy()]);
        let mut fs = LoopFs {
            image: image.to_path_buf(),
            device: None,
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        let device = run("losetup", &["--find", "--show", &image.to_string_lossy()]);
        fs.device = Some(device.trim().to_string());
        std::fs::create_dir_all(mount_point).expect("mount point");
        nix::mount::mount(
            fs.device.as_deref(),
            mount_point,
            Some("btrfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount the btrfs file system");
        fs.mounted = true;
        fs
    }

    /// Unmounts (whatever is still mounted below first) and detaches.
    fn release(&mut self) {
        if self.mounted {
            let table = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
            let mut below: Vec<PathBuf> = jailswap::host::linux::parse_mountinfo(&table)
                .into_iter()
                .map(|m| m.mount_point)
                .filter(|point| point.starts_with(&self.mount_point))
                .collect();
            below.reverse();
            for point in below {
                if nix::mount::umount2(&point, nix::mount::MntFlags::empty()).is_err() {
                    // Cleanup of the test's own file system: a lazy detach
                    // still frees the loop device once nothing holds it.
                    let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
                }
            }
            self.mounted = false;
        }
        if let Some(device) = self.device.take() {
            let _ = Command::new("losetup").arg("-d").arg(&device).output();
        }
    }

    /// The loop devices still attached to the image.
    fn attached(image: &Path) -> String {
        run("losetup", &["-j", &image.to_string_lossy()])
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.release();
    }
}

/// A Handbook sandbox whose store is the root of a btrfs file system and
/// whose templates are subvolumes.
struct BtrfsEnv {
    env: Env,
    fs: LoopFs,
}

impl std::ops::Deref for BtrfsEnv {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Drop for BtrfsEnv {
    fn drop(&mut self) {
        // Jails down and unmounted before the file system goes.
        self.env.sandbox.tear_down();
        self.fs.release();
    }
}

impl BtrfsEnv {
    /// `None` (with the reason on stderr) where btrfs cannot be made.
    fn new(test: &str) -> Option<BtrfsEnv> {
        if let Some(why) = unavailable() {
            eprintln!("{test}: SKIPPED, not run: {why}");
            return None;
        }
        jailswap::sandbox::enter_private_mount_namespace().expect("private mount namespace");
        let dir = tempfile::Builder::new()
            .prefix("jailswap-btrfs.")
            .tempdir()
            .expect("temporary directory");
        let store = dir.path().join("j");
        let fs = LoopFs::create(&dir.path().join("btrfs.img"), &store);
        let options = SandboxOptions::default();
        // The sandbox fills the templates it finds; they are subvolumes.
        for name in std::iter::once("mroot").chain(options.staged.iter().map(|(n, _)| n.as_str())) {
            run(
                "btrfs",
                &["subvolume", "create", &store.join(name).to_string_lossy()],
            );
        }
        let sandbox = Sandbox::create(dir.path(), Path::new(PROGRAM), &options).expect("sandbox");
        Some(BtrfsEnv {
            env: Env { sandbox, dir },
            fs,
        })
    }
}

/// One subvolume as btrfs(8) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    id: u64,
    uuid: String,
    parent_uuid: Option<String>,
}

/// The subvolumes directly in the store (the file system's root), by name,
/// as `btrfs subvolume list` reads them.
fn subvolumes(store: &Path) -> BTreeMap<String, Listed> {
    let text = run(
        "btrfs",
        &["subvolume", "list", "-q", "-u", &store.to_string_lossy()],
    );
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|word| *word == key)
                .and_then(|at| words.get(at + 1))
                .map(|word| word.to_string())
        };
        let (Some(id), Some(uuid), Some(path)) = (after("ID"), after("uuid"), after("path")) else {
            continue;
        };
        if path.contains('/') {
            continue;
        }
        found.insert(
            path,
            Listed {
                id: id.parse().expect("subvolume id"),
                uuid,
                parent_uuid: after("parent_uuid").filter(|p| p != "-"),
            },
        );
    }
    found
}

fn uuids(store: &Path) -> BTreeMap<String, String> {
    subvolumes(store)
        .into_iter()
        .map(|(name, listed)| (name, listed.uuid))
        .collect()
}

// ------------------------------------------------------------- the invariant

/// What the store must hold after a transaction.
struct Expected {
    /// Template name -> subvolume UUID, exactly.
    store: BTreeMap<String, String>,
    live_version: String,
    data: BTreeMap<String, String>,
    /// The outcome the newest transaction in `history` must have.
    last_outcome: Option<&'static str>,
}

/// The whole invariant on a btrfs store: the store holds exactly the
/// expected subvolumes and nothing else (no staging copy), each jail's
/// mounts are exactly its fstab with the template read-only, every jail
/// runs on the live subvolume and answers its version, per-jail data is
/// unchanged, nothing is pending and the journal's last word matches.
fn assert_invariant(env: &BtrfsEnv, expected: &Expected, context: &str) {
    let store = env.store();
    assert_eq!(
        uuids(store),
        expected.store,
        "{context}: subvolumes of the store"
    );
    let leftovers: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{context}: left in the store: {leftovers:?}"
    );
    let live_device = std::fs::metadata(store.join("mroot")).unwrap().dev();
    let mounts = env.mounts();
    for (name, port) in &env.sandbox.jails {
        let root = store.join(name);
        let at_root: Vec<_> = mounts.iter().filter(|(p, _, _)| *p == root).collect();
        let at_data: Vec<_> = mounts
            .iter()
            .filter(|(p, _, _)| *p == root.join("s"))
            .collect();
        assert_eq!(
            at_root.len(),
            1,
            "{context}: jail {name}: mounts at its root {at_root:?}"
        );
        assert_eq!(
            at_data.len(),
            1,
            "{context}: jail {name}: mounts at its data {at_data:?}"
        );
        assert!(
            at_root[0].2,
            "{context}: jail {name}: template is not read-only"
        );
        assert!(!at_data[0].2, "{context}: jail {name}: data is read-only");
        // Each subvolume has a device number of its own: the jail's root
        // shows the live subvolume when the devices agree.
        assert_eq!(
            std::fs::metadata(&root).unwrap().dev(),
            live_device,
            "{context}: jail {name} does not see the live subvolume"
        );
        assert!(env.running(name), "{context}: jail {name} is not running");
        assert_eq!(
            env.sandbox.ask(*port).as_deref(),
            Ok(expected.live_version.as_str()),
            "{context}: jail {name} answers"
        );
    }
    // The jails' mounts and the btrfs file system itself.
    assert_eq!(
        mounts.len(),
        2 * env.sandbox.jails.len() + 1,
        "{context}: unexpected mounts: {mounts:?}"
    );
    assert_eq!(
        env.data(),
        expected.data,
        "{context}: per-jail data changed"
    );
    let status = env.json(&["status"]);
    assert_eq!(status["pending"], Value::Null, "{context}: {status}");
    assert_eq!(status["store_kind"], "btrfs", "{context}: {status}");
    assert_eq!(
        status["live_id"],
        format!("subvolume:{}", expected.store["mroot"]),
        "{context}: jailswap's identity of the live template is btrfs(8)'s UUID"
    );
    if let Some(outcome) = expected.last_outcome {
        let history = env.json(&["history", "--limit", "1"]);
        assert_eq!(history[0]["outcome"], outcome, "{context}: {history}");
    }
}

fn ok(env: &Env, arguments: &[&str]) -> std::process::Output {
    let output = env.run(arguments);
    assert_eq!(code(&output), 0, "{arguments:?}: {}", describe(&output));
    output
}

// ------------------------------------------------------------------- tests

// stage, upgrade, rollback, a rolling upgrade paused mid-way and undone, a
// rolling upgrade to the end and prune, on real subvolumes under real
// jails, with the whole invariant after each.
#[test]
fn stage_upgrade_rollback_rolling_prune_on_subvolumes() {
    let Some(env) = BtrfsEnv::new("stage_upgrade_rollback_rolling_prune_on_subvolumes") else {
        return;
    };
    let store = env.store().to_path_buf();
    let data = env.data();
    let first = uuids(&store);
    assert_eq!(first.len(), 2, "{first:?}");
    let (live, staged) = (first["mroot"].clone(), first["mroot.2"].clone());
    assert_invariant(
        &env,
        &Expected {
            store: first.clone(),
            live_version: "1.0".into(),
            data: data.clone(),
            last_outcome: None,
        },
        "before anything",
    );

    // stage: a writable snapshot of the live subvolume, changed by COMMAND.
    let output = ok(
        &env,
        &[
            "stage",
            "--as",
            "mroot.3",
            "--run",
            "echo 3.0 > ${dir}/VERSION",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("copied mroot to .jailswap-stage.mroot.3 in"),
        "{stderr}"
    );
    let listed = subvolumes(&store);
    let third = listed["mroot.3"].clone();
    assert_eq!(
        third.parent_uuid.as_deref(),
        Some(live.as_str()),
        "the staged template is a snapshot of the live one: {listed:?}"
    );
    assert_eq!(
        std::fs::read_to_string(store.join("mroot.3/VERSION")).unwrap(),
        "3.0\n"
    );
    assert_eq!(
        std::fs::read_to_string(store.join("mroot/VERSION")).unwrap(),
        "1.0\n"
    );
    let history = env.json(&["history", "--limit", "1"]);
    let shown = env.json(&["show", &history[0]["id"].to_string()]);
    let copy = shown["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["action"] == "copy")
        .expect("a copy step");
    assert_eq!(
        copy["result"]["id"],
        format!("subvolume:{}", third.uuid),
        "{shown}"
    );
    let mut expected = Expected {
        store: [
            ("mroot".to_string(), live.clone()),
            ("mroot.2".to_string(), staged.clone()),
            ("mroot.3".to_string(), third.uuid.clone()),
        ]
        .into(),
        live_version: "1.0".into(),
        data: data.clone(),
        last_outcome: Some("staged"),
    };
    assert_invariant(&env, &expected, "after stage");
    let roles = env.json(&["status"]);
    let role = roles["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mroot.3")
        .map(|t| t["role"].clone());
    assert_eq!(role, Some(Value::from("staged")), "{roles}");

    // upgrade onto the snapshot.
    ok(&env, &["upgrade", "--to", "mroot.3"]);
    let archive = env.last_archive_name().unwrap();
    expected.store = [
        ("mroot".to_string(), third.uuid.clone()),
        ("mroot.2".to_string(), staged.clone()),
        (archive.clone(), live.clone()),
    ]
    .into();
    expected.live_version = "3.0".into();
    expected.last_outcome = Some("committed");
    assert_invariant(&env, &expected, "after upgrade");

    // rollback.
    ok(&env, &["rollback"]);
    expected.store = [
        ("mroot".to_string(), live.clone()),
        ("mroot.2".to_string(), staged.clone()),
        ("mroot.3".to_string(), third.uuid.clone()),
    ]
    .into();
    expected.live_version = "1.0".into();
    assert_invariant(&env, &expected, "after rollback");

    // A rolling upgrade renames subvolumes under running bind mounts: paused
    // after its first batch, the names are swapped while the jails not yet
    // restarted still run on the old subvolume, which they keep mounted.
    let paused = env.run(&[
        "--json",
        "upgrade",
        "--to",
        "mroot.2",
        "--rolling",
        "--batch",
        "1",
        "--pause-after",
        "1",
    ]);
    assert_eq!(code(&paused), 0, "{}", describe(&paused));
    assert_eq!(
        serde_json::from_slice::<Value>(&paused.stdout).unwrap()["outcome"],
        "paused"
    );
    let archive = env.last_archive_name().unwrap();
    assert_eq!(uuids(&store)["mroot"], staged);
    assert_eq!(uuids(&store)[&archive], live);
    let old_device = std::fs::metadata(store.join(&archive)).unwrap().dev();
    let new_device = std::fs::metadata(store.join("mroot")).unwrap().dev();
    let answers: Vec<(String, String, bool)> = env
        .sandbox
        .jails
        .iter()
        .map(|(name, port)| {
            let device = std::fs::metadata(store.join(name)).unwrap().dev();
            (
                name.clone(),
                env.sandbox.ask(*port).unwrap(),
                device == old_device,
            )
        })
        .collect();
    assert_eq!(
        answers[0],
        ("jail0".into(), "2.0".into(), false),
        "{answers:?}"
    );
    for (name, answer, on_old) in &answers[1..] {
        assert!(
            answer == "1.0" && *on_old,
            "jail {name} must still run on the renamed old subvolume: {answers:?}"
        );
    }
    assert_ne!(old_device, new_device);
    // A bare recover finds every jail on the subvolume the journal says
    // (the store names them by UUID through the jails' bind mounts) and
    // leaves the pause alone.
    let waiting = env.run(&["recover"]);
    assert_eq!(code(&waiting), 75, "{}", describe(&waiting));
    assert_eq!(uuids(&store)["mroot"], staged);
    // Undone from the pause: the names swap back under the jails again.
    let undone = env.run(&["recover", "--rollback"]);
    assert_eq!(code(&undone), 1, "{}", describe(&undone));
    expected.last_outcome = Some("rolled_back");
    assert_invariant(
        &env,
        &expected,
        "after the paused rolling upgrade was undone",
    );

    // And a rolling upgrade through every batch.
    ok(
        &env,
        &["upgrade", "--to", "mroot.2", "--rolling", "--batch", "1"],
    );
    let archive = env.last_archive_name().unwrap();
    expected.last_outcome = Some("committed");
    expected.store = [
        ("mroot".to_string(), staged.clone()),
        ("mroot.3".to_string(), third.uuid.clone()),
        (archive.clone(), live.clone()),
    ]
    .into();
    expected.live_version = "2.0".into();
    assert_invariant(&env, &expected, "after the rolling upgrade");

    // prune: mroot.3 (archived by the rollback) goes, the rollback target stays.
    let pruned = ok(&env, &["--json", "prune", "--keep", "0"]);
    let pruned_text = String::from_utf8_lossy(&pruned.stdout);
    assert!(pruned_text.contains("mroot.3"), "{pruned_text}");
    expected.store.remove("mroot.3");
    expected.last_outcome = Some("committed");
    assert_invariant(&env, &expected, "after prune");
    assert!(!store.join("mroot.3").exists());
    // Deleted, and once the cleaner has run, gone from the file system.
    run("btrfs", &["subvolume", "sync", &store.to_string_lossy()]);
    let deleted = run(
        "btrfs",
        &["subvolume", "list", "-d", &store.to_string_lossy()],
    );
    assert!(
        !deleted.contains(&format!("ID {} ", third.id)),
        "subvolume {} is not gone: {deleted}",
        third.id
    );

    // The guard detaches the loop device.
    let image = env.fs.image.clone();
    drop(env);
    assert_eq!(
        LoopFs::attached(&image),
        "",
        "the loop device is still attached"
    );
}

// Preflight accepts subvolumes of the store's btrfs file system and refuses
// a plain directory, another btrfs file system, a subvolume mounted by
// itself and another kind of file system, each with the reason; status
// lists only the store's subvolumes.
#[test]
fn only_subvolumes_of_the_store_are_templates() {
    let Some(env) = BtrfsEnv::new("only_subvolumes_of_the_store_are_templates") else {
        return;
    };
    let store = env.store().to_path_buf();
    // A plain directory with everything a template has.
    jailswap::sandbox::make_template(&store.join("plain"), Some("9.0")).unwrap();
    // A second btrfs file system, mounted in the store.
    let other = LoopFs::create(&env.dir.path().join("other.img"), &store.join("other"));
    jailswap::sandbox::make_template(&store.join("other"), Some("9.0")).unwrap();
    // A subvolume of the store's file system, mounted by itself.
    std::fs::create_dir(store.join("bound")).unwrap();
    nix::mount::mount(
        Some(&store.join("mroot.2")),
        &store.join("bound"),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    // Another kind of file system.
    std::fs::create_dir(store.join("memory")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &store.join("memory"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    jailswap::sandbox::make_template(&store.join("memory"), Some("9.0")).unwrap();
    let journal_before = env.json(&["history"]);

    for (name, why) in [
        ("plain", "plain directory, not a btrfs subvolume"),
        ("other", "another file system than the store (btrfs"),
        ("bound", "a mount of its own"),
        ("memory", "another file system than the store (tmpfs"),
    ] {
        for arguments in [
            vec!["upgrade", "--to", name],
            vec!["stage", "--as", "copy", "--from", name],
        ] {
            let output = env.run(&arguments);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(code(&output), 65, "{arguments:?}: {}", describe(&output));
            assert!(stderr.contains(why), "{arguments:?}: {stderr}");
            // The help fits the reason: a plain directory on the store's
            // own file system is not told to cross file systems.
            assert!(
                name != "plain" || !stderr.contains("file system"),
                "{arguments:?}: {stderr}"
            );
        }
    }
    // The store's own subvolume is accepted.
    ok(&env, &["upgrade", "--to", "mroot.2", "--dry-run"]);
    let status = env.json(&["status"]);
    let names: Vec<&str> = status["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["mroot", "mroot.2"], "{status}");
    assert_eq!(
        env.json(&["history"]),
        journal_before,
        "nothing was recorded"
    );
    assert!(!store.join("copy").exists() && !store.join(".jailswap-stage.copy").exists());
    drop(other);
}

// The store refuses to delete a subvolume that a jail still mounts (the
// kernel itself would delete it from under the running jail).
#[test]
fn a_mounted_subvolume_is_not_deleted() {
    let Some(env) = BtrfsEnv::new("a_mounted_subvolume_is_not_deleted") else {
        return;
    };
    let store = env.store().to_path_buf();
    let host = jailswap::host::system(
        jailswap::config::Backend::Linux,
        &store,
        jailswap::config::StoreKind::Btrfs,
    );
    use jailswap::host::Host;
    let live = host.examine("mroot").unwrap().found().unwrap().id.clone();
    let error = host.delete_template("mroot", Some(&live)).unwrap_err();
    assert!(error.to_string().contains("still mounted at"), "{error}");
    assert!(uuids(&store).contains_key("mroot"));
    // The same subvolume, once nothing mounts it, is deleted by its id.
    let staged = host.examine("mroot.2").unwrap().found().unwrap().id.clone();
    host.delete_template("mroot.2", Some(&live)).unwrap_err();
    host.delete_template("mroot.2", Some(&staged)).unwrap();
    assert!(!uuids(&store).contains_key("mroot.2"));
    assert!(!store.join("mroot.2").exists());
}

// `store_kind = "btrfs"` on a store that is not btrfs refuses with the
// reason and changes nothing; `auto` finds a directory store there.
#[test]
fn a_btrfs_store_kind_on_another_file_system_is_refused() {
    let env = Env::standard();
    assert_eq!(env.json(&["status"])["store_kind"], "directory");
    let config = std::fs::read_to_string(&env.sandbox.config).unwrap();
    std::fs::write(
        &env.sandbox.config,
        format!("store_kind = \"btrfs\"\n{config}"),
    )
    .unwrap();
    let before = env.before("mroot.2");
    for arguments in [
        vec!["upgrade", "--to", "mroot.2"],
        vec!["stage", "--as", "mroot.3"],
    ] {
        let output = env.run(&arguments);
        assert_eq!(code(&output), 65, "{arguments:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not on a btrfs file system"), "{stderr}");
    }
    assert_eq!(env.store_entries(), before.store);
}

// SIGKILL at every journal commit of a stage on btrfs, then recover: either
// no NAME and no snapshot left, or a complete NAME.
#[test]
fn stage_killed_at_every_commit_on_btrfs() {
    let points = [
        "begin:1",
        "state:1",
        "intent:1",
        "completion:1",
        "intent:2",
        "completion:2",
        "intent:3",
        "completion:3",
        "intent:4",
        "completion:4",
        "intent:5",
        "completion:5",
        "finish:1",
    ];
    let mut outcomes = BTreeMap::new();
    for point in points {
        for when in ["before", "after"] {
            if point == "begin:1" && when == "before" {
                continue;
            }
            let Some(env) = BtrfsEnv::new("stage_killed_at_every_commit_on_btrfs") else {
                return;
            };
            let store = env.store().to_path_buf();
            let first = uuids(&store);
            let kill_at = format!("{point}:{when}");
            let child = env.spawn(
                &[
                    "stage",
                    "--as",
                    "mroot.3",
                    "--run",
                    "echo 3.0 > ${dir}/VERSION",
                ],
                &[("JAILSWAP_KILL_AT", &kill_at)],
            );
            let output = child.wait_with_output().unwrap();
            assert_eq!(
                output.status.code(),
                None,
                "{kill_at}: not killed: {}",
                describe(&output)
            );
            let recovered = env.run(&["--json", "recover"]);
            let result: Value = serde_json::from_slice(&recovered.stdout).unwrap_or(Value::Null);
            let after = subvolumes(&store);
            let mut expected = Expected {
                store: first.clone(),
                live_version: "1.0".into(),
                data: env.data(),
                last_outcome: None,
            };
            if let Some(made) = after.get("mroot.3") {
                // Complete: the snapshot of the live template, changed.
                assert_eq!(
                    made.parent_uuid.as_deref(),
                    Some(first["mroot"].as_str()),
                    "{kill_at}"
                );
                assert_eq!(
                    std::fs::read_to_string(store.join("mroot.3/VERSION")).unwrap(),
                    "3.0\n",
                    "{kill_at}"
                );
                expected.store.insert("mroot.3".into(), made.uuid.clone());
                expected.last_outcome = Some("staged");
            } else if result["outcome"] == "rolled_back" {
                expected.last_outcome = Some("rolled_back");
            }
            assert_invariant(
                &env,
                &expected,
                &format!(
                    "killed at {kill_at}, then recovered: {}",
                    describe(&recovered)
                ),
            );
            *outcomes.entry(after.contains_key("mroot.3")).or_insert(0) += 1;
        }
    }
    eprintln!(
        "stage on btrfs killed at {} commit points: {outcomes:?} (true: mroot.3 complete)",
        points.len() * 2 - 1
    );
    assert!(outcomes.len() == 2, "both ends reached: {outcomes:?}");
}

// A carried path moves between subvolumes when it is a subvolume of its
// own; a plain directory cannot (rename(2) answers EXDEV): preflight
// refuses it (65) before anything stops, saying why and what to do.
#[test]
fn carried_paths_must_be_subvolumes() {
    let Some(env) = BtrfsEnv::new("carried_paths_must_be_subvolumes") else {
        return;
    };
    let store = env.store().to_path_buf();
    let config = std::fs::read_to_string(&env.sandbox.config).unwrap();
    std::fs::write(
        &env.sandbox.config,
        format!("carry = [\"usr/ports\"]\n{config}"),
    )
    .unwrap();
    let ports = store.join("mroot/usr/ports");
    std::fs::create_dir(&ports).unwrap();
    std::fs::write(ports.join("Makefile"), "ports\n").unwrap();
    let first = uuids(&store);
    let data = env.data();

    let output = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&output), 65, "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a subvolume"), "{stderr}");
    assert!(stderr.contains("btrfs subvolume create"), "{stderr}");
    let mut expected = Expected {
        store: first.clone(),
        live_version: "1.0".into(),
        data,
        last_outcome: None,
    };
    assert_invariant(&env, &expected, "after a plain carried directory");
    assert!(ports.join("Makefile").exists());

    // The same path as a subvolume of its own is carried into the new one.
    std::fs::remove_dir_all(&ports).unwrap();
    run("btrfs", &["subvolume", "create", &ports.to_string_lossy()]);
    std::fs::write(ports.join("Makefile"), "ports\n").unwrap();
    let carried = run("btrfs", &["subvolume", "show", &ports.to_string_lossy()]);
    ok(&env, &["upgrade", "--to", "mroot.2"]);
    let archive = env.last_archive_name().unwrap();
    expected.store = [
        ("mroot".to_string(), first["mroot.2"].clone()),
        (archive.clone(), first["mroot"].clone()),
    ]
    .into();
    expected.live_version = "2.0".into();
    expected.last_outcome = Some("committed");
    assert_invariant(&env, &expected, "after carrying a subvolume");
    let moved = store.join("mroot/usr/ports");
    assert_eq!(
        std::fs::read_to_string(moved.join("Makefile")).unwrap(),
        "ports\n"
    );
    assert!(!store.join(&archive).join("usr/ports").exists());
    let uuid_line = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("UUID:"))
            .map(str::to_string)
    };
    assert_eq!(
        uuid_line(&run(
            "btrfs",
            &["subvolume", "show", &moved.to_string_lossy()]
        )),
        uuid_line(&carried),
        "the carried subvolume is the same one"
    );
}
