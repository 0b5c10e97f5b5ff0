//! Tests of `jailswap init --from-jail-conf` and `--from-fstab` through the
//! library: real-looking jail.conf and fstab files in, a jailswap.toml out,
//! parsed back with the toml crate and checked field by field.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jailswap::import::{from_fstab, from_jail_conf, ImportError};

const FIXTURES: &[&str] = &[
    "handbook-fstab",
    "handbook-fstab.mail",
    "handbook-fstab.ns",
    "handbook-fstab.www",
    "handbook-jail.conf",
    "layered-fstab",
    "seed002-h1.fstab",
    "seed002-jail.conf",
    "seed002-vnet-jail.conf",
    "thin-jail.conf",
    "thinjail0.fstab",
    "thinjail1.fstab",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The files a host would have, keyed by the absolute path jail.conf names,
/// served from fixtures; every path asked for is recorded.
struct Host {
    files: BTreeMap<PathBuf, String>,
    requested: RefCell<Vec<PathBuf>>,
}

impl Host {
    fn new(files: &[(&str, &str)]) -> Self {
        Host {
            files: files
                .iter()
                .map(|(path, name)| (PathBuf::from(path), fixture(name)))
                .collect(),
            requested: RefCell::new(Vec::new()),
        }
    }

    fn read(&self, path: &Path) -> Option<String> {
        self.requested.borrow_mut().push(path.to_path_buf());
        self.files.get(path).cloned()
    }

    fn requested(&self) -> Vec<String> {
        self.requested
            .borrow()
            .iter()
            .map(|path| path.display().to_string())
            .collect()
    }
}

fn handbook_host() -> Host {
    Host::new(&[
        ("/etc/fstab.ns", "handbook-fstab.ns"),
        ("/etc/fstab.mail", "handbook-fstab.mail"),
        ("/etc/fstab.www", "handbook-fstab.www"),
    ])
}

fn no_files(_: &Path) -> Option<String> {
    None
}

fn import_jail_conf(text: &str, store: &str, host: &Host) -> Result<String, ImportError> {
    from_jail_conf(
        text,
        Path::new("/etc/jail.conf"),
        Path::new(store),
        &|path: &Path| host.read(path),
    )
}

fn import_fstab(text: &str, store: &str) -> Result<String, ImportError> {
    from_fstab(text, Path::new("/etc/fstab"), Path::new(store))
}

fn parse(output: &str) -> toml::Value {
    toml::from_str::<toml::Value>(output)
        .unwrap_or_else(|error| panic!("output is not valid TOML: {error}\n{output}"))
}

/// The comment text of `output` joined into one line, so that notes match
/// whatever their wrapping.
fn prose(output: &str) -> String {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .collect::<Vec<_>>()
        .join(" ")
}

fn string<'a>(value: &'a toml::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(toml::Value::as_str)
}

fn jails(document: &toml::Value) -> Vec<toml::Value> {
    document
        .get("jail")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn jail<'a>(jails: &'a [toml::Value], name: &str) -> &'a toml::Value {
    jails
        .iter()
        .find(|jail| string(jail, "name") == Some(name))
        .unwrap_or_else(|| panic!("no jail {name}"))
}

fn names(jails: &[toml::Value]) -> Vec<&str> {
    jails
        .iter()
        .filter_map(|jail| string(jail, "name"))
        .collect()
}

