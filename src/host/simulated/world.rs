//! The simulated world's own behaviour: how it resolves names, mounts,
//! unmounts, renames, copies, deletes and starts jails, as the kernel and
//! the store would.

use super::*;

impl World {
    /// The inode at `relative` in the store (`name` or `name/inside/path`).
    pub fn resolve(&self, relative: &str) -> Option<u64> {
        match relative.split_once('/') {
            None => self.templates.get(relative).copied(),
            Some((name, inside)) => {
                let template = self.templates.get(name)?;
                self.contents.get(template)?.get(inside).copied()
            }
        }
    }

    pub fn mounted(&self, target: &Path) -> bool {
        self.mounts.iter().any(|mount| mount.target == target)
    }

    /// The topmost mount at a mount point: the one a jail sees.
    pub fn visible_mount(&self, target: &Path) -> Option<&MountRecord> {
        self.mounts
            .iter()
            .rev()
            .find(|mount| mount.target == target)
    }

    /// The template (by inode) a jail sees at its root, if one is mounted.
    pub fn template_seen_by(&self, jail: &str) -> Option<u64> {
        let jail = self.jails.get(jail)?;
        self.template_at(&jail.path)
    }

    pub(super) fn template_at(&self, root: &Path) -> Option<u64> {
        match &self.visible_mount(root)?.source {
            MountSource::Template { inode, inside } if inside.as_os_str().is_empty() => {
                Some(*inode)
            }
            _ => None,
        }
    }

    /// The jail whose fstab has this mount point.
    pub(super) fn owner_of(&self, target: &Path) -> Option<&str> {
        self.jails
            .iter()
            .find(|(_, jail)| jail.mount_targets.iter().any(|t| t == target))
            .map(|(name, _)| name.as_str())
    }

    /// Whether a jail answers its health checks, and why not.
    pub(super) fn health(&self, name: &str) -> Result<(), String> {
        let jail = self
            .jails
            .get(name)
            .ok_or_else(|| format!("jail {name} does not exist"))?;
        if !jail.running {
            return Err(format!("jail {name} is not running: connection refused"));
        }
        if let Some(missing) = jail.mount_targets.iter().find(|t| !self.mounted(t)) {
            return Err(format!(
                "jail {name} lacks its mount {:?}",
                missing.display().to_string()
            ));
        }
        match self.template_seen_by(name) {
            Some(inode) if self.unhealthy_templates.contains(&inode) => {
                return Err(format!(
                    "jail {name}: selftest failed on the template (inode {inode})"
                ))
            }
            Some(_) => {}
            None if jail.mount_targets.is_empty() => {}
            None => return Err(format!("jail {name} sees no template at its root")),
        }
        if !jail.healthy {
            return Err(format!("jail {name}: selftest failed"));
        }
        Ok(())
    }

    pub(super) fn take_fault(&mut self, kind: OperationKind, subject: &str) -> Option<FaultMode> {
        let index = self.faults.iter().position(|fault| {
            fault.kind == kind && fault.subject.as_deref().is_none_or(|s| s == subject)
        })?;
        let mode = self.faults[index].mode;
        if mode == FaultMode::FailOnce {
            self.faults.remove(index);
        }
        Some(mode)
    }

    pub(super) fn taken(&self, name: &str) -> bool {
        self.templates.contains_key(name) || self.intruders.contains_key(name)
    }

    pub(super) fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    /// Checks that `name` is the template `expected`, as a real store opens
    /// it without following links before it moves or copies it.
    pub(super) fn checked(
        &self,
        name: &str,
        expected: &TemplateId,
        context: &str,
    ) -> HostResult<u64> {
        match (self.templates.get(name), self.intruders.get(name)) {
            (Some(inode), _) if TemplateId::Inode(*inode) == *expected => Ok(*inode),
            (Some(inode), _) => Err(HostError::Failed(format!(
                "{context}: it is no longer the directory recorded before the first stop (expected {expected}, found inode {inode}); it was left untouched"
            ))),
            (None, Some(_)) => Err(HostError::Failed(format!(
                "{context}: it is no longer the directory recorded before the first stop ({expected}) but a link or a file; it was left untouched"
            ))),
            (None, None) => Err(HostError::Failed(format!(
                "{context}: No such file or directory (os error 2)"
            ))),
        }
    }

