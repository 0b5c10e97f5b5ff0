//! What a hostile world does to a transaction, met as a user meets it, on
//! real mounts: a terminal that hangs up mid-upgrade, output that cannot be
//! written, a journal whose disk fills up, a staged template swapped under
//! the upgrade, a journal someone else could have written, a umask that
//! would open files to everyone, and a user who is not root. Every case
//! checks the host, not only the exit code.

mod common;

use common::{code, describe, Arrangement, Before, Env};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Slow stops give a test time to act while a transaction is under way.
fn slow_stops(env: &Env, seconds: &str) {
    std::fs::write(env.dir.path().join("stop-delay"), seconds).unwrap();
}

fn stop_started(env: &Env) -> bool {
    env.wait_for_step(1, Duration::from_secs(20), |steps| {
        steps
            .iter()
            .any(|s| s["action"] == "stop" && s["state"] == "started")
    })
}

// ------------------------------------------------------------ terminals

// A dropped ssh session: the terminal hangs up during the stops; the
// upgrade carries on to its commit, and what it printed is lost.
#[test]
fn a_hangup_does_not_interrupt_the_transaction() {
    let env = Env::standard();
    slow_stops(&env, "1");
    let before = env.before("mroot.2");
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    // The master must stay in this process alone: a child that inherited
    // it would keep the terminal from hanging up.
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let slave = |pty: &nix::pty::OpenptyResult| -> Stdio {
        Stdio::from(pty.slave.as_fd().try_clone_to_owned().unwrap())
    };
    let mut command = Command::new("setsid");
    command
        .args(["--ctty", "--wait", common::PROGRAM, "-c"])
        .arg(&env.sandbox.config)
        .args(["upgrade", "--to", "mroot.2"])
        .env_remove("JAILSWAP_CONFIG")
        .stdin(slave(&pty))
        .stdout(slave(&pty))
        .stderr(slave(&pty));
    let mut child = command.spawn().expect("setsid");
    assert!(stop_started(&env), "the upgrade did not reach its stops");
    // The terminal goes away: the session's leader gets SIGHUP.
    drop(pty);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the upgrade did not commit: {status:?}"
    );
    assert_eq!(
        env.assert_invariant(&before, "after a hangup"),
        Arrangement::New
    );
    let history = env.json(&["history", "--limit", "1"]);
    assert_eq!(history[0]["outcome"], "committed", "{history}");
}

// ----------------------------------------------------------------- output

/// Where a command's stdout or stderr goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// The file descriptor is closed.
    Closed,
    /// A pipe whose reader is gone (EPIPE).
    Broken,
    /// A full disk (ENOSPC).
    Full,
}

/// The command line for `arguments`: the sandbox's configuration, except
/// for the commands that read none.
fn command_line(env: &Env, arguments: &[&str]) -> Vec<String> {
    let mut line = Vec::new();
    if !matches!(arguments.first(), Some(&"init" | &"completions")) {
        line.push("-c".to_string());
        line.push(env.sandbox.config.display().to_string());
    }
    line.extend(arguments.iter().map(|a| a.to_string()));
    line
}

/// Runs jailswap with stdout (or stderr) sent to `sink`.
fn run_into(env: &Env, arguments: &[&str], sink: Sink, stderr: bool) -> std::process::Output {
    let stream = if stderr { "2" } else { "1" };
    let arguments = command_line(env, arguments);
    match sink {
        Sink::Closed => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("exec {stream}>&- \"$@\""))
                .arg("sh")
                .arg(common::PROGRAM)
                .args(&arguments)
                .env_remove("JAILSWAP_CONFIG")
                .stdin(Stdio::null());
            if stderr {
                command.stdout(Stdio::piped());
            } else {
                command.stderr(Stdio::piped());
            }
            command.output().unwrap()
        }
        Sink::Broken => {
            let (reader, writer) = nix::unistd::pipe().unwrap();
            drop(reader);
            let mut command = raw_command(&arguments);
            if stderr {
                command.stderr(Stdio::from(writer)).stdout(Stdio::piped());
            } else {
                command.stdout(Stdio::from(writer)).stderr(Stdio::piped());
            }
            command.output().unwrap()
        }
        Sink::Full => {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let mut command = raw_command(&arguments);
            if stderr {
                command.stderr(Stdio::from(full)).stdout(Stdio::piped());
            } else {
                command.stdout(Stdio::from(full)).stderr(Stdio::piped());
            }
            command.output().unwrap()
        }
    }
}

