//! The simulated host's side of the door: every [`Host`] operation, each a
//! numbered operation of the world that a crash point can stop at.

use super::*;

impl Host for SimulatedHost {
    fn store(&self) -> &Path {
        &self.store
    }

    fn store_kind(&self) -> StoreKind {
        StoreKind::Directory
    }

    fn templates(&self) -> HostResult<Vec<Template>> {
        self.operate(
            OperationKind::Inode,
            "",
            "list the templates".to_string(),
            |world| {
                Ok(world
                    .templates
                    .iter()
                    .map(|(name, inode)| Template {
                        name: name.clone(),
                        found: Found {
                            id: TemplateId::Inode(*inode),
                            modified: 0,
                        },
                    })
                    .collect())
            },
        )
    }

    fn examine(&self, relative: &str) -> HostResult<Entry> {
        self.operate(
            OperationKind::Inode,
            relative,
            format!("look at {relative}"),
            |world| {
                if let Some(intruder) = world.intruders.get(relative) {
                    return Ok(match intruder {
                        Intruder::Symlink(_) => Entry::Symlink,
                        Intruder::File => Entry::NotDirectory,
                    });
                }
                Ok(match world.resolve(relative) {
                    Some(inode) => Entry::Directory(Found {
                        id: TemplateId::Inode(inode),
                        modified: 0,
                    }),
                    None => Entry::Absent,
                })
            },
        )
    }

    fn top_level_symlinks(&self, template: &str) -> HostResult<Vec<String>> {
        self.operate(
            OperationKind::Inode,
            template,
            format!("list the links of {template}"),
            |world| {
                let Some(inode) = world.templates.get(template) else {
                    return Err(HostError::Failed(format!(
                        "cannot list {template:?}: No such file or directory (os error 2)"
                    )));
                };
                Ok(world
                    .links
                    .get(inode)
                    .map(|links| links.iter().cloned().collect())
                    .unwrap_or_default())
            },
        )
    }

    fn rename_template(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.operate(
            OperationKind::Rename,
            to,
            format!("rename {from} -> {to}"),
            |world| world.rename(from, to, expected),
        )
    }

    fn move_inside(&self, from: &str, to: &str, expected: &TemplateId) -> HostResult<()> {
        self.operate(
            OperationKind::Carry,
            to,
            format!("rename {from} -> {to}"),
            |world| world.move_inside(from, to, expected),
        )
    }

    fn copy_template(
        &self,
        from: &str,
        to: &str,
        expected: &TemplateId,
        exclude: &[String],
    ) -> HostResult<TemplateId> {
        self.operate(
            OperationKind::Copy,
            to,
            format!("copy {from} -> {to}"),
            |world| world.copy(from, to, expected, exclude),
        )
    }

    fn delete_template(&self, name: &str, expected: Option<&TemplateId>) -> HostResult<()> {
        self.operate(
            OperationKind::Delete,
            name,
            format!("delete {name}"),
            |world| world.delete(name, expected),
        )
    }

    fn fingerprint(&self, template: &str) -> HostResult<Fingerprint> {
        self.operate(
            OperationKind::Fingerprint,
            template,
            format!("fingerprint {template}"),
            |world| world.fingerprint(template),
        )
    }

    fn template_at(&self, root: &Path) -> HostResult<Option<TemplateId>> {
        self.operate(
            OperationKind::MountTable,
            "",
            format!("look at the template under {}", root.display()),
            |world| Ok(world.template_at(root).map(TemplateId::Inode)),
        )
    }

    fn mount(&self, mount: &MountSpec) -> HostResult<()> {
        let owner = lock(&self.world)
            .owner_of(&mount.target)
            .unwrap_or_default()
            .to_string();
        self.operate(
            OperationKind::Mount,
            &owner,
            format!(
                "mount {} on {}",
                mount.source.display(),
                mount.target.display()
            ),
            |world| world.mount(mount),
        )
    }

