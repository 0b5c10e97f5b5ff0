//! Health checks: `http`, `tcp` and `cmd`, retried every `interval` until
//! the jail's `timeout`. Every attempt is bounded by the time left, so a
//! check that hangs cannot hold the transaction past its timeout.

use crate::config::{HealthCheck, JailSpec};
use crate::host::Host;
use crate::process;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One attempt at one check.
pub fn probe(jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
    let timeout = timeout.max(Duration::from_millis(1));
    match check {
        HealthCheck::Http { url, contains } => {
            let agent = ureq::AgentBuilder::new()
                .timeout(timeout)
                .redirects(0)
                .build();
            let response = agent.get(url).call().map_err(|error| match error {
                ureq::Error::Status(code, _) => format!("GET {url} answered {code}"),
                ureq::Error::Transport(transport) => format!("GET {url}: {transport}"),
            })?;
            let status = response.status();
            if !(200..300).contains(&status) {
                return Err(format!("GET {url} answered {status}"));
            }
            if let Some(text) = contains {
                let mut body = String::new();
                response
                    .into_reader()
                    .take(1 << 20)
                    .read_to_string(&mut body)
                    .map_err(|error| format!("GET {url}: cannot read body: {error}"))?;
                if !body.contains(text.as_str()) {
                    let first = body
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(80)
                        .collect::<String>();
                    return Err(format!(
                        "GET {url}: body does not contain {text:?} (first line: {first:?})"
                    ));
                }
            }
            Ok(())
        }
        HealthCheck::Tcp { address } => {
            let addresses: Vec<_> = address
                .to_socket_addrs()
                .map_err(|error| format!("tcp {address}: {error}"))?
                .collect();
            let mut last = format!("tcp {address}: no address");
            for socket in addresses {
                match TcpStream::connect_timeout(&socket, timeout) {
                    Ok(_) => return Ok(()),
                    Err(error) => last = format!("tcp {address}: {error}"),
                }
            }
            Err(last)
        }
        HealthCheck::Cmd { command } => {
            let command = jail.expand(command);
            let outcome = process::run_shell(&command, timeout)
                .map_err(|error| format!("cannot run `{command}`: {error}"))?;
            if outcome.success() {
                Ok(())
            } else {
                Err(outcome.failure(&command, timeout))
            }
        }
    }
}

/// Checks a jail until all its checks pass or its health timeout runs out.
pub fn check_jail<H: Host + ?Sized>(host: &H, jail: &JailSpec) -> Result<(), String> {
    let timeout = Duration::from_millis(jail.health_timeout_ms);
    let interval = Duration::from_millis(jail.health_interval_ms);
    let started = Instant::now();
    let mut passed = vec![false; jail.health.len()];
    let mut last_error = String::new();
    // Bounded: every round takes at least `interval` or ends the loop.
    loop {
        for (index, check) in jail.health.iter().enumerate() {
            if passed[index] {
                continue;
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match host.probe(jail, check, left) {
                Ok(()) => passed[index] = true,
                Err(error) => last_error = error,
            }
        }
        if passed.iter().all(|ok| *ok) {
            return Ok(());
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(format!(
                "not healthy after {}: {last_error}",
                humantime::format_duration(Duration::from_millis(timeout.as_millis() as u64))
            ));
        }
        std::thread::sleep(interval.min(timeout - elapsed));
    }
}