fn raw_command(arguments: &[String]) -> Command {
    let mut command = Command::new(common::PROGRAM);
    command
        .args(arguments)
        .env_remove("JAILSWAP_CONFIG")
        .stdin(Stdio::null());
    command
}

fn no_panic(output: &std::process::Output, context: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{context}: {}",
        describe(output)
    );
    assert_ne!(code(output), 101, "{context}: {}", describe(output));
}

// What a reason or a command's output holds reaches the operator's terminal
// as text: escape sequences (which could clear the screen, retitle the
// window or forge a line) and line feeds are written as escapes, tables keep
// one row per transaction, and `show`'s command line still pastes back into
// a shell as the same words.
#[test]
fn control_characters_reach_the_terminal_escaped() {
    let env = Env::standard();
    let reason = "two\nlines \u{1b}]0;pwned\u{7} \u{1b}[2J\rforged";
    let mut printed = Vec::new();
    let upgraded = env.run(&["upgrade", "--to", "mroot.2", "--reason", reason]);
    assert_eq!(code(&upgraded), 0, "{}", describe(&upgraded));
    printed.push(("upgrade", upgraded));
    let staged = env.run(&[
        "stage",
        "--as",
        "mroot.3",
        "--run",
        "printf '\\033[2Jwiped\\n\\033]0;title\\007\\n'; exit 3",
    ]);
    assert_eq!(code(&staged), 1, "{}", describe(&staged));
    printed.push(("stage", staged));
    for arguments in [
        &["history"][..],
        &["show", "1"],
        &["show", "2"],
        &["show", "1", "--timeline"],
        &["status"],
    ] {
        let output = env.run(arguments);
        assert_eq!(code(&output), 0, "{arguments:?}: {}", describe(&output));
        printed.push((arguments[0], output));
    }
    for (what, output) in &printed {
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            assert!(
                !bytes
                    .iter()
                    .any(|b| *b == 0x1b || *b == 0x07 || *b == b'\r'),
                "{what} wrote a control character to {stream}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let history = String::from_utf8_lossy(&printed[2].1.stdout).into_owned();
    assert_eq!(
        history.lines().count(),
        3,
        "a row per transaction: {history}"
    );
    assert!(history.contains("two\\nlines \\x1b]0;pwned"), "{history}");
    let stage = String::from_utf8_lossy(&printed[4].1.stdout).into_owned();
    assert!(stage.contains("\\x1b[2Jwiped"), "{stage}");

    // The command line as `show` prints it, read back by a shell.
    let shown = String::from_utf8_lossy(&printed[3].1.stdout).into_owned();
    let line = shown
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("command"))
        .unwrap_or_else(|| panic!("no command line: {shown}"))
        .trim()
        .to_string();
    let words = Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\0' {line}"))
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8_lossy(&words.stdout)
        .split('\0')
        .map(str::to_string)
        .collect();
    assert!(
        words.iter().any(|word| word == reason),
        "{line} reads back as {words:?}"
    );
}

// Read-only commands whose output cannot be written (a broken pipe, a full
// disk) exit 74, without a panic; when only stderr is lost, their answer
// still counts. A closed stdout is reopened on /dev/null by the runtime
// before jailswap runs (so no file it opens can take its place), and reads
// as `>/dev/null` does: the answer is discarded and the exit code stands.
#[test]
fn read_only_commands_with_nowhere_to_write() {
    let env = Env::standard();
    let upgraded = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&upgraded), 0, "{}", describe(&upgraded));
    let fstab = env.dir.path().join("fstab.jail0");
    let fstab = fstab.to_string_lossy().into_owned();
    let store = env.store().to_string_lossy().into_owned();
    let archive = env
        .last_archive_name()
        .expect("the upgrade archived a template");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["--json", "status"],
        vec!["history"],
        vec!["--json", "history"],
        vec!["show", "1"],
        vec!["--json", "show", "1"],
        vec!["show", "1", "--timeline"],
        vec!["verify"],
        vec!["check"],
        vec!["prune", "--keep", "0", "--dry-run"],
        vec!["rollback", "--dry-run"],
        vec!["--json", "upgrade", "--to", &archive, "--dry-run"],
        vec!["completions", "zsh"],
        vec!["init", "--from-fstab", &fstab, "--store", &store],
    ];
    let mut cases = 0;
    for arguments in &commands {
        for sink in [Sink::Closed, Sink::Broken, Sink::Full] {
            let context = format!("{arguments:?} with stdout {sink:?}");
            let output = run_into(&env, arguments, sink, false);
            no_panic(&output, &context);
            if let Sink::Closed = sink {
                assert_eq!(code(&output), 0, "{context}: {}", describe(&output));
            } else {
                assert_eq!(code(&output), 74, "{context}: {}", describe(&output));
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(
                    stderr.contains("cannot write the output"),
                    "{context}: {stderr}"
                );
            }
            let context = format!("{arguments:?} with stderr {sink:?}");
            let output = run_into(&env, arguments, sink, true);
            no_panic(&output, &context);
            assert_eq!(code(&output), 0, "{context}: {}", describe(&output));
            assert!(!output.stdout.is_empty(), "{context}: no answer");
            cases += 2;
        }
    }
    eprintln!("read-only command cases: {cases}");
}