    fn unmount(&self, target: &Path) -> HostResult<()> {
        let owner = lock(&self.world)
            .owner_of(target)
            .unwrap_or_default()
            .to_string();
        self.operate(
            OperationKind::Unmount,
            &owner,
            format!("unmount {}", target.display()),
            |world| world.unmount(target),
        )
    }

    fn mount_table(&self) -> HostResult<BTreeMap<PathBuf, bool>> {
        self.operate(
            OperationKind::MountTable,
            "",
            "read the mount table".to_string(),
            |world| {
                Ok(world
                    .mounts
                    .iter()
                    .map(|m| (m.target.clone(), m.read_only))
                    .collect())
            },
        )
    }

    fn template_users(&self, template: &str) -> HostResult<Vec<PathBuf>> {
        self.operate(
            OperationKind::VerifyUnused,
            template,
            format!("find the mounts of {template}"),
            |world| {
                let Some(wanted) = world.templates.get(template).copied() else {
                    return Ok(Vec::new());
                };
                Ok(world
                    .mounts
                    .iter()
                    .filter(|m| matches!(m.source, MountSource::Template { inode, .. } if inode == wanted))
                    .map(|m| m.target.clone())
                    .collect())
            },
        )
    }

    fn stop_jail(&self, jail: &JailSpec) -> HostResult<()> {
        let name = jail.name.clone();
        self.operate(
            OperationKind::Stop,
            &jail.name,
            format!("stop jail {name}"),
            |world| match world.jails.get_mut(&name) {
                Some(jail) => {
                    jail.running = false;
                    Ok(())
                }
                None => Err(HostError::Failed(format!("jail {name} does not exist"))),
            },
        )
    }

    fn start_jail(&self, jail: &JailSpec) -> HostResult<()> {
        let name = jail.name.clone();
        self.operate(
            OperationKind::Start,
            &jail.name,
            format!("start jail {name}"),
            |world| world.start(&name),
        )
    }

    /// One jail after another, so that crash points come in a fixed order.
    fn jails_running(&self, jails: &[JailSpec], _parallel: usize) -> Vec<HostResult<Option<bool>>> {
        jails
            .iter()
            .map(|jail| {
                let name = jail.name.clone();
                self.operate(
                    OperationKind::Status,
                    &jail.name,
                    format!("status of jail {name}"),
                    |world| match world.jails.get(&name) {
                        Some(jail) if jail.has_status => Ok(Some(jail.running)),
                        Some(_) => Ok(None),
                        None => Err(HostError::Failed(format!("jail {name} does not exist"))),
                    },
                )
            })
            .collect()
    }

    fn run_command(
        &self,
        command: &str,
        _environment: &[(&str, &str)],
        _timeout: Duration,
    ) -> HostResult<CommandRun> {
        let result = self.operate(
            OperationKind::Command,
            "",
            format!("run `{command}`"),
            |world| Ok(world.command(command)),
        );
        // A command that fails or hangs is an outcome of the command, not
        // a failure to run it: it exits non-zero or times out.
        match result {
            Err(HostError::Failed(message)) => Ok(CommandRun {
                status: (!message.contains("timed out")).then_some(1),
                timed_out: message.contains("timed out"),
                output_tail: message,
            }),
            other => other,
        }
    }

    fn probe(
        &self,
        jail: &JailSpec,
        check: &HealthCheck,
        _timeout: Duration,
    ) -> Result<(), String> {
        let mut world = lock(&self.world);
        if world.crashed_at.is_some() {
            return Err("simulated crash".to_string());
        }
        let description = format!("{} of jail {}", check.describe(), jail.name);
        match world.take_fault(OperationKind::Health, &jail.name) {
            Some(FaultMode::FailOnce | FaultMode::FailAlways) => {
                Err(format!("{description}: simulated failure"))
            }
            Some(FaultMode::Hang | FaultMode::HangAfterEffect) => {
                Err(format!("{description}: timed out (simulated hang)"))
            }
            None => world.health(&jail.name),
        }
    }
}
