//! Templates as ZFS datasets, changed through zfs(8) and nothing else.
//!
//! The store is the mountpoint of a dataset (`tank/j` at `/home/j`), and
//! each template is a child dataset mounted at `store/NAME` through an
//! inherited mountpoint (`zfs create tank/j/mroot`). Every change is one
//! zfs(8) command, and zfs commits each as one sync task before it returns,
//! so a change is durable, and all or nothing, when the command ends:
//!
//! | operation            | zfs(8)                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | find the store       | `zfs list -H -p -o name,mountpoint STORE`                     |
//! | list the templates   | `zfs list -H -p -o name,guid,mountpoint,mounted -t filesystem -d 1 DS` |
//! | examine a template   | `zfs get -H -p -o property,value,source guid,mountpoint,mounted,origin DS/NAME` |
//! | rename               | `zfs rename DS/FROM DS/TO`                                    |
//! | stage (copy)         | `zfs snapshot DS/FROM@jailswap-stage-NAME`, `zfs clone DS/FROM@jailswap-stage-NAME DS/.jailswap-stage.NAME` |
//! | delete (prune, discard) | `zfs list -H -p -t snapshot -o name,clones -s createtxg -d 1 DS/NAME`, `zfs promote DS/CLONE`, `zfs destroy -d ORIGIN`, `zfs destroy DS/NAME` |
//! | which template a jail sees | `mount -p` (the nullfs source), then examine                 |
//!
//! A template is identified by its dataset GUID (`zfs get guid`), which no
//! rename, promote or reboot changes and which no other dataset shares.
//! Before each rename and destroy the GUID is read again and compared with
//! the one recorded before the first stop; zfs(8) has no compare-and-rename,
//! so the check and the command are two calls, with nothing of jailswap's in
//! between (the journal's lock keeps other jailswaps out).
//!
//! `zfs rename` never replaces a dataset ("dataset already exists"), and
//! jailswap also refuses to rename onto anything but an empty directory at
//! the new mountpoint, which zfs would hide under the mount. A renamed dataset keeps its GUID and its
//! snapshots, and its inherited mountpoint follows the new name: zfs
//! unmounts it at the old place and mounts it at the new one. A dataset
//! that jails still nullfs-mount cannot be unmounted ("pool or dataset is
//! busy"), so renames happen with every jail down (the all-at-once upgrade
//! unmounts the jails first), and `upgrade --rolling` is refused on this
//! store. A template whose mountpoint is set on the dataset itself would
//! not follow its name: such a dataset is not accepted as a template.
//!
//! `stage` snapshots the source (`SRC@jailswap-stage-NAME`) and clones the
//! snapshot under the staging name, which zfs(8)'s name rules accept (a
//! component may start with a dot; only `.` and `..` are refused). No data
//! is copied. The snapshot stays, as the clone's origin, for as long as the
//! clone lives. Deleting a template (`prune`, or a stage discarding its own
//! unfinished clone) promotes a clone that depends on one of its snapshots
//! first (the clone takes over those snapshots, and the template becomes
//! the clone's clone), then marks the template's origin snapshot, when it
//! is one of jailswap's, for deferred destruction (`zfs destroy -d`), and
//! destroys the template: zfs destroys a deferred origin together with its
//! last clone, in the same transaction group, so no snapshot of jailswap's
//! outlives the templates that need it, and a crash never leaves one behind.
//! A stage cut short between its snapshot and its clone leaves a snapshot
//! without a clone: the staging name then counts as present (an unfinished
//! copy), and discarding it destroys that snapshot.
//!
//! `carry` is refused on this store (a move between two datasets is a copy,
//! never one atomic rename(2)). Everything inside a template (its top-level
//! links, the paths below it, its fingerprint) is read as a directory tree,
//! as the directory store reads it.
//!
//! `zfs/command.rs` runs zfs(8) and reads what it prints.

mod command;

use super::directory::DirectoryStore;
use super::TemplateStore;
use crate::config::{valid_name, StoreKind};
use crate::host::{Entry, Fingerprint, Found, HostError, HostResult, Template, TemplateId};
use crate::template::staging_name;
pub use command::is_dataset_root;
use command::{change, zfs, Dataset, Failure};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The prefix of the snapshots `stage` takes; the rest is the staged name.
const STAGE_SNAPSHOT: &str = "jailswap-stage-";

pub struct ZfsStore {
    path: PathBuf,
    /// The store's own dataset, asked of zfs(8) once.
    dataset: Mutex<Option<String>>,
}

impl ZfsStore {
    pub fn new(path: &Path) -> ZfsStore {
        ZfsStore {
            path: path.to_path_buf(),
            dataset: Mutex::new(None),
        }
    }
}

