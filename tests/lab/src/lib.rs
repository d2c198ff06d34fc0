//! floatip's lab: the stand-ins floatip is tested against (no real kube-apiserver or EC2 can run
//! here) and a simulated VPC built from network namespaces that runs the real floatip binaries.
//! Dev only: it never ships in the image.
//!
//! It also holds what the tests of both packages share, so that it is written once and each test
//! binary uses only its share of it: [`process`] starts the lab's servers for one test,
//! [`cluster`] builds a cluster around them for the floatip package's tests, and [`sim::net`]
//! makes the network namespaces.

pub mod chart;
pub mod cluster;
pub mod ec2;
pub mod kube;
pub mod process;
pub mod sim;
pub mod venv;

/// The floatip repository this lab belongs to (its crds/, charts/ and sources).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
