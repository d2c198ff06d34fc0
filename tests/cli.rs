//! The `floatip` binary as users run it: the generated CRD, its checked-in copies, and help.

use std::path::Path;
use std::process::Command;

fn floatip(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floatip"))
        .args(args)
        .output()
        .expect("floatip runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn crd_output_is_byte_identical_to_the_checked_in_files() {
    let (ok, out, err) = floatip(&["crd"]);
    assert!(ok, "floatip crd failed: {err}");
    for copy in [
        "crds/floatingip.yaml",
        "charts/floatip/files/crds/floatingip.yaml",
    ] {
        assert!(
            out == repo_file(copy),
            "{copy} differs from `floatip crd`; regenerate it with: cargo run -- crd > {copy}"
        );
    }
}

#[test]
fn crd_has_scope_names_columns_and_rules() {
    let (_, out, _) = floatip(&["crd"]);
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 1, "one YAML document");
    let crd = &docs[0];
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["metadata"]["name"], "floatingips.floatip.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["fip"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Address", ".spec.address"),
            ("Mode", ".spec.mode"),
            ("Holder", ".status.holder.node"),
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            (
                "Healthy",
                ".status.conditions[?(@.type==\"Healthy\")].status"
            ),
            ("Reason", ".status.conditions[?(@.type==\"Ready\")].reason"),
            ("Last Move", ".status.lastMove.at"),
            ("Public", ".status.publicAddress.address"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"].as_array().unwrap();
    assert!(rules.len() >= 8, "mode rules on spec: {rules:?}");
    assert!(rules
        .iter()
        .all(|r| r["message"].as_str().is_some_and(|m| m.len() > 20)));
    let address_rules = spec["properties"]["address"]["x-kubernetes-validations"]
        .as_array()
        .unwrap();
    assert!(address_rules.iter().any(|r| r["rule"] == "self == oldSelf"));
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}

#[test]
fn help_documents_every_subcommand() {
    let (ok, out, _) = floatip(&["--help"]);
    assert!(ok);
    for line in ["crd ", "version ", "-h, --help", "-V, --version"] {
        let entry = out.lines().find(|l| l.trim_start().starts_with(line));
        let entry = entry.unwrap_or_else(|| panic!("--help lacks {line:?}:\n{out}"));
        assert!(
            entry.trim().len() > line.len() + 10,
            "{line:?} has no help text: {entry:?}"
        );
    }
}

