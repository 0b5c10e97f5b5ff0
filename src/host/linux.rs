//! Mounts on Linux: bind mounts through mount(2), the mount table from
//! /proc/thread-self/mountinfo (the calling thread's mount namespace).
//!
//! `nullfs` is a bind mount; `ro` is applied by a read-only remount of the
//! bind, as mount(8) does. Unmounts are never lazy: when the kernel answers
//! EBUSY, the processes that hold the mount point are named from /proc.

use super::system::Mounts;
use super::{HostError, HostResult};
use crate::fstab::{unescape, MountSpec};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

pub struct LinuxMounts;

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub device: String,
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub read_only: bool,
}

/// Parses the kernel's mount table, in mount order.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 6 {
                return None;
            }
            Some(MountInfo {
                device: fields[2].to_string(),
                root: PathBuf::from(unescape(fields[3])),
                mount_point: PathBuf::from(unescape(fields[4])),
                read_only: fields[5].split(',').any(|option| option == "ro"),
            })
        })
        .collect()
}

pub fn mount_table() -> HostResult<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").map_err(|error| {
        HostError::Failed(format!("cannot read /proc/thread-self/mountinfo: {error}"))
    })?;
    Ok(parse_mountinfo(&text))
}

/// The processes whose working directory, root or open files lie under
/// `target`, as "pid 123 (name)".
pub fn holders(target: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let base = entry.path();
        let mut links: Vec<PathBuf> = vec![base.join("cwd"), base.join("root")];
        if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            links.extend(fds.flatten().map(|fd| fd.path()));
        }
        let holds = links
            .iter()
            .any(|link| std::fs::read_link(link).is_ok_and(|seen| seen.starts_with(target)));
        if holds {
            let name = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", name.trim()));
        }
    }
    found
}

impl Mounts for LinuxMounts {
    fn mount(&self, spec: &MountSpec) -> HostResult<()> {
        let failed = |error: nix::Error| {
            HostError::from_io(
                format!(
                    "cannot mount {:?} on {:?}",
                    spec.source.display().to_string(),
                    spec.target.display().to_string()
                ),
                &error.into(),
            )
        };
        if spec.fstype == "nullfs" || spec.fstype == "bind" {
            mount(
                Some(&spec.source),
                &spec.target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(failed)?;
            if spec.read_only() {
                let remount = mount(
                    None::<&str>,
                    &spec.target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                );
                if let Err(error) = remount {
                    // Never leave a template mounted read-write.
                    let _ = umount2(&spec.target, MntFlags::empty());
                    return Err(failed(error));
                }
            }
            return Ok(());
        }
        let options = spec.options.join(",");
        let mut command = std::process::Command::new("mount");
        command.arg("-t").arg(&spec.fstype);
        if !options.is_empty() {
            command.arg("-o").arg(options);
        }
        let output = command
            .arg(&spec.source)
            .arg(&spec.target)
            .output()
            .map_err(|error| HostError::Failed(format!("cannot run mount(8): {error}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(HostError::Failed(format!(
                "mount(8) of {:?} failed: {}",
                spec.target.display().to_string(),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    fn unmount(&self, target: &Path) -> HostResult<()> {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                let holders = holders(target);
                let who = if holders.is_empty() {
                    "no process found holding it".to_string()
                } else {
                    format!("held by {}", holders.join(", "))
                };
                Err(HostError::Failed(format!(
                    "cannot unmount {:?}: device busy ({who})",
                    target.display().to_string()
                )))
            }
            Err(error) => Err(HostError::Failed(format!(
                "cannot unmount {:?}: {error}",
                target.display().to_string()
            ))),
        }
    }

    fn mount_table(&self) -> HostResult<std::collections::BTreeMap<PathBuf, bool>> {
        // In mount order, so the top of a stack of mounts wins.
        Ok(mount_table()?
            .into_iter()
            .map(|entry| (entry.mount_point, entry.read_only))
            .collect())
    }

    fn users_of(&self, template_path: &Path) -> HostResult<Vec<PathBuf>> {
        let table = mount_table()?;
        let template_path = template_path.to_path_buf();
        let canonical = std::fs::canonicalize(&template_path).unwrap_or(template_path);
        // Find the mount the template lives on and its path relative to that
        // file system's root: bind mounts of it show that path as their root.
        let Some(home) = table
            .iter()
            .rev()
            .filter(|entry| canonical.starts_with(&entry.mount_point))
            .max_by_key(|entry| entry.mount_point.components().count())
        else {
            return Ok(Vec::new());
        };
        let Ok(inside) = canonical.strip_prefix(&home.mount_point) else {
            return Ok(Vec::new());
        };
        let relative = home.root.join(inside);
        Ok(table
            .iter()
            .filter(|entry| entry.device == home.device && entry.root.starts_with(&relative))
            .map(|entry| entry.mount_point.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Escaped spaces and the read-only flag are read from mountinfo lines.
    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw\n37 36 98:0 /a / ro - ext3 /dev/root rw\n";
        let table = parse_mountinfo(text);
        assert_eq!(table[0].mount_point, PathBuf::from("/mnt x"));
        assert_eq!(table[0].root, PathBuf::from("/mnt1"));
        assert!(!table[0].read_only);
        assert!(table[1].read_only);
    }
}
