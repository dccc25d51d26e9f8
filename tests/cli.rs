//! The `cx-operator` binary's offline commands, as a user runs them.

use std::process::Command;

fn cx(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cx-operator")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("the binary runs")
}

#[test]
fn plan_shows_what_a_tenant_becomes_without_a_cluster() {
    let out = cx(&["plan", "-f", "examples/tenant-full.yaml", "--config", "examples/operator-config.yaml", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(plan["summary"]["namespace"], "tenant-acme");
    assert_eq!(plan["summary"]["fqdn"], "support.acme.example");
    let kinds: Vec<&str> = plan["kubernetes"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "Ingress", "Agent"]);
    let admin = &plan["kubernetes"][3];
    assert_eq!(admin["metadata"]["name"], "admin");
    assert_eq!(admin["spec"]["roles"], serde_json::json!(["admin"]));
    let ingress = &plan["kubernetes"][2];
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt-prod");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(plan["notConfigured"], serde_json::json!([]));
    let backends: Vec<&str> = plan["external"].as_array().unwrap().iter().map(|b| b["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["identity", "database", "cache", "grafana"]);
    assert_eq!(
        plan["external"][3]["objects"][0],
        serde_json::json!({"kind": "allowedHost", "name": "https://support.acme.example",
                           "settings": {"dataSourceUid": "cx-tenants", "jsonDataKey": "allowedHosts"}})
    );
    let identity = serde_json::to_string(&plan["external"][0]).unwrap();
    for shown in ["acme", "cx-platform", "supervisor", "https://support.acme.example/*"] {
        assert!(identity.contains(shown), "the identity plan shows {shown}: {identity}");
    }
}

#[test]
fn plan_works_with_the_built_in_configuration_and_yaml_output() {
    let out = cx(&["plan", "-f", "examples/tenant-minimal.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("fqdn: globex.cx.example.com"), "{text}");
}

#[test]
fn plan_refuses_an_invalid_tenant_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: cx-operator.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {displayName: A, company: {name: A}}\n",
    )
    .unwrap();
    let out = cx(&["plan", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin"), "{err}");
}

#[test]
fn check_config_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "rootDomain: nodots\nplatformNamespace: cx\nreconcile: {jitter: 5}\ningress: {paths: [{path: x, service: {name: web, port: 0}}]}\n",
    )
    .unwrap();
    let out = cx(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["rootDomain:", "reconcile.jitter:", "ingress.paths[0].path:", "ingress.paths[0].service.port:"] {
        assert!(err.contains(field), "missing {field} in {err}");
    }
    let ok = cx(&["check-config", "examples/operator-config.yaml"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn crd_prints_the_files_in_crds() {
    let out = cx(&["crd"]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    for name in ["tenants", "agents", "capabilityquotas"] {
        let file = std::fs::read_to_string(format!("{}/crds/{name}.cx-operator.io.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(printed.contains(&file), "{name} differs from crds/");
    }
}