#[test]
fn version_names_the_api() {
    let (ok, out, _) = floatip(&["version"]);
    assert!(ok);
    assert_eq!(
        out,
        format!(
            "floatip {} (API floatip.io/v1alpha1)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn unknown_subcommand_fails_with_a_clear_error() {
    let (ok, _, err) = floatip(&["controler"]);
    assert!(!ok);
    assert!(err.contains("unrecognized subcommand 'controler'"), "{err}");
}

#[test]
fn every_controller_flag_has_help_and_an_environment_variable() {
    let (ok, out, _) = floatip(&["controller", "--help"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let mut flags = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("--") || line.starts_with("--help") {
            continue;
        }
        flags += 1;
        // clap's long help: the flag on one line, its help text (ending in [env: ...]) below.
        let help = lines.get(i + 1).copied().unwrap_or_default();
        assert!(
            !help.starts_with("--") && help.len() > 20,
            "no help text for {line}"
        );
        assert!(
            help.contains("[env: "),
            "no environment variable for {line}: {help}"
        );
    }
    assert!(flags >= 14, "only {flags} flags in:\n{out}");
}

/// `floatip attach` with `env` set; nothing is reachable, so only parsing can succeed.
fn attach_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floatip"))
        .arg("attach")
        .args(args)
        .envs(env.iter().copied())
        .env("NODE_NAME", "node-1")
        .env("FLOATIP_CLUSTER_NAME", "lab")
        .output()
        .expect("floatip runs");
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn attach_refuses_a_malformed_security_group_id_from_flag_or_environment() {
    let (ok, err) = attach_with(&["--security-group-ids=sg-0a1b2c3d,web-nodes"], &[]);
    assert!(!ok);
    assert!(
        err.contains("\"web-nodes\" is not a security group ID")
            && err.contains("--security-group-ids"),
        "{err}"
    );
    // The environment variable is split on commas too: the error names the one bad ID.
    let (ok, err) = attach_with(&[], &[("FLOATIP_SECURITY_GROUP_IDS", "sg-0a1b2c3d,sg-XYZ")]);
    assert!(!ok);
    assert!(
        err.contains("\"sg-XYZ\" is not a security group ID"),
        "{err}"
    );

    let (ok, out, _) = floatip(&["attach", "--help"]);
    assert!(ok);
    assert!(
        out.contains("--security-group-ids <SECURITY_GROUP_IDS>")
            && out.contains("[env: FLOATIP_SECURITY_GROUP_IDS=]"),
        "{out}"
    );
}

/// `floatip attach` that cannot start (its kubeconfig does not exist), with `args` before the
/// subcommand: (stderr, exit status success).
fn failing_attach(args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_floatip"))
        .args(args)
        .arg("attach")
        .env("NODE_NAME", "node-1")
        .env("FLOATIP_CLUSTER_NAME", "lab")
        .env("KUBECONFIG", "/nonexistent/floatip-test-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NO_COLOR")
        .env_remove("FLOATIP_LOG_FORMAT")
        .output()
        .expect("floatip runs");
    (String::from_utf8(out.stderr).unwrap(), out.status.success())
}

/// Logs to a pipe or a file carry no colour codes, and a fatal error is said once, as the last
/// line. (Before: ANSI codes on every line, and the error twice.)
#[test]
fn text_logs_have_no_colour_off_a_terminal_and_say_a_fatal_error_once() {
    let (err, ok) = failing_attach(&[]);
    assert!(!ok, "attach without a cluster must fail: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe:\n{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("floatip: "), "{err}");
    let reason = last.trim_start_matches("floatip: ");
    assert_eq!(
        err.matches(reason).count(),
        1,
        "said more than once:\n{err}"
    );
}

/// `--log-format json` (or FLOATIP_LOG_FORMAT=json): every line is one JSON record, the fatal
/// error among them, and nothing else is printed.
#[test]
fn json_logs_are_one_record_a_line_fatal_error_included() {
    for args in [&["--log-format", "json"][..], &["--log-format=json"][..]] {
        let (err, ok) = failing_attach(args);
        assert!(!ok);
        let records: Vec<serde_json::Value> = (err.lines())
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let last = records.last().expect("at least the error");
        assert_eq!(last["level"], "ERROR", "{err}");
        assert!(
            last["fields"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{last}"
        );
        assert!(records.iter().all(|r| r["timestamp"].is_string()), "{err}");
    }
    let (err, _) = failing_attach(&["--log-format", "yaml"]);
    assert!(
        err.contains("invalid value 'yaml' for '--log-format"),
        "{err}"
    );
}

/// The admin server's log line names the address it is bound to: with port 0 the system picks
/// the port, and the log was the only place to learn which (it said `:0`).
#[test]
fn the_admin_server_logs_the_port_it_bound() {
    let out = Command::new(env!("CARGO_BIN_EXE_floatip"))
        .args(["--log-format", "json", "agent"])
        .env("NODE_NAME", "node-1")
        .env("FLOATIP_ADMIN_ADDR", "127.0.0.1:0")
        .env("KUBECONFIG", "/nonexistent/floatip-test-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("floatip runs");
    let err = String::from_utf8(out.stderr).unwrap();
    let listening = (err.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["fields"]["message"] == "admin server listening")
        .unwrap_or_else(|| panic!("no admin server line:\n{err}"));
    let addr: std::net::SocketAddr = listening["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{listening}"));
    assert_ne!(addr.port(), 0, "{listening}");
}
