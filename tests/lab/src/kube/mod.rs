//! An in-memory Kubernetes API server with the semantics floatip and kubectl rely on.

pub mod audit;
mod discovery;
mod errors;
mod event_namespace;
mod faults;
mod handlers;
mod patch;
pub mod printer;
mod resources;
pub mod schema;
mod selectors;
mod server;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;

/// `floatip-lab kube` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, env = "LAB_KUBE_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the kubeconfig that points at this server.
    #[arg(long, env = "LAB_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// How many recent writes watches can resume from; older versions get 410 Gone.
    #[arg(long, env = "LAB_KUBE_HISTORY", default_value_t = 10_000)]
    pub history: usize,
    /// How often watches that allow bookmarks get one, in milliseconds.
    #[arg(long, env = "LAB_KUBE_BOOKMARK_INTERVAL_MS", default_value_t = 5_000)]
    pub bookmark_interval_ms: u64,
    /// Keep the objects in this file across restarts, as etcd would: read at start when it
    /// exists, written on SIGTERM or SIGINT before exiting.
    #[arg(long, env = "LAB_KUBE_STATE")]
    pub state: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    write_kubeconfig(&args.kubeconfig, &url)?;
    let store = match &args.state {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading state {}: {e}", path.display()))?;
            let snapshot: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("state {}: {e}", path.display()))?;
            store::Store::restore(args.history, &snapshot)
                .map_err(|e| anyhow::anyhow!("state {}: {e}", path.display()))?
        }
        _ => store::Store::new(args.history),
    };
    let app = std::sync::Arc::new(server::App {
        store,
        faults: faults::Faults::new(),
        bookmark_interval: std::time::Duration::from_millis(args.bookmark_interval_ms),
        audit: audit::Audit::default(),
    });
    // The ready line: tests and scripts wait for it before using the server.
    println!("KUBE_URL={url}");
    tracing::info!(%url, kubeconfig = %args.kubeconfig.display(), "serving the Kubernetes API");
    let Some(state) = args.state else {
        return server::serve(listener, app).await;
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = server::serve(listener, app.clone()) => served?,
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let tmp = state.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&app.store.snapshot())?)
        .and_then(|()| std::fs::rename(&tmp, &state))
        .map_err(|e| anyhow::anyhow!("writing state {}: {e}", state.display()))?;
    tracing::info!(state = %state.display(), "state saved; stopping");
    Ok(())
}

/// A kubeconfig with one context pointing at this server (plain HTTP, no credentials).
fn write_kubeconfig(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    write_kubeconfig_as(path, url, None)
}

/// A kubeconfig for this server that sends `token` as its bearer token: the lab records it as
/// the user of each request (see [`audit`]), e.g. `system:serviceaccount:NS:NAME`.
pub fn write_kubeconfig_as(
    path: &std::path::Path,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let user = match token {
        Some(t) => format!("{{token: {}}}", serde_json::Value::from(t)),
        None => "{}".to_string(),
    };
    let doc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: floatip-lab\n  cluster:\n    server: {url}\nusers:\n- name: floatip-lab\n  user: {user}\ncontexts:\n- name: floatip-lab\n  context:\n    cluster: floatip-lab\n    user: floatip-lab\n    namespace: default\ncurrent-context: floatip-lab\n"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, doc)
        .map_err(|e| anyhow::anyhow!("writing kubeconfig {}: {e}", path.display()))
}
