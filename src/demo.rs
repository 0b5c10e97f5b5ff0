//! `jailswap demo`: the whole story in a throwaway sandbox.
//!
//! A private mount namespace, three jails running the built-in HTTP service
//! on a Handbook-style store, an upgrade that commits, an upgrade to a
//! template that fails its health checks and rolls back by itself, the
//! history, and then everything it made is removed again.

use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SandboxOptions};
use std::process::Command;

pub fn run(keep: bool) -> Result<u8> {
    #[cfg(target_os = "linux")]
    enter_namespace()?;
    #[cfg(not(target_os = "linux"))]
    return Err(Error::internal(
        "the demo needs Linux mount namespaces; on FreeBSD see docs/freebsd.md",
    ));

    let program = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find own executable: {e}")))?;
    let dir = tempfile::Builder::new()
        .prefix("jailswap-demo.")
        .tempdir()
        .map_err(|e| Error::internal(format!("cannot create the sandbox: {e}")))?;
    let options = SandboxOptions {
        jails: 3,
        health_timeout: "2s".into(),
        staged: vec![
            ("mroot.20240601".into(), Some("2.0".into())),
            ("mroot.broken".into(), None),
        ],
        ..SandboxOptions::default()
    };
    println!(
        "== sandbox in {} (private mount namespace)",
        dir.path().display()
    );
    let sandbox = Sandbox::create(dir.path(), &program, &options)?;
    let result = story(&sandbox, &program);
    sandbox.tear_down();
    if keep {
        let kept = dir.keep();
        println!("== sandbox kept in {}", kept.display());
    } else {
        println!("== sandbox removed");
    }
    result
}

fn story(sandbox: &Sandbox, program: &std::path::Path) -> Result<u8> {
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
        println!("   jails answer {when}: {}", answers.join("  "));
    };
    let jailswap = |arguments: &[&str]| -> Result<i32> {
        println!("\n$ jailswap {}", arguments.join(" "));
        let status = Command::new(program)
            .arg("-c")
            .arg(&sandbox.config)
            .args(arguments)
            .env_remove("JAILSWAP_CONFIG")
            .status()
            .map_err(|e| Error::internal(format!("cannot run jailswap: {e}")))?;
        let code = status.code().unwrap_or(70);
        println!("(exit {code})");
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
    println!("\n== now a template whose service cannot start: its health check fails and the upgrade rolls back");
    let broken = jailswap(&[
        "upgrade",
        "--to",
        "mroot.broken",
        "-q",
        "--reason",
        "demo: broken template",
    ])?;
    show_answers("after the automatic rollback");
    jailswap(&["history"])?;
    jailswap(&["status"])?;
    if upgrade == 0 && broken == 1 {
        println!("\n== demo finished: one upgrade committed, one rolled back automatically");
        Ok(0)
    } else {
        Err(Error::internal(format!(
            "the demo did not go as planned (exit codes {upgrade} and {broken}, expected 0 and 1)"
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
        Error::internal(format!("cannot create a user and mount namespace: {e}"))
            .with_help("run the demo as root, or enable unprivileged user namespaces")
    })?;
    let write = |file: &str, text: String| {
        std::fs::write(file, text).map_err(|e| Error::internal(format!("cannot write {file}: {e}")))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::internal(format!("cannot make mounts private: {e}")))?;
    Ok(())
}
