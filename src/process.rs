//! Running the administrator's commands: `/bin/sh -c`, bounded in time.
//!
//! Each command runs in its own process group so that a command that hangs
//! past its timeout can be ended whole: TERM to the group, then KILL a few
//! seconds later. Output goes to an anonymous file rather than a pipe, because
//! a start command that leaves a daemon behind would keep a pipe open forever;
//! the first lines are kept for error messages and the audit record.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(output_file.try_clone()?)
        .stderr(output_file.try_clone()?)
        .process_group(0)
        .spawn()?;
    let group = Pid::from_raw(child.id() as i32);
    let started = Instant::now();
    let mut pause = Duration::from_micros(500);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            timed_out = true;
            let _ = killpg(group, Signal::SIGTERM);
            break wait_bounded(&mut child, TERM_GRACE)?.or_else(|| {
                let _ = killpg(group, Signal::SIGKILL);
                child.wait().ok()
            });
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(10));
    };
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

fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
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