/// The snapshot `stage` takes for the copy named `to` (a staging name).
fn stage_snapshot(to: &str) -> String {
    let name = to.strip_prefix(&staging_name("")).unwrap_or(to);
    format!("{STAGE_SNAPSHOT}{name}")
}

/// Whether a snapshot's name (`DS@SNAP`) is one `stage` took.
fn is_stage_snapshot(snapshot: &str) -> bool {
    snapshot
        .split_once('@')
        .is_some_and(|(_, name)| name.starts_with(STAGE_SNAPSHOT))
}

impl ZfsStore {
    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// The tree inside a mounted template reads as a directory's.
    fn tree(&self) -> DirectoryStore {
        DirectoryStore {
            path: self.path.clone(),
        }
    }

    /// The dataset mounted at the store (`tank/j`).
    fn store_dataset(&self) -> HostResult<String> {
        if let Some(name) = self.dataset.lock().ok().and_then(|slot| slot.clone()) {
            return Ok(name);
        }
        let shown = self.shown();
        let listing = zfs(&["list", "-H", "-p", "-o", "name,mountpoint", &shown]).map_err(
            |failure| {
                HostError::Failed(format!(
                    "the store {shown:?} is not on ZFS ({}); make it a dataset (`zfs create -o mountpoint={shown} POOL/j`) or set store_kind",
                    failure.into_host()
                ))
            },
        )?;
        let mut fields = listing.lines().next().unwrap_or("").split('\t');
        let (name, mountpoint) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        if name.is_empty() || Path::new(mountpoint) != self.path {
            return Err(HostError::Failed(format!(
                "the store {shown:?} is not where a ZFS dataset is mounted (it lies in {name}, mounted at {mountpoint}); make it a dataset of its own: `zfs create -o mountpoint={shown} {name}/j`, and the templates its children"
            )));
        }
        if let Ok(mut slot) = self.dataset.lock() {
            *slot = Some(name.to_string());
        }
        Ok(name.to_string())
    }

    /// The full name of a template's dataset.
    fn full(&self, name: &str) -> HostResult<String> {
        Ok(format!("{}/{name}", self.store_dataset()?))
    }

    /// The dataset `DS/NAME`, if it exists.
    fn dataset(&self, name: &str) -> HostResult<Option<Dataset>> {
        let full = self.full(name)?;
        match zfs(&[
            "get",
            "-H",
            "-p",
            "-o",
            "property,value,source",
            "guid,mountpoint,mounted,origin",
            &full,
        ]) {
            Ok(text) => Ok(Dataset::parse(&text)),
            Err(failure) if failure.missing() => Ok(None),
            Err(failure) => Err(failure.into_host()),
        }
    }

    /// `name`'s snapshots and the clones of each, oldest first.
    fn snapshots(&self, name: &str) -> HostResult<Vec<(String, Vec<String>)>> {
        let full = self.full(name)?;
        self.list_snapshots(&["-d", "1", &full])
    }