fn depends(jail: &toml::Value) -> Vec<&str> {
    jail.get("depends")
        .and_then(toml::Value::as_array)
        .map(|list| list.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default()
}

fn expect_error(result: Result<String, ImportError>) -> ImportError {
    match result {
        Ok(output) => panic!("expected an error, got:\n{output}"),
        Err(error) => error,
    }
}

fn assert_defaults(document: &toml::Value) {
    let defaults = document.get("defaults").expect("a [defaults] table");
    assert_eq!(
        string(defaults, "start"),
        Some("service jail start ${name}")
    );
    assert_eq!(string(defaults, "stop"), Some("service jail stop ${name}"));
    assert_eq!(string(defaults, "status"), Some("jls -j ${name}"));
}

// ---------------------------------------------------------------------------
// --from-fstab
// ---------------------------------------------------------------------------

#[test]
fn handbook_fstab_groups_each_jails_lines_in_file_order() {
    // Proves the Handbook's /etc/fstab yields ns, mail and www, each with its template and /s lines in order, and ignores the host's own lines.
    let output = import_fstab(&fixture("handbook-fstab"), "/home/j").expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "store"), Some("/home/j"));
    assert_eq!(string(&document, "live"), Some("mroot"));
    assert_defaults(&document);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["ns", "mail", "www"]);
    for (name, template_line, rw_line) in [("ns", 11, 14), ("mail", 12, 15), ("www", 13, 16)] {
        let jail = jail(&jails, name);
        assert_eq!(
            string(jail, "path"),
            Some(format!("/home/j/{name}").as_str())
        );
        assert_eq!(
            string(jail, "fstab"),
            Some(format!("/etc/fstab.{name}").as_str())
        );
        assert!(jail.get("depends").is_none());
        let header = format!(
            "# Create /etc/fstab.{name} with these lines, in this order (/etc/fstab lines {template_line}, {rw_line}):"
        );
        assert!(output.contains(&header), "missing {header:?} in\n{output}");
        assert!(output.contains(&format!(
            "# {name}: /etc/fstab line {template_line} mounts the template"
        )));
    }
    // The lines are copied verbatim, template first, under the jail they belong to.
    let ns_block = "#     /home/j/mroot   /home/j/ns     nullfs  ro  0   0\n\
                    #     /home/js/ns     /home/j/ns/s   nullfs  rw  0   0\n";
    assert!(output.contains(ns_block), "{output}");
    let mail_block = "#     /home/j/mroot   /home/j/mail   nullfs  ro  0   0\n\
                      #     /home/js/mail   /home/j/mail/s nullfs  rw  0   0\n";
    assert!(output.contains(mail_block), "{output}");
    for host_line in ["/dev/ada0p2", "/dev/ada0p3", "procfs", "fdescfs"] {
        assert!(
            !output.contains(host_line),
            "host line {host_line} leaked into\n{output}"
        );
    }
}

#[test]
fn layered_fstab_assigns_devfs_and_nested_mounts_and_reports_orphans() {
    // Proves 4- to 6-field lines, trailing comments and dotted names work, nested mounts join their jail, and a store line with no template root is reported, not imported.
    let output = import_fstab(&fixture("layered-fstab"), "/jails/").expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "store"), Some("/jails"));
    assert_eq!(string(&document, "live"), Some("mroot"));
    let jails = jails(&document);
    assert_eq!(names(&jails), ["web.example", "db"]);
    assert_eq!(
        string(jail(&jails, "web.example"), "path"),
        Some("/jails/web.example")
    );
    assert_eq!(string(jail(&jails, "db"), "fstab"), Some("/etc/fstab.db"));
    assert!(output.contains(
        "# Create /etc/fstab.web.example with these lines, in this order (/etc/fstab lines 9, 11, 12, 14):"
    ));
    assert!(output.contains(
        "# Create /etc/fstab.db with these lines, in this order (/etc/fstab lines 10, 13):"
    ));
    // The escaped space is copied as written, so the new file keeps fstab's syntax.
    assert!(output.contains(
        "#     /home/shared\\040music\t/jails/web.example/s/music\tnullfs\tro\t\t0\t0\n"
    ));
    assert!(
        output.contains("#     devfs\t\t\t/jails/web.example/dev\t\tdevfs\trw,ruleset=4\t0\t0\n")
    );
    assert!(prose(&output)
        .contains("Not imported: /etc/fstab line 15 mounts /jails/old/s below the store"));
    assert!(!output.contains("name = \"old\""));
}

#[test]
fn fstab_escapes_are_decoded_and_paths_are_escaped_in_toml() {
    // Proves `\040` in fstab paths is decoded to a space for matching and the resulting path and store survive the TOML round trip.
    let text = "/srv/jail\\040store/mroot /srv/jail\\040store/ns nullfs ro 0 0\n\
                /srv/data/ns /srv/jail\\040store/ns/s nullfs rw 0 0\n";
    let output = import_fstab(text, "/srv/jail store").expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "store"), Some("/srv/jail store"));
    let jails = jails(&document);
    assert_eq!(names(&jails), ["ns"]);
    assert_eq!(
        string(jail(&jails, "ns"), "path"),
        Some("/srv/jail store/ns")
    );
}

