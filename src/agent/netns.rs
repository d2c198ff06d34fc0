//! Threads that live in the node's network namespace: the agent's own with hostNetwork, the one
//! `--netns` names under test. A socket belongs to the namespace of the thread that opened it,
//! so everything that must act as the node (netlink, the peer probes) runs on such a thread,
//! while the Kubernetes API is still reached from the process's own namespace.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Starts a thread named `name` in `netns` (the process's namespace when None) with a
/// current-thread runtime, and calls `start` on it: the value it returns is handed back here,
/// the future it returns runs on that thread until it ends. Returns once `start` has run, with
/// its error or why the thread could not get there.
pub fn spawn_in<T, F, Fut>(name: &str, netns: Option<PathBuf>, start: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<(T, Fut)> + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<T>>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = netns.as_deref().map_or(Ok(()), enter).and_then(|()| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            });
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // Inside the runtime: `start` may spawn tasks, and they stay on this thread.
            rt.block_on(async move {
                match start() {
                    Ok((value, task)) => {
                        let _ = ready_tx.send(Ok(value));
                        task.await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other(format!("the {name} thread stopped while starting")))?
}

fn enter(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    // SAFETY: setns(2) on a descriptor we own; it changes only this thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("entering {}: {e}", path.display()),
        ));
    }
    Ok(())
}