    fn list_snapshots(&self, scope: &[&str]) -> HostResult<Vec<(String, Vec<String>)>> {
        let mut arguments = vec![
            "list",
            "-H",
            "-p",
            "-t",
            "snapshot",
            "-o",
            "name,clones",
            "-s",
            "createtxg",
        ];
        arguments.extend_from_slice(scope);
        let listing = zfs(&arguments).map_err(Failure::into_host)?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let (snapshot, clones) = line.split_once('\t')?;
                let clones = clones
                    .split(',')
                    .filter(|clone| !clone.is_empty() && *clone != "-")
                    .map(str::to_string)
                    .collect();
                Some((snapshot.to_string(), clones))
            })
            .collect())
    }

    /// The snapshots of an unfinished stage of `staging` that never got
    /// their clone (the process stopped between the two commands).
    fn lone_stage_snapshots(&self, staging: &str) -> HostResult<Vec<String>> {
        if !staging.starts_with(&staging_name("")) {
            return Ok(Vec::new());
        }
        let wanted = format!("@{}", stage_snapshot(staging));
        let dataset = self.store_dataset()?;
        Ok(self
            .list_snapshots(&["-r", &dataset])?
            .into_iter()
            .filter(|(snapshot, clones)| snapshot.ends_with(&wanted) && clones.is_empty())
            .map(|(snapshot, _)| snapshot)
            .collect())
    }

    /// What the store holds under a template name.
    fn examine_template(&self, name: &str) -> HostResult<Entry> {
        Ok(self.inspect(name)?.0)
    }

    /// What the store holds under a template name, with the dataset's
    /// properties when there is a dataset of that name.
    fn inspect(&self, name: &str) -> HostResult<(Entry, Option<Dataset>)> {
        let place = self.path.join(name);
        let context = format!("cannot examine {name:?} in the store {:?}", self.shown());
        let on_disk = match std::fs::symlink_metadata(&place) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok((Entry::Symlink, None)),
            Ok(meta) if !meta.is_dir() => return Ok((Entry::NotDirectory, None)),
            Ok(meta) => Some(meta),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(super::io_failure(&context, &error)),
        };
        let full = self.full(name)?;
        let Some(dataset) = self.dataset(name)? else {
            if on_disk.is_some() {
                return Ok((Entry::Foreign(format!(
                    "it is a directory of the store's dataset, not a ZFS dataset of its own (create templates with `zfs create {full}` or `jailswap stage`)"
                )), None));
            }
            if let Some(snapshot) = self.lone_stage_snapshots(name)?.first() {
                return Ok((
                    Entry::Foreign(format!(
                        "an unfinished stage left the snapshot {snapshot} without its clone"
                    )),
                    None,
                ));
            }
            return Ok((Entry::Absent, None));
        };
        let wanted = place.display().to_string();
        let why = if !dataset.follows_name() {
            Some(format!(
                "dataset {full} has its mountpoint set on itself ({}, {}), so it would not follow a rename; run `zfs inherit mountpoint {full}`",
                dataset.mountpoint, dataset.mountpoint_source
            ))
        } else if dataset.mountpoint != wanted {
            Some(format!(
                "dataset {full} is mounted at {}, not at {wanted}",
                dataset.mountpoint
            ))
        } else if !dataset.mounted {
            Some(format!(
                "dataset {full} is not mounted; run `zfs mount {full}`"
            ))
        } else if on_disk.is_none() {
            Some(format!(
                "dataset {full} says it is mounted at {wanted}, which does not exist"
            ))
        } else {
            None
        };
        let entry = match (why, on_disk) {
            (Some(why), _) => Entry::Foreign(why),
            (None, Some(meta)) => Entry::Directory(Found {
                id: TemplateId::Dataset(dataset.guid.clone()),
                modified: meta.mtime(),
            }),
            (None, None) => Entry::Absent,
        };
        Ok((entry, Some(dataset)))
    }

    /// Checks, as late as it can, that `name` is the template `expected`.
    fn check(&self, name: &str, expected: &TemplateId, context: &str) -> HostResult<()> {
        match self.examine_template(name)? {
            Entry::Directory(found) if &found.id == expected => Ok(()),
            Entry::Directory(found) => Err(HostError::Failed(format!(
                "{context}: it is no longer the dataset recorded before the first stop (expected {expected}, found {}); it was left untouched",
                found.id
            ))),
            Entry::Absent => Err(HostError::Failed(format!("{context}: it does not exist"))),
            other => Err(HostError::Failed(format!(
                "{context}: it is no longer the dataset recorded before the first stop ({expected}) but {other:?}; it was left untouched"
            ))),
        }
    }
}