#[test]
fn fstab_line_with_three_fields_is_refused_with_its_line() {
    // Proves a 3-field fstab line is an error naming its line and the expected form.
    let text =
        "# jails\n/home/j/mroot /home/j/ns nullfs ro 0 0\n\n/home/js/ns /home/j/ns/s nullfs\n";
    let error = expect_error(import_fstab(text, "/home/j"));
    assert_eq!(error.file, PathBuf::from("/etc/fstab"));
    assert_eq!(error.line, 4);
    assert!(error.message.contains("found 3 fields"), "{error}");
    assert!(
        error
            .message
            .contains("source mountpoint type options [dump [pass]]"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("/etc/fstab:4: found 3 fields"),
        "{error}"
    );
}

#[test]
fn fstab_line_with_seven_fields_or_a_bad_pass_is_refused() {
    // Proves more than 6 fields, and a dump or pass that is not a number, are errors on their line.
    let error = expect_error(import_fstab(
        "/home/j/mroot /home/j/ns nullfs ro 0 0 extra\n",
        "/home/j",
    ));
    assert_eq!(error.line, 1);
    assert!(
        error.message.contains("found 7 fields; expected at most 6"),
        "{error}"
    );
    let error = expect_error(import_fstab(
        "\n/home/j/mroot /home/j/ns nullfs ro 0 x\n",
        "/home/j",
    ));
    assert_eq!(error.line, 2);
    assert!(error.message.contains("found pass field \"x\""), "{error}");
}

#[test]
fn fstab_without_template_mount_is_refused_for_the_whole_file() {
    // Proves an fstab that mounts nothing from the store is an error for the file (line 0) naming the store and the expected line.
    let error = expect_error(import_fstab(&fixture("handbook-fstab"), "/usr/jails"));
    assert_eq!(error.line, 0);
    assert!(error.message.contains("\"/usr/jails\""), "{error}");
    assert!(
        error.to_string().starts_with("/etc/fstab: found no line"),
        "{error}"
    );
}

#[test]
fn fstab_jails_mounting_different_templates_are_refused() {
    // Proves jails that mount two different templates are refused at the second one, since jailswap swaps one live template.
    let text = "/home/j/mroot /home/j/ns nullfs ro 0 0\n/home/j/mroot2 /home/j/www nullfs ro 0 0\n";
    let error = expect_error(import_fstab(text, "/home/j"));
    assert_eq!(error.line, 2);
    assert!(error.message.contains("template \"mroot2\""), "{error}");
    assert!(
        error.message.contains("/etc/fstab line 1 mounts \"mroot\""),
        "{error}"
    );
}

#[test]
fn fstab_mount_hidden_by_a_later_root_mount_is_refused() {
    // Proves a jail whose /s line comes before its root line is refused, because the root mount would hide /s.
    let text = "/home/js/ns /home/j/ns/s nullfs rw 0 0\n/home/j/mroot /home/j/ns nullfs ro 0 0\n";
    let error = expect_error(import_fstab(text, "/home/j"));
    assert_eq!(error.line, 2);
    assert!(
        error
            .message
            .contains("after line 1 mounted \"/home/j/ns/s\""),
        "{error}"
    );
}

#[test]
fn fstab_jail_name_outside_the_allowed_set_is_refused() {
    // Proves a jail root whose name has a space (escaped \040) is refused, since jailswap refuses such names.
    let text = "/home/j/mroot /home/j/my\\040jail nullfs ro 0 0\n";
    let error = expect_error(import_fstab(text, "/home/j"));
    assert_eq!(error.line, 1);
    assert!(
        error.message.contains("found jail name \"my jail\""),
        "{error}"
    );
}

#[test]
fn fstab_template_name_outside_the_allowed_set_is_refused() {
    // Proves a template whose name jailswap would refuse as `live` is an error at its line, not a config that fails later.
    let text = "# jails\n/home/j/m\\040root /home/j/ns nullfs ro 0 0\n";
    let error = expect_error(import_fstab(text, "/home/j"));
    assert_eq!(error.line, 2);
    assert!(error.message.contains("template \"m root\""), "{error}");
}

#[test]
fn fstab_relative_store_is_refused() {
    // Proves a relative --store is refused rather than compared against absolute mount points.
    let error = expect_error(import_fstab(&fixture("handbook-fstab"), "home/j"));
    assert!(error.message.contains("relative path"), "{error}");
}

// ---------------------------------------------------------------------------
// --from-jail-conf
// ---------------------------------------------------------------------------

#[test]
fn seed_jail_conf_expands_name_and_path_for_every_jail() {
    // Proves the seed's jail.conf (globals, "/vm/$name", "/vm/${name}.fstab", bare booleans) yields four jails whose mount.fstab is read with variables substituted.
    let host = Host::new(&[("/vm/h1.fstab", "seed002-h1.fstab")]);
    let output =
        import_jail_conf(&fixture("seed002-jail.conf"), "/vm/tmpl", &host).expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "store"), Some("/vm/tmpl"));
    // Nothing mounts a template from the store, so the default name is used and flagged.
    assert_eq!(string(&document, "live"), Some("mroot"));
    assert!(prose(&output).contains("\"mroot\" is the default, check it."));
    assert_defaults(&document);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["h1", "h2", "h3", "h4"]);
    for name in ["h1", "h2", "h3", "h4"] {
        let jail = jail(&jails, name);
        assert_eq!(string(jail, "path"), Some(format!("/vm/{name}").as_str()));
        // jail(8) mounts mount.fstab itself, so jailswap must not mount it too.
        assert!(jail.get("fstab").is_none());
    }
    assert_eq!(host.requested(), ["/vm/h1.fstab"]);
    assert!(output.contains("# h1: /etc/jail.conf line 13."));
    assert!(output.contains("# h4: /etc/jail.conf line 41."));
    assert!(
        prose(&output).contains("jail(8) mounts /vm/h1.fstab (mount.fstab) when the jail starts")
    );
}

