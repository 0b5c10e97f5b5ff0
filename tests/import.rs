//! Tests of `jailswap init --from-jail-conf` and `--from-fstab` through the
//! library: real-looking jail.conf and fstab files in, a jailswap.toml out,
//! parsed back with the toml crate and checked field by field.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use jailswap::import::{from_fstab, from_jail_conf, ImportError, SourceFiles};

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
    "real-world/diy-jails-jail.conf",
    "real-world/freebsd-commands.jail.conf",
    "real-world/freebsd-jail.conf.5-examples",
    "real-world/freebsd-jail.xxx.conf",
    "real-world/handbook-14-classic.conf",
    "real-world/handbook-14-jail.conf",
    "real-world/handbook-14-thinjail-nullfs-base.fstab",
    "real-world/handbook-14-thinjail.conf",
    "real-world/handbook-14-vnet.conf",
    "real-world/nikolaydachev-jail.conf",
    "real-world/simple-jails-bar.fstab",
    "real-world/simple-jails-foo.fstab",
    "real-world/simple-jails-jail.conf",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The files a host would have, keyed by the absolute path jail.conf names,
/// in memory (the importer's file access is a trait so that tests need no
/// disk); every path read is recorded.
struct Host {
    files: BTreeMap<PathBuf, String>,
    requested: RefCell<Vec<PathBuf>>,
}

impl Host {
    /// Files served from fixtures: (path on the host, fixture name).
    fn new(files: &[(&str, &str)]) -> Self {
        let texts: Vec<(&str, String)> = files
            .iter()
            .map(|(path, name)| (*path, fixture(name)))
            .collect();
        Host::with_texts(&texts)
    }

    /// Files with the given texts: (path on the host, text).
    fn with_texts<T: AsRef<str>>(files: &[(&str, T)]) -> Self {
        Host {
            files: files
                .iter()
                .map(|(path, text)| (PathBuf::from(path), text.as_ref().to_owned()))
                .collect(),
            requested: RefCell::new(Vec::new()),
        }
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

impl SourceFiles for Host {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.requested.borrow_mut().push(path.to_path_buf());
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }

    /// The names below `directory`: its files, and the directories that
    /// lead to deeper files.
    fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
        let names: BTreeSet<String> = self
            .files
            .keys()
            .filter_map(|path| path.strip_prefix(directory).ok())
            .filter_map(|rest| rest.components().next())
            .map(|first| first.as_os_str().to_string_lossy().into_owned())
            .collect();
        if names.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                directory.display().to_string(),
            ));
        }
        Ok(names.into_iter().collect())
    }
}

fn no_files() -> Host {
    Host::with_texts::<&str>(&[])
}

