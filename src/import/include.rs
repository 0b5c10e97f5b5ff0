//! Reading a jail.conf with everything jail(8) and rc.d/jail would read with
//! it: the files its `.include` lines name, and the per-jail files
//! `jail.conf.d/NAME.conf` that `service jail start NAME` reads on its own.
//!
//! Included files are parsed where their `.include` stands, as jail(8) does:
//! at the top level they add blocks and parameters, inside a block they add
//! parameters to that jail. What a file holds is flattened into
//! [`Section`]s in reading order, each statement keeping its file and line
//! for messages. Reading is bounded: includes nest at most
//! [`INCLUDE_DEPTH_LIMIT`] deep (jail(8)'s own limit), an include that
//! leads back to a file being read is refused with the chain of files, and
//! one tree reads at most [`FILE_LIMIT`] files, the jail.conf's and the
//! per-jail ones together at most twice that.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::files::{absent, glob, has_magic, SourceFiles};
use super::lexer::Lexer;
use super::parser::{Include, Item, Parser, Section, Statement};
use super::{normalize, shown, ImportError};

/// How deep includes may nest: jail(8)'s MAX_INCLUDE_DEPTH.
pub(super) const INCLUDE_DEPTH_LIMIT: usize = 32;

/// How many files one import may read: far more than any host keeps, and a
/// bound on files that include each other many times without a cycle.
pub(super) const FILE_LIMIT: usize = 1_000;

/// A jail.conf and the files it includes, flattened.
pub(super) struct Tree {
    pub(super) sections: Vec<Section>,
    /// Comment lines for the output: includes that named a missing file or
    /// matched none.
    pub(super) notes: Vec<String>,
    /// Every file read, the given one first.
    pub(super) files: Vec<Rc<Path>>,
    /// The directory of every `.include` pattern, to tell whether the
    /// per-jail directory is already read through an include.
    pub(super) included_directories: Vec<PathBuf>,
}

/// Reads `text`, the jail.conf at `source`, and every file it includes.
pub(super) fn load(
    text: &str,
    source: &Path,
    files: &dyn SourceFiles,
) -> Result<Tree, ImportError> {
    let mut loader = Loader {
        files,
        tree: Tree {
            sections: Vec::new(),
            notes: Vec::new(),
            files: Vec::new(),
            included_directories: Vec::new(),
        },
        chain: Vec::new(),
    };
    loader.file(text, Rc::from(source), Target::TopLevel)?;
    Ok(loader.tree)
}

/// Where a file's statements go: the top level, or the block (an index
/// into the sections) whose `.include` named the file.
#[derive(Clone, Copy)]
enum Target {
    TopLevel,
    Block(usize),
}

struct Loader<'a> {
    files: &'a dyn SourceFiles,
    tree: Tree,
    /// The files being read, outermost first: the include chain.
    chain: Vec<Rc<Path>>,
}

