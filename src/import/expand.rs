//! Each jail's parameters as jail(8) resolves them: global, wildcard and
//! block statements applied in jail(8)'s order, then `$variables`
//! substituted in the few parameters jailswap uses (`path`, `mount.fstab`,
//! `mount`, `depend`).
//!
//! Expansion is bounded in depth, substitutions and length, so that no file
//! can make it run away (variables that each use another twice double the
//! work per level).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::lexer::{Piece, Word};
use super::parser::{wildcard_matches, Operator, Section, Statement};
use super::{invalid_name_message, normalize, path_text, shown, ImportError, Origin};

/// How deep variables may refer to variables; jail.conf files use two or
/// three levels, and the bound keeps recursion from exhausting the stack.
const VARIABLE_DEPTH_LIMIT: usize = 32;

/// How many substitutions one parameter may take, and how long one value may
/// grow: variables that each use another twice double the work per level,
/// and these bounds keep such a file from exhausting time or memory.
const SUBSTITUTION_LIMIT: usize = 10_000;
const VALUE_LENGTH_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Parameter {
    variable: bool,
    values: Vec<Word>,
}

type Parameters = BTreeMap<String, Parameter>;

/// What jailswap needs of one jail, with variables substituted.
pub(super) struct ConfiguredJail {
    pub(super) name: String,
    /// The file and line of the jail's block.
    pub(super) file: Rc<Path>,
    pub(super) line: usize,
    pub(super) path: String,
    pub(super) mount_fstab: Option<PathBuf>,
    /// Values of `mount`, each a full fstab line, with where each was written.
    pub(super) mount_lines: Vec<(String, Origin)>,
    /// Values of `depend`, with where each was written.
    pub(super) depends: Vec<(String, Origin)>,
}

/// Every jail of `sections` (one jail.conf and the files it includes), with
/// what jailswap needs of it resolved.
pub(super) fn resolve_jails(sections: &[Section]) -> Result<Vec<ConfiguredJail>, ImportError> {
    let mut jails: Vec<ConfiguredJail> = Vec::new();
    for (sequence, section) in sections.iter().enumerate() {
        if section.wildcard() {
            continue;
        }
        let file = &section.file;
        if !crate::config::valid_name(&section.name) {
            return Err(ImportError::new(
                file,
                section.line,
                invalid_name_message(&section.name),
            ));
        }
        if let Some(first) = jails.iter().find(|jail| jail.name == section.name) {
            let place = if first.file == *file {
                String::new()
            } else {
                format!("{} ", first.file.display())
            };
            return Err(ImportError::new(
                file,
                section.line,
                format!(
                    "found a second block for jail \"{}\"; expected one, and {place}line {} \
                     already defines it",
                    section.name, first.line
                ),
            ));
        }
        let parameters = effective_parameters(sections, sequence, section)?;
        let expander = Expander {
            parameters: &parameters,
            jail: &section.name,
        };

        let Some((path, path_origin)) = expander
            .list("path")?
            .pop()
            .filter(|(path, _)| !path.is_empty())
        else {
            return Err(ImportError::new(
                file,
                section.line,
                format!(
                    "found jail \"{}\" without a path; expected `path = \"/directory\";` in its \
                     block or before it",
                    section.name
                ),
            ));
        };
        if !Path::new(&path).is_absolute() {
            return Err(ImportError::new(
                &path_origin.file,
                path_origin.line,
                format!(
                    "found path \"{}\" for jail \"{}\"; expected an absolute path",
                    path.escape_debug(),
                    section.name
                ),
            ));
        }
        let mount_fstab = expander
            .list("mount.fstab")?
            .pop()
            .map(|(fstab, _)| fstab)
            .filter(|fstab| !fstab.is_empty())
            .map(PathBuf::from);
        jails.push(ConfiguredJail {
            name: section.name.clone(),
            file: Rc::clone(file),
            line: section.line,
            path: path_text(&normalize(&path)),
            mount_fstab,
            mount_lines: expander.list("mount")?,
            depends: expander.list("depend")?,
        });
    }
    Ok(jails)
}

/// Collects one jail's parameters in jail(8)'s order (config.c load_config):
/// global and wildcard sections written before the jail's block apply first,
/// then the block itself, then those written after it.
fn effective_parameters(
    sections: &[Section],
    jail_sequence: usize,
    jail: &Section,
) -> Result<Parameters, ImportError> {
    let mut parameters = Parameters::new();
    // The block's name is the jail's `name` parameter, so `$name` works.
    parameters.insert(
        "name".to_owned(),
        Parameter {
            variable: false,
            values: vec![Word {
                pieces: vec![Piece::Text(jail.name.clone())],
                file: Rc::clone(&jail.file),
                line: jail.line,
            }],
        },
    );
    let mut applied_own = false;
    for (sequence, section) in sections.iter().enumerate() {
        if !section.wildcard() {
            continue;
        }
        if jail_sequence < sequence && !applied_own {
            apply_all(&mut parameters, jail, &jail.name)?;
            applied_own = true;
        }
        if wildcard_matches(&jail.name, &section.name) {
            apply_all(&mut parameters, section, &jail.name)?;
        }
    }
    if !applied_own {
        apply_all(&mut parameters, jail, &jail.name)?;
    }
    Ok(parameters)
}

fn apply_all(
    parameters: &mut Parameters,
    section: &Section,
    jail: &str,
) -> Result<(), ImportError> {
    for statement in &section.statements {
        apply(parameters, statement, jail)?;
    }
    Ok(())
}

