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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
    /// The last lines of stdout and stderr.
    pub tail: String,
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
    run(command, &[], timeout, false)
}

/// Runs a command that changes a jail (start, stop), recording its process
/// group so that a recovery can wait for it if this process dies first.
///
/// The record is created before the command is spawned, and the command's
/// own shell writes its pid into it before it runs the command: there is
/// no moment at which the command runs and its record does not exist. The
/// command text reaches the shell through the environment and runs under
/// `eval`, exactly as `/bin/sh -c` would run it.
pub fn run_tracked(command: &str, timeout: Duration) -> std::io::Result<CommandOutcome> {
    run(command, &[], timeout, true)
}

/// [`run_tracked`] with extra environment variables.
pub fn run_tracked_with(
    command: &str,
    environment: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<CommandOutcome> {
    run(command, environment, timeout, true)
}

fn run(
    command: &str,
    environment: &[(&str, &str)],
    timeout: Duration,
    tracked: bool,
) -> std::io::Result<CommandOutcome> {
    let mut output_file = tempfile::tempfile()?;
    let mut shell = Command::new("/bin/sh");
    shell.envs(environment.iter().copied());
    let transaction = TRANSACTION.load(std::sync::atomic::Ordering::SeqCst);
    if transaction != 0 {
        shell.env(TRANSACTION_VARIABLE, transaction.to_string());
    }
    // Not synced: a record only matters while this process lives, and a
    // power loss ends the command too.
    let record = if tracked { new_command_record() } else { None };
    let created = |path: &std::path::Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .is_ok()
    };
    match &record {
        Some(path) if created(path) => {
            shell
                .env("JAILSWAP_COMMAND_RECORD", path)
                .env("JAILSWAP_COMMAND_TEXT", command)
                .arg("-c")
                .arg("printf '%s' \"$$\" > \"$JAILSWAP_COMMAND_RECORD\"; eval \"$JAILSWAP_COMMAND_TEXT\"");
        }
        _ => {
            shell.arg("-c").arg(command);
        }
    }
    let child = shell
        .stdin(Stdio::null())
        .stdout(output_file.try_clone()?)
        .stderr(output_file.try_clone()?)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            if let Some(path) = &record {
                let _ = std::fs::remove_file(path);
            }
            return Err(error);
        }
    };
    let group = Pid::from_raw(child.id() as i32);
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
    (&mut output_file)
        .take(OUTPUT_BYTES)
        .read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let output = text
        .lines()
        .take(OUTPUT_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    // The end of a long output says how it ended.
    let size = output_file.seek(SeekFrom::End(0))?;
    output_file.seek(SeekFrom::Start(size.saturating_sub(OUTPUT_BYTES)))?;
    let mut bytes = Vec::new();
    output_file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
    Ok(CommandOutcome {
        status,
        timed_out,
        output,
        tail,
    })
}

/// Raises the soft limit on open files to the hard one: a transaction
/// with many jails runs shells, pipes and files in parallel, and a soft
/// limit lower than the system allows would make it fail half-way (it
/// would roll back, but need not fail at all).
pub fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let wanted = hard.min(1 << 16);
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard);
        }
    }
}

/// Whether an error is the process running out of open files.
pub fn out_of_files(message: &str) -> bool {
    message.contains(&format!("(os error {})", libc::EMFILE))
}

/// The largest script handed to one shell (an argument is limited to
/// 128 KiB on Linux); longer lists run in several shells one after another.
const BATCH_SCRIPT_BYTES: usize = 64 * 1024;