// A transaction whose output cannot be written still runs to its end and
// exits with its own code; the host shows the outcome.
#[test]
fn transactions_with_nowhere_to_write() {
    let env = Env::standard();
    let before = env.before("mroot.2");
    let mut arrangement = Arrangement::Old;
    for (index, sink) in [Sink::Closed, Sink::Broken, Sink::Full]
        .into_iter()
        .enumerate()
    {
        for stderr in [false, true] {
            let arguments: &[&str] = if arrangement == Arrangement::Old {
                &["upgrade", "--to", "mroot.2"]
            } else {
                &["rollback"]
            };
            let context = format!(
                "{arguments:?} (#{index}) with {} {sink:?}",
                if stderr { "stderr" } else { "stdout" }
            );
            let output = run_into(&env, arguments, sink, stderr);
            no_panic(&output, &context);
            assert_eq!(code(&output), 0, "{context}: {}", describe(&output));
            arrangement = if arrangement == Arrangement::Old {
                Arrangement::New
            } else {
                Arrangement::Old
            };
            // The rollback goes back to the template the upgrade archived.
            let now = env.assert_invariant(&before, &context);
            assert_eq!(now, arrangement, "{context}");
        }
    }
    let recovered = run_into(&env, &["recover"], Sink::Broken, false);
    no_panic(&recovered, "recover with stdout broken");
    assert_eq!(code(&recovered), 0, "{}", describe(&recovered));
}

// `demo | head -3`: the demo cleans up whatever happens to its output.
#[test]
fn the_demo_cleans_up_when_its_reader_goes_away() {
    let marker = format!("demo-cleanup-{}", std::process::id());
    // The demo's temporary directory lives under a directory of its own,
    // made here, so that what it leaves behind can be found.
    let temporary = Path::new("/tmp").join(&marker);
    std::fs::create_dir_all(&temporary).unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; \"$0\" demo | head -3; echo \"exit=${PIPESTATUS[0]}\" >&2")
        .arg(common::PROGRAM)
        .env("TMPDIR", &temporary)
        .env_remove("JAILSWAP_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{}", describe(&output));
    assert!(
        stderr.contains("exit=74") || stderr.contains("exit=0"),
        "the demo's own exit code: {}",
        describe(&output)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    let left: Vec<_> = std::fs::read_dir(&temporary).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "the demo left {left:?} in {}",
        temporary.display()
    );
    // No service of the demo's sandbox runs any more.
    let services = Command::new("pgrep")
        .args(["-f", &format!("serve --root {}", temporary.display())])
        .output()
        .unwrap();
    assert!(
        services.stdout.is_empty(),
        "services still running: {}",
        String::from_utf8_lossy(&services.stdout)
    );
    std::fs::remove_dir(&temporary).unwrap();
}

// ------------------------------------------------------------ the journal

/// Mounts a tmpfs of `size` on the sandbox's journal directory and fills it
/// so that `free` bytes are left.
fn small_journal_disk(env: &Env, size: &str, free: u64) {
    let db = env.dir.path().join("db");
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    fill(&db, free);
}

