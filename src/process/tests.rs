//! Running commands: outcomes, shared shells, timeouts.

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

fn many(commands: &[&str], timeout: Duration, workers: usize) -> Vec<Result<bool, String>> {
    let commands: Vec<(String, Duration)> =
        commands.iter().map(|c| (c.to_string(), timeout)).collect();
    run_many(&commands, workers)
}

// Commands sharing a shell answer as they would alone: each in its own
// subshell, whatever its quoting, syntax, `exit`, variables or stdin.
#[test]
fn many_commands_keep_apart() {
    let commands = [
        "true",
        "false",
        "exit 3",
        "[ 'a b' = \"a b\" ]",
        "echo ')' ; ( exit 0 ) && x=set && cd / && set -e",
        "[ -z \"${x:-}\" ] && [ \"$(pwd)\" != / ]",
        "echo 'unterminated",
        "if then fi",
        "exit 0; false",
        "read line",
        "echo out; echo err >&2; true",
        "sleep 5 & true",
        "printf '%s' \"'\"\"'\" | grep -q \"'\"",
    ];
    let started = Instant::now();
    for workers in [1, 2, 8] {
        let results = many(&commands, Duration::from_secs(20), workers);
        let got: Vec<Option<bool>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(
            got,
            [true, false, false, true, true, true, false, false, true, false, true, true, true]
                .map(Some),
            "workers {workers}: {results:?}"
        );
    }
    // The background `sleep 5` holds nothing the shells wait for.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

// Many commands, more script than one shell takes: every answer lands
// at its own index.
#[test]
fn many_commands_in_order() {
    let padding = ": ".to_string() + &"x".repeat(1500) + "; ";
    let commands: Vec<String> = (0..300)
        .map(|k| format!("{padding}[ $(({k} % 3)) = 0 ]"))
        .collect();
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    for workers in [1, 3] {
        let results = many(&refs, Duration::from_secs(20), workers);
        for (k, result) in results.iter().enumerate() {
            assert_eq!(result, &Ok(k % 3 == 0), "workers {workers}, command {k}");
        }
    }
}

// A command past its timeout is reported as such and ended; the others
// of its shell, before and after it, still answer.
#[test]
fn many_commands_one_hangs() {
    let started = Instant::now();
    let results = many(
        &[
            "true",
            "false",
            "sleep 30",
            "true",
            "false",
            "trap '' TERM; sleep 30",
            "true",
        ],
        Duration::from_millis(300),
        1,
    );
    let elapsed = started.elapsed();
    assert_eq!(results[0], Ok(true));
    assert_eq!(results[1], Ok(false));
    assert!(
        results[2].as_ref().is_err_and(|e| e.contains("timed out")),
        "{results:?}"
    );
    assert_eq!(results[3], Ok(true));
    assert_eq!(results[4], Ok(false));
    assert!(
        results[5].as_ref().is_err_and(|e| e.contains("timed out")),
        "{results:?}"
    );
    assert_eq!(results[6], Ok(true));
    // Two timeouts, one of them waiting out the TERM grace before KILL.
    assert!(
        elapsed >= TERM_GRACE && elapsed < TERM_GRACE + Duration::from_secs(5),
        "{elapsed:?}"
    );
}

// A command that kills the shell it runs in, and one that cannot be
// handed to a shell, fail alone.
#[test]
fn many_commands_shell_lost() {
    let results = many(
        &["true", "kill -9 $$", "false", "nul\0byte", "true"],
        Duration::from_secs(20),
        1,
    );
    assert_eq!(results[0], Ok(true));
    assert!(
        results[1]
            .as_ref()
            .is_err_and(|e| e.contains("ended before")),
        "{results:?}"
    );
    assert_eq!(results[2], Ok(false));
    assert!(
        results[3].as_ref().is_err_and(|e| e.contains("NUL")),
        "{results:?}"
    );
    assert_eq!(results[4], Ok(true));
    assert!(many(&[], Duration::from_secs(1), 4).is_empty());
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
