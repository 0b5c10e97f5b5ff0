//! The stage benchmark: how long `jailswap stage` takes as the template
//! grows, on a btrfs store (a writable snapshot) and on directory stores
//! (a faithful copy: with reflinks on btrfs, with a full copy on the
//! machine's own file system), in one run.
//!
//! ```text
//! cargo bench --bench stage                  # 1,000 and 100,000 files
//! cargo bench --bench stage -- 1000 10000    # chosen sizes
//! ```
//!
//! For each size N the benchmark makes three stores holding a live
//! template of N files of 1 KiB (1,000 per directory) beside the
//! Handbook's `s/`, `usr/` and `etc -> s/etc`:
//! - `btrfs`: the template is a subvolume of a btrfs file system made on a
//!   loop device (the store kind found by `auto`);
//! - `directory (btrfs)`: a plain directory on the same btrfs file system,
//!   copied with reflinks;
//! - `directory (FS)`: a plain directory under `BENCH_DIR` (default the
//!   temporary directory), on whatever file system that is.
//!
//! Then it runs `jailswap stage --as NAME` `BENCH_RUNS` times (default 3;
//! each run builds a new NAME from the same live template) and reports the
//! medians of: the copy step (the snapshot or the copy, as `show` records
//! it), the fingerprint of the new template (which reads every file, on
//! every kind of store: SPEC.md "Staging"), and the whole command.
//!
//! Runs as root (loop devices, mounts) in a private mount namespace it
//! enters first. The file systems are unmounted and the loop devices
//! detached when it ends, also on a failure or a panic. `JAILSWAP_BIN`
//! names the executable to measure (default the release build cargo makes
//! for the benchmark).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, String>;

