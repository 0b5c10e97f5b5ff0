//! The configuration and fstab parsers never panic, whatever the input:
//! every input yields a value or an error (property tests, bounded).

use jailswap::config::Config;
use jailswap::fstab;
use proptest::prelude::*;
use std::path::Path;

/// Fragments that steer random text towards what the parsers look at.
fn config_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("store = \"/tmp\"\n".to_string()),
        Just("live = \"mroot\"\n".to_string()),
        Just("parallel = 0\n".to_string()),
        Just("parallel = 99999999999999999999\n".to_string()),
        Just("carry = [\"usr/ports\", \"../x\", \"\"]\n".to_string()),
        Just("[health]\ntimeout = \"1s\"\ninterval = \"0s\"\n".to_string()),
        Just("[defaults]\nstart = \"x ${name}\"\ntimeout = \"-1s\"\n".to_string()),
        Just("[[jail]]\nname = \"a\"\n".to_string()),
        Just("[[jail]]\nname = \"b\"\ndepends = [\"a\", \"b\"]\n".to_string()),
        Just("[[jail.health]]\nhttp = \"http://[::1]:0/\"\ncontains = \"\u{0}\"\n".to_string()),
        Just("fstab = \"/dev/null\"\n".to_string()),
        Just("path = \"relative\"\n".to_string()),
        "[ -~\n]{0,40}",
        "\\PC{0,20}",
    ];
    proptest::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat())
}

fn fstab_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("/a /b nullfs ro 0 0".to_string()),
        Just("/a\\040b /c\\0 nullfs rw,noatime".to_string()),
        Just("# comment".to_string()),
        Just("/a b nullfs ro x y".to_string()),
        Just("\\\\\\777 /x y z".to_string()),
        "[ -~\t]{0,60}",
        "\\PC{0,30}",
    ];
    proptest::collection::vec(line, 0..10).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn configuration_parser_never_panics(text in config_text()) {
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn fstab_parser_never_panics(text in fstab_text()) {
        if let Ok(mounts) = fstab::parse(&text, Path::new("fuzz.fstab")) {
            for mount in mounts {
                // Whatever parses can be printed back and parses the same.
                let again = fstab::parse(&mount.describe(), Path::new("again")).expect("a described line parses");
                prop_assert_eq!(again.len(), 1);
                prop_assert_eq!(&again[0].target, &mount.target);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Config::parse(&text, Path::new("fuzz.toml"));
        let _ = fstab::parse(&text, Path::new("fuzz.fstab"));
        let _ = fstab::unescape(&text);
    }
}

// Regression: lines whose fields start with `#` or whose options are empty
// still print back into a line that parses.
#[test]
fn awkward_lines_round_trip() {
    for line in ["\\043a /b nullfs ro", "/a /b nullfs ,"] {
        let mounts = fstab::parse(line, Path::new("f")).unwrap();
        let again = fstab::parse(&mounts[0].describe(), Path::new("again")).unwrap();
        assert_eq!(again[0].source, mounts[0].source);
    }
}