impl Loader<'_> {
    fn file(&mut self, text: &str, path: Rc<Path>, target: Target) -> Result<(), ImportError> {
        let tokens = Lexer::new(text, &path).tokenize()?;
        let items = Parser::new(tokens, &path).parse()?;
        self.tree.files.push(Rc::clone(&path));
        self.chain.push(Rc::clone(&path));
        self.items(items, &path, target)?;
        self.chain.pop();
        Ok(())
    }

    fn items(
        &mut self,
        items: Vec<Item>,
        file: &Rc<Path>,
        target: Target,
    ) -> Result<(), ImportError> {
        for item in items {
            match (item, target) {
                (Item::Statement(statement), _) => self.statement(statement, target),
                (Item::Include(include), _) => self.include(&include, file, target)?,
                (Item::Block { name, line, items }, Target::TopLevel) => {
                    self.tree.sections.push(Section {
                        name,
                        file: Rc::clone(file),
                        line,
                        statements: Vec::new(),
                    });
                    let index = self.tree.sections.len() - 1;
                    self.items(items, file, Target::Block(index))?;
                }
                (Item::Block { name, line, .. }, Target::Block(outer)) => {
                    let outer = self
                        .tree
                        .sections
                        .get(outer)
                        .map_or_else(String::new, |section| shown(&section.name));
                    return Err(ImportError::new(
                        file,
                        line,
                        format!(
                            "found block \"{}\" in a file included inside block \"{outer}\"; \
                             expected only parameters there, as jailswap reads blocks only at \
                             the top level",
                            shown(&name)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn statement(&mut self, statement: Statement, target: Target) {
        let sections = &mut self.tree.sections;
        match target {
            Target::Block(index) => {
                if let Some(section) = sections.get_mut(index) {
                    section.statements.push(statement);
                }
            }
            // Consecutive global parameters join the previous `*` section, as
            // jail(8) does; only their order matters.
            Target::TopLevel => match sections.last_mut() {
                Some(section) if section.name == "*" => section.statements.push(statement),
                _ => sections.push(Section {
                    name: "*".to_owned(),
                    file: Rc::clone(&statement.file),
                    line: statement.line,
                    statements: vec![statement],
                }),
            },
        }
    }

    fn include(
        &mut self,
        include: &Include,
        file: &Rc<Path>,
        target: Target,
    ) -> Result<(), ImportError> {
        for (pattern, line) in &include.patterns {
            let resolved = resolve(pattern, file);
            if let Some(directory) = normalize(&resolved).parent() {
                self.tree.included_directories.push(directory.to_path_buf());
            }
            let written = if *pattern == resolved {
                String::new()
            } else {
                format!(" (\"{}\" as written)", shown(pattern))
            };
            if !has_magic(&resolved) {
                self.included_file(&resolved, &written, file, *line, target)?;
                continue;
            }
            let matches = glob(&resolved, self.files).map_err(|error| {
                ImportError::new(
                    file,
                    *line,
                    format!(
                        "cannot list {} for `.include \"{}\"`: {}; expected a directory \
                         jailswap can read (run as root?)",
                        error.directory.display(),
                        shown(pattern),
                        error.error
                    ),
                )
            })?;
            if matches.is_empty() {
                self.tree.notes.push(format!(
                    "{} line {line}: `.include \"{}\"`{written} matched no file.",
                    file.display(),
                    shown(&resolved)
                ));
            }
            for path in matches {
                self.included_file(&path, &written, file, *line, target)?;
            }
        }
        Ok(())
    }

    /// Reads one included file, or notes that it does not exist: jail(8)
    /// stops at a missing file, and the operator should know which jails
    /// this import cannot see.
    fn included_file(
        &mut self,
        path: &str,
        written: &str,
        from: &Rc<Path>,
        line: usize,
        target: Target,
    ) -> Result<(), ImportError> {
        let normalized = normalize(path);
        if let Some(start) = self
            .chain
            .iter()
            .position(|reading| normalize(&reading.to_string_lossy()) == normalized)
        {
            let cycle: Vec<String> = self.chain[start..]
                .iter()
                .map(|reading| reading.display().to_string())
                .chain([shown(path)])
                .collect();
            return Err(ImportError::new(
                from,
                line,
                format!(
                    "found an include cycle ({}); expected includes that never lead back to a \
                     file being read",
                    cycle.join(" -> ")
                ),
            ));
        }
        if self.chain.len() > INCLUDE_DEPTH_LIMIT {
            return Err(ImportError::new(
                from,
                line,
                format!(
                    "found includes nested more than {INCLUDE_DEPTH_LIMIT} deep (from {}); \
                     expected a shallower chain, as jail(8) stops at {INCLUDE_DEPTH_LIMIT}",
                    self.chain
                        .first()
                        .map_or_else(String::new, |first| first.display().to_string())
                ),
            ));
        }
        if self.tree.files.len() >= FILE_LIMIT {
            return Err(ImportError::new(
                from,
                line,
                format!(
                    "found more than {FILE_LIMIT} files to read through `.include`; expected \
                     a configuration of fewer files"
                ),
            ));
        }
        match self.files.read(Path::new(path)) {
            Ok(text) => self.file(&text, Rc::from(Path::new(path)), target),
            Err(error) if absent(&error) => {
                self.tree.notes.push(format!(
                    "Missing: {} line {line} includes {}{written}, which does not exist. \
                     jail(8) stops with an error at that line until the file exists or the \
                     line is removed; jails that file would define are not here.",
                    from.display(),
                    shown(path)
                ));
                Ok(())
            }
            Err(error) => Err(ImportError::new(
                from,
                line,
                format!(
                    "cannot read {}, which `.include` names: {error}; expected a file jailswap \
                     can read (run as root?)",
                    shown(path)
                ),
            )),
        }
    }
}

/// Resolves an include's file name as jail(8) does: a relative name is
/// relative to the directory of the file that includes it, taken from that
/// file's name as given (a name without `/` leaves it relative to the
/// current directory).
pub(super) fn resolve(pattern: &str, including: &Path) -> String {
    if pattern.starts_with('/') {
        return pattern.to_owned();
    }
    let including = including.to_string_lossy();
    match including.rfind('/') {
        Some(slash) => format!("{}{pattern}", &including[..=slash]),
        None => pattern.to_owned(),
    }
}

/// A per-jail file of rc.d/jail: `jail.conf.d/NAME.conf`, read on its own.
pub(super) struct PerJailFile {
    /// The jail `service jail start NAME` starts from it.
    pub(super) name: String,
    pub(super) path: Rc<Path>,
    pub(super) tree: Tree,
}

/// The per-jail directory, its files, and notes on files it skipped.
pub(super) struct PerJail {
    pub(super) directory: PathBuf,
    pub(super) files: Vec<PerJailFile>,
    pub(super) notes: Vec<String>,
}

/// Reads the per-jail files next to `source`, as rc.d/jail would for
/// `service jail start NAME`: `jail.conf.d/NAME.conf` when the jail.conf
/// does not already include that directory. Each is a jail.conf of its own
/// (rc.d/jail runs `jail -f jail.conf.d/NAME.conf -c NAME`), so it gets none
/// of the main file's parameters, and its includes resolve against itself.
pub(super) fn per_jail(
    source: &Path,
    main: &Tree,
    files: &dyn SourceFiles,
) -> Result<PerJail, ImportError> {
    let directory = PathBuf::from(resolve("jail.conf.d", source));
    let mut found = PerJail {
        directory: directory.clone(),
        files: Vec::new(),
        notes: Vec::new(),
    };
    let normalized = normalize(&directory.to_string_lossy());
    if main.included_directories.contains(&normalized) {
        return Ok(found);
    }
    let mut names = match files.list(&directory) {
        Ok(names) => names,
        Err(error) if absent(&error) => return Ok(found),
        Err(error) => {
            return Err(ImportError::new(
                &directory,
                0,
                format!(
                    "cannot list the per-jail directory: {error}; expected a directory jailswap \
                     can read (run as root?), since `service jail start NAME` reads NAME.conf there"
                ),
            ))
        }
    };
    names.sort_unstable_by(|left, right| left.as_bytes().cmp(right.as_bytes()));
    for file_name in names {
        let Some(name) = file_name.strip_suffix(".conf") else {
            continue;
        };
        if name.is_empty() || name.starts_with('.') {
            continue;
        }
        let path = directory.join(&file_name);
        if name.contains('.') {
            found.notes.push(format!(
                "Not read: {}. rc.d/jail reads jail.conf.d/NAME.conf for a jail NAME with \
                 every '.' turned into '_', so it never reads a file named like this.",
                path.display()
            ));
            continue;
        }
        // The bound covers the jail.conf's files and every per-jail tree
        // together, so that many small files cannot add up without limit.
        let read = main.files.len()
            + found
                .files
                .iter()
                .map(|file| file.tree.files.len())
                .sum::<usize>();
        if read >= FILE_LIMIT {
            return Err(ImportError::new(
                &path,
                0,
                format!(
                    "found more than {FILE_LIMIT} files to read with the jail.conf and its \
                     per-jail files; expected a configuration of fewer files"
                ),
            ));
        }
        let text = match files.read(&path) {
            Ok(text) => text,
            Err(error) if absent(&error) => continue,
            Err(error) => {
                return Err(ImportError::new(
                    &path,
                    0,
                    format!(
                        "cannot read this per-jail file: {error}; expected a file jailswap can \
                         read (run as root?)"
                    ),
                ))
            }
        };
        let tree = load(&text, &path, files)?;
        found.files.push(PerJailFile {
            name: name.to_owned(),
            path: Rc::from(path.as_path()),
            tree,
        });
    }
    Ok(found)
}
