//! Dependency order between jails: which start together and which wait for
//! others, for the configuration (`depends`) and for `jailswap init`
//! (jail.conf's `depend`).
//!
//! Jails are grouped in levels by Kahn's algorithm: level 0 holds the jails
//! that depend on nothing, level k the jails whose dependencies all sit on
//! lower levels. A transaction stops the levels in reverse and starts them in
//! order, each level's jails at once. A dependency on a jail that is not in
//! the list, on the jail itself, or a cycle leaves no such order; each is
//! reported with the names involved, so that the caller can say which entry
//! to remove. The callers word the messages, because the configuration and
//! jail.conf name the same mistake differently.

use std::collections::BTreeMap;

/// One jail and the names of the jails it depends on.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub name: &'a str,
    pub depends: &'a [String],
}

/// Why the jails cannot be ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderError {
    /// `jail` depends on `dependency`, which is not in the list.
    Unknown { jail: String, dependency: String },
    /// `jail` lists itself among its dependencies.
    SelfDependency { jail: String },
    /// The jails wait on each other in a circle; the first name is repeated
    /// at the end (`a -> b -> a`).
    Cycle { cycle: Vec<String> },
}

/// Groups `nodes` by dependency level; each level lists indexes into `nodes`
/// in ascending order.
pub fn levels(nodes: &[Node<'_>]) -> Result<Vec<Vec<usize>>, OrderError> {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(position, node)| (node.name, position))
        .collect();
    for node in nodes {
        for dependency in node.depends {
            if !index.contains_key(dependency.as_str()) {
                return Err(OrderError::Unknown {
                    jail: node.name.to_owned(),
                    dependency: dependency.clone(),
                });
            }
            if dependency == node.name {
                return Err(OrderError::SelfDependency {
                    jail: node.name.to_owned(),
                });
            }
        }
    }

    // Kahn's algorithm, a level at a time: each round places every jail whose
    // dependencies are all placed. At most one round per jail places nothing
    // new, so the loop is bounded by the number of jails.
    let placed_by = |level_of: &[Option<usize>], dependency: &String| {
        index
            .get(dependency.as_str())
            .and_then(|&position| level_of.get(position).copied().flatten())
            .is_some()
    };
    let mut level_of: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut levels: Vec<Vec<usize>> = Vec::new();
    for _ in 0..nodes.len() {
        let ready: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(position, _)| level_of.get(*position) == Some(&None))
            .filter(|(_, node)| {
                node.depends
                    .iter()
                    .all(|dependency| placed_by(&level_of, dependency))
            })
            .map(|(position, _)| position)
            .collect();
        if ready.is_empty() {
            break;
        }
        for &position in &ready {
            if let Some(level) = level_of.get_mut(position) {
                *level = Some(levels.len());
            }
        }
        levels.push(ready);
    }

    // Every jail left waits on another one left: follow the first unplaced
    // dependency from the first such jail until a name repeats.
    let Some(start) = level_of.iter().position(Option::is_none) else {
        return Ok(levels);
    };
    let mut cycle: Vec<usize> = Vec::new();
    let mut current = start;
    while cycle.len() <= nodes.len() {
        if let Some(first) = cycle.iter().position(|&seen| seen == current) {
            cycle.drain(..first);
            cycle.push(current);
            break;
        }
        cycle.push(current);
        let next = nodes.get(current).and_then(|node| {
            node.depends
                .iter()
                .find(|dependency| !placed_by(&level_of, dependency))
                .and_then(|dependency| index.get(dependency.as_str()).copied())
        });
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    Err(OrderError::Cycle {
        cycle: cycle
            .iter()
            .filter_map(|&position| nodes.get(position))
            .map(|node| node.name.to_owned())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(name, depends)| {
                (
                    (*name).to_owned(),
                    depends.iter().map(|name| (*name).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn order(edges: &[(&str, &[&str])]) -> Result<Vec<Vec<usize>>, OrderError> {
        let owned = graph(edges);
        let nodes: Vec<Node<'_>> = owned
            .iter()
            .map(|(name, depends)| Node { name, depends })
            .collect();
        levels(&nodes)
    }

    // Independent jails share level 0; a chain takes one level per link.
    #[test]
    fn levels_follow_the_dependencies() {
        let levels = order(&[
            ("www", &["db", "ns"]),
            ("db", &["ns"]),
            ("ns", &[]),
            ("mail", &[]),
        ])
        .unwrap();
        assert_eq!(levels, vec![vec![2, 3], vec![1], vec![0]]);
        assert_eq!(order(&[]).unwrap(), Vec::<Vec<usize>>::new());
    }

    // An unknown name and a self-dependency are named, not reported as cycles.
    #[test]
    fn unknown_and_self_dependencies_are_named() {
        assert_eq!(
            order(&[("a", &["zz"])]),
            Err(OrderError::Unknown {
                jail: "a".into(),
                dependency: "zz".into()
            })
        );
        assert_eq!(
            order(&[("b", &[]), ("a", &["b", "a"])]),
            Err(OrderError::SelfDependency { jail: "a".into() })
        );
    }

    // A cycle is spelled out from its first jail, and jails that merely wait
    // on the cycle are left out of it.
    #[test]
    fn cycles_are_spelled_out() {
        assert_eq!(
            order(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]),
            Err(OrderError::Cycle {
                cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            })
        );
        assert_eq!(
            order(&[("ok", &[]), ("waits", &["x"]), ("x", &["y"]), ("y", &["x"])]),
            Err(OrderError::Cycle {
                cycle: vec!["x".into(), "y".into(), "x".into()]
            })
        );
    }
}