#[test]
fn vnet_jail_conf_with_variables_and_appends_imports_every_jail() {
    // Proves `$var` definitions, `+=`, bare `${a}_$b` lists and a global `mount` line parse, and unused variables are never expanded.
    let host = Host::new(&[]);
    let output =
        import_jail_conf(&fixture("seed002-vnet-jail.conf"), "/vm/tmpl", &host).expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["r1", "vpnr1", "vpnr2", "vpnh1", "vpnh2"]);
    assert_eq!(string(jail(&jails, "vpnh2"), "path"), Some("/vm/vpnh2"));
    assert!(host.requested().is_empty());
}

#[test]
fn handbook_jail_conf_with_every_comment_style_resolves_paths_depends_and_template() {
    // Proves `/* */`, `//` and `#` comments, a `*` block, quoted ';' and '#', `depend` lists and the mount.fstab template detection work together.
    let host = handbook_host();
    let output =
        import_jail_conf(&fixture("handbook-jail.conf"), "/home/j", &host).expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "store"), Some("/home/j"));
    assert_eq!(string(&document, "live"), Some("mroot"));
    assert!(
        prose(&output).contains("The jails mount /home/j/mroot read-only (/etc/fstab.ns line 1).")
    );
    let jails = jails(&document);
    assert_eq!(names(&jails), ["ns", "mail", "www"]);
    assert_eq!(string(jail(&jails, "ns"), "path"), Some("/home/j/ns"));
    assert_eq!(string(jail(&jails, "www"), "path"), Some("/home/j/www"));
    assert!(depends(jail(&jails, "ns")).is_empty());
    assert_eq!(depends(jail(&jails, "mail")), ["ns"]);
    assert_eq!(depends(jail(&jails, "www")), ["ns", "mail"]);
    assert_eq!(
        host.requested(),
        ["/etc/fstab.ns", "/etc/fstab.mail", "/etc/fstab.www"]
    );
    assert!(prose(&output).contains(
        "Template: /etc/fstab.www line 1 mounts /home/j/mroot read-only at /home/j/www."
    ));
    assert!(output.contains("# mail: /etc/jail.conf line 27."));
}

