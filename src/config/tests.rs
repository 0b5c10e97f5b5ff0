//! Configuration parsing: names, defaults, durations, batch sizes.

use super::parse::TOP_LEVEL_KEYS;
use super::*;

fn parse_text(text: &str) -> Result<Settings> {
    parse(text, Path::new("/test/jailswap.toml"))
}

// Names follow the documented pattern; shell metacharacters are refused.
#[test]
fn names() {
    for good in ["ns", "www.example", "a_b-c", "9"] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["", "-x", ".x", "a b", "a;rm", "a/b", "$(x)", "é"] {
        assert!(!valid_name(bad), "{bad}");
    }
}

// Defaults are inherited, dependencies are levelled, cycles refused.
#[test]
fn defaults_levels_and_cycles() {
    let settings = parse_text(
        "store = \"/tmp\"\n[defaults]\nstart = \"go ${name}\"\n[[jail]]\nname = \"web\"\ndepends = [\"db\"]\n[[jail]]\nname = \"db\"\nstart = \"own\"\n",
    )
    .unwrap();
    assert_eq!(settings.jails[0].spec.start, "go ${name}");
    assert_eq!(settings.jails[1].spec.start, "own");
    assert_eq!(settings.levels, vec![vec![1], vec![0]]);
    assert_eq!(settings.jails[0].spec.path, PathBuf::from("/tmp/web"));
    let error = parse_text("store = \"/tmp\"\n[[jail]]\nname = \"a\"\ndepends = [\"b\"]\n[[jail]]\nname = \"b\"\ndepends = [\"a\"]\n").unwrap_err();
    assert!(error.to_string().contains("cycle"), "{error}");
}

// Unknown keys are refused with their name.
#[test]
fn unknown_key() {
    let error = parse_text("store = \"/tmp\"\nstroe = 1\n[[jail]]\nname = \"a\"\n").unwrap_err();
    assert!(error.to_string().contains("stroe"), "{error}");
}

// A top-level key appended below a section is read by TOML as part of that
// section; the help says to move it up, and only for top-level keys.
#[test]
fn top_level_key_below_a_section() {
    let error = parse_text("store = \"/tmp\"\n[[jail]]\nname = \"a\"\nparallel = 2\n").unwrap_err();
    let help = error.help().unwrap_or_default();
    assert!(
        help.contains("`parallel` is a top-level key"),
        "{error}: {help}"
    );
    let error =
        parse_text("store = \"/tmp\"\n[[jail]]\nname = \"a\"\nstrat = \"x\"\n").unwrap_err();
    let help = error.help().unwrap_or_default();
    assert!(!help.contains("top-level key"), "{error}: {help}");
    let error = parse_text("store = \"/tmp\"\nstroe = 1\n[[jail]]\nname = \"a\"\n").unwrap_err();
    let help = error.help().unwrap_or_default();
    assert!(!help.contains("top-level key"), "{error}: {help}");
    // The list of top-level keys is the file's, less its sections: the
    // parser names them all when it meets an unknown one.
    let expected: Vec<String> = error
        .to_string()
        .split("expected one of ")
        .nth(1)
        .unwrap_or_default()
        .split(", ")
        .map(|name| name.trim().trim_matches('`').to_string())
        .filter(|name| !["rolling", "defaults", "health", "jail"].contains(&name.as_str()))
        .collect();
    assert_eq!(expected, TOP_LEVEL_KEYS, "{error}");
}

// A zero duration is a duration out of range, not a malformed one.
#[test]
fn zero_duration_is_out_of_range() {
    let error =
        parse_text("store = \"/tmp\"\n[defaults]\ntimeout = \"0s\"\n[[jail]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
    assert!(error.contains("out of range"), "{error}");
    let error =
        parse_text("store = \"/tmp\"\n[defaults]\ntimeout = \"soon\"\n[[jail]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
    assert!(error.contains("not a duration"), "{error}");
}

// Batch sizes parse as Ansible's `serial`, and split jails as it does.
#[test]
fn batches() {
    let table: [(&str, usize, &[usize]); 6] = [
        ("1,25%", 10, &[1, 3, 3, 3]),
        ("1", 3, &[1, 1, 1]),
        ("10%", 10, &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        ("10%", 1000, &[100; 10]),
        ("2,100%", 5, &[2, 3]),
        ("50%", 3, &[2, 1]),
    ];
    for (text, count, expected) in table {
        assert_eq!(
            Batches::parse(text).unwrap().lengths(count),
            expected,
            "{text} of {count}"
        );
    }
    for bad in ["0", "0%", "150%", "", "1,,2", "1.5", "-1", "x"] {
        assert!(Batches::parse(bad).is_err(), "{bad}");
    }
}
