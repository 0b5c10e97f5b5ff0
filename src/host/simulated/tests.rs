//! The simulated world behaves as the kernel does where jailswap relies on it.

use super::*;

const STORE: &str = "/home/j";

fn jail(name: &str, status: bool) -> JailSpec {
    let path = PathBuf::from(format!("/jails/{name}"));
    let mount = |source: String, target: PathBuf, option: &str| MountSpec {
        source: PathBuf::from(source),
        target,
        fstype: "nullfs".to_string(),
        options: vec![option.to_string()],
    };
    JailSpec {
        name: name.to_string(),
        path: path.clone(),
        fstab: None,
        mounts: vec![
            mount(format!("{STORE}/mroot"), path.clone(), "ro"),
            mount(format!("/data/{name}"), path.join("s"), "rw"),
        ],
        depends: Vec::new(),
        start: String::new(),
        stop: String::new(),
        status: status.then(String::new),
        timeout_ms: 1000,
        health: vec![HealthCheck::Cmd {
            command: "selftest".to_string(),
        }],
        health_timeout_ms: 1,
        health_interval_ms: 1,
    }
}

/// A world with `mroot` (and `usr/ports` in it), `mroot.new`, and one
/// jail mounted and running.
fn world() -> (SimulatedHost, JailSpec, u64, u64) {
    let host = SimulatedHost::new(Path::new(STORE));
    let live = host.add_template("mroot");
    let new = host.add_template("mroot.new");
    host.add_inside("mroot", "usr/ports");
    let web = jail("web", true);
    host.add_jail(&web, "data");
    for mount in &web.mounts {
        host.mount(mount).unwrap();
    }
    host.start_jail(&web).unwrap();
    host.restart();
    (host, web, live, new)
}

fn check(jail: &JailSpec) -> HealthCheck {
    jail.health[0].clone()
}

// Unmounts are refused while a jail runs or a mount lies below, as EBUSY.
#[test]
fn running_jails_and_nested_mounts_are_busy() {
    let (host, web, _, _) = world();
    let error = host.unmount(&web.mounts[1].target).unwrap_err();
    assert!(error.to_string().contains("held by jail web"), "{error}");
    host.stop_jail(&web).unwrap();
    let error = host.unmount(&web.mounts[0].target).unwrap_err();
    assert!(error.to_string().contains("a mount below it"), "{error}");
    host.unmount(&web.mounts[1].target).unwrap();
    host.unmount(&web.mounts[0].target).unwrap();
    assert!(host.mount_points().unwrap().is_empty());
    assert!(host.unmount(&web.mounts[0].target).is_err());
    // The jail's data directory lives in the template: no parent, no mount.
    assert!(host.mount(&web.mounts[1]).is_err());
    assert!(host.start_jail(&web).is_err());
}

// A mount binds the template's inode, whatever its name becomes, and
// mounting twice stacks two mounts.
#[test]
fn mounts_follow_the_inode_and_stack() {
    let (host, web, live, _) = world();
    host.rename_template("mroot", "mroot.old", &TemplateId::Inode(live))
        .unwrap();
    assert_eq!(host.snapshot().template_seen_by("web"), Some(live));
    assert_eq!(
        host.template_at(&web.path).unwrap(),
        Some(TemplateId::Inode(live))
    );
    assert_eq!(host.template_users("mroot.old").unwrap().len(), 1);
    assert!(host.template_users("mroot").unwrap().is_empty());
    host.mount(&web.mounts[1]).unwrap();
    assert_eq!(host.snapshot().mounts.len(), 3);
    assert_eq!(host.mount_table().unwrap().get(&web.path), Some(&true));
}

fn id(entry: Entry) -> Option<TemplateId> {
    entry.found().map(|found| found.id.clone())
}

// Renames never replace, refuse an entry that is not the one expected
// (left where it is), and paths inside templates move between them.
#[test]
fn renames_refuse_to_replace() {
    let (host, _, live, new) = world();
    let (live_id, new_id) = (TemplateId::Inode(live), TemplateId::Inode(new));
    assert!(host.rename_template("mroot.new", "mroot", &new_id).is_err());
    assert!(host.rename_template("absent", "other", &new_id).is_err());
    assert!(host
        .rename_template("mroot.new", "other", &live_id)
        .is_err());
    assert_eq!(id(host.examine("mroot.new").unwrap()), Some(new_id.clone()));
    let carried = id(host.examine("mroot/usr/ports").unwrap()).unwrap();
    host.move_inside("mroot/usr/ports", "mroot.new/usr/ports", &carried)
        .unwrap();
    assert_eq!(host.examine("mroot/usr/ports").unwrap(), Entry::Absent);
    assert_eq!(
        id(host.examine("mroot.new/usr/ports").unwrap()),
        Some(carried)
    );
    assert_eq!(id(host.examine("mroot").unwrap()), Some(live_id));
    // An intruder where the staged template was is refused and stays.
    host.replace_entry(
        "mroot.new",
        Some(Intruder::Symlink("/elsewhere".into())),
        Some("moved"),
    );
    assert_eq!(host.examine("mroot.new").unwrap(), Entry::Symlink);
    let error = host.rename_template("mroot.new", "x", &new_id).unwrap_err();
    assert!(error.to_string().contains("left untouched"), "{error}");
    assert_eq!(host.snapshot().templates.get("moved"), Some(&new));
}