#[test]
fn thin_jail_conf_finds_a_template_with_a_release_name() {
    // Proves the thin-jail layout (roots outside the store) detects the live template from each jail's mount.fstab.
    let host = Host::new(&[
        ("/usr/local/jails/thinjail0/fstab", "thinjail0.fstab"),
        ("/usr/local/jails/thinjail1/fstab", "thinjail1.fstab"),
    ]);
    let output = import_jail_conf(&fixture("thin-jail.conf"), "/usr/local/jails/base", &host)
        .expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "live"), Some("13.1-RELEASE-base"));
    let jails = jails(&document);
    assert_eq!(names(&jails), ["thinjail0", "thinjail1"]);
    assert_eq!(
        string(jail(&jails, "thinjail1"), "path"),
        Some("/usr/local/jails/.mountpoints/thinjail1")
    );
    assert_eq!(depends(jail(&jails, "thinjail1")), ["thinjail0"]);
}

#[test]
fn thin_jail_conf_with_the_wrong_store_explains_where_the_template_is() {
    // Proves a --store that holds no jail's template is an error naming what the jails do mount.
    let host = Host::new(&[
        ("/usr/local/jails/thinjail0/fstab", "thinjail0.fstab"),
        ("/usr/local/jails/thinjail1/fstab", "thinjail1.fstab"),
    ]);
    let error = expect_error(import_jail_conf(
        &fixture("thin-jail.conf"),
        "/usr/local/jails",
        &host,
    ));
    assert_eq!(error.line, 0);
    assert!(
        error
            .message
            .contains("found no jail that mounts a template from \"/usr/local/jails\""),
        "{error}"
    );
    assert!(
        error
            .message
            .contains("/usr/local/jails/base/13.1-RELEASE-base"),
        "{error}"
    );
}

#[test]
fn jail_conf_jails_mounting_different_templates_are_refused_in_the_fstab_file() {
    // Proves the conflict error points into the second jail's mount.fstab file, at the line of its template mount.
    let conf = "path = \"/j/$name\"; mount.fstab = \"/j/$name.fstab\";\na { }\nb { }\n";
    let files = BTreeMap::from([
        (
            PathBuf::from("/j/a.fstab"),
            "/t/mroot /j/a nullfs ro 0 0\n".to_owned(),
        ),
        (
            PathBuf::from("/j/b.fstab"),
            "# b\n/t/mroot.new /j/b nullfs ro 0 0\n".to_owned(),
        ),
    ]);
    let error = expect_error(from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &|path: &Path| files.get(path).cloned(),
    ));
    assert_eq!(error.file, PathBuf::from("/j/b.fstab"));
    assert_eq!(error.line, 2);
    assert!(
        error
            .to_string()
            .starts_with("/j/b.fstab:2: found a mount of template \"mroot.new\""),
        "{error}"
    );
}

#[test]
fn jail_conf_jail_with_a_foreign_root_is_listed_but_not_imported() {
    // Proves a jail whose root is mounted from outside the store is left out with a note, and a dependency on it is dropped with a note.
    let conf = "path = \"/j/$name\";\nmount = \"/t/mroot /j/$name nullfs ro 0 0\";\n\
                web { depend = legacy; }\n\
                legacy { mount = \"/old/base /j/legacy nullfs ro 0 0\"; }\n";
    let output = from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &no_files,
    )
    .expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["web"]);
    assert!(depends(jail(&jails, "web")).is_empty());
    assert!(prose(&output).contains(
        "Not imported: legacy (/etc/jail.conf line 4): /etc/jail.conf line 4 mounts /old/base at its root"
    ));
    assert!(prose(&output).contains("Its dependency on \"legacy\" is left out"));
    // The template was found through the global `mount` line.
    assert!(prose(&output).contains("The jails mount /t/mroot read-only (/etc/jail.conf line 2)."));
}

#[test]
fn jail_conf_later_globals_override_earlier_blocks_as_in_jail8() {
    // Proves parameter order follows jail(8): a global written after a block overrides it, one written before does not.
    let conf = "path = \"/early/$name\";\na { path = \"/own/a\"; }\npath = \"/late/$name\";\nb { path = \"/own/b\"; }\n";
    let output = from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &no_files,
    )
    .expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(string(jail(&jails, "a"), "path"), Some("/late/a"));
    assert_eq!(string(jail(&jails, "b"), "path"), Some("/own/b"));
}

