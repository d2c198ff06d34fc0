//! The Helm chart (charts/floatip) as Helm itself renders it: Helm v4's Go SDK through the
//! helm-python-sdk wheel, in a virtualenv under the cargo target folder (the first run installs
//! it from PyPI). Every rendered object is validated against the Kubernetes schemas of the
//! oldest and newest supported versions (kubernetes-validate), applied with kubectl to the
//! lab's API server, and deploy/floatip.yaml must equal what the chart renders now.

use std::path::{Path, PathBuf};

use floatip_lab::chart::{self, Rendered, Request};
use floatip_lab::process::KubeLab;
use floatip_lab::repo_root;
use floatip_lab::sim::kubelet;
use serde_json::{json, Value};

fn chart_dir() -> PathBuf {
    repo_root().join("charts/floatip")
}

/// The virtualenvs live beside the build outputs, shared with `floatip-lab ec2`'s moto.
fn venv_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .join("lab-venv")
}

fn try_render(req: &Request) -> anyhow::Result<Rendered> {
    let python = std::env::var_os("LAB_PYTHON").unwrap_or_else(|| "python3".into());
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(chart::render(&venv_root(), Path::new(&python), req))
}

/// The values a user must give: everything else keeps the chart's defaults.
fn required() -> Vec<(String, Value)> {
    vec![
        ("clusterName".into(), json!("lab")),
        ("aws.region".into(), json!("us-west-2")),
    ]
}

fn render_defaults() -> Rendered {
    let mut req = Request::new(chart_dir());
    req.set = required();
    try_render(&req).expect("the chart renders with its defaults")
}

fn render_custom() -> Rendered {
    let mut req = Request::new(chart_dir());
    req.release = "edge".into();
    req.values = Some(repo_root().join("tests/lab/chart/values-custom.yaml"));
    try_render(&req).expect("the chart renders with values-custom.yaml")
}

fn kinds(r: &Rendered) -> Vec<String> {
    let mut k: Vec<String> = r
        .documents
        .iter()
        .map(|d| format!("{}/{}", d.kind(), d.name()))
        .collect();
    k.sort();
    k
}

fn pod_spec<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    &r.find(kind, name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(r)))["spec"]["template"]["spec"]
}

fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry {name}: {spec:#}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The value of `--name=value` in a container's args.
fn arg<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    strings(&c["args"])
        .into_iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
}

fn env<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e.get("value").unwrap_or(&e["valueFrom"]))
}

fn every_object_is_valid(r: &Rendered, custom_kinds: &[&str]) {
    let objects = r.crds.len() + r.documents.len();
    assert_eq!(
        r.validation.len(),
        objects * chart::KUBE_VERSIONS.len(),
        "one result per object and version"
    );
    for v in &r.validation {
        let expected = if custom_kinds.contains(&v.kind.as_str()) {
            "no-schema"
        } else {
            "valid"
        };
        assert_eq!(v.result, expected, "{} {} on {}", v.kind, v.name, v.version);
    }
    println!(
        "Helm {}: {objects} objects, each valid for Kubernetes {}",
        r.helm,
        chart::KUBE_VERSIONS.join(" and ")
    );
}

