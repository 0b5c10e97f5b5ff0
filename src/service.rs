//! The small HTTP service that the demo's and the tests' jails run.
//!
//! It answers every request with the contents of `ROOT/VERSION` as the jail
//! sees it (500 when the file is missing), keeps its working directory in
//! the jail root so that the jail's mount is busy while it runs, as a real
//! jail's processes keep it, and writes its pid once it listens.

use crate::cli::ServeArgs;
use crate::error::{Error, Result};

/// The service's failures are the world's: a port taken, a directory gone.
fn failed(message: String) -> Error {
    Error::Host(crate::host::HostError::Failed(message))
}
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

pub fn serve(args: &ServeArgs) -> Result<u8> {
    if args.detach {
        return detach(args);
    }
    #[cfg(feature = "fault-injection")]
    if args.ignore_term {
        // Registering a handler replaces the default action (terminate).
        let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, ignored)
            .map_err(|e| failed(format!("cannot ignore TERM: {e}")))?;
    }
    let delay = crate::config::parse_duration(&args.start_delay)
        .ok_or_else(|| Error::Usage(format!("bad --start-delay {:?}", args.start_delay)))?;
    std::thread::sleep(delay);
    std::env::set_current_dir(&args.root).map_err(|e| {
        failed(format!(
            "cannot enter {:?}: {e}",
            args.root.display().to_string()
        ))
    })?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let temporary = args.pidfile.with_extension("tmp");
    std::fs::write(&temporary, format!("{}\n", std::process::id()))
        .map_err(|e| failed(format!("cannot write pidfile: {e}")))?;
    std::fs::rename(&temporary, &args.pidfile)
        .map_err(|e| failed(format!("cannot write pidfile: {e}")))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        // Read the request head up to the blank line.
        for _ in 0..100 {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.trim().is_empty() => break,
                Ok(_) => {}
            }
        }
        // Read relative to the working directory: the jail root as mounted.
        let response = match std::fs::read_to_string("VERSION") {
            Ok(version) => format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{version}", version.len()),
            Err(_) => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 11\r\nConnection: close\r\n\r\nno VERSION\n".to_string(),
        };
        let _ = stream.write_all(response.as_bytes());
    }
    Ok(0)
}

/// Starts the service in its own process group and returns once it listens.
fn detach(args: &ServeArgs) -> Result<u8> {
    let program =
        std::env::current_exe().map_err(|e| failed(format!("cannot find own executable: {e}")))?;
    let _ = std::fs::remove_file(&args.pidfile);
    let mut child = std::process::Command::new(program)
        .arg("serve")
        .arg("--root")
        .arg(&args.root)
        .arg("--listen")
        .arg(&args.listen)
        .arg("--pidfile")
        .arg(&args.pidfile)
        .arg("--start-delay")
        .arg(&args.start_delay)
        .args(ignore_term(args).then_some("--ignore-term"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot start the service: {e}")))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(text) = std::fs::read_to_string(&args.pidfile) {
            if text.trim() == child.id().to_string() {
                return Ok(0);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("the service exited at start with {status}")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(failed(
        "the service did not start listening within 30 s".into(),
    ))
}

#[cfg(feature = "fault-injection")]
fn ignore_term(args: &ServeArgs) -> bool {
    args.ignore_term
}

#[cfg(not(feature = "fault-injection"))]
fn ignore_term(_: &ServeArgs) -> bool {
    false
}