#[test]
fn jail_conf_wildcard_blocks_apply_only_to_matching_jails() {
    // Proves `web.*` applies to web.a but not to db, while `*` applies to both, and variables in single quotes stay literal.
    let conf = "* { path = \"/j/$name\"; }\nweb.* { path = \"/web/$name\"; }\n\
                web.a { }\ndb { mount.fstab = '/f/$name'; }\n";
    let host = Host::new(&[]);
    let output = import_jail_conf(conf, "/t", &host).expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["web.a", "db"]);
    assert_eq!(string(jail(&jails, "web.a"), "path"), Some("/web/web.a"));
    assert_eq!(string(jail(&jails, "db"), "path"), Some("/j/db"));
    assert_eq!(host.requested(), ["/f/$name"]);
}

#[test]
fn jail_conf_variables_nest_and_concatenate_without_spaces() {
    // Proves `${a}_$b` concatenation, variables defined from variables, escapes and `+=` on depend all resolve as jail(8) would.
    let conf = "$root = /srv/jails;\n$base = \"${root}/roots\";\n\
                path = ${base}/$name\\x2eroot;\n\
                a { }\nb { depend = a; depend += \"c\"; }\nc { }\n";
    let output = from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &no_files,
    )
    .expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(
        string(jail(&jails, "a"), "path"),
        Some("/srv/jails/roots/a.root")
    );
    assert_eq!(depends(jail(&jails, "b")), ["a", "c"]);
}

#[test]
fn jail_conf_strings_needing_toml_escapes_round_trip() {
    // Proves a path with quotes, a backslash and a tab is escaped correctly in the generated TOML.
    let conf = "odd { path = \"/j/say \\\"hi\\\"\\\\\\there\"; }\n";
    let output = from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &no_files,
    )
    .expect("import");
    let document = parse(&output);
    assert_eq!(
        string(&jails(&document)[0], "path"),
        Some("/j/say \"hi\"\\\there")
    );
}

#[test]
fn jail_conf_unresolved_variable_in_an_unused_parameter_is_harmless() {
    // Proves a variable that is not set only matters when a parameter jailswap uses needs it.
    let conf = "path = \"/j/$name\";\nexec.start = \"route add default $gateway\";\na { }\n";
    let output = from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &no_files,
    )
    .expect("import");
    assert_eq!(names(&jails(&parse(&output))), ["a"]);
}

// ---------------------------------------------------------------------------
// jail.conf errors
// ---------------------------------------------------------------------------

fn jail_conf_error(conf: &str) -> ImportError {
    expect_error(from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/home/j"),
        &no_files,
    ))
}

#[test]
fn unterminated_string_names_the_line_it_opens_on() {
    // Proves an unterminated string is reported at the line of its opening quote.
    let error = jail_conf_error("exec.clean;\nns {\n\tpath = \"/home/j/ns;\n\tmount.devfs;\n}\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("unterminated string"), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("/etc/jail.conf:3: found an unterminated string"),
        "{error}"
    );
}

#[test]
fn missing_semicolon_names_the_statement_that_lacks_it() {
    // Proves a missing ';' is reported at the statement that lacks it and names what followed.
    let error = jail_conf_error("ns {\n\tpath = \"/home/j/ns\"\n\tmount.devfs;\n}\n");
    assert_eq!(error.line, 2);
    assert!(
        error.message.contains("found \"mount.devfs\" on line 3"),
        "{error}"
    );
    assert!(error.message.contains("expected ';'"), "{error}");
}

#[test]
fn missing_semicolon_before_closing_brace_is_refused() {
    // Proves `ns { path = "/x" }` is refused at its line, as jail(8) requires ';' after every parameter.
    let error = jail_conf_error("\nns { path = \"/home/j/ns\" }\n");
    assert_eq!(error.line, 2);
    assert!(error.message.contains("found '}'"), "{error}");
}

#[test]
fn stray_closing_brace_is_refused_at_its_line() {
    // Proves a '}' with no open block is an error at the brace's line.
    let error = jail_conf_error("ns {\n\tpath = \"/home/j/ns\";\n}\n}\n");
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("found '}' with no open block"),
        "{error}"
    );
}

#[test]
fn unterminated_block_names_the_line_it_opens_on() {
    // Proves a block missing its '}' is reported at the block's first line.
    let error = jail_conf_error("path = \"/home/j/$name\";\n\nns {\n\tmount.devfs;\n");
    assert_eq!(error.line, 3);
    assert!(
        error.message.contains("unterminated block \"ns\""),
        "{error}"
    );
}