/// Security and placement every configuration must keep.
fn assert_hardened(r: &Rendered, fullname: &str) {
    let ctrl = pod_spec(r, "Deployment", &format!("{fullname}-controller"));
    assert_eq!(ctrl["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        ctrl["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(ctrl, "containers", "controller");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"]["add"].is_null(), "{sc:#}");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let zones: Vec<&str> = ctrl["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
        .iter()
        .filter_map(|t| t["topologyKey"].as_str())
        .collect();
    assert_eq!(
        zones,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );

    let agent = pod_spec(r, "DaemonSet", &format!("{fullname}-agent"));
    assert_eq!(agent["hostNetwork"], true);
    assert_eq!(
        agent["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let attach = container(agent, "initContainers", "attach");
    assert_eq!(strings(&attach["args"])[0], "attach");
    for c in [attach, container(agent, "containers", "agent")] {
        let sc = &c["securityContext"];
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
    }
    // The kubelet must not kill the agent before its handover grace period ends.
    let grace: u64 = arg(container(agent, "containers", "agent"), "grace-period")
        .and_then(|g| g.strip_suffix('s'))
        .and_then(|g| g.parse().ok())
        .expect("--grace-period=<N>s");
    let termination = agent["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace < termination,
        "grace {grace}s, termination {termination}s"
    );
    assert_agent_probes(container(agent, "containers", "agent"));

    // The controller finds agent pods by a selector the DaemonSet's pods carry.
    let selector = arg(
        container(ctrl, "containers", "controller"),
        "agent-selector",
    )
    .expect("--agent-selector");
    let labels = &r.find("DaemonSet", &format!("{fullname}-agent")).unwrap()["spec"]["template"]
        ["metadata"]["labels"];
    for pair in selector.split(',') {
        let (k, v) = pair.split_once('=').expect("k=v");
        assert_eq!(labels[k], v, "agent pods lack {pair}");
    }
    // The Lease the controller uses is the one its Role lets it update.
    let lease = arg(container(ctrl, "containers", "controller"), "lease-name").unwrap();
    let role = r.find("Role", &format!("{fullname}-controller")).unwrap();
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| strings(&rule["resourceNames"]) == [lease]
                && strings(&rule["verbs"]) == ["get", "update"]),
        "{role:#}"
    );
    let pdb = r
        .find("PodDisruptionBudget", &format!("{fullname}-controller"))
        .expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// The agent is probed on its admin port, which it listens on, as the lab's kubelet stand-in
/// probes it (the simulated VPC's placement depends on those numbers).
fn assert_agent_probes(c: &Value) {
    let port = &c["ports"][0];
    assert_eq!(port["name"], "admin");
    assert_eq!(port["hostPort"], port["containerPort"], "hostNetwork");
    let listen: std::net::SocketAddr = arg(c, "admin-addr").expect("--admin-addr").parse().unwrap();
    assert_eq!(port["containerPort"], listen.port());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let ready = &c["readinessProbe"];
    assert_eq!(ready["httpGet"]["path"], "/readyz");
    assert_eq!(ready["httpGet"]["port"], "admin");
    let lab = kubelet::AGENT_READINESS;
    assert_eq!(
        (
            ready["periodSeconds"].as_u64(),
            ready["timeoutSeconds"].as_u64(),
            ready["successThreshold"].as_u64(),
            ready["failureThreshold"].as_u64(),
        ),
        (
            Some(lab.period.as_secs()),
            Some(lab.timeout.as_secs()),
            Some(u64::from(lab.success_threshold)),
            Some(u64::from(lab.failure_threshold)),
        ),
        "the agent's readinessProbe and tests/lab/src/sim/kubelet.rs AGENT_READINESS differ"
    );
}

#[test]
fn default_values_render_valid_hardened_objects() {
    let r = render_defaults();
    every_object_is_valid(&r, &[]);
    assert_eq!(
        kinds(&r),
        [
            "ClusterRole/floatip-agent",
            "ClusterRole/floatip-controller",
            "ClusterRoleBinding/floatip-agent",
            "ClusterRoleBinding/floatip-controller",
            "DaemonSet/floatip-agent",
            "Deployment/floatip-controller",
            "PodDisruptionBudget/floatip-controller",
            "Role/floatip-agent",
            "Role/floatip-controller",
            "Role/floatip-controller-events",
            "RoleBinding/floatip-agent",
            "RoleBinding/floatip-controller",
            "RoleBinding/floatip-controller-events",
            "Service/floatip-metrics",
            "ServiceAccount/floatip-agent",
            "ServiceAccount/floatip-controller",
        ],
        "no ServiceMonitor or NetworkPolicy unless asked for"
    );
    assert_eq!(r.crds.len(), 1);
    assert_eq!(r.crds[0].name(), "floatingips.floatip.io");
    assert_hardened(&r, "floatip");

    let deploy = r.find("Deployment", "floatip-controller").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    let c = container(
        pod_spec(&r, "Deployment", "floatip-controller"),
        "containers",
        "controller",
    );
    assert_eq!(arg(c, "admin-addr"), Some("0.0.0.0:8080"));
    assert_eq!(arg(c, "lease-duration"), Some("4s"));
    assert_eq!(arg(c, "renew-deadline"), Some("3s"));
    assert_eq!(arg(c, "retry-period"), Some("500ms"));
    assert_eq!(arg(c, "agent-namespace"), Some("floatip-system"));
    assert_eq!(env(c, "FLOATIP_CLUSTER_NAME"), Some(&json!("lab")));
    assert_eq!(
        env(c, "POD_NAME").unwrap()["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    let agent = pod_spec(&r, "DaemonSet", "floatip-agent");
    for c in [
        container(agent, "initContainers", "attach"),
        container(agent, "containers", "agent"),
    ] {
        assert_eq!(
            strings(&c["securityContext"]["capabilities"]["add"]),
            ["NET_ADMIN"],
            "no NET_RAW without gratuitous ARP"
        );
        assert_eq!(arg(c, "garp"), Some("false"));
    }
    assert!(agent["nodeSelector"].is_null() && agent["tolerations"].is_null());
    assert_eq!(
        arg(
            container(agent, "initContainers", "attach"),
            "security-group-ids"
        ),
        None,
        "by default attach copies the primary ENI's groups"
    );
    // The agent shares the node's network: its default port is none a node already uses, nor
    // the controller's.
    let listen = arg(container(agent, "containers", "agent"), "admin-addr");
    assert_eq!(listen, Some("0.0.0.0:10290"));
    for taken in [
        10248, 10250, 10255, 10249, 10256, 61678, 61679, 61680, 9100, 8080,
    ] {
        assert_ne!(listen, Some(format!("0.0.0.0:{taken}").as_str()));
    }
    for sa in ["floatip-controller", "floatip-agent"] {
        let sa = r.find("ServiceAccount", sa).unwrap();
        assert!(
            sa["metadata"]["annotations"].is_null(),
            "no IRSA role by default: {sa:#}"
        );
    }

    for want in [
        "kubectl -n floatip-system get lease floatip-controller",
        "kubectl -n floatip-system logs ds/floatip-agent -c attach",
        "kubectl get fip web -w",
        "port-forward svc/floatip-metrics 8080",
        "EKS Pod Identity",
    ] {
        assert!(
            r.notes.contains(want),
            "NOTES.txt lacks {want:?}:\n{}",
            r.notes
        );
    }
}

#[test]
fn custom_values_take_effect_and_render_valid_objects() {
    let r = render_custom();
    // ServiceMonitor is prometheus-operator's custom resource: no Kubernetes schema for it.
    every_object_is_valid(&r, &["ServiceMonitor"]);
    assert_hardened(&r, "vip");

    let ctrl = pod_spec(&r, "Deployment", "vip-controller");
    let c = container(ctrl, "containers", "controller");
    assert_eq!(
        r.find("Deployment", "vip-controller").unwrap()["spec"]["replicas"],
        3
    );
    assert_eq!(
        c["image"],
        "111122223333.dkr.ecr.us-west-2.amazonaws.com/floatip:0.1.0-rc1"
    );
    assert_eq!(arg(c, "admin-addr"), Some("[::]:9090"));
    assert_eq!(arg(c, "lease-name"), Some("vip-leader"));
    assert_eq!(arg(c, "lease-duration"), Some("6s"));
    assert_eq!(
        arg(c, "agent-selector"),
        Some("app.kubernetes.io/name=floatip,app.kubernetes.io/instance=edge,app.kubernetes.io/component=agent")
    );
    assert_eq!(
        env(c, "AWS_STS_REGIONAL_ENDPOINTS"),
        Some(&json!("regional"))
    );
    assert_eq!(ctrl["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(ctrl["tolerations"][0]["key"], "CriticalAddonsOnly");

    let agent = pod_spec(&r, "DaemonSet", "vip-agent");
    assert_eq!(
        agent["nodeSelector"],
        json!({"floatip.io/edge": "true", "topology.kubernetes.io/zone": "us-west-2-lax-1a"})
    );
    assert_eq!(agent["tolerations"][0]["key"], "edge");
    assert_eq!(agent["terminationGracePeriodSeconds"], 60);
    for c in [
        container(agent, "initContainers", "attach"),
        container(agent, "containers", "agent"),
    ] {
        assert_eq!(
            strings(&c["securityContext"]["capabilities"]["add"]),
            ["NET_ADMIN", "NET_RAW"],
            "gratuitous ARP needs NET_RAW"
        );
        assert_eq!(arg(c, "garp"), Some("true"));
    }
    assert_eq!(
        arg(container(agent, "containers", "agent"), "grace-period"),
        Some("40s")
    );
    assert_eq!(
        arg(
            container(agent, "initContainers", "attach"),
            "security-group-ids"
        ),
        Some("sg-0a1b2c3d4e5f60718,sg-1a2b3c4d")
    );
    assert_eq!(
        arg(container(agent, "containers", "agent"), "admin-addr"),
        Some("[::]:10291")
    );

    let irsa = |name: &str| {
        r.find("ServiceAccount", name).unwrap()["metadata"]["annotations"]
            ["eks.amazonaws.com/role-arn"]
            .clone()
    };
    assert_eq!(
        irsa("vip-controller"),
        "arn:aws:iam::111122223333:role/floatip-controller"
    );
    assert_eq!(
        irsa("vip-agent"),
        "arn:aws:iam::111122223333:role/floatip-agent"
    );

    let monitor = r
        .find("ServiceMonitor", "vip-controller")
        .expect("a ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    let service = r.find("Service", "vip-metrics").unwrap();
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(
        service["spec"]["selector"],
        r.find("Deployment", "vip-controller").unwrap()["spec"]["selector"]["matchLabels"]
    );

    let policy = r
        .find("NetworkPolicy", "vip-controller")
        .expect("a NetworkPolicy");
    assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = &policy["spec"]["ingress"][0];
    assert_eq!(ingress["ports"][0]["port"], "admin");
    assert_eq!(
        ingress["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
}

#[test]
fn refused_values_name_what_to_change() {
    let refused = |set: Vec<(&str, Value)>| {
        let mut req = Request::new(chart_dir());
        req.set = required();
        req.set
            .extend(set.into_iter().map(|(k, v)| (k.to_string(), v)));
        try_render(&req).expect_err("refused").to_string()
    };
    let err = refused(vec![("clusterName", json!(""))]);
    assert!(err.contains("clusterName is required"), "{err}");
    let err = refused(vec![("aws.region", json!(""))]);
    assert!(err.contains("aws.region is required"), "{err}");
    let err = refused(vec![("agent.handoverSeconds", json!(30))]);
    assert!(
        err.contains(
            "agent.handoverSeconds (30) must be below agent.terminationGracePeriodSeconds (30)"
        ),
        "{err}"
    );
    // values.schema.json: a misspelt key and a bad duration.
    let err = refused(vec![("controller.replica", json!(3))]);
    assert!(err.contains("replica"), "{err}");
    let err = refused(vec![(
        "controller.leaderElection.leaseDuration",
        json!("4 seconds"),
    )]);
    assert!(err.contains("leaseDuration"), "{err}");
    let err = refused(vec![("controller.iamRoleArn", json!("floatip-controller"))]);
    assert!(err.contains("iamRoleArn"), "{err}");
    let err = refused(vec![("agent.securityGroupIds", json!(["web-nodes"]))]);
    assert!(err.contains("securityGroupIds"), "{err}");
    // The agent's admin port on the host network: one the kubelet already listens on.
    let err = refused(vec![("agent.admin.port", json!(10250))]);
    assert!(
        err.contains("agent.admin.port 10250 is the kubelet's (API) port on the node"),
        "{err}"
    );
    let err = refused(vec![("agent.admin.port", json!(61678))]);
    assert!(err.contains("the VPC CNI's (aws-node)"), "{err}");
}

fn apply(lab: &KubeLab, manifest: &str) -> Vec<String> {
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(
        out.status.success(),
        "kubectl apply failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Applies a rendered chart as the plain manifests and reads every object back with kubectl.
fn applies_and_reads_back(lab: &KubeLab, r: &Rendered) {
    let manifest = chart::manifest(r, chart::NAMESPACE, "test");
    let created = apply(lab, &manifest);
    // The namespace, the CRD and every template object.
    assert_eq!(
        created.len(),
        1 + r.crds.len() + r.documents.len(),
        "{created:#?}"
    );
    assert!(
        created.iter().all(|l| l.ends_with(" created")),
        "{created:#?}"
    );
    let stored = read_back(lab, r);
    // Applying again stores nothing new (kubectl may still send a patch: it always resends a
    // PodDisruptionBudget's selector, whose patch strategy is replace).
    apply(lab, &manifest);
    assert_eq!(read_back(lab, r), stored, "applying again changed objects");
}

/// Every template object as the server has it, checked against what was applied; returns
/// their resourceVersions.
fn read_back(lab: &KubeLab, r: &Rendered) -> Vec<String> {
    let mut versions = Vec::new();
    for d in &r.documents {
        let ns = d.object["metadata"]["namespace"].as_str();
        let kind = format!(
            "{}.{}",
            d.kind().to_lowercase(),
            d.object["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .map_or("", |(g, _)| g)
        );
        let kind = kind.trim_end_matches('.');
        let mut args = vec!["get", kind, d.name(), "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let got: Value = serde_json::from_str(&lab.kubectl_ok(&args)).expect("JSON");
        assert_eq!(got["kind"], d.object["kind"]);
        assert_eq!(got["metadata"]["labels"], d.object["metadata"]["labels"]);
        if let Some(spec) = d.object.get("spec") {
            assert_eq!(&got["spec"], spec, "{kind} {} stored as applied", d.name());
        }
        let version = got["metadata"]["resourceVersion"].as_str().unwrap();
        versions.push(format!("{kind}/{}@{version}", d.name()));
    }
    versions
}

#[test]
fn rendered_manifests_apply_to_the_lab_api_with_kubectl() {
    let lab = KubeLab::start();
    applies_and_reads_back(&lab, &render_defaults());

    // The ServiceMonitor needs prometheus-operator's CRD; a minimal stand-in of it comes first.
    let lab = KubeLab::start();
    let crd = repo_root().join("tests/lab/chart/servicemonitor-crd.yaml");
    lab.kubectl_ok(&["apply", "-f", crd.to_str().unwrap()]);
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=10s",
    ]);
    applies_and_reads_back(&lab, &render_custom());
}

#[test]
fn deploy_manifests_are_the_chart_rendered_now() {
    let mut req = Request::new(chart_dir());
    req.values = Some(repo_root().join("deploy/values.yaml"));
    let r = try_render(&req).expect("the chart renders with deploy/values.yaml");
    let want = chart::manifest(&r, &req.namespace, chart::DEPLOY_HEADER);
    let path = repo_root().join("deploy/floatip.yaml");
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the chart; regenerate it with:\n  cargo run -p floatip-lab -- render-chart --values deploy/values.yaml --out deploy/floatip.yaml\nfirst difference at line {}",
        path.display(),
        have.lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(have.lines().count().min(want.lines().count()))
            + 1
    );
}

#[test]
fn manifest_is_in_helm_install_order_under_source_lines() {
    let r = render_defaults();
    let text = chart::manifest(&r, "floatip-system", "line one\nline two");
    assert!(text.starts_with("# line one\n# line two\n---\napiVersion: v1\nkind: Namespace\n"));
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    let first = |k: &str| order.iter().position(|x| *x == k).unwrap();
    assert!(first("Namespace") < first("ServiceAccount"));
    assert!(first("ServiceAccount") < first("CustomResourceDefinition"));
    assert!(first("CustomResourceDefinition") < first("ClusterRole"));
    assert!(first("RoleBinding") < first("DaemonSet"));
    assert!(first("DaemonSet") < first("Deployment"));
    assert_eq!(
        text.matches("\n# Source: ").count(),
        r.crds.len() + r.documents.len()
    );
}

/// Parses a container's args with floatip's own command line, in the environment the container
/// gets (literal values as written, a stand-in for each downward-API value).
fn parse_container(c: &Value) -> floatip::cli::Command {
    let vars: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = e["value"].as_str().unwrap_or("from-the-downward-api");
            (name, value.to_string())
        })
        .collect();
    for (k, v) in &vars {
        std::env::set_var(k, v);
    }
    let argv = std::iter::once("floatip").chain(strings(&c["args"]));
    let parsed = <floatip::cli::Cli as clap::Parser>::try_parse_from(argv);
    for (k, _) in &vars {
        std::env::remove_var(k);
    }
    parsed
        .unwrap_or_else(|e| panic!("floatip refuses the args of container {}:\n{e}", c["name"]))
        .command
}

#[test]
fn the_binary_accepts_every_rendered_command_line() {
    use floatip::cli::Command;
    for (r, fullname, garp, groups) in [
        (render_defaults(), "floatip", false, &[][..]),
        (
            render_custom(),
            "vip",
            true,
            &["sg-0a1b2c3d4e5f60718", "sg-1a2b3c4d"][..],
        ),
    ] {
        let ctrl = pod_spec(&r, "Deployment", &format!("{fullname}-controller"));
        match parse_container(container(ctrl, "containers", "controller")) {
            Command::Controller(a) => {
                assert_eq!(a.identity, "from-the-downward-api");
                assert!(a.renew_deadline < a.lease_duration);
                assert!(a.require_agent);
            }
            other => panic!("the controller container runs {other:?}"),
        }
        let agent = pod_spec(&r, "DaemonSet", &format!("{fullname}-agent"));
        match parse_container(container(agent, "initContainers", "attach")) {
            Command::Attach(a) => {
                assert_eq!(a.host.garp, garp);
                assert_eq!(a.security_group_ids, groups);
            }
            other => panic!("the init container runs {other:?}"),
        }
        match parse_container(container(agent, "containers", "agent")) {
            Command::Agent(a) => {
                assert_eq!(a.host.garp, garp);
                assert_eq!(
                    container(agent, "containers", "agent")["ports"][0]["containerPort"],
                    a.admin_addr.port()
                );
                assert_eq!(a.host.fwmark_mask, 0x00ff_0000);
                assert!(a.pod_name.is_some() && a.pod_namespace.is_some());
            }
            other => panic!("the agent container runs {other:?}"),
        }
    }
}