/// Runs many independent commands that only look (the status commands of
/// every jail) and says, for each, whether it exited 0.
///
/// Starting a shell costs far more than what a status command does, so
/// instead of one `/bin/sh -c` each, the commands are dealt out to at most
/// `workers` shells, and each shell runs its share one after another, each
/// command in a subshell of its own: `( eval 'COMMAND' ) </dev/null`. A
/// subshell is a fork of a shell already loaded, so a command made of shell
/// builtins starts no program at all. The subshell keeps commands from one
/// another as separate shells would (variables, options, `exit`, `cd`, a
/// syntax error), and the quoting keeps every command text from touching
/// the script around it. Output is discarded.
///
/// Each command is bounded by its own timeout, counted from the moment the
/// one before it reported: a command that runs past it ends its shell's
/// process group (TERM, then KILL, as [`run_shell`] does), is reported as
/// timed out, and the rest of that share goes on in a new shell.
pub fn run_many(commands: &[(String, Duration)], workers: usize) -> Vec<Result<bool, String>> {
    let workers = workers.clamp(1, commands.len().max(1));
    let mut results: Vec<Option<Result<bool, String>>> = vec![None; commands.len()];
    let slots = std::sync::Mutex::new(&mut results);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let share: Vec<(usize, &str, Duration)> = commands
                .iter()
                .enumerate()
                .skip(worker)
                .step_by(workers)
                .map(|(index, (command, timeout))| (index, command.as_str(), *timeout))
                .collect();
            let slots = &slots;
            scope.spawn(move || {
                let done = run_share(&share);
                if let Ok(mut slots) = slots.lock() {
                    for (index, result) in done {
                        slots[index] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err("the command did not run".to_string())))
        .collect()
}

/// Runs one worker's share of [`run_many`], in as few shells as it can.
fn run_share(share: &[(usize, &str, Duration)]) -> Vec<(usize, Result<bool, String>)> {
    let mut results = Vec::with_capacity(share.len());
    let mut rest = share;
    while let Some(&(index, command, _)) = rest.first() {
        if command.contains('\0') {
            results.push((index, Err(format!("`{command}` contains a NUL byte"))));
            rest = &rest[1..];
            continue;
        }
        // The shell outlives a command that ignores TERM (a caught signal
        // waits for the foreground command), so that one gets KILL after
        // the grace period as it would running alone.
        let mut script = String::from("trap 'exit 143' TERM\n");
        let mut count = 0;
        for (position, (_, command, _)) in rest.iter().enumerate() {
            if command.contains('\0')
                || (count > 0 && script.len() + command.len() > BATCH_SCRIPT_BYTES)
            {
                break;
            }
            let quoted = command.replace('\'', r"'\''");
            script.push_str(&format!(
                "( eval '{quoted}' ) </dev/null >/dev/null 2>&1; echo \"{position} $?\"\n"
            ));
            count += 1;
        }
        let ran = run_batch(&script, &rest[..count]);
        let finished = ran.len();
        results.extend(ran);
        rest = &rest[finished.max(1).min(rest.len())..];
    }
    results
}

/// Runs one shell over `batch` (the script runs them in order and prints
/// "POSITION STATUS" after each). Returns the results of the commands that
/// finished or timed out, in order; the caller runs the rest again.
fn run_batch(
    script: &str,
    batch: &[(usize, &str, Duration)],
) -> Vec<(usize, Result<bool, String>)> {
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            return batch
                .iter()
                .map(|(index, command, _)| {
                    (*index, Err(format!("cannot run `{command}`: {error}")))
                })
                .collect()
        }
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut since = Instant::now();
    while let Some(&(index, command, timeout)) = batch.get(results.len()) {
        let left = timeout.saturating_sub(since.elapsed());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let mut fields = line.split(' ');
                let position = fields.next().and_then(|f| f.parse::<usize>().ok());
                let status = fields.next().and_then(|f| f.parse::<i32>().ok());
                if let (Some(position), Some(status)) = (position, status) {
                    if position == results.len() {
                        results.push((index, Ok(status == 0)));
                        since = Instant::now();
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                end_group(&mut child);
                let outcome = CommandOutcome {
                    status: None,
                    timed_out: true,
                    output: String::new(),
                    tail: String::new(),
                };
                results.push((index, Err(outcome.failure(command, timeout))));
                return results;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // The shell ended without reporting this one: it was killed,
                // by this command or from outside. Say so for this command;
                // the rest run again in a new shell.
                end_group(&mut child);
                results.push((
                    index,
                    Err(format!("the shell running `{command}` ended before it did")),
                ));
                return results;
            }
        }
    }
    let _ = child.wait();
    results
}

/// Ends a shell's process group: TERM, then KILL after [`TERM_GRACE`].
fn end_group(child: &mut std::process::Child) {
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let started = Instant::now();
    while started.elapsed() < TERM_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

/// Where the running jail commands are recorded, one file per command
/// holding its process group's pid; set once a transaction has an id.
static COMMAND_DIRECTORY: std::sync::Mutex<Option<std::path::PathBuf>> =
    std::sync::Mutex::new(None);

/// Records running commands under `directory` from now on.
pub fn track_commands_in(directory: &std::path::Path) {
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory);
    if made.is_ok() {
        if let Ok(mut slot) = COMMAND_DIRECTORY.lock() {
            *slot = Some(directory.to_path_buf());
        }
    }
}

/// A new, unique record path for a command about to start.
fn new_command_record() -> Option<std::path::PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let directory = COMMAND_DIRECTORY.lock().ok()?.clone()?;
    Some(directory.join(format!("{}.{number}", std::process::id())))
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
    let paths: Vec<std::path::PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    // A record whose shell has not written its pid yet was being spawned
    // when jailswap died: give the shell a moment to write it (it does so
    // first thing); a record that stays empty was never spawned.
    let read_pid = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
    };
    let spawn_grace = Instant::now();
    while spawn_grace.elapsed() < Duration::from_secs(2)
        && paths.iter().any(|path| read_pid(path).is_none())
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let running: Vec<i32> = paths
        .iter()
        .filter_map(|path| read_pid(path))
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
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
    running.len()
}

#[cfg(test)]
mod tests;
