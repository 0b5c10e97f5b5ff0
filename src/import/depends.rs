//! Jail.conf's `depend` carried into jailswap's `depends`: names checked
//! against the jails read, dropped (with a note) when they name a jail that
//! is not imported, and refused when they leave no start order.

use std::collections::BTreeSet;
use std::path::Path;

use crate::order::{Node, OrderError};

use super::expand::ConfiguredJail;
use super::render::JailEntry;
use super::{shown, ImportError};

/// Copies each imported jail's `depend` values into `depends`, refusing a
/// jail no file read defines and dropping, with a note, one that was not
/// imported (jailswap does not stop or start it, so it cannot wait on it).
pub(super) fn attach_dependencies(
    jails: &[ConfiguredJail],
    imported: &mut [JailEntry],
) -> Result<(), ImportError> {
    let imported_names: BTreeSet<String> = imported.iter().map(|jail| jail.name.clone()).collect();
    for entry in imported.iter_mut() {
        let Some(jail) = jails.iter().find(|jail| jail.name == entry.name) else {
            continue;
        };
        for (dependency, origin) in &jail.depends {
            if dependency.is_empty() || entry.depends.contains(dependency) {
                continue;
            }
            if !jails.iter().any(|other| &other.name == dependency) {
                return Err(ImportError::new(
                    &origin.file,
                    origin.line,
                    format!(
                        "found jail \"{}\" depending on \"{}\"; expected a jail this file or the \
                         files read with it define",
                        jail.name,
                        shown(dependency)
                    ),
                ));
            }
            if imported_names.contains(dependency) {
                entry.depends.push(dependency.clone());
            } else {
                entry.notes_before.push(format!(
                    "Its dependency on \"{dependency}\" is left out: \"{dependency}\" is not imported."
                ));
            }
        }
    }
    Ok(())
}

/// Refuses dependencies that leave no order in which the jails can start:
/// a jail waiting on itself, or jails waiting on each other in a cycle.
pub(super) fn check_order(
    imported: &[JailEntry],
    jails: &[ConfiguredJail],
    source: &Path,
) -> Result<(), ImportError> {
    let nodes: Vec<Node<'_>> = imported
        .iter()
        .map(|jail| Node {
            name: &jail.name,
            depends: &jail.depends,
        })
        .collect();
    let block = |name: &str| jails.iter().find(|jail| jail.name == name);
    let at_block = |name: &str, message: String| match block(name) {
        Some(jail) => ImportError::new(&jail.file, jail.line, message),
        // Every imported jail was read from a block; were one not, the error
        // would still name the given file and keep its message.
        None => ImportError::new(source, 0, message),
    };
    match crate::order::levels(&nodes) {
        Ok(_) => Ok(()),
        Err(OrderError::Cycle { cycle }) => Err(at_block(
            cycle.first().map_or("", String::as_str),
            format!(
                "found jails depending on each other in a cycle ({}); expected an order in \
                 which they can start",
                cycle.join(" -> ")
            ),
        )),
        Err(OrderError::SelfDependency { jail }) => {
            let message = format!(
                "found jail \"{jail}\" depending on itself; expected `depend` to name other jails"
            );
            let depend = block(&jail).and_then(|configured| {
                configured
                    .depends
                    .iter()
                    .find(|(dependency, _)| *dependency == jail)
            });
            Err(match depend {
                Some((_, origin)) => ImportError::new(&origin.file, origin.line, message),
                None => at_block(&jail, message),
            })
        }
        // `attach_dependencies` keeps only names of imported jails, so this
        // is reported rather than assumed impossible.
        Err(OrderError::Unknown { jail, dependency }) => Err(at_block(
            &jail,
            format!(
                "found jail \"{jail}\" depending on \"{}\"; expected a jail this file defines",
                shown(&dependency)
            ),
        )),
    }
}
