//! floatip's lab: the stand-ins floatip is tested against (no real kube-apiserver or EC2 can run
//! here) and a simulated VPC built from network namespaces that runs the real floatip binaries.
//! Dev only: it never ships in the image.

pub mod chart;
pub mod ec2;
pub mod kube;
pub mod process;
pub mod sim;
pub mod venv;
