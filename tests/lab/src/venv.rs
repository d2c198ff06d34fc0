//! Python virtualenvs the lab runs tools in (moto for EC2, Helm's library for the chart). Each is
//! built once per (requirements, Python) pair and shared by every lab that uses the same root,
//! including labs that nextest starts at the same moment: the first takes a file lock and
//! builds, the others wait on the lock and then find it ready.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// What goes into one kind of virtualenv.
#[derive(Debug)]
pub struct Spec {
    /// What it is for, in messages: "moto", "the chart tools".
    pub what: &'static str,
    /// A pip requirements file pinning the whole dependency closure.
    pub requirements: &'static str,
    /// Scripts written beside it, as (file name, content).
    pub scripts: &'static [(&'static str, &'static str)],
}

/// A ready virtualenv: its interpreter and the folder holding the spec's scripts.
#[derive(Debug)]
pub struct Venv {
    pub python: PathBuf,
    pub scripts: PathBuf,
}

/// `<target>/lab-venv`, next to the build outputs the running binary sits in: the same folder
/// for `floatip-lab` (`<target>/<profile>/`) and for test binaries (`<target>/<profile>/deps/`).
pub fn default_root() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running binary")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("{} has no folder", exe.display()))?;
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let target = dir
        .parent()
        .with_context(|| format!("{} has no parent folder", dir.display()))?;
    Ok(target.join("lab-venv"))
}

/// Where `spec`'s virtualenv for the Python that printed `version` lives under `root`, and the
/// file that says it is complete.
fn location(root: &Path, version: &str, spec: &Spec) -> (PathBuf, PathBuf) {
    let key = fnv1a(&[spec.requirements.as_bytes(), version.as_bytes()]);
    let dir = root.join(format!("venv-{key:016x}"));
    let ready = dir.join(".floatip-lab-ready");
    (dir, ready)
}

/// Whether the virtualenv under `root` is built, without building it.
pub fn is_ready(root: &Path, python: &Path, spec: &Spec) -> Result<bool> {
    let out = std::process::Command::new(python)
        .arg("--version")
        .output()
        .with_context(|| format!("asking {} its version", python.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    Ok(location(root, &version, spec).1.exists())
}

/// Returns the virtualenv under `root`, building it first if needed.
pub async fn ensure(root: &Path, python: &Path, spec: &Spec) -> Result<Venv> {
    let version = run(
        Command::new(python).arg("--version"),
        "asking Python its version",
    )
    .await?;
    let (dir, ready) = location(root, &version, spec);
    if !ready.exists() {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let lock_path = root.join(".lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            file.lock()?;
            Ok(file)
        })
        .await?
        .context("locking the lab virtualenv folder")?;
        if !ready.exists() {
            build(&dir, python, spec).await?;
            fs::write(&ready, version.as_bytes())?;
        }
        drop(lock);
    }
    Ok(Venv {
        python: dir.join("bin").join("python"),
        scripts: write_scripts(&dir, spec)?,
    })
}

async fn build(dir: &Path, python: &Path, spec: &Spec) -> Result<()> {
    tracing::info!(venv = %dir.display(), "installing {} into a new virtualenv (about a minute)", spec.what);
    if dir.exists() {
        // Left half-built by a lab that was killed mid-install.
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run(
        Command::new(python).arg("-m").arg("venv").arg(dir),
        "creating the virtualenv (Debian's python3 needs the python3-venv package)",
    )
    .await?;
    let requirements = dir.join("requirements.txt");
    fs::write(&requirements, spec.requirements)?;
    let venv_python = dir.join("bin").join("python");
    let pip = |args: &[&str]| {
        let mut cmd = Command::new(&venv_python);
        cmd.args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
            .args(args);
        cmd
    };
    // --no-deps: the requirements pin the whole closure; `pip check` proves nothing is missing.
    let mut install = pip(&["install", "--quiet", "--no-deps", "-r"]);
    install.arg(&requirements);
    run(&mut install, &format!("installing {} with pip", spec.what)).await?;
    run(
        &mut pip(&["check"]),
        &format!("checking the dependencies of {}", spec.what),
    )
    .await?;
    Ok(())
}

/// Writes the spec's scripts into a folder named by their hash. Written under a private name and
/// renamed into place, so a concurrent lab never sees a half-written file.
fn write_scripts(venv: &Path, spec: &Spec) -> Result<PathBuf> {
    let parts: Vec<&[u8]> = spec
        .scripts
        .iter()
        .flat_map(|(name, text)| [name.as_bytes(), text.as_bytes()])
        .collect();
    let dest = venv.join(format!("lab-scripts-{:016x}", fnv1a(&parts)));
    if dest.exists() {
        return Ok(dest);
    }
    // Unique per call: tests in one process (cargo test's threads) may write at once.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = venv.join(format!(".lab-scripts-{}-{seq}", std::process::id()));
    fs::create_dir_all(&tmp)?;
    for (name, text) in spec.scripts {
        fs::write(tmp.join(name), text)?;
    }
    if let Err(err) = fs::rename(&tmp, &dest) {
        fs::remove_dir_all(&tmp)?;
        if !dest.exists() {
            return Err(err).with_context(|| format!("moving scripts to {}", dest.display()));
        }
    }
    Ok(dest)
}

/// Runs a command to completion; its stdout on success, its output in the error otherwise.
async fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("{what}: starting {:?}", cmd.as_std().get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// FNV-1a: a hash that stays the same across Rust releases, unlike std's default hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate parts so ("ab", "c") and ("a", "bc") differ.
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
pub mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_and_part_boundaries() {
        assert_eq!(fnv1a(&[b"moto==5.2.5"]), fnv1a(&[b"moto==5.2.5"]));
        assert_ne!(fnv1a(&[b"moto==5.2.5"]), fnv1a(&[b"moto==5.2.4"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }

    /// Every line names one exact version, so every machine installs the same closure.
    pub fn assert_pinned(requirements: &str, must: &str) {
        assert!(
            requirements.lines().any(|line| line == must),
            "{must} is not pinned"
        );
        let unpinned: Vec<_> = requirements
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("=="))
            .collect();
        assert!(unpinned.is_empty(), "unpinned requirements: {unpinned:?}");
    }
}
