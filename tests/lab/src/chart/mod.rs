//! floatip's Helm chart as the lab sees it: rendered by Helm's own Go library (the
//! helm-python-sdk wheel bundles it, so no helm binary is needed), every object validated
//! against the Kubernetes OpenAPI schemas (kubernetes-validate), and written out as the plain
//! manifests in deploy/. [`rbac`] and [`iam`] check recorded calls against what the chart and
//! the IAM policies grant; [`monitoring`] reads the chart's alerts and dashboard.

pub mod iam;
pub mod monitoring;
pub mod rbac;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use tokio::process::Command;

use crate::venv;

/// helm-python-sdk, kubernetes-validate and their dependencies, and the render script.
pub const VENV: venv::Spec = venv::Spec {
    what: "the chart tools (helm-python-sdk, kubernetes-validate)",
    requirements: include_str!("../../chart/requirements.txt"),
    scripts: &[("render.py", include_str!("../../chart/render.py"))],
};

/// Kubernetes versions every rendered object is validated against: the oldest the chart
/// supports (Chart.yaml kubeVersion; the CRD's CEL rules need 1.31) and the newest
/// kubernetes-validate knows.
pub const KUBE_VERSIONS: &[&str] = &["1.31.0", "1.37.0"];

/// The release name and namespace the plain manifests are rendered for.
pub const RELEASE: &str = "floatip";
pub const NAMESPACE: &str = "floatip-system";

/// One YAML document the chart produced: its file, its text as Helm wrote it, and the object.
#[derive(Debug, Clone, Deserialize)]
pub struct Doc {
    pub source: String,
    pub text: String,
    pub object: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// One object checked against one Kubernetes version's schemas.
#[derive(Debug, Clone, Deserialize)]
pub struct Validation {
    pub kind: String,
    pub name: String,
    pub version: String,
    /// `valid`, or `no-schema` for kinds Kubernetes does not define (custom resources).
    pub result: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rendered {
    /// The version of Helm's Go SDK that rendered it.
    pub helm: String,
    /// The chart's crds/ folder (empty: the FloatingIP CRD is a template, see templates/crds.yaml).
    pub crds: Vec<Doc>,
    /// The templates' objects.
    pub documents: Vec<Doc>,
    pub notes: String,
    pub validation: Vec<Validation>,
}

impl Rendered {
    /// Every object, CRDs first.
    pub fn objects(&self) -> Vec<Value> {
        self.crds
            .iter()
            .chain(&self.documents)
            .map(|d| d.object.clone())
            .collect()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.documents
            .iter()
            .find(|d| d.kind() == kind && d.name() == name)
            .map(|d| &d.object)
    }
}

/// What to render.
#[derive(Debug, Clone)]
pub struct Request {
    pub chart: PathBuf,
    pub release: String,
    pub namespace: String,
    pub values: Option<PathBuf>,
    /// Values set on top of the file, by dotted key (like `helm --set-json`).
    pub set: Vec<(String, Value)>,
}

impl Request {
    pub fn new(chart: impl Into<PathBuf>) -> Self {
        Self {
            chart: chart.into(),
            release: RELEASE.into(),
            namespace: NAMESPACE.into(),
            values: None,
            set: Vec::new(),
        }
    }
}

/// Renders and validates the chart; fails with Helm's or the validator's message when the
/// values, the templates or any object are refused.
pub async fn render(venv_root: &Path, python: &Path, req: &Request) -> Result<Rendered> {
    let venv = venv::ensure(venv_root, python, &VENV).await?;
    let mut cmd = Command::new(&venv.python);
    cmd.arg(venv.scripts.join("render.py"))
        .arg(&req.chart)
        .args(["--release", &req.release, "--namespace", &req.namespace]);
    if let Some(values) = &req.values {
        cmd.arg("--values").arg(values);
    }
    for (key, value) in &req.set {
        cmd.arg("--set-json").arg(format!("{key}={value}"));
    }
    for v in KUBE_VERSIONS {
        cmd.args(["--kube-version", v]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", venv.python.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("rendering {}: {}", req.chart.display(), stderr.trim());
    }
    serde_json::from_slice(&out.stdout).context("reading the render script's JSON")
}

/// The order Helm installs kinds in (its InstallOrder), for the kinds the chart has.
const INSTALL_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "ConfigMap",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Deployment",
];

/// The plain manifests for kubectl users: the namespace, the CRDs and every object, in
/// Helm's install order, each under a `# Source:` line as `helm template` writes them.
pub fn manifest(rendered: &Rendered, namespace: &str, header: &str) -> String {
    let mut docs: Vec<&Doc> = rendered.crds.iter().chain(&rendered.documents).collect();
    // Stable: objects of one kind keep the chart's order; kinds not listed go last.
    docs.sort_by_key(|d| {
        INSTALL_ORDER
            .iter()
            .position(|k| *k == d.kind())
            .unwrap_or(INSTALL_ORDER.len())
    });
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(format!("# {line}").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
    ));
    for d in docs {
        out.push_str(&format!("---\n# Source: {}\n{}", d.source, d.text));
    }
    out
}

/// The header of deploy/floatip.yaml.
pub const DEPLOY_HEADER: &str = "\
floatip, plain manifests for kubectl, rendered from charts/floatip with deploy/values.yaml:
  cargo run -p floatip-lab -- render-chart --values deploy/values.yaml --out deploy/floatip.yaml
Do not edit; change the chart or deploy/values.yaml and render again (a test compares them).
Before applying, replace the example values: the cluster name (my-cluster), the Region
(us-west-2), the image and the IAM role ARNs (account 111122223333). See deploy/README.md.";

/// `floatip-lab render-chart` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The chart folder.
    #[arg(long, default_value = "charts/floatip")]
    pub chart: PathBuf,
    /// A values file.
    #[arg(long)]
    pub values: Option<PathBuf>,
    /// Where to write the manifests; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the Python virtualenvs. Default: lab-venv in the cargo target folder holding
    /// this binary.
    #[arg(long, env = "LAB_VENV")]
    pub venv: Option<PathBuf>,
    /// Python used to create the virtualenv.
    #[arg(long, env = "LAB_PYTHON", default_value = "python3")]
    pub python: PathBuf,
}

pub async fn run(args: Args) -> Result<()> {
    let root = match args.venv {
        Some(root) => root,
        None => venv::default_root()?,
    };
    let mut req = Request::new(&args.chart);
    req.values = args.values;
    let rendered = render(&root, &args.python, &req).await?;
    let text = manifest(&rendered, &req.namespace, DEPLOY_HEADER);
    match args.out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} objects, rendered by Helm {}, valid for Kubernetes {})",
                path.display(),
                rendered.crds.len() + rendered.documents.len() + 1,
                rendered.helm,
                KUBE_VERSIONS.join(" and ")
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn requirements_pin_helm_and_the_validator_exactly() {
        let req = super::VENV.requirements;
        crate::venv::tests::assert_pinned(req, "helm-python-sdk==0.2.2");
        crate::venv::tests::assert_pinned(req, "kubernetes-validate==1.37.0");
    }
}
