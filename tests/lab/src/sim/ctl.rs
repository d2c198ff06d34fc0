//! `floatip-lab ctl`: drives a lab that `floatip-lab up` keeps running, from any shell. It
//! finds the lab through its env file and sends one action to its control socket
//! ([`super::control`]); the `up` process carries it out on its simulation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::control::{Action, PATH};
use super::envfile::{self, DEFAULT_PATH, PATH_VAR, PID_VAR, SOCKET_VAR};

/// `floatip-lab ctl` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The env file of the lab to drive, as `floatip-lab up` printed it.
    #[arg(long, env = PATH_VAR, default_value = DEFAULT_PATH)]
    pub env_file: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

/// Sends the action and prints the lab's answer; the lab's one-line reason when it failed.
pub async fn run(args: Args) -> Result<()> {
    let socket = socket(&args.env_file)?;
    let body = serde_json::to_vec(&args.action)?;
    let (ok, answer) = post(&socket, body).await?;
    if !ok {
        bail!("{}", answer.trim());
    }
    print!("{answer}");
    Ok(())
}

const NO_LAB: &str = "no lab is running: start one with `floatip-lab up --no-demo`";

/// The control socket the env file at `env` names, once it is known to answer.
fn socket(env: &Path) -> Result<PathBuf> {
    let vars = match envfile::read(env) {
        Ok(v) => v,
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                == Some(ErrorKind::NotFound) =>
        {
            bail!("{NO_LAB} (there is no {})", env.display())
        }
        Err(e) => return Err(e.context(format!("reading {}", env.display()))),
    };
    let socket = vars.get(SOCKET_VAR).with_context(|| {
        format!(
            "{} has no {SOCKET_VAR}: not a lab's env file",
            env.display()
        )
    })?;
    let pid = vars.get(PID_VAR).map(String::as_str).unwrap_or("?");
    if !Path::new(&format!("/proc/{pid}")).exists() {
        bail!(
            "{NO_LAB} ({} is left from lab pid {pid}, which is gone)",
            env.display()
        );
    }
    Ok(PathBuf::from(socket))
}

/// POSTs `body` to the control socket; whether the lab did it, and its answer.
async fn post(socket: &Path, body: Vec<u8>) -> Result<(bool, String)> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                anyhow::anyhow!("{NO_LAB} ({} does not answer)", socket.display())
            }
            ErrorKind::PermissionDenied => {
                anyhow::anyhow!(
                    "{}: permission denied (run as root, as the lab does)",
                    socket.display()
                )
            }
            _ => anyhow::Error::new(e).context(format!("connecting to {}", socket.display())),
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the lab")?;
    tokio::spawn(connection);
    let request = Request::post(PATH)
        .header(header::HOST, "lab")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender
        .send_request(request)
        .await
        .context("the lab stopped answering (was it torn down?)")?;
    let ok = response.status().is_success();
    let answer = response.into_body().collect().await?.to_bytes();
    Ok((ok, String::from_utf8_lossy(&answer).into_owned()))
}
