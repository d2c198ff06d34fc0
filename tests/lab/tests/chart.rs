//! The Helm chart (charts/floatip) as Helm itself renders it: Helm v4's Go SDK through the
//! helm-python-sdk wheel, in a virtualenv under the cargo target folder (the first run installs
//! it from PyPI). Every rendered object is validated against the Kubernetes schemas of the
//! oldest and newest supported versions (kubernetes-validate), applied with kubectl to the
//! lab's API server, and deploy/floatip.yaml must equal what the chart renders now.

use std::path::{Path, PathBuf};

use floatip_lab::chart::{self, monitoring, Rendered, Request};
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

/// The defaults with `set` on top, released into `namespace`.
fn render_with(namespace: &str, set: Vec<(&str, Value)>) -> Rendered {
    let mut req = Request::new(chart_dir());
    req.namespace = namespace.into();
    req.set = required();
    req.set
        .extend(set.into_iter().map(|(k, v)| (k.to_string(), v)));
    try_render(&req).unwrap_or_else(|e| panic!("the chart renders: {e:#}"))
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

/// The controller may create Events where the API server accepts those of cluster-scoped
/// objects: kube-system when it runs there, else default.
fn assert_events_role_in(r: &Rendered, fullname: &str, namespace: &str) {
    let name = format!("{fullname}-controller-events");
    for kind in ["Role", "RoleBinding"] {
        let o = r
            .find(kind, &name)
            .unwrap_or_else(|| panic!("no {kind} {name}"));
        assert_eq!(o["metadata"]["namespace"], namespace, "{kind} {name}");
    }
}

/// View and edit roles for people, folded into the built-in roles.
fn assert_aggregated_roles(r: &Rendered, fullname: &str) {
    let view = r
        .find("ClusterRole", &format!("{fullname}-view"))
        .expect("a view ClusterRole");
    let labels = &view["metadata"]["labels"];
    for role in ["view", "edit", "admin"] {
        assert_eq!(
            labels[format!("rbac.authorization.k8s.io/aggregate-to-{role}")],
            "true"
        );
    }
    assert_eq!(
        strings(&view["rules"][0]["verbs"]),
        ["get", "list", "watch"]
    );
    assert_eq!(strings(&view["rules"][0]["resources"])[0], "floatingips");
    let edit = r
        .find("ClusterRole", &format!("{fullname}-edit"))
        .expect("an edit ClusterRole");
    let labels = &edit["metadata"]["labels"];
    assert!(labels["rbac.authorization.k8s.io/aggregate-to-view"].is_null());
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    let verbs = strings(&edit["rules"][0]["verbs"]);
    for verb in ["create", "update", "patch", "delete"] {
        assert!(verbs.contains(&verb), "{verbs:?}");
    }
    assert_eq!(
        strings(&edit["rules"][0]["resources"]),
        ["floatingips"],
        "status stays the controller's"
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
            "ClusterRole/floatip-edit",
            "ClusterRole/floatip-view",
            "ClusterRoleBinding/floatip-agent",
            "ClusterRoleBinding/floatip-controller",
            "CustomResourceDefinition/floatingips.floatip.io",
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
        "no ServiceMonitor, PodMonitor, PrometheusRule, dashboard or NetworkPolicy unless asked for"
    );
    assert!(
        r.crds.is_empty(),
        "the CRD is a template, so that helm upgrade upgrades it"
    );
    let crd = r
        .find("CustomResourceDefinition", "floatingips.floatip.io")
        .unwrap();
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "helm uninstall must not delete the CRD and with it every FloatingIP"
    );
    assert_eq!(
        crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_hardened(&r, "floatip");
    assert_events_role_in(&r, "floatip", "default");
    assert_aggregated_roles(&r, "floatip");

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
        "grep -E '^floatip_(build_info|leader)[{ ]'",
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
    // prometheus-operator's custom resources: no Kubernetes schema for them.
    every_object_is_valid(&r, &["ServiceMonitor", "PodMonitor", "PrometheusRule"]);
    assert_hardened(&r, "vip");
    assert_events_role_in(&r, "vip", "default");
    assert!(
        r.find("ClusterRole", "vip-view").is_none() && r.find("ClusterRole", "vip-edit").is_none(),
        "rbac.aggregate: false"
    );

    // commonLabels on every object and pod template, never replacing the chart's own.
    for d in &r.documents {
        let labels = &d.object["metadata"]["labels"];
        assert_eq!(labels["team"], "network", "{} {}", d.kind(), d.name());
        assert_eq!(labels["cost-center"], "4711", "{} {}", d.kind(), d.name());
        assert_eq!(
            labels["app.kubernetes.io/name"],
            "floatip",
            "{} {}",
            d.kind(),
            d.name()
        );
        let pod = &d.object["spec"]["template"]["metadata"]["labels"];
        if !pod.is_null() {
            assert_eq!(pod["team"], "network");
            assert_eq!(pod["app.kubernetes.io/name"], "floatip");
        }
    }
    let crd = r
        .find("CustomResourceDefinition", "floatingips.floatip.io")
        .expect("crds.enabled");
    assert!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
        "crds.keep: false"
    );

    let ctrl = pod_spec(&r, "Deployment", "vip-controller");
    let c = container(ctrl, "containers", "controller");
    assert_eq!(
        r.find("Deployment", "vip-controller").unwrap()["spec"]["replicas"],
        3
    );
    // The digest wins over the tag, in every container.
    let image = "111122223333.dkr.ecr.us-west-2.amazonaws.com/floatip@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(c["image"], image);
    let agent = pod_spec(&r, "DaemonSet", "vip-agent");
    for c in [
        container(agent, "initContainers", "attach"),
        container(agent, "containers", "agent"),
    ] {
        assert_eq!(c["image"], image);
    }
    // extraArgs after the chart's own flags.
    assert_eq!(strings(&c["args"]).last(), Some(&"--holder-check=1s"));
    assert_eq!(
        strings(&container(agent, "containers", "agent")["args"]).last(),
        Some(&"--peer-view-interval=3s")
    );
    assert_eq!(
        strings(&container(agent, "initContainers", "attach")["args"]).last(),
        Some(&"--ec2-attempts=6")
    );
    // securityContext and probe values merge over the defaults.
    assert_eq!(
        ctrl["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65000, "runAsGroup": 65000, "fsGroup": 65000,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(c["securityContext"]["runAsUser"], 65000);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"path": "/livez", "port": "admin"}, "initialDelaySeconds": 5,
               "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 5})
    );
    assert_eq!(c["readinessProbe"]["periodSeconds"], 3);
    assert_eq!(c["readinessProbe"]["failureThreshold"], 2);
    assert_eq!(
        agent["securityContext"]["appArmorProfile"]["type"],
        "RuntimeDefault"
    );
    for c in [
        container(agent, "initContainers", "attach"),
        container(agent, "containers", "agent"),
    ] {
        assert_eq!(
            c["securityContext"]["appArmorProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["securityContext"]["runAsUser"], 0);
        assert_eq!(
            env(c, "AWS_STS_REGIONAL_ENDPOINTS"),
            Some(&json!("regional")),
            "agent.extraEnv in {}",
            c["name"]
        );
    }
    assert_eq!(
        container(agent, "containers", "agent")["livenessProbe"]["timeoutSeconds"],
        3
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

    let pods = r.find("PodMonitor", "vip-agent").expect("a PodMonitor");
    assert_eq!(pods["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"],
        r.find("DaemonSet", "vip-agent").unwrap()["spec"]["selector"]["matchLabels"]
    );
    let endpoint = &pods["spec"]["podMetricsEndpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["path"], &endpoint["interval"]),
        (&json!("admin"), &json!("/metrics"), &json!("1m"))
    );
    assert_prometheus_rule(r.find("PrometheusRule", "vip").expect("a PrometheusRule"));
    let dashboard = r
        .find("ConfigMap", "vip-dashboard")
        .expect("a dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["labels"]["grafana"], "shared");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Networking"
    );
    let file = std::fs::read_to_string(repo_root().join(monitoring::DASHBOARD)).unwrap();
    assert_eq!(
        dashboard["data"]["floatip.json"]
            .as_str()
            .map(str::trim_end),
        Some(file.trim_end()),
        "the ConfigMap holds files/dashboard.json as written"
    );

    for want in [
        "ServiceMonitor floatip-system/vip-controller",
        "PodMonitor floatip-system/vip-agent (the agents, node port 10291)",
        "PrometheusRule floatip-system/vip (alerts",
        "ConfigMap monitoring/vip-dashboard",
    ] {
        assert!(
            r.notes.contains(want),
            "NOTES.txt lacks {want:?}:\n{}",
            r.notes
        );
    }

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

/// values-custom.yaml's PrometheusRule: files/prometheus-rules.yaml with one alert left out,
/// labels added, runbook links made absolute and a group appended.
fn assert_prometheus_rule(rule: &Value) {
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let file: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join(monitoring::RULES)).unwrap(),
    )
    .unwrap();
    let groups = rule["spec"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), file["groups"].as_array().unwrap().len() + 1);
    assert_eq!(groups.last().unwrap()["name"], "floatip-recording");
    for (want, have) in file["groups"].as_array().unwrap().iter().zip(groups) {
        assert_eq!(have["name"], want["name"]);
        let kept: Vec<&Value> = want["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["alert"] != "FloatipProbeOverruns")
            .collect();
        let rules = have["rules"].as_array().unwrap();
        assert_eq!(rules.len(), kept.len(), "FloatipProbeOverruns is disabled");
        for (want, have) in kept.into_iter().zip(rules) {
            let alert = want["alert"].as_str().unwrap();
            assert_eq!(have["expr"], want["expr"], "{alert}");
            assert_eq!(have["for"], want["for"], "{alert}");
            assert_eq!(have["labels"]["team"], "network", "{alert}");
            assert_eq!(
                have["labels"]["severity"], "page",
                "alertLabels win: {alert}"
            );
            assert_eq!(
                have["annotations"]["summary"], want["annotations"]["summary"],
                "{alert}"
            );
            assert_eq!(
                have["annotations"]["runbook_url"].as_str().unwrap(),
                format!(
                    "https://github.com/example/floatip/blob/v0.1.0/{}",
                    want["annotations"]["runbook_url"].as_str().unwrap()
                ),
                "{alert}"
            );
        }
    }
}

#[test]
fn the_crd_follows_crds_values_and_equals_floatip_crd() {
    // The CRD the chart installs is `floatip crd`'s, plus Helm's labels and the keep policy.
    let r = render_defaults();
    let mut installed = r
        .find("CustomResourceDefinition", "floatingips.floatip.io")
        .expect("the CRD")
        .clone();
    let metadata = installed["metadata"].as_object_mut().unwrap();
    assert!(metadata.remove("labels").is_some());
    assert!(metadata.remove("annotations").is_some());
    let generated: Value = serde_yaml_ng::from_str(&floatip::api::crd_yaml()).unwrap();
    assert!(
        installed == generated,
        "the chart's CRD differs from `floatip crd`; regenerate it with: cargo run -- crd > charts/floatip/files/crds/floatingip.yaml"
    );

    let r = render_with(chart::NAMESPACE, vec![("crds.enabled", json!(false))]);
    assert!(
        !kinds(&r)
            .iter()
            .any(|k| k.starts_with("CustomResourceDefinition/"))
            && r.crds.is_empty(),
        "crds.enabled: false installs no CRD: {:?}",
        kinds(&r)
    );
    let r = render_with(chart::NAMESPACE, vec![("crds.keep", json!(false))]);
    let crd = r
        .find("CustomResourceDefinition", "floatingips.floatip.io")
        .unwrap();
    assert!(crd["metadata"]["annotations"].is_null(), "{crd:#}");
}

#[test]
fn events_role_follows_the_namespace_the_api_server_accepts() {
    // Released into kube-system the controller writes Events there; elsewhere into default.
    let r = render_with("kube-system", vec![]);
    assert_events_role_in(&r, "floatip", "kube-system");
    assert_eq!(
        r.find("Role", "floatip-controller").unwrap()["metadata"]["namespace"],
        "kube-system"
    );
    let r = render_with("edge-system", vec![]);
    assert_events_role_in(&r, "floatip", "default");
}

#[test]
fn a_subchart_gets_global_values_and_probes_merge_over_defaults() {
    // Helm hands every subchart the parent's `global`; the schema must accept it.
    let r = render_with(
        chart::NAMESPACE,
        vec![
            (
                "global",
                json!({"imageRegistry": "registry.example.com", "storageClass": "gp3"}),
            ),
            ("agent.readinessProbe", json!({"failureThreshold": 4})),
            ("agent.handover", json!("1m30s")),
            ("agent.terminationGracePeriodSeconds", json!(91)),
        ],
    );
    let agent = pod_spec(&r, "DaemonSet", "floatip-agent");
    let c = container(agent, "containers", "agent");
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 2,
               "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 4})
    );
    assert_eq!(arg(c, "grace-period"), Some("1m30s"));
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
    let err = refused(vec![("agent.handover", json!("30s"))]);
    assert!(
        err.contains(
            "agent.handover (30s) must be below agent.terminationGracePeriodSeconds (30s)"
        ),
        "{err}"
    );
    // Compound durations count in full: 1m30s is 90 s.
    let err = refused(vec![
        ("agent.handover", json!("1m30s")),
        ("agent.terminationGracePeriodSeconds", json!(90)),
    ]);
    assert!(
        err.contains("agent.handover (1m30s) must be below"),
        "{err}"
    );
    // The value renamed in chart 0.2.0 says what it is called now.
    let err = refused(vec![("agent.handoverSeconds", json!(20))]);
    assert!(
        err.contains("agent.handoverSeconds was renamed in chart 0.2.0: write agent.handover: 20s"),
        "{err}"
    );
    let err = refused(vec![("agent.handover", json!(20))]);
    assert!(err.contains("handover"), "a number is no duration: {err}");
    let err = refused(vec![("image.digest", json!("0123abcd"))]);
    assert!(err.contains("digest"), "{err}");
    let err = refused(vec![("controller.extraArgs", json!("--holder-check=1s"))]);
    assert!(err.contains("extraArgs"), "a list, not a string: {err}");
    let err = refused(vec![(
        "controller.livenessProbe",
        json!({"exec": {"command": ["true"]}}),
    )]);
    assert!(err.contains("exec"), "the chart owns the handler: {err}");
    let err = refused(vec![(
        "metrics.prometheusRule.disabled",
        json!(["FloatipNoSuchAlert"]),
    )]);
    assert!(err.contains("disabled"), "{err}");
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

/// The value with every whole float (the CRD's `maximum: 3600.0`) as an integer, as the API
/// server returns it.
fn whole_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(whole_numbers).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect())
        }
        other => other,
    }
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
            assert_eq!(
                whole_numbers(got["spec"].clone()),
                whole_numbers(spec.clone()),
                "{kind} {} stored as applied",
                d.name()
            );
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

    // The monitors and the PrometheusRule need prometheus-operator's CRDs; minimal stand-ins
    // of them come first.
    let lab = KubeLab::start();
    let crd = repo_root().join("tests/lab/chart/prometheus-operator-crds.yaml");
    lab.kubectl_ok(&["apply", "-f", crd.to_str().unwrap()]);
    for name in ["servicemonitors", "podmonitors", "prometheusrules"] {
        lab.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}.monitoring.coreos.com"),
            "--timeout=10s",
        ]);
    }
    // The dashboard goes to Grafana's namespace (metrics.dashboard.namespace), which exists.
    apply(
        &lab,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n",
    );
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
    use std::time::Duration;
    for (r, fullname, garp, groups, custom) in [
        (render_defaults(), "floatip", false, &[][..], false),
        (
            render_custom(),
            "vip",
            true,
            &["sg-0a1b2c3d4e5f60718", "sg-1a2b3c4d"][..],
            true,
        ),
    ] {
        let ctrl = pod_spec(&r, "Deployment", &format!("{fullname}-controller"));
        match parse_container(container(ctrl, "containers", "controller")) {
            Command::Controller(a) => {
                assert_eq!(a.identity, "from-the-downward-api");
                assert!(a.renew_deadline < a.lease_duration);
                assert!(a.require_agent);
                // controller.extraArgs reach the binary.
                let check = if custom { 1 } else { 2 };
                assert_eq!(a.holder_check, Duration::from_secs(check));
            }
            other => panic!("the controller container runs {other:?}"),
        }
        let agent = pod_spec(&r, "DaemonSet", &format!("{fullname}-agent"));
        match parse_container(container(agent, "initContainers", "attach")) {
            Command::Attach(a) => {
                assert_eq!(a.host.garp, garp);
                assert_eq!(a.security_group_ids, groups);
                assert_eq!(a.ec2_attempts, if custom { 6 } else { 4 });
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
                let (view, grace) = if custom { (3, 40) } else { (5, 20) };
                assert_eq!(a.peer_view_interval, Duration::from_secs(view));
                assert_eq!(a.grace_period, Duration::from_secs(grace));
            }
            other => panic!("the agent container runs {other:?}"),
        }
    }
}