/// Fills the file system of `dir` until `free` bytes are left.
fn fill(dir: &Path, free: u64) {
    let stat = nix::sys::statvfs::statvfs(dir).unwrap();
    let available = stat.blocks_available() * stat.fragment_size();
    let size = available.saturating_sub(free);
    let filler = dir.join(format!(
        "filler.{}",
        std::fs::read_dir(dir).unwrap().count()
    ));
    let file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    let mut writer = std::io::BufWriter::new(file);
    while written < size {
        let length = chunk.len().min((size - written) as usize);
        if std::io::Write::write_all(&mut writer, &chunk[..length]).is_err() {
            break;
        }
        written += length as u64;
    }
    let _ = std::io::Write::flush(&mut writer);
}

// A journal on a small disk filled to several levels: each upgrade either
// commits or is refused with 74 before anything changed.
#[test]
fn a_full_journal_disk_refuses_or_finishes() {
    let mut outcomes = Vec::new();
    for free in [0u64, 64 << 10, 512 << 10, 1200 << 10, 3 << 20] {
        let env = Env::standard();
        small_journal_disk(&env, "4m", free);
        let before = env.before("mroot.2");
        let output = env.run(&["upgrade", "--to", "mroot.2"]);
        let context = format!("{free} bytes free");
        match code(&output) {
            0 => {
                assert_eq!(env.assert_invariant(&before, &context), Arrangement::New);
            }
            74 => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(stderr.contains("help:"), "{context}: {stderr}");
                assert_eq!(env.assert_invariant(&before, &context), Arrangement::Old);
            }
            other => panic!("{context}: exit {other}: {}", describe(&output)),
        }
        outcomes.push((free, code(&output)));
    }
    eprintln!("free bytes -> exit code: {outcomes:?}");
    assert_eq!(outcomes.first().map(|o| o.1), Some(74), "{outcomes:?}");
    assert_eq!(outcomes.last().map(|o| o.1), Some(0), "{outcomes:?}");
}

// The disk fills up during the stops: the reserve set aside before the
// first stop is given back, and the upgrade finishes.
#[test]
fn the_journal_disk_filling_up_mid_transaction() {
    let env = Env::standard();
    small_journal_disk(&env, "8m", 4 << 20);
    slow_stops(&env, "1");
    let before = env.before("mroot.2");
    let child = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(stop_started(&env));
    fill(&env.dir.path().join("db"), 0);
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gave back the space set aside"), "{stderr}");
    assert_eq!(
        env.assert_invariant(&before, "disk filled mid-transaction"),
        Arrangement::New
    );
}

// A journal that fails from some write on (a dying disk, here injected):
// the host is put back from memory, jailswap exits 2, `status` says to
// recover, and `recover` finishes the record without moving the host.
#[test]
fn a_journal_that_stops_writing_mid_transaction() {
    for fail_at in [
        "completion:3:io:always",
        "intent:6:full:always",
        "completion:2:io",
    ] {
        let env = Env::standard();
        let before = env.before("mroot.2");
        let child = env.spawn(
            &["upgrade", "--to", "mroot.2"],
            &[("JAILSWAP_FAIL_AT", fail_at)],
        );
        let output = child.wait_with_output().unwrap();
        let context = format!("journal failing at {fail_at}");
        if fail_at.ends_with("always") {
            assert_eq!(code(&output), 2, "{context}: {}", describe(&output));
            let status = env.json(&["status"]);
            assert_eq!(
                status["pending_detail"]["run"], "jailswap recover",
                "{context}: {status}"
            );
            let recovered = env.run(&["recover"]);
            assert_eq!(code(&recovered), 1, "{context}: {}", describe(&recovered));
        } else {
            assert_eq!(code(&output), 1, "{context}: {}", describe(&output));
        }
        assert_eq!(env.assert_invariant(&before, &context), Arrangement::Old);
    }
}

// ---------------------------------------------------- the store changed

