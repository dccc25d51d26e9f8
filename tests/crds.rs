//! The generated CRDs: no drift from the Rust types, accepted as structural schemas,
//! and every example manifest valid against them.

#[path = "support/schema.rs"]
mod schema;

use std::path::{Path, PathBuf};

use cx_operator::{api, config::Config, plan, provider::Providers};
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn crd_json() -> Vec<Value> {
    api::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect()
}

fn schema_for<'a>(crds: &'a [Value], api_version: &str, kind: &str) -> &'a Value {
    let (group, version) = api_version.split_once('/').expect("a grouped apiVersion");
    let crd = crds
        .iter()
        .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {api_version} {kind}"));
    let v = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == version).expect("served version");
    &v["schema"]["openAPIV3Schema"]
}

fn manifests(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_yaml_ng::with::singleton_map_recursive::deserialize::<Value, _>(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn resource_examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.file_name().unwrap().to_string_lossy().starts_with("operator-config"))
        .collect();
    files.sort();
    files
}

#[test]
fn crd_files_match_the_rust_types() {
    for crd in api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let path = repo(&format!("crds/{name}.yaml"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == api::crd_yaml(&crd).unwrap(), "{} drifted from the Rust types: run `make crds`", path.display());
    }
    let files = std::fs::read_dir(repo("crds")).unwrap().count();
    assert_eq!(files, api::crds().len(), "crds/ holds exactly the generated CRDs");
}

#[test]
fn crds_are_accepted_as_structural_schemas() {
    for crd in crd_json() {
        let problems = schema::check_crd(&crd);
        assert!(problems.is_empty(), "{}: {problems:#?}", crd["metadata"]["name"]);
    }
}

#[test]
fn every_field_is_documented() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                let documented = child.get("description").and_then(Value::as_str).is_some_and(|d| !d.trim().is_empty());
                // Types from Kubernetes itself (conditions, metadata) carry their own docs upstream.
                if !documented && !path.contains("conditions") && name != "metadata" && name != "apiVersion" && name != "kind" {
                    missing.push(p.clone());
                }
                walk(&p, child, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(path, items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in crd_json() {
        walk(crd["spec"]["names"]["kind"].as_str().unwrap(), &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], &mut missing);
    }
    assert!(missing.is_empty(), "fields without a doc comment: {missing:#?}");
}

#[test]
fn every_example_is_valid_against_the_crds() {
    let crds = crd_json();
    let files = resource_examples();
    assert!(files.len() >= 4, "examples/ holds the Tenant, Agent and CapabilityQuota examples");
    let mut kinds = Vec::new();
    for file in files {
        for obj in manifests(&file) {
            // Other kinds (the ValidatingWebhookConfiguration) are not ours to validate.
            if !obj["apiVersion"].as_str().unwrap_or_default().starts_with("cx-operator.io/") {
                continue;
            }
            let kind = obj["kind"].as_str().unwrap().to_string();
            let schema = schema_for(&crds, obj["apiVersion"].as_str().unwrap(), &kind);
            let errors = schema::validate(schema, &obj, None);
            assert!(errors.is_empty(), "{} ({kind}): {errors:#?}", file.display());
            kinds.push(kind);
        }
    }
    for kind in ["Tenant", "Agent", "CapabilityQuota"] {
        assert!(kinds.iter().any(|k| k == kind), "no example of {kind}");
    }
}

#[test]
fn the_example_check_fails_on_an_unknown_field() {
    let crds = crd_json();
    let mut tenant = manifests(&repo("examples/tenant-minimal.yaml")).remove(0);
    tenant["spec"]["admin"]["nickname"] = "al".into();
    let errors = schema::validate(schema_for(&crds, "cx-operator.io/v1alpha1", "Tenant"), &tenant, None);
    assert!(errors.iter().any(|e| e.kind == schema::FieldErrorKind::Unknown && e.path.contains("nickname")), "{errors:#?}");
}

#[test]
fn examples_deserialize_into_the_rust_types_and_plan_offline() {
    let config = Config::load(&repo("examples/operator-config.yaml")).expect("the example configuration is valid");
    let crds = crd_json();
    for file in ["examples/tenant-full.yaml", "examples/tenant-minimal.yaml"] {
        let tenant: api::Tenant = serde_yaml_ng::from_str(&std::fs::read_to_string(repo(file)).unwrap()).unwrap();
        let plan = plan::plan(&tenant, &config, &Providers::default(), jiff::Timestamp::now()).expect("the example plans");
        assert_eq!(plan.kubernetes.len(), 4);
        // The tenant administrator's Agent, as the operator would apply it, passes the CRD schema.
        let admin = &plan.kubernetes[3];
        let errors = schema::validate(schema_for(&crds, "cx-operator.io/v1alpha1", "Agent"), admin, None);
        assert!(errors.is_empty(), "{file}: the admin Agent: {errors:#?}");
    }
    for obj in manifests(&repo("examples/agents.yaml")) {
        let _: api::Agent = serde_json::from_value(obj).unwrap();
    }
    let _: api::CapabilityQuota =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo("examples/capabilityquota.yaml")).unwrap()).unwrap();
}
