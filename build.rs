//! Gives the binary the commit it was built from, for the floatip_build_info and
//! floatip_agent_build_info metrics: FLOATIP_COMMIT when set (the image build has no .git and
//! passes it as a build argument), else `git rev-parse --short=12 HEAD`, else "unknown".

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FLOATIP_COMMIT");
    let commit = match std::env::var("FLOATIP_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            watch_git_head();
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=FLOATIP_COMMIT={commit}");
}

/// Reruns this script when HEAD moves: HEAD itself (a checkout) and the ref it names (a
/// commit). Paths come from git, so a worktree (whose .git is a file) works too. Only files
/// that exist are named: cargo reruns every build for one that does not.
fn watch_git_head() {
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]).map(PathBuf::from) else {
        return;
    };
    let mut watched = vec![head.clone()];
    if let Some(name) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref:").map(|r| r.trim().to_string()))
    {
        watched.extend(git(&["rev-parse", "--git-path", &name]).map(PathBuf::from));
        // A ref that is not loose lives here.
        watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]).map(PathBuf::from));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