/// What the store looks like after an intruder took the staged name, and
/// the jails kept the old template: checked whole, the intruder untouched.
fn assert_intruder_untouched(env: &Env, before: &Before, intruder: &Path, context: &str) {
    assert_eq!(
        env.inode("mroot"),
        Some(before.live_inode),
        "{context}: live"
    );
    let intruder_meta = std::fs::symlink_metadata(env.store().join("mroot.2")).unwrap();
    let expected = std::fs::symlink_metadata(intruder).unwrap();
    assert_eq!(
        intruder_meta.ino(),
        expected.ino(),
        "{context}: the intruder moved"
    );
    for (name, port) in &env.sandbox.jails {
        assert!(env.running(name), "{context}: jail {name} down");
        assert_eq!(
            env.sandbox.ask(*port).as_deref(),
            Ok("1.0"),
            "{context}: {name}"
        );
    }
    let mounts = env.mounts();
    assert_eq!(
        mounts.len(),
        2 * env.sandbox.jails.len(),
        "{context}: {mounts:?}"
    );
    assert!(
        mounts
            .iter()
            .filter(|(point, _, _)| !point.ends_with("s"))
            .all(|(_, _, read_only)| *read_only),
        "{context}: {mounts:?}"
    );
    assert_eq!(env.data(), before.data, "{context}: data");
    let status = env.json(&["status"]);
    assert!(status["pending"].is_null(), "{context}: {status}");
    let history = env.json(&["history", "--limit", "1"]);
    assert_eq!(history[0]["outcome"], "rolled_back", "{context}: {history}");
    let cause = history[0]["error"].as_str().unwrap_or("");
    assert!(cause.contains("left untouched"), "{context}: {cause}");
}

// The staged template replaced by a symbolic link to a directory outside
// the store, during the stops: the swap refuses it, the upgrade rolls back.
#[test]
fn a_staged_template_swapped_for_a_link_is_not_made_live() {
    let env = Env::standard();
    slow_stops(&env, "1");
    let before = env.before("mroot.2");
    let child = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(stop_started(&env));
    let outside = env.dir.path().join("outside");
    std::fs::rename(env.store().join("mroot.2"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.store().join("mroot.2")).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert_intruder_untouched(&env, &before, &env.store().join("mroot.2"), "link");
    assert!(std::fs::symlink_metadata(env.store().join("mroot.2"))
        .unwrap()
        .is_symlink());
}

// Another directory moved into the staged name: refused the same way.
#[test]
fn a_staged_template_swapped_for_another_directory_is_not_made_live() {
    let env = Env::standard();
    slow_stops(&env, "1");
    let before = env.before("mroot.2");
    let child = env.spawn(&["upgrade", "--to", "mroot.2"], &[]);
    assert!(stop_started(&env));
    std::fs::rename(
        env.store().join("mroot.2"),
        env.dir.path().join("moved-away"),
    )
    .unwrap();
    jailswap::sandbox::make_template(&env.store().join("mroot.2"), Some("6.6.6")).unwrap();
    let intruder = env.store().join("mroot.2");
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 1, "{}", describe(&output));
    assert_intruder_untouched(&env, &before, &intruder, "directory");
    assert_eq!(
        std::fs::read_to_string(env.store().join("mroot.2/VERSION")).unwrap(),
        "6.6.6\n"
    );
}

// ------------------------------------------------------------------ trust

// A journal someone else could have written is refused (74) by every
// command, naming the file and the fix, before it reads a step.
#[test]
fn an_untrusted_journal_is_refused_by_every_command() {
    let env = Env::standard();
    let upgraded = env.run(&["upgrade", "--to", "mroot.2"]);
    assert_eq!(code(&upgraded), 0, "{}", describe(&upgraded));
    let archive = env
        .last_archive_name()
        .expect("the upgrade archived the old template");
    let before = env.before(&archive);
    let journal = env.sandbox.journal.clone();
    let directory = journal.parent().unwrap().to_path_buf();
    let commands: [&[&str]; 8] = [
        &["status"],
        &["history"],
        &["show", "1"],
        &["verify"],
        &["recover"],
        &["rollback"],
        &["upgrade", "--to", "mroot.2", "--dry-run"],
        &["prune", "--keep", "0"],
    ];
    type Change<'a> = Box<dyn Fn() + 'a>;
    let damages: [(&str, Change, Change); 4] = [
        (
            "journal owned by another user",
            Box::new(|| nix::unistd::chown(&journal, Some(65534.into()), None).unwrap()),
            Box::new(|| nix::unistd::chown(&journal, Some(0.into()), None).unwrap()),
        ),
        (
            "journal writable by its group",
            Box::new(|| {
                std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o620)).unwrap()
            }),
            Box::new(|| {
                std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap()
            }),
        ),
        (
            "directory owned by another user",
            Box::new(|| nix::unistd::chown(&directory, Some(65534.into()), None).unwrap()),
            Box::new(|| nix::unistd::chown(&directory, Some(0.into()), None).unwrap()),
        ),
        (
            "command records writable by everyone",
            Box::new(|| {
                std::fs::create_dir_all(directory.join("commands")).unwrap();
                std::fs::set_permissions(
                    directory.join("commands"),
                    std::fs::Permissions::from_mode(0o777),
                )
                .unwrap()
            }),
            Box::new(|| {
                std::fs::set_permissions(
                    directory.join("commands"),
                    std::fs::Permissions::from_mode(0o700),
                )
                .unwrap()
            }),
        ),
    ];
    let mut cases = 0;
    for (what, damage, repair) in &damages {
        damage();
        for arguments in commands {
            let output = env.run(arguments);
            let context = format!("{what}: {arguments:?}");
            assert_eq!(code(&output), 74, "{context}: {}", describe(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("not trusted"), "{context}: {stderr}");
            assert!(
                stderr.contains("chown root") || stderr.contains("chmod go-w"),
                "{context}: {stderr}"
            );
            cases += 1;
        }
        repair();
        // Nothing changed on the host, and the journal works again.
        assert_eq!(env.assert_invariant(&before, what), Arrangement::Old);
    }
    eprintln!("untrusted journal cases: {cases}");
}