    pub(super) fn rename(&mut self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        let context = format!(
            "cannot rename {from:?} to {to:?} in {:?}",
            self.store.display().to_string()
        );
        let inode = self.checked(from, expected, &context)?;
        if self.taken(to) {
            return Err(HostError::Failed(format!(
                "{context}: File exists (os error 17)"
            )));
        }
        self.templates.remove(from);
        self.templates.insert(to.to_string(), inode);
        Ok(())
    }

    pub(super) fn move_inside(
        &mut self,
        from: &str,
        to: &str,
        expected: &TemplateId,
    ) -> HostResult<()> {
        let failed = |why: &str| {
            HostError::Failed(format!(
                "cannot move {from:?} to {to:?} in {:?}: {why}",
                self.store.display().to_string()
            ))
        };
        let (Some((from_name, from_inside)), Some((to_name, to_inside))) =
            (from.split_once('/'), to.split_once('/'))
        else {
            return Err(failed(
                "a template and a path inside one cannot trade places",
            ));
        };
        let (Some(from_template), Some(to_template)) = (
            self.templates.get(from_name).copied(),
            self.templates.get(to_name).copied(),
        ) else {
            return Err(failed("No such file or directory (os error 2)"));
        };
        let Some(inode) = self
            .contents
            .get(&from_template)
            .and_then(|contents| contents.get(from_inside))
            .copied()
        else {
            return Err(failed("No such file or directory (os error 2)"));
        };
        if TemplateId::Inode(inode) != *expected {
            return Err(failed(&format!(
                "it is not the path recorded before the first stop (expected {expected}, found inode {inode}); it was left untouched"
            )));
        }
        if self
            .contents
            .get(&to_template)
            .is_some_and(|contents| contents.contains_key(to_inside))
        {
            return Err(failed("File exists (os error 17)"));
        }
        if let Some(contents) = self.contents.get_mut(&from_template) {
            contents.remove(from_inside);
        }
        self.contents
            .entry(to_template)
            .or_default()
            .insert(to_inside.to_string(), inode);
        Ok(())
    }

    pub(super) fn copy(
        &mut self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        let context = format!(
            "cannot copy {from:?} to {to:?} in {:?}",
            self.store.display().to_string()
        );
        let source = self.checked(from, expected, &context)?;
        if self.taken(to) {
            return Err(HostError::Failed(format!(
                "{context}: File exists (os error 17)"
            )));
        }
        let copy = self.new_inode();
        let inside: Vec<String> = self
            .contents
            .get(&source)
            .map(|contents| contents.keys().cloned().collect())
            .unwrap_or_default();
        let mut contents = BTreeMap::new();
        for path in inside {
            if exclude
                .iter()
                .any(|left| path == *left || path.starts_with(&format!("{left}/")))
            {
                continue;
            }
            let inode = self.new_inode();
            contents.insert(path, inode);
        }
        self.contents.insert(copy, contents);
        let links = self.links.get(&source).cloned().unwrap_or_default();
        self.links.insert(copy, links);
        let version = self.versions.get(&source).cloned().unwrap_or_default();
        self.versions.insert(copy, version);
        self.templates.insert(to.to_string(), copy);
        Ok(TemplateId::Inode(copy))
    }

    pub(super) fn delete(&mut self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        let context = format!(
            "cannot delete {name:?} in {:?}",
            self.store.display().to_string()
        );
        let Some(inode) = self.templates.get(name).copied() else {
            if self.intruders.contains_key(name) {
                return Err(HostError::Failed(format!(
                    "{context}: it is not a template directory"
                )));
            }
            return Ok(());
        };
        if expected.is_some_and(|expected| *expected != TemplateId::Inode(inode)) {
            return Err(HostError::Failed(format!(
                "{context}: it is no longer the template recorded; not deleting it"
            )));
        }
        if self.mounts.iter().any(
            |mount| matches!(mount.source, MountSource::Template { inode: mounted, .. } if mounted == inode),
        ) {
            return Err(HostError::Failed(format!("{context}: Device busy")));
        }
        self.templates.remove(name);
        self.contents.remove(&inode);
        self.links.remove(&inode);
        self.versions.remove(&inode);
        Ok(())
    }

