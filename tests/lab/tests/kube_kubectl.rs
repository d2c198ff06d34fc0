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
