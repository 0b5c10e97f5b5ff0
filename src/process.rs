//! Running the administrator's commands: `/bin/sh -c`, bounded in time.
//!
//! Each command runs in its own process group so that a command that hangs
//! past its timeout can be ended whole: TERM to the group, then KILL a few
//! seconds later. Output goes to an anonymous file rather than a pipe, because
//! a start command that leaves a daemon behind would keep a pipe open forever;
//! the first lines are kept for error messages and the audit record.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The transaction whose commands this process runs; every command gets it
/// in its environment as `JAILSWAP_TRANSACTION`, so that a recovery can find
/// the commands a killed jailswap left running.
static TRANSACTION: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The environment variable that tags a transaction's commands.
pub const TRANSACTION_VARIABLE: &str = "JAILSWAP_TRANSACTION";

pub fn set_transaction(id: i64) {
    TRANSACTION.store(id, std::sync::atomic::Ordering::SeqCst);
}

/// How long a command has to exit after TERM before it gets KILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// How much of a command's output is kept.
const OUTPUT_LINES: usize = 10;
const OUTPUT_BYTES: u64 = 4096;

#[derive(Debug)]
pub struct CommandOutcome {
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// The first lines of stdout and stderr, interleaved as written.
    pub output: String,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|status| status.success())
    }

    /// Why the command failed, in one line, followed by its first output lines.
    pub fn failure(&self, command: &str, timeout: Duration) -> String {
        let mut text = if self.timed_out {
            format!(
                "`{command}` timed out after {}; its process group got TERM, then KILL",
                humantime::format_duration(timeout)
            )
        } else {
            match self.status.and_then(|status| status.code()) {
                Some(code) => format!("`{command}` exited with status {code}"),
                None => format!("`{command}` was killed by a signal"),
            }
        };
        let output = self.output.trim();
        if !output.is_empty() {
            text.push_str(": ");
            text.push_str(&output.lines().collect::<Vec<_>>().join(" | "));
        }
        text
    }
}

/// Runs `command` through `/bin/sh -c`, waiting at most `timeout`.
pub fn run_shell(command: &str, timeout: Duration) -> std::io::Result<CommandOutcome> {
    let mut output_file = tempfile::tempfile()?;
    let mut shell = Command::new("/bin/sh");
    let transaction = TRANSACTION.load(std::sync::atomic::Ordering::SeqCst);
    if transaction != 0 {
        shell.env(TRANSACTION_VARIABLE, transaction.to_string());
    }
    let mut child = shell
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(output_file.try_clone()?)
        .stderr(output_file.try_clone()?)
        .process_group(0)
        .spawn()?;
    let group = Pid::from_raw(child.id() as i32);
    // Not synced: the record only matters while this process lives, and a
    // power loss ends the command too.
    let record = command_record(child.id());
    if let Some(path) = &record {
        let _ = std::fs::File::create(path);
    }
    // A waiter thread reaps the shell and reports at once; this thread
    // only waits on the channel, so a command's end is seen without delay.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    let mut timed_out = false;
    let status = match receiver.recv_timeout(timeout) {
        Ok(status) => Some(status?),
        Err(_) => {
            timed_out = true;
            let _ = killpg(group, Signal::SIGTERM);
            match receiver.recv_timeout(TERM_GRACE) {
                Ok(status) => status.ok(),
                Err(_) => {
                    let _ = killpg(group, Signal::SIGKILL);
                    receiver
                        .recv_timeout(TERM_GRACE)
                        .ok()
                        .and_then(|status| status.ok())
                }
            }
        }
    };
    if let Some(path) = &record {
        let _ = std::fs::remove_file(path);
    }
    output_file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    output_file.take(OUTPUT_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let output = text
        .lines()
        .take(OUTPUT_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    Ok(CommandOutcome {
        status,
        timed_out,
        output,
    })
}

/// Where the leaders of running commands are recorded, one empty file per
/// process group named by its pid; set once a transaction has an id.
static COMMAND_DIRECTORY: std::sync::Mutex<Option<std::path::PathBuf>> =
    std::sync::Mutex::new(None);

/// Records running commands under `directory` from now on.
pub fn track_commands_in(directory: &std::path::Path) {
    if std::fs::create_dir_all(directory).is_ok() {
        if let Ok(mut slot) = COMMAND_DIRECTORY.lock() {
            *slot = Some(directory.to_path_buf());
        }
    }
}

fn command_record(pid: u32) -> Option<std::path::PathBuf> {
    COMMAND_DIRECTORY
        .lock()
        .ok()?
        .as_ref()
        .map(|directory| directory.join(pid.to_string()))
}

/// Whether a process exists and is not a zombie (a zombie holds nothing).
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(") ")
                .next()
                .and_then(|rest| rest.split(' ').next())
                != Some("Z")
        }
        Err(_) => true,
    }
}

/// Whether `pid` still runs a command of transaction `id`: its environment
/// carries the tag (where /proc shows it), guarding against a reused pid.
fn runs_command_of(pid: i32, id: i64) -> bool {
    if !alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => {
            let tag = format!("{TRANSACTION_VARIABLE}={id}");
            environ.split(|b| *b == 0).any(|v| v == tag.as_bytes())
        }
        Err(_) => true,
    }
}

/// Before recovery looks at the host, the commands a killed jailswap left
/// running must be over: they could otherwise change a jail after it was
/// observed. Waits up to `limit` for their shells to finish, then ends their
/// process groups as a timeout would (TERM, then KILL). Daemons a command
/// started are not touched: only each command's own process group is.
/// Returns how many commands were still running.
pub fn settle_leftover_commands(id: i64, directory: &std::path::Path, limit: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return 0;
    };
    let recorded: Vec<(i32, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.file_name().to_str()?.parse::<i32>().ok()?,
                entry.path(),
            ))
        })
        .collect();
    let running: Vec<i32> = recorded
        .iter()
        .map(|(pid, _)| *pid)
        .filter(|pid| runs_command_of(*pid, id))
        .collect();
    let started = Instant::now();
    while started.elapsed() < limit && running.iter().any(|pid| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let left: Vec<i32> = running.iter().copied().filter(|pid| alive(*pid)).collect();
        if left.is_empty() {
            break;
        }
        for pid in left {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
        let grace = Instant::now();
        while grace.elapsed() < TERM_GRACE && running.iter().any(|pid| alive(*pid)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (_, path) in recorded {
        let _ = std::fs::remove_file(path);
    }
    running.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A command that succeeds, one that fails with output, one that hangs.
    #[test]
    fn outcomes() {
        let ok = run_shell("true", Duration::from_secs(5)).unwrap();
        assert!(ok.success());
        let failed = run_shell("echo oops >&2; exit 3", Duration::from_secs(5)).unwrap();
        assert!(!failed.success());
        assert_eq!(failed.status.and_then(|s| s.code()), Some(3));
        assert!(failed
            .failure("x", Duration::from_secs(5))
            .contains("status 3: oops"));
        let started = Instant::now();
        let hung = run_shell("sleep 30", Duration::from_millis(200)).unwrap();
        assert!(hung.timed_out);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // A command that ignores TERM is killed after the grace period.
    #[test]
    fn ignores_term() {
        let started = Instant::now();
        let hung = run_shell("trap '' TERM; sleep 30", Duration::from_millis(100)).unwrap();
        assert!(hung.timed_out);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= TERM_GRACE && elapsed < TERM_GRACE + Duration::from_secs(5),
            "{elapsed:?}"
        );
    }
}