    pub(super) fn fingerprint(&self, name: &str) -> HostResult<Fingerprint> {
        let Some(inode) = self.templates.get(name) else {
            return Err(HostError::Failed(format!(
                "cannot fingerprint {name:?}: No such file or directory (os error 2)"
            )));
        };
        let contents = self.contents.get(inode).cloned().unwrap_or_default();
        let links = self.links.get(inode).cloned().unwrap_or_default();
        let version = self.versions.get(inode).cloned().unwrap_or_default();
        let text = format!(
            "{version}|{:?}|{links:?}",
            contents.keys().collect::<Vec<_>>()
        );
        Ok(Fingerprint {
            entries: (contents.len() + links.len()) as u64,
            sha256: crate::template::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
        })
    }

    /// A stage command: it changes what the templates it names hold.
    pub(super) fn command(&mut self, command: &str) -> CommandRun {
        self.commands.push(command.to_string());
        let named: Vec<u64> = self
            .templates
            .iter()
            .filter(|(name, _)| command.contains(&format!("{}/{name}", self.store.display())))
            .map(|(_, inode)| *inode)
            .collect();
        for inode in named {
            self.versions.entry(inode).or_default().push_str("+updated");
        }
        CommandRun {
            status: Some(0),
            timed_out: false,
            output_tail: format!("ran {command}"),
        }
    }

    pub(super) fn mount(&mut self, spec: &MountSpec) -> HostResult<()> {
        let failed = |why: &str| {
            HostError::Failed(format!(
                "cannot mount {:?} on {:?}: {why}",
                spec.source.display().to_string(),
                spec.target.display().to_string()
            ))
        };
        // A nested mount point is a directory of what is mounted above it.
        let parent = self
            .jails
            .values()
            .flat_map(|jail| jail.mount_targets.iter())
            .filter(|target| *target != &spec.target && spec.target.starts_with(target))
            .max_by_key(|target| target.components().count());
        if let Some(parent) = parent {
            if !self.mounted(parent) {
                return Err(failed("No such file or directory (os error 2)"));
            }
        }
        let source = match spec.source.strip_prefix(&self.store) {
            Ok(relative) => {
                let mut components = relative.components();
                let name = components
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(inode) = self.templates.get(&name).copied() else {
                    return Err(failed("No such file or directory (os error 2)"));
                };
                MountSource::Template {
                    inode,
                    inside: components.as_path().to_path_buf(),
                }
            }
            Err(_) => MountSource::Path(spec.source.clone()),
        };
        self.mounts.push(MountRecord {
            target: spec.target.clone(),
            source,
            read_only: spec.read_only(),
        });
        Ok(())
    }

    pub(super) fn unmount(&mut self, target: &Path) -> HostResult<()> {
        let shown = target.display().to_string();
        let Some(index) = self.mounts.iter().rposition(|mount| mount.target == target) else {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: Invalid argument (os error 22)"
            )));
        };
        if self
            .mounts
            .iter()
            .any(|mount| mount.target != target && mount.target.starts_with(target))
        {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: device busy (a mount below it)"
            )));
        }
        let holder = self
            .jails
            .iter()
            .find(|(_, jail)| jail.running && jail.mount_targets.iter().any(|t| t == target));
        if let Some((name, _)) = holder {
            return Err(HostError::Failed(format!(
                "cannot unmount {shown:?}: device busy (held by jail {name})"
            )));
        }
        self.mounts.remove(index);
        Ok(())
    }

    pub(super) fn start(&mut self, name: &str) -> HostResult<()> {
        let Some(jail) = self.jails.get(name) else {
            return Err(HostError::Failed(format!("jail {name} does not exist")));
        };
        if jail.running {
            // rc.d/jail says the jail is already running and exits 0.
            return Ok(());
        }
        if let Some(missing) = jail.mount_targets.iter().find(|t| !self.mounted(t)) {
            return Err(HostError::Failed(format!(
                "jail {name}: {:?} is not mounted; /etc/rc not found",
                missing.display().to_string()
            )));
        }
        if let Some(inode) = self.template_seen_by(name) {
            if self.broken_templates.contains(&inode) {
                return Err(HostError::Failed(format!(
                    "jail {name}: /etc/rc failed on the template (inode {inode})"
                )));
            }
        }
        if let Some(jail) = self.jails.get_mut(name) {
            jail.running = true;
        }
        Ok(())
    }
}