fn apply(
    parameters: &mut Parameters,
    statement: &Statement,
    jail: &str,
) -> Result<(), ImportError> {
    let file = &statement.file;
    if !statement.variable && statement.name == "name" {
        return Err(ImportError::new(
            file,
            statement.line,
            format!(
                "found `name` set for jail \"{jail}\"; expected the name to come only from the \
                 block name, as jail(8) cannot redefine it"
            ),
        ));
    }
    match parameters.get_mut(&statement.name) {
        Some(existing) => {
            if existing.variable != statement.variable {
                return Err(ImportError::new(
                    file,
                    statement.line,
                    format!(
                        "found variable \"${}\" and parameter \"{}\" for jail \"{jail}\"; expected \
                         different names, as jail(8) refuses both",
                        shown(&statement.name),
                        shown(&statement.name)
                    ),
                ));
            }
            match statement.operator {
                Operator::Append => existing.values.extend(statement.values.iter().cloned()),
                Operator::Set | Operator::Flag => existing.values = statement.values.clone(),
            }
        }
        None => {
            parameters.insert(
                statement.name.clone(),
                Parameter {
                    variable: statement.variable,
                    values: statement.values.clone(),
                },
            );
        }
    }
    Ok(())
}

/// Substitutes variables in the values of one jail's parameters.
struct Expander<'a> {
    parameters: &'a Parameters,
    jail: &'a str,
}

/// The progress of expanding one parameter: the variables being expanded,
/// outermost first, to detect loops, and how many substitutions were made.
struct Expansion {
    chain: Vec<String>,
    substitutions: usize,
}

impl Expander<'_> {
    /// Every value of `key` with variables substituted, each with where the
    /// word it came from was written; empty when the parameter is not set.
    fn list(&self, key: &str) -> Result<Vec<(String, Origin)>, ImportError> {
        let Some(parameter) = self.parameters.get(key) else {
            return Ok(Vec::new());
        };
        let mut state = Expansion {
            chain: vec![key.to_owned()],
            substitutions: 0,
        };
        let mut values = Vec::new();
        for word in &parameter.values {
            for value in self.expand_word(word, key, &mut state)? {
                values.push((
                    value,
                    Origin {
                        file: word.file.to_path_buf(),
                        line: word.line,
                    },
                ));
            }
        }
        Ok(values)
    }

    fn expand_word(
        &self,
        word: &Word,
        key: &str,
        state: &mut Expansion,
    ) -> Result<Vec<String>, ImportError> {
        // A word that is only a variable takes all of the variable's values,
        // so `depend = $backends;` can name several jails.
        if let [Piece::Variable(name)] = word.pieces.as_slice() {
            return self.expand_variable(name, word, key, state);
        }
        let mut text = String::new();
        for piece in &word.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(name) => {
                    let values = self.expand_variable(name, word, key, state)?;
                    match values.as_slice() {
                        [single] => text.push_str(single),
                        _ => {
                            return Err(ImportError::new(
                                &word.file,
                                word.line,
                                format!(
                                    "found list variable \"${}\" inside \"{}\" of \"{key}\" for \
                                     jail \"{}\"; expected a variable with one value, as jail(8) \
                                     cannot substitute a list inline",
                                    shown(name),
                                    word.describe(),
                                    self.jail
                                ),
                            ))
                        }
                    }
                }
            }
        }
        if text.len() > VALUE_LENGTH_LIMIT {
            return Err(ImportError::new(
                &word.file,
                word.line,
                format!(
                    "found \"{key}\" of jail \"{}\" expanding to more than {VALUE_LENGTH_LIMIT} \
                     bytes; expected a path or a name",
                    self.jail
                ),
            ));
        }
        Ok(vec![text])
    }

    fn expand_variable(
        &self,
        name: &str,
        word: &Word,
        key: &str,
        state: &mut Expansion,
    ) -> Result<Vec<String>, ImportError> {
        let printed = shown(name);
        if state.chain.iter().any(|seen| seen == name) {
            return Err(ImportError::new(
                &word.file,
                word.line,
                format!(
                    "found variable \"${printed}\" referring to itself ({} -> {printed}) for jail \
                     \"{}\"; expected a value that does not depend on itself",
                    shown(&state.chain.join(" -> ")),
                    self.jail
                ),
            ));
        }
        state.substitutions += 1;
        if state.substitutions > SUBSTITUTION_LIMIT {
            return Err(ImportError::new(
                &word.file,
                word.line,
                format!(
                    "found more than {SUBSTITUTION_LIMIT} variable substitutions in \"{key}\" \
                     for jail \"{}\"; expected variables that expand to a few values",
                    self.jail
                ),
            ));
        }
        if state.chain.len() >= VARIABLE_DEPTH_LIMIT {
            return Err(ImportError::new(
                &word.file,
                word.line,
                format!(
                    "found variables nested more than {VARIABLE_DEPTH_LIMIT} deep in \"{key}\" for \
                     jail \"{}\"; expected a shallower chain",
                    self.jail
                ),
            ));
        }
        let Some(parameter) = self
            .parameters
            .get(name)
            .filter(|parameter| !parameter.values.is_empty())
        else {
            return Err(ImportError::new(
                &word.file,
                word.line,
                format!(
                    "found variable \"${printed}\" in \"{key}\" of jail \"{}\", which is not set; \
                     expected `${printed} = value;` or a parameter named \"{printed}\"",
                    self.jail
                ),
            ));
        };
        state.chain.push(name.to_owned());
        let mut values = Vec::new();
        for inner in &parameter.values {
            values.extend(self.expand_word(inner, key, state)?);
        }
        state.chain.pop();
        Ok(values)
    }
}
