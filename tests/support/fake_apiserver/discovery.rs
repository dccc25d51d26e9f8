//! `/version`, `/api`, `/apis`, group and resource discovery, legacy and aggregated.

use super::kinds::{ResourceType, version_priority};
use super::store::State;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// group -> versions (preferred first) -> types served at that version.
fn groups(st: &State) -> BTreeMap<String, Vec<(String, Vec<&ResourceType>)>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<&ResourceType>>> = BTreeMap::new();
    for rt in st.types.values() {
        for v in &rt.versions {
            out.entry(rt.group.clone()).or_default().entry(v.name.clone()).or_default().push(rt.as_ref());
        }
    }
    out.into_iter()
        .map(|(g, versions)| {
            let mut list: Vec<(String, Vec<&ResourceType>)> = versions.into_iter().collect();
            list.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.0)));
            (g, list)
        })
        .collect()
}

fn address(addr: &str) -> Value {
    json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}])
}

/// `GET /api`.
pub(crate) fn core_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address(addr)})
}

fn group_json(name: &str, versions: &[(String, Vec<&ResourceType>)]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(|(v, _)| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(|(v, _)| gv(v)).unwrap_or(Value::Null),
    })
}

/// `GET /apis`.
pub(crate) fn group_list(st: &State) -> Value {
    let groups: Vec<Value> = groups(st).iter().filter(|(g, _)| !g.is_empty()).map(|(g, versions)| group_json(g, versions)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub(crate) fn group(st: &State, name: &str) -> Option<Value> {
    let all = groups(st);
    let versions = all.get(name).filter(|_| !name.is_empty())?;
    let mut g = group_json(name, versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn resource_entries(rt: &ResourceType) -> Vec<Value> {
    let mut main = json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": rt.verbs(),
    });
    if !rt.short_names.is_empty() {
        main["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        main["categories"] = json!(rt.categories);
    }
    let mut out = vec![main];
    for (sub, verbs) in rt.subresources() {
        out.push(json!({
            "name": format!("{}/{sub}", rt.plural),
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs,
        }));
    }
    out
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub(crate) fn resource_list(st: &State, group: &str, version: &str) -> Option<Value> {
    let all = groups(st);
    let (_, types) = all.get(group)?.iter().find(|(v, _)| v == version)?;
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = types.iter().flat_map(|rt| resource_entries(rt)).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn aggregated_group(name: &str, versions: &[(String, Vec<&ResourceType>)]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(v, types)| {
            let resources: Vec<Value> = types
                .iter()
                .map(|rt| {
                    let response_kind = json!({"group": rt.group, "version": v, "kind": rt.kind});
                    let mut r = json!({
                        "resource": rt.plural,
                        "responseKind": response_kind,
                        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": rt.singular,
                        "verbs": rt.verbs(),
                    });
                    if !rt.short_names.is_empty() {
                        r["shortNames"] = json!(rt.short_names);
                    }
                    if !rt.categories.is_empty() {
                        r["categories"] = json!(rt.categories);
                    }
                    let subs: Vec<Value> = rt
                        .subresources()
                        .into_iter()
                        .map(|(sub, verbs)| json!({"subresource": sub, "responseKind": response_kind, "verbs": verbs}))
                        .collect();
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": name, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery of `/api` (core only) or `/apis` (every named group).
pub(crate) fn aggregated(st: &State, core: bool) -> Value {
    let items: Vec<Value> =
        groups(st).iter().filter(|(g, _)| g.is_empty() == core).map(|(g, versions)| aggregated_group(g, versions)).collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