impl TemplateStore for ZfsStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Zfs
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn templates(&self) -> HostResult<Vec<Template>> {
        let dataset = self.store_dataset()?;
        let listing = zfs(&[
            "list",
            "-H",
            "-p",
            "-o",
            "name,guid,mountpoint,mounted",
            "-t",
            "filesystem",
            "-d",
            "1",
            &dataset,
        ])
        .map_err(Failure::into_host)?;
        let prefix = format!("{dataset}/");
        let mut found = Vec::new();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [full, guid, mountpoint, mounted] = fields[..] else {
                continue;
            };
            let Some(name) = full.strip_prefix(&prefix) else {
                continue;
            };
            let place = self.path.join(name);
            if !valid_name(name) || mounted != "yes" || Path::new(mountpoint) != place {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&place) else {
                continue;
            };
            found.push(Template {
                name: name.to_string(),
                found: Found {
                    id: TemplateId::Dataset(guid.to_string()),
                    modified: meta.mtime(),
                },
            });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    fn examine(&self, relative: &str) -> HostResult<Entry> {
        if relative.contains('/') {
            // A path inside a mounted template, identified by its inode.
            return self.tree().examine(relative);
        }
        self.examine_template(relative)
    }

    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        self.tree().top_level_symlinks(template)
    }

    fn rename(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!("cannot rename {from:?} to {to:?} in {:?}", self.shown());
        // zfs refuses a dataset that exists, and mounts the renamed one on
        // an empty directory as on none; anything else at that place would
        // be hidden under the mount, and is refused here.
        let place = self.path.join(to);
        let occupied = match std::fs::symlink_metadata(&place) {
            Err(_) => false,
            Ok(meta) if meta.is_dir() => {
                std::fs::read_dir(&place).map_or(true, |mut entries| entries.next().is_some())
            }
            Ok(_) => true,
        };
        if occupied {
            return Err(HostError::Failed(format!(
                "{context}: {to:?} already exists in the store; not replacing it"
            )));
        }
        self.check(from, expected, &context)?;
        change(&["rename", &self.full(from)?, &self.full(to)?])
    }

    fn move_inside(&self, from: &str, to: &str, _expected: &TemplateId) -> HostResult<()> {
        Err(HostError::Failed(format!(
            "cannot move {from:?} to {to:?}: on a zfs store each template is a dataset, and a move between two datasets is a copy, not one atomic rename"
        )))
    }

    /// A clone holds everything: `carry` is refused on ZFS stores, so
    /// nothing is ever excluded here.
    fn copy(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        _exclude: &[String],
    ) -> HostResult<TemplateId> {
        let context = format!("cannot stage {to:?} from {from:?} in {:?}", self.shown());
        self.check(from, expected, &context)?;
        let snapshot = format!("{}@{}", self.full(from)?, stage_snapshot(to));
        change(&["snapshot", &snapshot])?;
        if let Err(error) = change(&["clone", &snapshot, &self.full(to)?]) {
            // The snapshot was taken for this clone alone.
            let _ = change(&["destroy", &snapshot]);
            return Err(error);
        }
        match self.examine_template(to)? {
            Entry::Directory(found) => Ok(found.id),
            other => Err(HostError::Failed(format!(
                "{context}: the clone is not a mounted dataset ({other:?})"
            ))),
        }
    }

    fn delete(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        let context = format!("cannot delete {name:?} in {:?}", self.shown());
        if name.contains('/') {
            return Err(HostError::Failed(format!("{context}: not a template name")));
        }
        let full = self.full(name)?;
        let (entry, dataset) = self.inspect(name)?;
        let mut origin = match (entry, dataset) {
            (Entry::Directory(found), Some(dataset)) => {
                if let Some(expected) = expected {
                    if &found.id != expected {
                        return Err(HostError::Failed(format!(
                            "{context}: it is no longer the template recorded (expected {expected}, found {}); not deleting it",
                            found.id
                        )));
                    }
                }
                dataset.origin
            }
            (Entry::Absent, None) => return Ok(()),
            (Entry::Foreign(_), None)
                if std::fs::symlink_metadata(self.path.join(name)).is_err() =>
            {
                // An unfinished stage: its snapshot is all there is.
                for snapshot in self.lone_stage_snapshots(name)? {
                    change(&["destroy", &snapshot])?;
                }
                return Ok(());
            }
            (other, _) => {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a template dataset ({other:?})"
                )))
            }
        };
        // A clone made from one of its snapshots takes those snapshots over:
        // the clone of the newest one, and with it every older snapshot.
        let dependent = self
            .snapshots(name)?
            .into_iter()
            .rev()
            .find_map(|(_, clones)| clones.into_iter().next());
        if let Some(clone) = dependent {
            change(&["promote", &clone])?;
            origin = self.dataset(name)?.and_then(|dataset| dataset.origin);
        }
        // The snapshot it was staged from goes with it, in the same
        // transaction group, once it is the snapshot's last clone.
        if let Some(origin) = origin.filter(|origin| is_stage_snapshot(origin)) {
            change(&["destroy", "-d", &origin])?;
        }
        change(&["destroy", &full])
    }

    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        self.tree().fingerprint(template)
    }

    fn identify_root(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        // A jail root is a nullfs mount of `store/NAME`; nothing renames a
        // mounted dataset, so the source the mount table shows still names
        // the template. The top mount of the root wins.
        let table = crate::host::freebsd::mount_table()?;
        let Some(mount) = table.iter().rev().find(|entry| entry.target == root) else {
            return Ok(None);
        };
        if mount.fstype != "nullfs" {
            return Ok(None);
        }
        let Ok(name) = mount.source.strip_prefix(&self.path) else {
            return Ok(None);
        };
        let name = name.to_string_lossy();
        if name.is_empty() || name.contains('/') {
            return Ok(None);
        }
        Ok(self
            .examine_template(&name)?
            .found()
            .map(|found| found.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The stage snapshot is named for the template being staged.
    #[test]
    fn stage_snapshot_names() {
        assert_eq!(
            stage_snapshot(&staging_name("mroot.20240701")),
            "jailswap-stage-mroot.20240701"
        );
        assert!(is_stage_snapshot("tank/j/mroot@jailswap-stage-mroot.2"));
        assert!(!is_stage_snapshot("tank/j/mroot@backup"));
        assert!(!is_stage_snapshot("tank/j/jailswap-stage-x"));
    }
}
