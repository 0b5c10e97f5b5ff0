//! Health checks of a jail, retried every `interval` until the jail's
//! `timeout`: all of a jail's checks must pass. Each attempt is one
//! [`Host::probe`], bounded by the time left, so a check that hangs cannot
//! hold the transaction past its timeout.

use crate::config::JailSpec;
use crate::host::Host;
use std::time::{Duration, Instant};

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
