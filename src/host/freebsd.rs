//! Mounts as FreeBSD makes them: the system's own tools.
//!
//! nullfs through `mount -t nullfs [-o ro] SOURCE TARGET`, `umount TARGET`
//! (never `-f`), the mount table from `mount -p` (fstab format). It is the
//! default on FreeBSD and can be chosen elsewhere with `backend =
//! "commands"`; the tests run it on Linux against recording stand-ins for
//! these tools.

use super::system::Mounts;
use super::{HostError, HostResult};
use crate::fstab::{self, MountSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct CommandMounts;

fn run(program: &str, arguments: &[&str]) -> HostResult<String> {
    let output = Command::new(program)
        .args(arguments)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| HostError::Failed(format!("cannot run {program}: {error}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(HostError::Failed(format!(
            "`{program} {}` failed: {stderr}",
            arguments.join(" ")
        )))
    }
}

/// The mount table as `mount -p` prints it.
pub fn mount_table() -> HostResult<Vec<MountSpec>> {
    Ok(parse_mount_p(&run("mount", &["-p"])?))
}

/// Reads `mount -p` output. FreeBSD prints the source and the mount point
/// as they are, without escaping white space, so a line with more than six
/// fields is split where both halves name existing paths (the last four
/// fields are always type, options, dump and pass). A line that cannot be
/// read is skipped rather than failing the whole table: it cannot be one of
/// jailswap's own mounts, whose paths exist.
pub fn parse_mount_p(text: &str) -> Vec<MountSpec> {
    let mut table = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let (paths, tail) = fields.split_at(fields.len() - 4);
        let joined = |part: &[&str]| fstab::unescape(&part.join(" "));
        let split = if paths.len() == 2 {
            Some(1)
        } else {
            (1..paths.len()).find(|&at| {
                Path::new(&joined(&paths[at..])).exists()
                    && Path::new(&joined(&paths[..at])).exists()
            })
        };
        let Some(at) = split else { continue };
        table.push(MountSpec {
            source: joined(&paths[..at]).into(),
            target: joined(&paths[at..]).into(),
            fstype: tail[0].to_string(),
            options: tail[1].split(',').map(str::to_string).collect(),
        });
    }
    table
}

impl Mounts for CommandMounts {
    fn mount(&self, spec: &MountSpec) -> HostResult<()> {
        let source = spec.source.to_string_lossy();
        let target = spec.target.to_string_lossy();
        let options = spec.options.join(",");
        let mut arguments = vec!["-t", spec.fstype.as_str()];
        if !options.is_empty() {
            arguments.extend(["-o", options.as_str()]);
        }
        arguments.extend([source.as_ref(), target.as_ref()]);
        run("mount", &arguments).map(|_| ())
    }

    fn unmount(&self, target: &Path) -> HostResult<()> {
        run("umount", &[target.to_string_lossy().as_ref()]).map(|_| ())
    }

    fn mount_table(&self) -> HostResult<std::collections::BTreeMap<PathBuf, bool>> {
        // In mount order, so the top of a stack of mounts wins.
        Ok(mount_table()?
            .into_iter()
            .map(|entry| {
                let read_only = entry.read_only();
                (entry.target, read_only)
            })
            .collect())
    }

    fn users_of(&self, template_path: &Path) -> HostResult<Vec<PathBuf>> {
        Ok(mount_table()?
            .into_iter()
            .filter(|entry| entry.source.starts_with(template_path))
            .map(|entry| entry.target)
            .collect())
    }
}