fn import_jail_conf(text: &str, store: &str, host: &Host) -> Result<String, ImportError> {
    from_jail_conf(text, Path::new("/etc/jail.conf"), Path::new(store), host)
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
    let files = Host::with_texts(&[
        ("/j/a.fstab", "/t/mroot /j/a nullfs ro 0 0\n"),
        ("/j/b.fstab", "# b\n/t/mroot.new /j/b nullfs ro 0 0\n"),
    ]);
    let error = expect_error(from_jail_conf(
        conf,
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &files,
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
        &no_files(),
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
        &no_files(),
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
        &no_files(),
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
        &no_files(),
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
        &no_files(),
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
        &no_files(),
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
        &Host::with_texts(&[("/etc/fstab.ns", "/home/j/mroot /home/j/ns\n")]),
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

// The Handbook's layout, named relative to the current directory: a
// jail.conf with the common parameters that includes jail.conf.d/*.conf by
// its full name. Its per-jail files are part of that jail.conf (they get its
// `path`), not files rc.d/jail would read on their own.
#[test]
fn init_from_a_relative_jail_conf_that_includes_its_directory() {
    let directory = tempfile::tempdir().unwrap();
    let per_jail = directory.path().join("jail.conf.d");
    std::fs::create_dir(&per_jail).unwrap();
    std::fs::write(
        directory.path().join("jail.conf"),
        format!(
            "path = \"/home/j/$name\";\nns {{ }}\n.include \"{}/*.conf\";\n",
            per_jail.display()
        ),
    )
    .unwrap();
    std::fs::write(per_jail.join("www.conf"), "www {\n\tdepend = ns;\n}\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jailswap"))
        .args([
            "init",
            "--from-jail-conf",
            "jail.conf",
            "--store",
            "/home/j",
        ])
        .current_dir(directory.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let config: toml::Value = toml::from_str(&text).unwrap();
    let jails: Vec<(&str, &str)> = config["jail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|jail| {
            (
                jail["name"].as_str().unwrap(),
                jail["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        jails,
        [("ns", "/home/j/ns"), ("www", "/home/j/www")],
        "{text}"
    );
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

// ---------------------------------------------------------------------------
// .include and per-jail files
// ---------------------------------------------------------------------------

/// Imports `/etc/jail.conf` from `host`, where it must be one of the files.
fn import_host(host: &Host, store: &str) -> Result<String, ImportError> {
    let text = host
        .files
        .get(Path::new("/etc/jail.conf"))
        .cloned()
        .expect("/etc/jail.conf in the host");
    import_jail_conf(&text, store, host)
}

#[test]
fn include_glob_reads_the_matching_files_in_order_where_it_stands() {
    // Proves a glob include reads the matching files sorted, skips hidden and non-matching names, and applies the including file's earlier globals to their jails.
    let host = Host::with_texts(&[
        (
            "/etc/jail.conf",
            "path = \"/j/$name\";\n.include \"/etc/jail.conf.d/*.conf\";\nlast { }\n",
        ),
        ("/etc/jail.conf.d/b.conf", "b {\n\tdepend = a;\n}\n"),
        ("/etc/jail.conf.d/a.conf", "# a\na { }\n"),
        ("/etc/jail.conf.d/.hidden.conf", "hidden { }\n"),
        ("/etc/jail.conf.d/notes.txt", "notes { }\n"),
    ]);
    let output = import_host(&host, "/t").expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["a", "b", "last"]);
    assert_eq!(string(jail(&jails, "a"), "path"), Some("/j/a"));
    assert_eq!(depends(jail(&jails, "b")), ["a"]);
    assert!(
        output.contains("# a: /etc/jail.conf.d/a.conf line 2."),
        "{output}"
    );
    assert!(
        output.contains("# last: /etc/jail.conf line 3."),
        "{output}"
    );
    assert!(prose(&output).contains(
        "Read /etc/jail.conf and the files it includes: /etc/jail.conf.d/a.conf, /etc/jail.conf.d/b.conf."
    ));
    // The directory is included, so it is not read a second time as per-jail files.
    assert_eq!(
        host.requested(),
        ["/etc/jail.conf.d/a.conf", "/etc/jail.conf.d/b.conf"]
    );
}

#[test]
fn include_glob_matching_nothing_is_noted_not_refused() {
    // Proves a glob that matches no file (even in a missing directory) is not an error and is noted.
    let host = Host::with_texts(&[(
        "/etc/jail.conf",
        "a { path = /j/a; }\n.include \"/usr/local/etc/jail.conf.d/*.conf\";\n",
    )]);
    let output = import_host(&host, "/t").expect("import");
    assert_eq!(names(&jails(&parse(&output))), ["a"]);
    assert!(prose(&output).contains(
        "/etc/jail.conf line 2: `.include \"/usr/local/etc/jail.conf.d/*.conf\"` matched no file."
    ));
}

#[test]
fn missing_named_include_is_reported_in_a_comment() {
    // Proves an include naming a file that does not exist is a comment naming the line and the file, not an error.
    let host = Host::with_texts(&[(
        "/etc/jail.conf",
        "a { path = /j/a; }\n\n.include \"local.conf\";\n",
    )]);
    let output = import_host(&host, "/t").expect("import");
    assert_eq!(names(&jails(&parse(&output))), ["a"]);
    assert!(
        prose(&output).contains(
            "Missing: /etc/jail.conf line 3 includes /etc/local.conf (\"local.conf\" as written), \
             which does not exist. jail(8) stops with an error at that line"
        ),
        "{output}"
    );
}

#[test]
fn relative_includes_resolve_against_the_including_file() {
    // Proves a relative include is relative to the directory of the file that names it, nested includes to theirs, and a bare file name to the current directory.
    let host = Host::with_texts(&[
        ("/etc/jail.conf", ".include \"jails/web.conf\";\n"),
        (
            "/etc/jails/web.conf",
            ".include \"common/*.conf\";\nweb { }\n",
        ),
        ("/etc/jails/common/path.conf", "path = \"/srv/$name\";\n"),
    ]);
    let output = import_host(&host, "/t").expect("import");
    assert_eq!(
        string(jail(&jails(&parse(&output)), "web"), "path"),
        Some("/srv/web")
    );
    let bare = Host::with_texts(&[("other.conf", "a { path = /j/a; }\n")]);
    let output = from_jail_conf(
        ".include \"other.conf\";\n",
        Path::new("jail.conf"),
        Path::new("/t"),
        &bare,
    )
    .expect("import");
    assert_eq!(names(&jails(&parse(&output))), ["a"]);
    assert_eq!(bare.requested(), ["other.conf"]);
}

#[test]
fn include_inside_a_block_adds_parameters_to_that_jail() {
    // Proves an include inside a block (as in per-jail templates) gives that jail, and only it, the included parameters.
    let host = Host::with_texts(&[
        (
            "/etc/jail.conf",
            "lab {\n\t$jailip = \"10.0.0.2\";\n\t.include \"/etc/jail.conf.d/lab.template\";\n\
             \tsecurelevel = -1;\n}\nother { path = /j/other; }\n",
        ),
        (
            "/etc/jail.conf.d/lab.template",
            "exec.start = \"/bin/sh /etc/rc\";\npath = \"/labs/${name}\";\n",
        ),
    ]);
    let output = import_host(&host, "/t").expect("import");
    let jails = jails(&parse(&output));
    assert_eq!(string(jail(&jails, "lab"), "path"), Some("/labs/lab"));
    assert_eq!(string(jail(&jails, "other"), "path"), Some("/j/other"));
}

#[test]
fn block_in_a_file_included_inside_a_block_is_refused() {
    // Proves a file included inside a block may not define a block, naming that file and line.
    let host = Host::with_texts(&[
        (
            "/etc/jail.conf",
            "lab {\n\t.include \"/etc/inner.conf\";\n}\n",
        ),
        ("/etc/inner.conf", "path = /j/lab;\nsub { }\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/inner.conf"));
    assert_eq!(error.line, 2);
    assert!(
        error
            .message
            .contains("found block \"sub\" in a file included inside block \"lab\""),
        "{error}"
    );
}

#[test]
fn include_cycle_is_refused_naming_the_files() {
    // Proves files that include each other are refused at the include that closes the cycle, with the chain of files.
    let host = Host::with_texts(&[
        (
            "/etc/jail.conf",
            "a { path = /j/a; }\n.include \"b.conf\";\n",
        ),
        ("/etc/b.conf", "\n.include \"/etc/jail.conf\";\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/b.conf"));
    assert_eq!(error.line, 2);
    assert!(
        error
            .message
            .contains("include cycle (/etc/jail.conf -> /etc/b.conf -> /etc/jail.conf)"),
        "{error}"
    );
    // A glob that matches the file it is written in is a cycle too.
    let host = Host::with_texts(&[
        ("/etc/jail.conf", ".include \"/etc/jail.conf.d/*.conf\";\n"),
        ("/etc/jail.conf.d/a.conf", ".include \"*.conf\";\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert!(
        error
            .message
            .contains("(/etc/jail.conf.d/a.conf -> /etc/jail.conf.d/a.conf)"),
        "{error}"
    );
}

#[test]
fn includes_nested_too_deep_are_refused() {
    // Proves a chain of 33 nested includes is refused, as jail(8) stops at 32, while 32 are followed.
    let chain = |length: usize| {
        let mut files: Vec<(String, String)> = (0..length)
            .map(|level| {
                (
                    format!("/etc/chain/{level}.conf"),
                    format!(".include \"{}.conf\";\n", level + 1),
                )
            })
            .collect();
        files.push((
            format!("/etc/chain/{length}.conf"),
            "deep { path = /j/deep; }\n".to_owned(),
        ));
        files.push((
            "/etc/jail.conf".to_owned(),
            ".include \"chain/0.conf\";\n".to_owned(),
        ));
        let texts: Vec<(&str, &str)> = files
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        let host = Host::with_texts(&texts);
        import_host(&host, "/t")
    };
    let output = chain(31).expect("32 nested includes");
    assert_eq!(names(&jails(&parse(&output))), ["deep"]);
    let error = expect_error(chain(32));
    assert!(
        error.message.contains("nested more than 32 deep"),
        "{error}"
    );
    assert_eq!(error.file, PathBuf::from("/etc/chain/31.conf"));
}

#[test]
fn errors_in_included_files_name_that_file_and_line() {
    // Proves syntax errors and unset variables inside an included file are reported in that file, at their line.
    let host = Host::with_texts(&[
        ("/etc/jail.conf", "# main\n.include \"/etc/j/*.conf\";\n"),
        (
            "/etc/j/a.conf",
            "a {\n\tpath = \"/j/a\"\n\tmount.devfs;\n}\n",
        ),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/j/a.conf"));
    assert_eq!(error.line, 2);
    assert!(
        error
            .to_string()
            .starts_with("/etc/j/a.conf:2: found \"mount.devfs\" on line 3"),
        "{error}"
    );
    let host = Host::with_texts(&[
        ("/etc/jail.conf", ".include \"/etc/j/*.conf\";\na { }\n"),
        ("/etc/j/path.conf", "\n\npath = \"$root/$name\";\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/j/path.conf"));
    assert_eq!(error.line, 3);
    assert!(error.message.contains("variable \"$root\""), "{error}");
    // A second block for a jail names the file of the first.
    let host = Host::with_texts(&[
        (
            "/etc/jail.conf",
            "path = /j/$name;\na { }\n.include \"/etc/j/*.conf\";\n",
        ),
        ("/etc/j/a.conf", "a { }\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/j/a.conf"));
    assert!(
        error
            .message
            .contains("and /etc/jail.conf line 2 already defines it"),
        "{error}"
    );
}

#[test]
fn include_forms_jail8_does_not_follow_are_refused() {
    // Proves `.include` with '=', without a file, with a variable or with an empty name is refused at its line.
    for (conf, expected) in [
        (
            "a { path = /j/a; }\n.include = \"x.conf\";\n",
            "found '=' after `.include`",
        ),
        (
            "a { path = /j/a; }\n.include;\n",
            "found `.include;` without a file",
        ),
        (
            "a { path = /j/a; }\n.include \"$dir/x.conf\";\n",
            "found variable in `.include` file name",
        ),
        (
            "a { path = /j/a; }\n.include \"\";\n",
            "found an empty `.include` file name",
        ),
    ] {
        let error = jail_conf_error(conf);
        assert_eq!(error.line, 2, "{conf}");
        assert!(error.message.contains(expected), "{error}");
    }
}

#[test]
fn unreadable_included_file_is_refused() {
    // Proves an included file that exists but cannot be read (here: not UTF-8) is an error at the include line, not a silent gap.
    struct Unreadable;
    impl SourceFiles for Unreadable {
        fn read(&self, path: &Path) -> io::Result<String> {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not UTF-8", path.display()),
            ))
        }
        fn list(&self, directory: &Path) -> io::Result<Vec<String>> {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                directory.display().to_string(),
            ))
        }
    }
    let error = expect_error(from_jail_conf(
        "a { path = /j/a; }\n.include \"/etc/x.conf\";\n",
        Path::new("/etc/jail.conf"),
        Path::new("/t"),
        &Unreadable,
    ));
    assert_eq!(error.line, 2);
    assert!(error.message.contains("cannot read /etc/x.conf"), "{error}");
}

#[test]
fn per_jail_files_are_read_as_rc_d_jail_reads_them() {
    // Proves jail.conf.d/NAME.conf is read on its own for jail NAME when jail.conf does not include the directory, replacing a block of the same name, with other content noted.
    let host = Host::with_texts(&[
        ("/etc/jail.conf", "path = \"/j/$name\";\nold { }\nweb { }\n"),
        (
            "/etc/jail.conf.d/web.conf",
            "web {\n\tpath = \"/srv/web\";\n\tdepend = old;\n}\n",
        ),
        (
            "/etc/jail.conf.d/db.conf",
            "path = \"/srv/$name\";\ndb { }\nspare { }\n",
        ),
        ("/etc/jail.conf.d/empty.conf", "path = /x;\n"),
        ("/etc/jail.conf.d/web.example.conf", "web.example { }\n"),
    ]);
    let output = import_host(&host, "/t").expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["old", "db", "web"]);
    // The per-jail file's own parameters, not jail.conf's.
    assert_eq!(string(jail(&jails, "web"), "path"), Some("/srv/web"));
    assert_eq!(string(jail(&jails, "db"), "path"), Some("/srv/db"));
    assert_eq!(string(jail(&jails, "old"), "path"), Some("/j/old"));
    assert_eq!(depends(jail(&jails, "web")), ["old"]);
    let notes = prose(&output);
    for expected in [
        "Read the per-jail files /etc/jail.conf.d/db.conf, /etc/jail.conf.d/empty.conf, /etc/jail.conf.d/web.conf:",
        "Not imported: /etc/jail.conf line 3 also defines jail web; `service jail start web` reads /etc/jail.conf.d/web.conf instead.",
        "Not imported: spare (/etc/jail.conf.d/db.conf line 3): `service jail start spare` reads only jail.conf.d/spare.conf",
        "Not imported: /etc/jail.conf.d/empty.conf defines no jail \"empty\"",
        "Not read: /etc/jail.conf.d/web.example.conf.",
        "`service jail start web` reads this per-jail file on its own (rc.d/jail), not /etc/jail.conf.",
    ] {
        assert!(notes.contains(expected), "missing {expected:?} in\n{output}");
    }
    assert!(
        output.contains("# web: /etc/jail.conf.d/web.conf line 1."),
        "{output}"
    );
}

#[test]
fn per_jail_file_without_a_path_says_it_is_read_alone() {
    // Proves a per-jail file that relies on jail.conf's globals is refused with the reason: rc.d/jail reads it on its own.
    let host = Host::with_texts(&[
        ("/etc/jail.conf", "path = \"/j/$name\";\n"),
        ("/etc/jail.conf.d/web.conf", "web { }\n"),
    ]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.file, PathBuf::from("/etc/jail.conf.d/web.conf"));
    assert!(error.message.contains("without a path"), "{error}");
    assert!(
        error.message.contains(
            "rc.d/jail reads /etc/jail.conf.d/web.conf on its own, without the parameters of /etc/jail.conf"
        ),
        "{error}"
    );
}

// Through the executable, on the real file system: relative includes, a
// glob, a missing file and a per-jail directory.
#[test]
fn init_follows_includes_on_the_real_file_system() {
    // Proves `jailswap init` reads included and per-jail files from disk through the host adapter, relative to the given jail.conf.
    let directory = tempfile::tempdir().unwrap();
    let etc = directory.path().join("etc");
    std::fs::create_dir_all(etc.join("jails")).unwrap();
    std::fs::create_dir_all(etc.join("jail.conf.d")).unwrap();
    std::fs::write(
        etc.join("jail.conf"),
        "path = \"/j/$name\";\n.include \"jails/*.conf\";\n.include \"absent.conf\";\n",
    )
    .unwrap();
    std::fs::write(etc.join("jails/b.conf"), "b { }\n").unwrap();
    std::fs::write(etc.join("jails/a.conf"), "a { }\n").unwrap();
    std::fs::write(
        etc.join("jail.conf.d/c.conf"),
        "c { path = /srv/c; mount.fstab = \"fstab.c\"; }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_jailswap"))
        .args(["init", "--from-jail-conf"])
        .arg(etc.join("jail.conf"))
        .args(["--store", "/t"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let document = parse(&text);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["a", "b", "c"]);
    assert_eq!(string(jail(&jails, "c"), "path"), Some("/srv/c"));
    let notes = prose(&text);
    assert!(
        notes.contains(&format!(
            "includes {}/absent.conf (\"absent.conf\" as written), which does not exist",
            etc.display()
        )),
        "{text}"
    );
    assert!(
        notes.contains(&format!("{}/jails/a.conf line 1.", etc.display())),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Real-world files (sources and licences in tests/fixtures/import/README)
// ---------------------------------------------------------------------------

/// A host whose files are real-world fixtures: (path on the host, fixture
/// name under real-world/).
fn real_world(files: &[(&str, &str)]) -> Host {
    let named: Vec<(&str, String)> = files
        .iter()
        .map(|(path, name)| (*path, format!("real-world/{name}")))
        .collect();
    let named: Vec<(&str, &str)> = named
        .iter()
        .map(|(path, name)| (*path, name.as_str()))
        .collect();
    Host::new(&named)
}

#[test]
fn jail_conf_5_examples_import_with_their_five_includes() {
    // Proves the EXAMPLES of jail.conf(5) import foo and bar, note each of its five include globs that match nothing, and pick up a per-jail file /etc/jail.xxx.conf through `.include "/etc/jail.*.conf"`.
    let host = real_world(&[("/etc/jail.conf", "freebsd-jail.conf.5-examples")]);
    let output = import_host(&host, "/var/jail").expect("import");
    let document = parse(&output);
    let jails = jails(&document);
    assert_eq!(names(&jails), ["foo", "bar"]);
    assert_eq!(string(jail(&jails, "foo"), "path"), Some("/var/jail/foo"));
    assert_eq!(string(jail(&jails, "bar"), "path"), Some("/"));
    assert_eq!(string(&document, "live"), Some("mroot"));
    let notes = prose(&output);
    for (line, pattern) in [
        (55, "/etc/jail.conf.d/*.conf"),
        (56, "/etc/jail.*.conf"),
        (57, "/usr/local/etc/jail[.]conf"),
        (58, "/usr/local/etc/jail.conf.d/*.conf"),
        (59, "/usr/local/etc/jail.*.conf"),
    ] {
        let expected =
            format!("/etc/jail.conf line {line}: `.include \"{pattern}\"` matched no file.");
        assert!(
            notes.contains(&expected),
            "missing {expected:?} in\n{output}"
        );
    }
    // share/examples/jails/README, sample 3: cp jail.xxx.conf /etc/.
    let host = real_world(&[
        ("/etc/jail.conf", "freebsd-jail.conf.5-examples"),
        ("/etc/jail.xxx.conf", "freebsd-jail.xxx.conf"),
    ]);
    let output = import_host(&host, "/var/jail").expect("import");
    let with_xxx = self::jails(&parse(&output));
    assert_eq!(names(&with_xxx), ["foo", "bar", "xxx"]);
    assert_eq!(string(jail(&with_xxx, "xxx"), "path"), Some("/vm/xxx"));
    assert!(
        output.contains("# xxx: /etc/jail.xxx.conf line 3."),
        "{output}"
    );
    assert!(!prose(&output).contains("`.include \"/etc/jail.*.conf\"` matched no file"));
}

#[test]
fn freebsd_per_jail_example_imports_on_its_own() {
    // Proves share/examples/jails/jail.xxx.conf, given as the jail.conf, imports jail xxx with its root.
    let host = real_world(&[("/etc/jail.conf", "freebsd-jail.xxx.conf")]);
    let output = import_host(&host, "/vm").expect("import");
    let jails = jails(&parse(&output));
    assert_eq!(names(&jails), ["xxx"]);
    assert_eq!(string(jail(&jails, "xxx"), "path"), Some("/vm/xxx"));
}

#[test]
fn freebsd_test_jail_conf_without_a_path_is_refused() {
    // Proves jail(8)'s own test configuration, whose jail has no path, is refused at its block, since jailswap needs the root.
    let host = real_world(&[("/etc/jail.conf", "freebsd-commands.jail.conf")]);
    let error = expect_error(import_host(&host, "/t"));
    assert_eq!(error.line, 6);
    assert!(
        error
            .message
            .contains("found jail \"basejail\" without a path"),
        "{error}"
    );
}

fn handbook_14_host(jail_conf: Option<&str>) -> Host {
    let mut files = vec![
        ("/etc/jail.conf.d/classic.conf", "handbook-14-classic.conf"),
        (
            "/etc/jail.conf.d/thinjail.conf",
            "handbook-14-thinjail.conf",
        ),
        ("/etc/jail.conf.d/vnet.conf", "handbook-14-vnet.conf"),
        (
            "/usr/local/jails/thinjail-nullfs-base.fstab",
            "handbook-14-thinjail-nullfs-base.fstab",
        ),
    ];
    if let Some(name) = jail_conf {
        files.push(("/etc/jail.conf", name));
    }
    real_world(&files)
}

fn assert_handbook_14_jails(output: &str) {
    let document = parse(output);
    assert_eq!(
        string(&document, "store"),
        Some("/usr/local/jails/templates")
    );
    assert_eq!(string(&document, "live"), Some("14.3-RELEASE-base"));
    let jails = jails(&document);
    assert_eq!(names(&jails), ["classic", "thinjail", "vnet"]);
    for (name, path) in [
        ("classic", "/usr/local/jails/containers/classic"),
        ("thinjail", "/usr/local/jails/thinjail-nullfs-base"),
        ("vnet", "/usr/local/jails/containers/vnet"),
    ] {
        assert_eq!(string(jail(&jails, name), "path"), Some(path));
        assert!(jail(&jails, name).get("fstab").is_none());
        assert!(
            output.contains(&format!("# {name}: /etc/jail.conf.d/{name}.conf line 5.")),
            "{output}"
        );
    }
    let notes = prose(output);
    assert!(notes.contains(
        "Template: /usr/local/jails/thinjail-nullfs-base.fstab line 6 mounts \
         /usr/local/jails/templates/14.3-RELEASE-base read-only at /usr/local/jails/thinjail-nullfs-base/."
    ), "{output}");
    assert_eq!(
        notes
            .matches("No mount of the template at this jail's root was found")
            .count(),
        2,
        "{output}"
    );
}

#[test]
fn handbook_14_jail_conf_d_layout_imports_through_its_include() {
    // Proves the FreeBSD 14 Handbook layout (jail.conf holding only `.include "/etc/jail.conf.d/*.conf"`) imports classic, thinjail and vnet, with thinjail's NullFS template found.
    let host = handbook_14_host(Some("handbook-14-jail.conf"));
    let output = import_host(&host, "/usr/local/jails/templates").expect("import");
    assert_handbook_14_jails(&output);
    assert!(!prose(&output).contains("per-jail files"), "{output}");
}

#[test]
fn handbook_14_per_jail_files_import_without_an_include() {
    // Proves the same per-jail files import when jail.conf does not include them, as `service jail start NAME` reads them (rc.d/jail).
    let host = handbook_14_host(None);
    let output = from_jail_conf(
        "# jail.conf with no jails of its own\nexec.clean;\n",
        Path::new("/etc/jail.conf"),
        Path::new("/usr/local/jails/templates"),
        &host,
    )
    .expect("import");
    assert_handbook_14_jails(&output);
    assert!(prose(&output).contains(
        "Read the per-jail files /etc/jail.conf.d/classic.conf, /etc/jail.conf.d/thinjail.conf, \
         /etc/jail.conf.d/vnet.conf: `service jail start NAME` reads /etc/jail.conf.d/NAME.conf"
    ), "{output}");
}

#[test]
fn simple_jails_thin_jails_share_a_release_template() {
    // Proves simple-jails' jail.conf and the fstabs its thinjail.sh writes import four jails, foo and bar mounting the 12.0-RELEASE template.
    let host = real_world(&[
        ("/etc/jail.conf", "simple-jails-jail.conf"),
        ("/usr/local/jails/foo.fstab", "simple-jails-foo.fstab"),
        ("/usr/local/jails/bar.fstab", "simple-jails-bar.fstab"),
    ]);
    let output = import_host(&host, "/usr/local/jails/templates").expect("import");
    let document = parse(&output);
    assert_eq!(string(&document, "live"), Some("12.0-RELEASE"));
    let jails = jails(&document);
    assert_eq!(names(&jails), ["foo", "bar", "baz", "qux"]);
    for name in ["foo", "bar", "baz", "qux"] {
        assert_eq!(
            string(jail(&jails, name), "path"),
            Some(format!("/usr/local/jails/{name}").as_str())
        );
    }
    let notes = prose(&output);
    assert!(notes.contains(
        "Template: /usr/local/jails/bar.fstab line 3 mounts /usr/local/jails/templates/12.0-RELEASE read-only at /usr/local/jails/bar/."
    ), "{output}");
    assert_eq!(
        notes
            .matches("No mount of the template at this jail's root was found")
            .count(),
        2
    );
}

#[test]
fn diy_jails_import_with_their_variables() {
    // Proves diy-jails' jail.conf (per-jail `$ip` variables, an emptied mount.fstab) imports both jails with their roots and no mount.fstab.
    let host = real_world(&[("/etc/jail.conf", "diy-jails-jail.conf")]);
    let output = import_host(&host, "/jails").expect("import");
    let jails = jails(&parse(&output));
    assert_eq!(names(&jails), ["iwantmybox", "z2"]);
    assert_eq!(string(jail(&jails, "z2"), "path"), Some("/jails/z2"));
    assert!(!prose(&output).contains("mount.fstab"), "{output}");
    assert!(host.requested().is_empty());
}

#[test]
fn jail_conf_setting_name_in_a_block_is_refused_as_jail8_refuses_it() {
    // Proves a real jail.conf that sets `name` inside its block is refused at that line, as jail(8) refuses to redefine it.
    let host = real_world(&[("/etc/jail.conf", "nikolaydachev-jail.conf")]);
    let error = expect_error(import_host(&host, "/zroot/jails"));
    assert_eq!(error.line, 13);
    assert!(
        error.message.contains("found `name` set for jail \"t1\""),
        "{error}"
    );
}