/// Runs a program to the end; its stdout, or why it failed.
fn run(program: &str, arguments: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {arguments:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A btrfs file system on a loop device, unmounted and detached on drop.
struct LoopFs {
    device: Option<String>,
    mount_point: PathBuf,
    mounted: bool,
}

impl LoopFs {
    fn create(image: &Path, mount_point: &Path, size: u64) -> Result<LoopFs> {
        let file = std::fs::File::create(image).map_err(|e| format!("image: {e}"))?;
        file.set_len(size).map_err(|e| format!("image: {e}"))?;
        drop(file);
        run("mkfs.btrfs", &["-q", &image.to_string_lossy()])?;
        let mut fs = LoopFs {
            device: None,
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        let device = run("losetup", &["--find", "--show", &image.to_string_lossy()])?;
        fs.device = Some(device.trim().to_string());
        std::fs::create_dir_all(mount_point).map_err(|e| format!("mount point: {e}"))?;
        nix::mount::mount(
            fs.device.as_deref(),
            mount_point,
            Some("btrfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount btrfs: {e}"))?;
        fs.mounted = true;
        Ok(fs)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::empty());
        }
        if let Some(device) = self.device.take() {
            let _ = Command::new("losetup").arg("-d").arg(device).output();
        }
    }
}

/// Fills a template with `files` files of 1 KiB, 1,000 per directory.
fn fill(template: &Path, files: usize) -> Result<()> {
    jailswap::sandbox::make_template(template, Some("1.0")).map_err(|e| e.to_string())?;
    let content = vec![b'x'; 1024];
    for index in 0..files {
        let directory = template.join(format!("usr/share/{}", index / 1000));
        if index % 1000 == 0 {
            std::fs::create_dir_all(&directory).map_err(|e| format!("fill: {e}"))?;
        }
        std::fs::write(directory.join(format!("{index}")), &content)
            .map_err(|e| format!("fill: {e}"))?;
    }
    Ok(())
}

/// A configuration for a store with one jail that `stage` never touches.
fn configure(work: &Path, store: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let db = work.join("db");
    let jail = work.join("jail");
    for directory in [&db, &jail] {
        std::fs::create_dir_all(directory).map_err(|e| format!("{e}"))?;
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{e}"))?;
    let config = work.join("jailswap.toml");
    std::fs::write(
        &config,
        format!(
            "store = {:?}\nlive = \"mroot\"\njournal = {:?}\n[[jail]]\nname = \"bench\"\npath = {:?}\nstart = \"true\"\nstop = \"true\"\n",
            store.display().to_string(),
            db.join("journal.sqlite").display().to_string(),
            jail.display().to_string()
        ),
    )
    .map_err(|e| format!("{e}"))?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{e}"))?;
    Ok(config)
}

/// The medians of one store's runs.
struct Measured {
    store_kind: String,
    copy: Duration,
    fingerprint: Duration,
    total: Duration,
}

fn millis(text: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text.as_str()?).ok()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Runs `stage` `runs` times on the store of `config`.
fn measure(program: &Path, config: &Path, runs: usize) -> Result<Measured> {
    let jailswap = |arguments: &[&str]| -> Result<(String, Duration)> {
        let started = Instant::now();
        let output = Command::new(program)
            .arg("-c")
            .arg(config)
            .args(arguments)
            .output()
            .map_err(|e| format!("cannot run jailswap: {e}"))?;
        let took = started.elapsed();
        if !output.status.success() {
            return Err(format!(
                "jailswap {arguments:?} exited with {:?}: {} {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            ));
        }
        Ok((String::from_utf8_lossy(&output.stdout).into_owned(), took))
    };
    let (status, _) = jailswap(&["--json", "status"])?;
    let status: Value = serde_json::from_str(&status).map_err(|e| e.to_string())?;
    let mut copies = Vec::new();
    let mut fingerprints = Vec::new();
    let mut totals = Vec::new();
    for run in 0..runs {
        let name = format!("mroot.next{run}");
        let (output, took) = jailswap(&["--json", "-q", "stage", "--as", &name])?;
        let result: Value = serde_json::from_str(&output).map_err(|e| e.to_string())?;
        if result["outcome"] != "staged" {
            return Err(format!("stage did not pass: {result}"));
        }
        let steps = result["steps"].as_array().cloned().unwrap_or_default();
        let step = |action: &str| steps.iter().find(|s| s["action"] == action).cloned();
        let copy_ms = step("copy")
            .and_then(|s| s["result"]["took_ms"].as_u64())
            .ok_or("no copy time recorded")?;
        let fingerprint = step("fingerprint")
            .and_then(|s| Some((millis(&s["started_at"])?, millis(&s["finished_at"])?)))
            .map(|(a, b)| (b - a).to_std().unwrap_or_default())
            .ok_or("no fingerprint step recorded")?;
        copies.push(Duration::from_millis(copy_ms));
        fingerprints.push(fingerprint);
        totals.push(took);
    }
    Ok(Measured {
        store_kind: status["store_kind"].as_str().unwrap_or("?").to_string(),
        copy: median(copies),
        fingerprint: median(fingerprints),
        total: median(totals),
    })
}

/// The type of the file system `path` is on, from the mount table.
fn file_system_type(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let point = jailswap::fstab::unescape(head.split(' ').nth(4)?);
            let fstype = tail.split(' ').next()?.to_string();
            path.starts_with(&point).then_some((point.len(), fstype))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, fstype)| fstype)
        .unwrap_or_else(|| "?".into())
}

fn shown(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the stage benchmark makes loop devices and mounts: run it as root".into());
    }
    jailswap::sandbox::enter_private_mount_namespace().map_err(|e| e.to_string())?;
    let sizes: Vec<usize> = {
        let given: Vec<usize> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .filter_map(|a| a.parse().ok())
            .collect();
        if given.is_empty() {
            vec![1_000, 100_000]
        } else {
            given
        }
    };
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let program = std::env::var_os("JAILSWAP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_jailswap")));
    let base = match std::env::var_os("BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("temporary directory: {e}"))?;
    let native = file_system_type(base.path());

    let mut rows = Vec::new();
    for &files in &sizes {
        eprintln!("stage benchmark: {files} files");
        let case = base.path().join(format!("{files}"));
        std::fs::create_dir_all(&case).map_err(|e| format!("{}: {e}", case.display()))?;
        // Room for the templates and every run's copy: small files are
        // kept in btrfs's metadata, which is written twice (DUP). The image
        // is sparse: only what btrfs writes takes room.
        let image_size = files as u64 * 64 * 1024 + (1 << 30);
        let fs = LoopFs::create(&case.join("btrfs.img"), &case.join("btrfs"), image_size)?;

        let subvolume_store = fs.mount_point.join("subvolumes");
        std::fs::create_dir_all(&subvolume_store).map_err(|e| e.to_string())?;
        run(
            "btrfs",
            &[
                "subvolume",
                "create",
                &subvolume_store.join("mroot").to_string_lossy(),
            ],
        )?;
        let reflink_store = fs.mount_point.join("directories");
        let native_store = case.join("directories");
        let stores = [
            ("btrfs", subvolume_store, "subvolume"),
            ("directory (btrfs)", reflink_store, "reflink"),
            (native.as_str(), native_store, "copy"),
        ];
        for (label, store, work) in &stores {
            std::fs::create_dir_all(store).map_err(|e| e.to_string())?;
            let filled = Instant::now();
            fill(&store.join("mroot"), files)?;
            eprintln!(
                "  {label}: template of {files} files made in {:.1} s",
                filled.elapsed().as_secs_f64()
            );
            let config = configure(&case.join(work), store)?;
            let measured = measure(&program, &config, runs)?;
            eprintln!(
                "  {label} ({}): copy {}, fingerprint {}, stage {}",
                measured.store_kind,
                shown(measured.copy),
                shown(measured.fingerprint),
                shown(measured.total)
            );
            let label = if *work == "copy" {
                format!("directory ({label})")
            } else {
                label.to_string()
            };
            rows.push((files, label, measured));
        }
        drop(fs);
    }

    println!(
        "| files | store | store_kind | copy (snapshot or copy) | fingerprint of the new template | whole `stage` |"
    );
    println!("|---:|---|---|---:|---:|---:|");
    for (files, label, measured) in &rows {
        println!(
            "| {files} | {label} | {} | {} | {} | {} |",
            measured.store_kind,
            shown(measured.copy),
            shown(measured.fingerprint),
            shown(measured.total)
        );
    }
    println!(
        "\nMedians of {runs} runs per store; files of 1 KiB, 1,000 per directory; page cache warm."
    );
    Ok(())
}