#[test]
fn unterminated_comment_names_the_line_it_opens_on() {
    // Proves an unterminated /* comment is reported at the line it opens on.
    let error = jail_conf_error("ns { path = \"/home/j/ns\"; }\n/* no end\n\n");
    assert_eq!(error.line, 2);
    assert!(error.message.contains("unterminated comment"), "{error}");
}

#[test]
fn nested_block_is_refused() {
    // Proves a block inside a block is refused at the inner block, hinting at the missing '}'.
    let error = jail_conf_error("ns {\n\tpath = \"/home/j/ns\";\nmail {\n}\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("inside block \"ns\""), "{error}");
}

#[test]
fn unset_variable_in_path_is_refused_at_its_line() {
    // Proves a path using a variable that is not set is an error naming the variable and its line.
    let error = jail_conf_error("ns {\n\tmount.devfs;\n\tpath = \"$root/ns\";\n}\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("variable \"$root\""), "{error}");
    assert!(error.message.contains("not set"), "{error}");
}

#[test]
fn self_referring_variable_is_refused() {
    // Proves a variable loop is an error rather than endless expansion.
    let error = jail_conf_error("$a = \"$b\";\n$b = \"$a\";\nns { path = \"/j/$a\"; }\n");
    assert!(error.message.contains("referring to itself"), "{error}");
}

#[test]
fn variables_that_double_at_every_level_are_bounded() {
    // Proves a chain of variables each using the next twice (2^30 substitutions) is refused promptly instead of exhausting time or memory.
    let mut conf = String::from("$v0 = x;\n");
    for level in 1..=30 {
        conf.push_str(&format!(
            "$v{level} = \"$v{previous}$v{previous}\";\n",
            previous = level - 1
        ));
    }
    conf.push_str("ns { path = \"/j/$v30\"; }\n");
    let error = jail_conf_error(&conf);
    assert!(
        error.message.contains("variable substitutions") || error.message.contains("bytes"),
        "{error}"
    );
}

#[test]
fn jail_without_path_is_refused_at_its_block() {
    // Proves a jail with no path anywhere is refused at its block's line.
    let error = jail_conf_error("exec.clean;\n\nns {\n\tmount.devfs;\n}\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("without a path"), "{error}");
}

#[test]
fn invalid_jail_name_is_refused() {
    // Proves a jail name outside [A-Za-z0-9][A-Za-z0-9_.-]* is refused at its block.
    let error = jail_conf_error("path = \"/j/x\";\n\"my jail\" { }\n");
    assert_eq!(error.line, 2);
    assert!(
        error.message.contains("found jail name \"my jail\""),
        "{error}"
    );
    let error = jail_conf_error("path = \"/j/x\";\n-ns { }\n");
    assert!(error.message.contains("\"-ns\""), "{error}");
}

#[test]
fn dependency_on_an_undefined_jail_is_refused_at_the_depend_line() {
    // Proves `depend` naming a jail the file does not define is refused at that line.
    let error = jail_conf_error("path = \"/j/$name\";\nns {\n\tdepend = db;\n}\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("depending on \"db\""), "{error}");
}

#[test]
fn dependency_cycle_is_refused() {
    // Proves jails depending on each other in a cycle are refused with the cycle spelled out.
    let error = jail_conf_error(
        "path = \"/j/$name\";\na { depend = b; }\nb { depend = c; }\nc { depend = a; }\n",
    );
    assert!(
        error.message.contains("cycle (a -> b -> c -> a)"),
        "{error}"
    );
    assert_eq!(error.line, 2);
}

#[test]
fn duplicate_jail_block_is_refused() {
    // Proves the same jail defined twice is refused at the second block.
    let error = jail_conf_error("path = \"/j/$name\";\nns { }\n\nns { }\n");
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("line 2 already defines it"),
        "{error}"
    );
}

#[test]
fn include_directive_is_refused() {
    // Proves `.include` is refused rather than silently missing the jails it would add.
    let error = jail_conf_error("path = \"/j/$name\";\n.include \"/etc/jail.conf.d/*.conf\";\n");
    assert_eq!(error.line, 2);
    assert!(error.message.contains(".include"), "{error}");
}

