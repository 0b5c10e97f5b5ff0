//! The second stage of reading the configuration: [`Settings`] checked
//! against the system. The store must exist, each jail's fstab is read and
//! parsed, and paths are resolved as mount(8) resolves them, all through a
//! [`Files`] so that tests resolve against tables in memory. Loading the
//! file from disk, with its ownership check, lives here too.

use super::{parse, Config, ConfigError, Settings};
use crate::fstab;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// What resolution asks of the file system.
pub trait Files {
    /// The text of a file.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Whether `path` is a directory (following links); the error says why not.
    fn directory(&self, path: &Path) -> std::io::Result<bool>;
    /// `path` with symbolic links in its longest existing prefix resolved.
    fn resolve(&self, path: &Path) -> PathBuf;
}

/// The real file system.
pub struct SystemFiles;

impl Files for SystemFiles {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn directory(&self, path: &Path) -> std::io::Result<bool> {
        std::fs::metadata(path).map(|meta| meta.is_dir())
    }
    fn resolve(&self, path: &Path) -> PathBuf {
        resolve_path(path)
    }
}

/// Resolves symbolic links in the longest existing prefix of `path`, as
/// mount(8) and the kernel do before they record a mount: on a host where
/// `/home` links to `/usr/home`, the mount table says `/usr/home/j/ns`, and
/// jailswap must compare like with like. The rest of the path (a jail's `s`
/// before the template is mounted) is kept as written.
pub fn resolve_path(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    // Bounded by the number of components of the path.
    while !existing.as_os_str().is_empty() {
        if let Ok(resolved) = std::fs::canonicalize(&existing) {
            return rest
                .iter()
                .rev()
                .fold(resolved, |acc: PathBuf, part| acc.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    path.to_path_buf()
}

impl Settings {
    /// Checks the settings against the system and reads every fstab.
    pub fn resolve(self, files: &dyn Files) -> Result<Config> {
        let name = self.file.display().to_string();
        let fail = |key: &str, message: String, help: Option<String>| ConfigError::Invalid {
            message: format!("{name:?}: {key}: {message}"),
            help,
        };
        let shown = self.store.display().to_string();
        match files.directory(&self.store) {
            Ok(true) => {}
            Ok(false) => {
                return Err(fail("store", format!("{shown:?} is not a directory"), None));
            }
            Err(error) => {
                return Err(fail(
                    "store",
                    format!("{shown:?}: {error}"),
                    Some("create the store directory or correct the path".into()),
                ))
            }
        }
        let store = files.resolve(&self.store);
        let mut jails = Vec::with_capacity(self.jails.len());
        for settings in self.jails {
            let mut spec = settings.spec;
            let key = |field: &str| format!("jail {:?}: {field}", spec.name);
            spec.path = files.resolve(&spec.path);
            if spec.path.starts_with(store.join(&self.live)) || spec.path == store {
                return Err(fail(
                    &key("path"),
                    format!(
                        "{:?} is inside the live template or is the store",
                        spec.path.display().to_string()
                    ),
                    None,
                ));
            }
            if let Some(fstab_file) = &settings.fstab {
                let text = files.read(fstab_file).map_err(|error| {
                    fail(
                        &key("fstab"),
                        format!("cannot read {:?}: {error}", fstab_file.display().to_string()),
                        Some("create the jail's fstab, or remove the key if the jail mounts its own file systems".into()),
                    )
                })?;
                let mut mounts = fstab::parse(&text, fstab_file)
                    .map_err(|error| fail(&key("fstab"), error.to_string(), None))?;
                for mount in &mut mounts {
                    if mount.source.is_absolute() {
                        mount.source = files.resolve(&mount.source);
                    }
                    mount.target = files.resolve(&mount.target);
                }
                spec.mounts = mounts;
            }
            jails.push(spec);
        }
        Ok(Config {
            file: self.file,
            store,
            live: self.live,
            journal: self.journal,
            parallel: self.parallel,
            carry: self.carry,
            backend: self.backend,
            store_kind: self.store_kind,
            log: self.log,
            metrics: self.metrics,
            rolling_batches: self.rolling_batches,
            jails,
            levels: self.levels,
        })
    }
}

impl Config {
    /// Reads, parses and validates the configuration file.
    pub fn load(file: &Path) -> Result<Config> {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing { file: shown });
            }
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ConfigError::Invalid {
                    message: format!("configuration file {shown:?} is not UTF-8 text"),
                    help: Some("a jailswap configuration is a TOML file in UTF-8; name the right file with -c FILE".into()),
                });
            }
            Err(error) => return Err(ConfigError::Unreadable { file: shown, error }),
        };
        check_ownership(file)?;
        Config::parse(&text, file).map_err(|error| {
            error.with_help(format!(
                "fix {shown:?}; `jailswap check -c {shown}` validates it without changing anything"
            ))
        })
    }

    /// Parses configuration text and resolves it against the real system;
    /// `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        parse(text, file)?.resolve(&SystemFiles)
    }
}

/// Run as root, the file names commands run as root: it must be owned by
/// root and writable by nobody else.
fn check_ownership(file: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let shown = file.display().to_string();
    let meta = std::fs::metadata(file).map_err(|error| ConfigError::Unreadable {
        file: shown.clone(),
        error,
    })?;
    if meta.uid() != 0 {
        return Err(ConfigError::Invalid {
            message: format!(
                "configuration file {shown:?} is owned by uid {}, not root; it names commands that run as root",
                meta.uid()
            ),
            help: Some(format!("chown root {shown:?}")),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(ConfigError::Invalid {
            message: format!(
                "configuration file {shown:?} is writable by group or others (mode {:o}); it names commands that run as root",
                meta.mode() & 0o7777
            ),
            help: Some(format!("chmod go-w {shown:?}")),
        });
    }
    Ok(())
}
