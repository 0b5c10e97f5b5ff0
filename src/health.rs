//! Health checks of a jail, retried every `interval` until the jail's
//! `timeout`: all of a jail's checks must pass. Each attempt is one
//! [`Host::probe`], bounded by the time left, so a check that hangs cannot
//! hold the transaction past its timeout.

use crate::config::{HealthCheck, JailSpec};
use crate::host::Host;
use std::time::{Duration, Instant};

/// Checks a jail until all its checks pass or its health timeout runs out.
pub fn check_jail<H: Host + ?Sized>(host: &H, jail: &JailSpec) -> Result<(), String> {
    check_with(jail, |check, left| host.probe(jail, check, left))
}

/// The retry loop, with `probe` as the one attempt. The cause of a failure
/// is the last answer that came in time: an attempt that the deadline cut
/// short (a slow answer, a busy machine) says less about the jail than the
/// answer before it, so it is named after that answer, not instead of it.
fn check_with(
    jail: &JailSpec,
    mut probe: impl FnMut(&HealthCheck, Duration) -> Result<(), String>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(jail.health_timeout_ms);
    let interval = Duration::from_millis(jail.health_interval_ms);
    let started = Instant::now();
    let mut passed = vec![false; jail.health.len()];
    let mut last_error = String::new();
    let mut last_in_time: Option<String> = None;
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
            match probe(check, left) {
                Ok(()) => passed[index] = true,
                Err(error) => {
                    if started.elapsed() < timeout {
                        last_in_time = Some(error.clone());
                    }
                    last_error = error;
                }
            }
        }
        if passed.iter().all(|ok| *ok) {
            return Ok(());
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            let why = match last_in_time {
                Some(answer) if answer != last_error => {
                    format!("{answer} (then, cut short by the deadline: {last_error})")
                }
                _ => last_error,
            };
            return Err(format!(
                "not healthy after {}: {why}",
                humantime::format_duration(Duration::from_millis(timeout.as_millis() as u64))
            ));
        }
        std::thread::sleep(interval.min(timeout - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(timeout_ms: u64, interval_ms: u64) -> JailSpec {
        JailSpec {
            name: "web".into(),
            path: "/j/web".into(),
            fstab: None,
            mounts: Vec::new(),
            depends: Vec::new(),
            start: String::new(),
            stop: String::new(),
            status: None,
            timeout_ms: 1000,
            health: vec![HealthCheck::Tcp {
                address: "127.0.0.1:1".into(),
            }],
            health_timeout_ms: timeout_ms,
            health_interval_ms: interval_ms,
        }
    }

    // A jail that answers 500 and then, on a busy machine, answers too late
    // for the deadline: the cause is the 500, with the cut-off named after it.
    #[test]
    fn the_cause_is_the_last_answer_that_came_in_time() {
        let mut attempts = 0;
        let error = check_with(&jail(300, 50), |_, left| {
            attempts += 1;
            if attempts == 1 {
                Err("GET http://x/ answered 500".into())
            } else {
                std::thread::sleep(left);
                Err("GET http://x/: timed out reading response".into())
            }
        })
        .unwrap_err();
        assert!(
            error.starts_with("not healthy after 300ms: GET http://x/ answered 500 (then, cut short by the deadline: GET http://x/: timed out"),
            "{error}"
        );
    }

    // A check that hangs from the first attempt has only the timeout to say;
    // one that keeps answering the same is named once.
    #[test]
    fn a_single_cause_is_named_once() {
        let error = check_with(&jail(100, 20), |_, left| {
            std::thread::sleep(left);
            Err("timed out".into())
        })
        .unwrap_err();
        assert_eq!(error, "not healthy after 100ms: timed out");
        let error = check_with(&jail(100, 20), |_, _| Err("refused".into())).unwrap_err();
        assert_eq!(error, "not healthy after 100ms: refused");
        assert_eq!(check_with(&jail(100, 20), |_, _| Ok(())), Ok(()));
    }
}
