//! kubectl, a client nobody here wrote, against the lab's API server: the FloatingIP life cycle
//! as a user drives it.

use floatip_lab::process::KubeLab;
use floatip_lab::repo_root;

const WEB: &str = r#"
apiVersion: floatip.io/v1alpha1
kind: FloatingIP
metadata:
  name: web
spec:
  address: 10.0.8.100
  subnetId: subnet-0a1b2c3d4e5f67890
  healthCheck:
    port: 30080
"#;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn setup() -> KubeLab {
    let lab = KubeLab::start();
    let crds = repo_root().join("crds");
    let out = lab.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/floatingips.floatip.io created"
    );
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/floatingips.floatip.io",
        "--timeout=10s",
    ]);
    lab
}

#[test]
fn floatingip_life_cycle_with_kubectl() {
    let lab = setup();
    let applied = lab.kubectl_stdin(&["apply", "-f", "-"], Some(WEB));
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert_eq!(
        String::from_utf8_lossy(&applied.stdout).trim(),
        "floatingip.floatip.io/web created"
    );

    // Printer columns, by short name; no status yet, so Holder and Ready are empty.
    let table = lab.kubectl_ok(&["get", "fip"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESS", "MODE", "HOLDER", "READY", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["web", "10.0.8.100", "SecondaryIP"], "{table}");
    assert!(
        row[3].ends_with('s'),
        "holder and ready are blank, age like 1s: {table}"
    );

    // Schema defaults were applied at admission.
    let yaml = lab.kubectl_ok(&["get", "fip", "web", "-o", "yaml"]);
    for want in [
        "mode: SecondaryIP",
        "failback: Never",
        "minHoldSeconds: 30",
        "intervalMs: 100",
        "generation: 1",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in:\n{yaml}");
    }

    // A spec patch bumps the generation.
    lab.kubectl_ok(&[
        "patch",
        "fip",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"failback":"Always"}}"#,
    ]);
    let generation = lab.kubectl_ok(&[
        "get",
        "fip",
        "web",
        "-o",
        "jsonpath={.metadata.generation} {.spec.failback}",
    ]);
    assert_eq!(generation, "2 Always");

    // kubectl wait sees the condition a status patch sets, and the status write leaves the
    // generation alone.
    let waiter = std::thread::spawn({
        let kubeconfig = lab.kubeconfig();
        let cache = lab.dir().join("cache-wait");
        move || {
            std::process::Command::new("kubectl")
                .args(["wait", "--for=condition=Ready", "fip/web", "--timeout=20s"])
                .env("KUBECONFIG", kubeconfig)
                .env("KUBECACHEDIR", cache)
                .output()
                .expect("kubectl wait")
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = r#"{"status":{"holder":{"node":"node-a","instanceId":"i-0123456789abcdef0","since":"2026-01-01T00:00:00Z"},
        "conditions":[{"type":"Ready","status":"True","reason":"Assigned","message":"held by node-a","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    lab.kubectl_ok(&[
        "patch",
        "fip",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let waited = waiter.join().unwrap();
    assert!(waited.status.success(), "kubectl wait: {}", stderr(&waited));
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "floatingip.floatip.io/web condition met"
    );
    let row = lab.kubectl_ok(&["get", "fip", "web", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        ["web", "10.0.8.100", "SecondaryIP", "node-a", "True"]
    );
    assert_eq!(
        lab.kubectl_ok(&["get", "fip", "web", "-o", "jsonpath={.metadata.generation}"]),
        "2"
    );

    let deleted = lab.kubectl_ok(&["delete", "fip", "web", "--timeout=10s"]);
    assert_eq!(deleted.trim(), "floatingip.floatip.io \"web\" deleted");
    let gone = lab.kubectl(&["get", "fip", "web"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("floatingips.floatip.io \"web\" not found"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn invalid_floatingips_are_refused_with_the_rule_message() {
    let lab = setup();
    let no_subnet = "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: bad}\nspec: {address: 10.0.8.100}\n";
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], Some(no_subnet));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("The FloatingIP \"bad\" is invalid")
            && err.contains("spec.subnetId is required when mode is SecondaryIP"),
        "{err}"
    );

    let bad_port = "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: bad}\nspec: {address: 10.0.8.100, subnetId: subnet-0a1b2c3d, healthCheck: {port: 70000}}\n";
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], Some(bad_port));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("spec.healthCheck.port") && stderr(&out).contains("65535"),
        "{}",
        stderr(&out)
    );

    let unknown = "apiVersion: floatip.io/v1alpha1\nkind: FloatingIP\nmetadata: {name: bad}\nspec: {address: 10.0.8.100, subnetId: subnet-0a1b2c3d, colour: red}\n";
    let out = lab.kubectl_stdin(&["apply", "-f", "-"], Some(unknown));
    assert!(
        !out.status.success(),
        "kubectl asks for strict field validation"
    );
    assert!(
        stderr(&out).contains("unknown field \"spec.colour\""),
        "{}",
        stderr(&out)
    );

    // Immutability is a transition rule: only an update can break it.
    lab.kubectl_stdin(&["apply", "-f", "-"], Some(WEB));
    let moved = lab.kubectl(&[
        "patch",
        "fip",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"address":"10.0.8.101"}}"#,
    ]);
    assert!(!moved.status.success());
    assert!(
        stderr(&moved).contains("spec.address is immutable"),
        "{}",
        stderr(&moved)
    );
    let none = lab.kubectl_ok(&["get", "fip", "-o", "name"]);
    assert_eq!(
        none.trim(),
        "floatingip.floatip.io/web",
        "nothing invalid was stored"
    );
}

/// The cells of a kubectl table, by column: kubectl left-aligns every cell under its header,
/// so a header's offset is where its cells start (headers may hold a space: LAST MOVE).
fn table_cells<'a>(table: &'a str, headers: &[&str]) -> Vec<Vec<&'a str>> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let starts: Vec<usize> = headers
        .iter()
        .map(|h| {
            header
                .find(h)
                .unwrap_or_else(|| panic!("no {h} in {header:?}"))
        })
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "columns out of order in {header:?}"
    );
    lines
        .map(|line| {
            (0..starts.len())
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len());
                    line.get(starts[i]..end.min(line.len()))
                        .unwrap_or("")
                        .trim()
                })
                .collect()
        })
        .collect()
}