// Whatever the umask, the files jailswap makes are writable by root alone.
#[test]
fn files_are_private_whatever_the_umask() {
    let env = Env::standard();
    std::fs::remove_dir_all(env.dir.path().join("db")).unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(common::PROGRAM)
        .arg("-c")
        .arg(&env.sandbox.config)
        .args(["upgrade", "--to", "mroot.2"])
        .env_remove("JAILSWAP_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", describe(&output));
    let db = env.dir.path().join("db");
    let mut checked = Vec::new();
    let mut pending = vec![db.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{} is mode {:o}",
            path.display(),
            meta.mode() & 0o777
        );
        if meta.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    for expected in [
        "db",
        "journal.sqlite",
        "journal.sqlite.backup",
        "journal.sqlite.reserve",
        "commands",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not made: {checked:?}"
        );
    }
}

// ------------------------------------------------------------------- root

// Run as another user, a command that changes the host says root is
// needed and exits 77; one that cannot read the configuration, too.
#[test]
fn not_root_is_77() {
    let env = Env::standard();
    let before = env.before("mroot.2");
    let as_nobody = |arguments: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                common::PROGRAM,
                "-c",
            ])
            .arg(&env.sandbox.config)
            .args(arguments)
            .env_remove("JAILSWAP_CONFIG")
            .output()
            .unwrap()
    };
    for arguments in [
        &["upgrade", "--to", "mroot.2"][..],
        &["rollback"],
        &["recover"],
        &["prune", "--keep", "1"],
    ] {
        let output = as_nobody(arguments);
        assert_eq!(code(&output), 77, "{arguments:?}: {}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("must run as root"),
            "{}",
            describe(&output)
        );
    }
    let output = as_nobody(&["status"]);
    assert_eq!(code(&output), 77, "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read configuration"),
        "{}",
        describe(&output)
    );
    assert_eq!(env.assert_invariant(&before, "not root"), Arrangement::Old);
}

// ------------------------------------------------------------ file limits

// Out of file descriptors (a hard limit too low for ten jails): preflight
// refuses saying so, or the transaction fails where it runs out and rolls
// back; the host ends whole either way.
#[test]
fn running_out_of_file_descriptors_ends_whole() {
    let mut seen = Vec::new();
    for limit in [16, 24, 28] {
        let env = Env::new(jailswap::sandbox::SandboxOptions {
            jails: 10,
            ..jailswap::sandbox::SandboxOptions::default()
        });
        let before = env.before("mroot.2");
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -n {limit}; exec \"$@\""))
            .arg("bash")
            .arg(common::PROGRAM)
            .arg("-c")
            .arg(&env.sandbox.config)
            .args(["upgrade", "--to", "mroot.2"])
            .env_remove("JAILSWAP_CONFIG")
            .output()
            .unwrap();
        let context = format!("ulimit -n {limit}");
        no_panic(&output, &context);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match code(&output) {
            65 => assert!(
                stderr.contains("ran out of open files"),
                "{context}: {stderr}"
            ),
            1 => assert!(
                stderr.contains("Too many open files"),
                "{context}: {stderr}"
            ),
            other => panic!("{context}: exit {other}: {}", describe(&output)),
        }
        assert_eq!(env.assert_invariant(&before, &context), Arrangement::Old);
        seen.push((limit, code(&output)));
    }
    eprintln!("limit -> exit code: {seen:?}");
}