#[test]
fn empty_jail_conf_is_refused() {
    // Proves a file with only globals and comments is refused, since jailswap needs at least one jail.
    let error = jail_conf_error("# nothing yet\nexec.clean;\n");
    assert_eq!(error.line, 0);
    assert!(
        error
            .to_string()
            .starts_with("/etc/jail.conf: found no jail block"),
        "{error}"
    );
}

#[test]
fn malformed_mount_fstab_file_is_reported_in_that_file() {
    // Proves an error inside a jail's mount.fstab file names that file and its line, not jail.conf.
    let conf = "ns { path = \"/home/j/ns\"; mount.fstab = \"/etc/fstab.ns\"; }\n";
    let error = expect_error(from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/home/j"),
        &|_: &Path| Some("/home/j/mroot /home/j/ns\n".to_owned()),
    ));
    assert_eq!(error.file, PathBuf::from("/etc/fstab.ns"));
    assert_eq!(error.line, 1);
}

// ---------------------------------------------------------------------------
// No input panics
// ---------------------------------------------------------------------------

/// Runs both importers on `text`; every success must be valid TOML.
fn import_anything(text: &str, host: &Host) {
    let stores = ["/home/j", "/vm/tmpl", "/usr/local/jails/base", "/jails"];
    for store in stores {
        if let Ok(output) = import_jail_conf(text, store, host) {
            parse(&output);
        }
        if let Ok(output) = import_fstab(text, store) {
            parse(&output);
        }
    }
}

#[test]
fn every_truncation_of_every_fixture_returns_without_panicking() {
    // Proves no prefix of any fixture, fed to either importer, panics, and every success is valid TOML.
    let host = Host::new(&[
        ("/etc/fstab.ns", "handbook-fstab.ns"),
        ("/vm/h1.fstab", "seed002-h1.fstab"),
        ("/usr/local/jails/thinjail0/fstab", "thinjail0.fstab"),
    ]);
    for name in FIXTURES {
        let text = fixture(name);
        for (end, _) in text.char_indices() {
            import_anything(&text[..end], &host);
        }
        import_anything(&text, &host);
    }
}

#[test]
fn every_single_character_damage_to_jail_confs_returns_without_panicking() {
    // Proves replacing any one character of the jail.conf fixtures with syntax characters never panics and every success is valid TOML.
    let host = handbook_host();
    for name in ["handbook-jail.conf", "thin-jail.conf"] {
        let text = fixture(name);
        let characters: Vec<char> = text.chars().collect();
        for position in 0..characters.len() {
            for replacement in [
                '"', '\'', '{', '}', ';', '$', '\\', '/', '*', '\n', '\u{7}', 'é',
            ] {
                let mut damaged = characters.clone();
                damaged[position] = replacement;
                let damaged: String = damaged.into_iter().collect();
                if let Ok(output) = import_jail_conf(&damaged, "/home/j", &host) {
                    parse(&output);
                }
            }
        }
    }
}

#[test]
fn control_characters_in_sources_stay_inside_toml_comments() {
    // Proves control characters copied from an fstab line into a comment are escaped, so the output stays valid TOML.
    let text = "/home/j/mroot /home/j/ns nullfs ro 0 0\n/home/js/ns /home/j/ns/s\u{1b}[31m nullfs rw 0 0\n";
    let output = import_fstab(text, "/home/j").expect("import");
    parse(&output);
    assert!(output.contains("\\u{1b}[31m"), "{output}");
}

// Through the executable: unparseable input exits 65 naming the line; a
// missing file exits 66.
#[test]
fn init_exit_codes() {
    let directory = tempfile::tempdir().unwrap();
    let broken = directory.path().join("jail.conf");
    std::fs::write(&broken, "ns {\n    path = \"/home/j/ns\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jailswap"))
        .args(["init", "--from-jail-conf"])
        .arg(&broken)
        .args(["--store", "/home/j"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("jail.conf:"),
        "{output:?}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_jailswap"))
        .args([
            "init",
            "--from-fstab",
            "/nonexistent/fstab",
            "--store",
            "/home/j",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(66), "{missing:?}");
}

#[test]
fn jail_depending_on_itself_is_refused_at_its_depend_line() {
    // Proves a jail that names itself in `depend` is refused at that line, as no start order exists.
    let error = jail_conf_error("path = \"/j/$name\";\na { }\nb {\n\tdepend = a, b;\n}\n");
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("jail \"b\" depending on itself"),
        "{error}"
    );
}
