//! Health probes as real hosts run them: `http` (GET answers 2xx, and the
//! body holds `contains` when given), `tcp` (a connection succeeds) and
//! `cmd` (the command exits 0). One attempt each, bounded by the time left;
//! the retry loop is the engine's (`health.rs`).

use crate::config::{HealthCheck, JailSpec};
use crate::process;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One attempt at one check.
pub fn probe(jail: &JailSpec, check: &HealthCheck, timeout: Duration) -> Result<(), String> {
    let timeout = timeout.max(Duration::from_millis(1));
    match check {
        HealthCheck::Http { url, contains } => http(url, contains.as_deref(), timeout),
        HealthCheck::Tcp { address } => tcp(address, timeout),
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

fn http(url: &str, contains: Option<&str>, timeout: Duration) -> Result<(), String> {
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
    let Some(text) = contains else {
        return Ok(());
    };
    let mut body = String::new();
    response
        .into_reader()
        .take(1 << 20)
        .read_to_string(&mut body)
        .map_err(|error| format!("GET {url}: cannot read body: {error}"))?;
    if body.contains(text) {
        return Ok(());
    }
    let first: String = body.lines().next().unwrap_or("").chars().take(80).collect();
    Err(format!(
        "GET {url}: body does not contain {text:?} (first line: {first:?})"
    ))
}

fn tcp(address: &str, timeout: Duration) -> Result<(), String> {
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