// A copy is a new template with the same contents and fingerprint, but
// for the paths left out; a stage command naming it changes its
// fingerprint; delete removes it.
#[test]
fn copies_fingerprints_and_deletes() {
    let (host, _, live, _) = world();
    let live_id = TemplateId::Inode(live);
    let without = host
        .copy_template("mroot", ".without", &live_id, &["usr/ports".to_string()])
        .unwrap();
    assert_eq!(host.examine(".without/usr/ports").unwrap(), Entry::Absent);
    assert_ne!(
        host.fingerprint(".without").unwrap(),
        host.fingerprint("mroot").unwrap()
    );
    host.delete_template(".without", Some(&without)).unwrap();
    let copy = host
        .copy_template("mroot", ".stage", &live_id, &[])
        .unwrap();
    assert_ne!(copy, live_id);
    assert_eq!(
        host.fingerprint(".stage").unwrap(),
        host.fingerprint("mroot").unwrap()
    );
    assert_eq!(host.top_level_symlinks(".stage").unwrap(), ["etc"]);
    let run = host
        .run_command(
            &format!("pkg -r {STORE}/.stage upgrade"),
            &[],
            Duration::ZERO,
        )
        .unwrap();
    assert!(run.success());
    assert_ne!(
        host.fingerprint(".stage").unwrap(),
        host.fingerprint("mroot").unwrap()
    );
    assert!(host.delete_template(".stage", Some(&live_id)).is_err());
    host.delete_template(".stage", Some(&copy)).unwrap();
    assert_eq!(host.examine(".stage").unwrap(), Entry::Absent);
    // The live template is mounted: it cannot be deleted.
    assert!(host.delete_template("mroot", None).is_err());
}

// A crash before an operation leaves no effect, after it the effect;
// either way the process is dead until it restarts, journal included.
#[test]
fn crashes_stop_the_world_before_or_after_the_effect() {
    for moment in [Moment::Before, Moment::After] {
        let (host, web, _, _) = world();
        let mut hook = host.commit_hook();
        assert!(!hook("begin", false));
        assert!(!hook("begin", true));
        let point = CrashPoint {
            operation: 2,
            moment,
        };
        host.crash_at(point);
        assert_eq!(host.stop_jail(&web), Err(HostError::Crashed));
        assert_eq!(host.crashed(), Some(point));
        let running = host.snapshot().jails["web"].running;
        assert_eq!(running, moment == Moment::Before);
        assert_eq!(host.jail_running(&web), Err(HostError::Crashed));
        assert!(hook("intent", false));
        assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
        assert_eq!(host.operations(), 2);
        host.restart();
        assert_eq!(host.jail_running(&web), Ok(Some(running)));
        assert_eq!(host.log(), vec!["1 status of jail web".to_string()]);
    }
    // A commit is numbered once; its crash point after means committed.
    let (host, _, _, _) = world();
    host.crash_at(CrashPoint {
        operation: 1,
        moment: Moment::After,
    });
    let mut hook = host.commit_hook();
    assert!(!hook("begin", false));
    assert!(hook("begin", true));
}

// Faults fail once, always, or hang before or after the effect.
#[test]
fn faults_fail_hang_and_can_take_effect() {
    let (host, web, _, _) = world();
    let fault = |mode| Fault {
        kind: OperationKind::Stop,
        subject: Some("web".to_string()),
        mode,
    };
    host.inject(fault(FaultMode::FailOnce));
    assert!(host.stop_jail(&web).is_err());
    assert!(host.snapshot().jails["web"].running);
    host.inject(fault(FaultMode::HangAfterEffect));
    let error = host.stop_jail(&web).unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    assert!(!host.snapshot().jails["web"].running);
    host.clear_faults();
    host.inject(Fault {
        kind: OperationKind::Start,
        subject: Some("db".to_string()),
        mode: FaultMode::FailAlways,
    });
    host.start_jail(&web).unwrap();
    assert!(host.log()[1].ends_with("[fault HangAfterEffect]"));
}

// Health follows the jail and its template; a broken template does not start.
#[test]
fn health_and_starts_depend_on_the_template() {
    let (host, web, live, _) = world();
    assert_eq!(host.probe(&web, &check(&web), Duration::ZERO), Ok(()));
    host.set_template_healthy(live, false);
    assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
    host.set_template_healthy(live, true);
    host.set_jail_healthy("web", false);
    assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
    host.set_jail_healthy("web", true);
    host.set_template_broken(live, true);
    host.stop_jail(&web).unwrap();
    assert!(host.start_jail(&web).is_err());
    assert!(host.probe(&web, &check(&web), Duration::ZERO).is_err());
    let silent = jail("quiet", false);
    host.add_jail(&silent, "data");
    assert_eq!(host.jail_running(&silent), Ok(None));
    // Probes take no number: their count depends on the clock.
    let before = host.operations();
    let _ = host.probe(&web, &check(&web), Duration::ZERO);
    assert_eq!(host.operations(), before);
}
