//! The env file a lab that stays up writes: everything a shell (`source` it) and `floatip-lab
//! ctl` need to reach it. Written once the lab is ready and its control socket listens, so a
//! file that exists names a lab that can be driven; removed when the lab is torn down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::service::NODE_PORT;
use super::{Sim, FIP, REGION, VIP};

/// Where `up` writes the env file and `ctl` reads it unless told otherwise.
pub const DEFAULT_PATH: &str = "/run/floatip-lab/lab.env";
/// The variable that names the env file, for `up` and `ctl` (the file exports it too, so a
/// shell that sourced it drives the lab it names).
pub const PATH_VAR: &str = "FLOATIP_LAB_ENV";
/// The variable, in the file, with the control socket's path.
pub const SOCKET_VAR: &str = "FLOATIP_LAB_CTL";
/// The variable, in the file, with the pid of the `up` process.
pub const PID_VAR: &str = "FLOATIP_LAB_PID";

/// The control socket of the lab whose env file is `env`: beside it, named after it.
pub fn socket_path(env: &Path) -> PathBuf {
    env.with_extension("sock")
}

/// An env file this process wrote; removed (with its socket) on drop.
pub struct EnvFile {
    pub path: PathBuf,
}

impl EnvFile {
    /// Makes room for a lab's env file at `path`: refuses when a lab that still runs wrote it,
    /// and clears what a lab that is gone left (the file and its socket).
    pub fn claim(path: &Path) -> Result<()> {
        if let Ok(vars) = read(path) {
            let pid = vars.get(PID_VAR).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
                bail!(
                    "a lab is running already (pid {pid}, env file {}): stop it with `kill -INT {pid}`, or give this one another --env-file",
                    path.display()
                );
            }
        }
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(socket_path(path));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Writes `sim`'s env file at `path` (whole or not at all: a reader never sees half).
    pub fn write(path: &Path, sim: &Sim, lab: &Path) -> Result<Self> {
        let mut text = format!(
            "# A running floatip lab (floatip-lab up, pid {}). In a shell, as root:\n#   source {}\n#   ip netns exec $FLOATIP_LAB_INFRA kubectl get fip -o wide\n#   floatip-lab ctl --help\n",
            std::process::id(),
            path.display()
        );
        for (key, value) in vars(path, sim, lab) {
            text.push_str(&format!("export {key}={}\n", quote(&value)));
        }
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(socket_path(&self.path));
    }
}

/// What the file exports, in order.
fn vars(path: &Path, sim: &Sim, lab: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        (PATH_VAR.into(), path.display().to_string()),
        (PID_VAR.into(), std::process::id().to_string()),
        (SOCKET_VAR.into(), socket_path(path).display().to_string()),
        ("FLOATIP_LAB_BIN".into(), lab.display().to_string()),
        ("FLOATIP_LAB_LOGS".into(), sim.log_dir.display().to_string()),
        ("KUBECONFIG".into(), sim.kubeconfig.display().to_string()),
        ("AWS_ENDPOINT_URL".into(), sim.ec2_endpoint.clone()),
        ("AWS_REGION".into(), REGION.into()),
        // What the AWS CLI and boto3 read.
        ("AWS_DEFAULT_REGION".into(), REGION.into()),
        // The lab's EC2 takes any key; this one is the lab's own, not a floatip identity.
        ("AWS_ACCESS_KEY_ID".into(), "lab".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "lab".into()),
        ("FLOATIP_LAB_INFRA".into(), sim.infra_name().to_string()),
        ("FLOATIP_LAB_ROUTER".into(), sim.router.name.clone()),
        ("FLOATIP_LAB_CLIENT".into(), sim.client_ns.name.clone()),
        ("FLOATIP_LAB_FIP".into(), FIP.into()),
        ("FLOATIP_LAB_VIP".into(), VIP.into()),
        ("FLOATIP_LAB_NODE_PORT".into(), NODE_PORT.to_string()),
    ];
    let names: Vec<&str> = sim.nodes.iter().map(|n| n.name.as_str()).collect();
    v.push(("FLOATIP_LAB_NODES".into(), names.join(" ")));
    for n in &sim.nodes {
        let key = format!("FLOATIP_LAB_NODE_{}", n.index);
        v.push((key.clone(), n.name.clone()));
        v.push((format!("{key}_NETNS"), n.ns.name.clone()));
        v.push((format!("{key}_IP"), n.primary_ip.clone()));
    }
    for (i, c) in sim.controllers.iter().flatten().enumerate() {
        let key = format!("FLOATIP_LAB_CONTROLLER_{}", i + 1);
        v.push((key.clone(), c.identity.clone()));
        v.push((format!("{key}_ADMIN"), c.admin.to_string()));
    }
    v.push(("FLOATIP_LAB_INTERNET".into(), sim.internet_ns.name.clone()));
    v.extend(kinds(sim));
    v
}

/// The address kinds of `up --kind`: each FloatingIP's name, its clients' address (an
/// Elastic IP's public address, reached from the internet namespace) and its allocation.
fn kinds(sim: &Sim) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for f in &sim.flavors {
        let key = format!(
            "FLOATIP_LAB_{}",
            f.flavor.name().to_uppercase().replace('-', "_")
        );
        v.push((format!("{key}_FIP"), f.flavor.name().to_string()));
        v.push((format!("{key}_TARGET"), f.target().to_string()));
        if let Some(a) = &f.allocation {
            v.push((format!("{key}_ALLOCATION"), a.id.clone()));
        }
    }
    v
}

/// Reads an env file's `export KEY='value'` lines.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect())
}

/// Single quotes for the shell: nothing inside is special but the quote itself.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn unquote(value: &str) -> String {
    let inner = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    inner.replace(r"'\''", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_the_shell_quoting() {
        for v in ["plain", "two words", "it's", "", "/run/x y/env"] {
            assert_eq!(unquote(&quote(v)), v);
        }
        let quoted = quote("it's");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {quoted}")])
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's");
    }

    #[test]
    fn read_takes_exports_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.env");
        std::fs::write(&path, "# source me\nexport A='1'\nexport B='x y'\nnoise\n").unwrap();
        let vars = read(&path).unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(vars["B"], "x y");
    }

    #[test]
    fn the_socket_sits_beside_the_env_file() {
        assert_eq!(
            socket_path(Path::new("/run/floatip-lab/lab.env")),
            Path::new("/run/floatip-lab/lab.sock")
        );
    }

    #[test]
    fn a_file_left_by_a_lab_that_is_gone_is_cleared_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("lab.env");
        EnvFile::claim(&path).unwrap();
        // pid 0 is never a process of ours: /proc/0 does not exist.
        std::fs::write(&path, format!("export {PID_VAR}='0'\n")).unwrap();
        std::fs::write(socket_path(&path), "").unwrap();
        EnvFile::claim(&path).unwrap();
        assert!(!path.exists() && !socket_path(&path).exists());
        std::fs::write(
            &path,
            format!("export {PID_VAR}='{}'\n", std::process::id()),
        )
        .unwrap();
        let err = EnvFile::claim(&path).unwrap_err().to_string();
        assert!(err.contains("a lab is running already"), "{err}");
    }
}
