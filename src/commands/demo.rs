//! `jailswap demo`: the whole story in a throwaway sandbox.
//!
//! A private mount namespace, three jails running the built-in HTTP service
//! on a Handbook-style store, an upgrade that commits, an upgrade to a
//! template that fails its health checks and rolls back by itself, a
//! rolling upgrade to it whose canary fails and only the canary goes back,
//! the history, and then everything it made is removed again: on success,
//! on failure, on Ctrl-C, and when its output goes nowhere (a closed pipe).

use super::Context;
use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SandboxOptions};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(keep: bool, context: &Context) -> Result<u8> {
    #[cfg(target_os = "linux")]
    enter_namespace()?;
    #[cfg(not(target_os = "linux"))]
    return Err(Error::Internal(
        "the demo needs Linux mount namespaces; on FreeBSD see docs/freebsd.md".into(),
    ));

    // Ctrl-C, TERM or a lost terminal end the story early, never the
    // cleanup: the jailswap runs the story started roll back by themselves.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    let program = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find own executable: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("jailswap-demo.")
        .tempdir()
        .map_err(|e| {
            Error::Host(crate::host::HostError::from_io(
                "cannot create the sandbox".into(),
                &e,
            ))
        })?;
    let options = SandboxOptions {
        jails: 3,
        health_timeout: "2s".into(),
        staged: vec![
            ("mroot.20240601".into(), Some("2.0".into())),
            ("mroot.broken".into(), None),
        ],
        // The template in service was built in January: it is archived
        // under that date, and the upgrade reads as one.
        live_modified: Some(1_704_067_200),
        ..SandboxOptions::default()
    };
    let say = |text: &str| context.output.line(text);
    say(&format!(
        "== sandbox in {} (private mount namespace)",
        dir.path().display()
    ));
    let result = match Sandbox::create(dir.path(), &program, &options) {
        Ok(sandbox) => {
            let result = story(&sandbox, &program, context, &stop);
            sandbox.tear_down();
            result
        }
        Err(error) => Err(error),
    };
    if keep {
        let kept = dir.keep();
        say(&format!("== sandbox kept in {}", kept.display()));
    } else {
        drop(dir);
        say("== sandbox removed");
    }
    result
}

fn story(
    sandbox: &Sandbox,
    program: &std::path::Path,
    context: &Context,
    stop: &AtomicBool,
) -> Result<u8> {
    let say = |text: &str| context.output.line(text);
    let show_answers = |when: &str| {
        let answers: Vec<String> = sandbox
            .jails
            .iter()
            .map(|(name, port)| {
                format!(
                    "{name}={}",
                    sandbox.ask(*port).unwrap_or_else(|e| format!("DOWN ({e})"))
                )
            })
            .collect();
        say(&format!("   jails answer {when}: {}", answers.join("  ")));
    };
    let jailswap = |arguments: &[&str]| -> Result<i32> {
        if stop.load(Ordering::SeqCst) {
            return Err(Error::Internal("the demo was interrupted".into()));
        }
        say(&format!("\n$ jailswap {}", arguments.join(" ")));
        let status = Command::new(program)
            .arg("-c")
            .arg(&sandbox.config)
            .args(arguments)
            .env_remove("JAILSWAP_CONFIG")
            .status()
            .map_err(|e| Error::Internal(format!("cannot run jailswap: {e}")))?;
        let code = status.code().unwrap_or(70);
        say(&format!("(exit {code})"));
        Ok(code)
    };
    show_answers("before");
    jailswap(&["status"])?;
    let upgrade = jailswap(&[
        "upgrade",
        "--to",
        "mroot.20240601",
        "--reason",
        "demo: new template",
    ])?;
    show_answers("after the upgrade");
    say("\n== now a template whose service cannot start: its health check fails and the upgrade rolls back");
    let broken = jailswap(&[
        "upgrade",
        "--to",
        "mroot.broken",
        "-q",
        "--reason",
        "demo: broken template",
    ])?;
    show_answers("after the automatic rollback");
    say("\n== the same template as a rolling upgrade: the canary (jail0) fails its health check, and only the canary goes back; the others never stop");
    let pids_before = sandbox.pids();
    let rolling = jailswap(&[
        "upgrade",
        "--to",
        "mroot.broken",
        "--rolling",
        "-q",
        "--reason",
        "demo: canary",
    ])?;
    let pids_after = sandbox.pids();
    let untouched: Vec<&str> = sandbox
        .jails
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| {
            pids_before.contains_key(*name) && pids_before.get(*name) == pids_after.get(*name)
        })
        .collect();
    say(&format!(
        "   jails whose service kept running throughout: {}",
        untouched.join(", ")
    ));
    show_answers("after the canary rolled back");
    jailswap(&["history"])?;
    jailswap(&["status"])?;
    let canary_only = untouched.len() + 1 == sandbox.jails.len() && !untouched.contains(&"jail0");
    if upgrade == 0 && broken == 1 && rolling == 1 && canary_only {
        say("\n== demo finished: one upgrade committed, one rolled back automatically, one canary caught");
        Ok(0)
    } else {
        Err(Error::Internal(format!(
            "the demo did not go as planned (exit codes {upgrade}, {broken} and {rolling}, expected 0, 1 and 1; untouched jails {untouched:?})"
        )))
    }
}

/// Root enters a private mount namespace; anyone else tries an
/// unprivileged user namespace, where the kernel allows one.
#[cfg(target_os = "linux")]
fn enter_namespace() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return crate::sandbox::enter_private_mount_namespace();
    }
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    nix::sched::unshare(
        nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
    )
    .map_err(|e| {
        Error::NotRoot(format!(
            "the demo makes real mounts and needs root or an unprivileged user namespace: {e}"
        ))
    })?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| Error::NotRoot(format!("cannot write {file}: {e}")))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    crate::sandbox::make_mounts_private()
}