/// `-o wide` adds Healthy, the Ready condition's reason, the last move's age and the public
/// address, in that order; the plain table keeps its columns.
#[test]
fn get_wide_shows_health_ready_reason_last_move_and_public_address() {
    let lab = setup();
    let applied = lab.kubectl_stdin(&["apply", "-f", "-"], Some(WEB));
    assert!(applied.status.success(), "{}", stderr(&applied));
    // Ready True while the address's own check fails: the holder passes its check and the
    // address is re-assigned to it (the case -o wide exists to show).
    let moved_at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72);
    let status = serde_json::json!({"status": {
        "observedGeneration": 1,
        "holder": {"node": "node-b", "instanceId": "i-0b", "since": moved_at.to_string()},
        "lastMove": {"from": "node-a", "to": "node-b", "reason": "HolderUnhealthy",
                     "at": moved_at.to_string(), "durationMs": 850},
        "moveCount": 3,
        "publicAddress": {"address": "203.0.113.10", "kind": "ElasticIP",
                          "allocationId": "eipalloc-0123456789abcdef0"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Assigned", "message": "held by node-b",
             "lastTransitionTime": moved_at.to_string(), "observedGeneration": 1},
            {"type": "Healthy", "status": "False", "reason": "ProbeFailing",
             "message": "10.0.8.100:30080 fails its health check: refused",
             "lastTransitionTime": moved_at.to_string(), "observedGeneration": 1},
        ],
    }});
    lab.kubectl_ok(&[
        "patch",
        "fip",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);

    let wide = lab.kubectl_ok(&["get", "fip", "-o", "wide"]);
    let headers = [
        "NAME",
        "ADDRESS",
        "MODE",
        "HOLDER",
        "READY",
        "HEALTHY",
        "REASON",
        "LAST MOVE",
        "PUBLIC",
        "AGE",
    ];
    let header: Vec<&str> = wide.lines().next().unwrap().split("  ").collect();
    let header: Vec<&str> = header
        .into_iter()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(header, headers, "{wide}");
    let rows = table_cells(&wide, &headers);
    assert_eq!(rows.len(), 1, "{wide}");
    assert_eq!(
        rows[0][..9],
        [
            "web",
            "10.0.8.100",
            "SecondaryIP",
            "node-b",
            "True",
            "False",
            "Assigned",
            "3d",
            "203.0.113.10"
        ],
        "{wide}"
    );

    // Without -o wide the priority-1 columns stay hidden.
    let plain = lab.kubectl_ok(&["get", "fip"]);
    let header: Vec<&str> = plain.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESS", "MODE", "HOLDER", "READY", "AGE"]
    );

    // A FloatingIP with no status yet: the wide cells are blank, not an error.
    let other = WEB
        .replace("name: web", "name: api")
        .replace("10.0.8.100", "10.0.8.101");
    lab.kubectl_stdin(&["apply", "-f", "-"], Some(&other));
    let wide = lab.kubectl_ok(&["get", "fip", "api", "-o", "wide"]);
    let rows = table_cells(&wide, &headers);
    assert_eq!(rows[0][..3], ["api", "10.0.8.101", "SecondaryIP"], "{wide}");
    assert!(rows[0][3..9].iter().all(|c| c.is_empty()), "{wide}");
    assert!(rows[0][9].ends_with('s'), "age like 0s: {wide}");
}
