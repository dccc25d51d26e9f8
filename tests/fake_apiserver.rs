mod support;

// The fake API server's own tests, all through a real `kube::Client`.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{PartialObjectMeta, Status};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;
use support::fake_apiserver::FakeApiServer;

const WAIT: Duration = Duration::from_secs(5);

async fn setup() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await;
    let client = server.client().await;
    (server, client)
}

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object deserializes")
}

fn api_error(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, data: Value) -> ConfigMap {
    from(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}))
}

/// Polls `check` until it returns `Some`, for at most five seconds.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let poll = async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, poll).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    matches!(api.get_opt(name).await, Ok(None))
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer", "minimum": 1, "default": 3},
                            "color": {"type": "string", "enum": ["red", "blue"]},
                            "ports": {
                                "type": "array",
                                "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["name"],
                                "items": {"type": "object", "required": ["name"], "properties": {
                                    "name": {"type": "string"},
                                    "port": {"type": "integer"},
                                }},
                            },
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"},
                            "conditions": {
                                "type": "array",
                                "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["type"],
                                "items": {"type": "object", "required": ["type", "status"], "properties": {
                                    "type": {"type": "string"},
                                    "status": {"type": "string"},
                                    "reason": {"type": "string"},
                                }},
                            },
                        }},
                    },
                }},
            }],
        },
    })
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets")
}

async fn install_widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &from(widget_crd())).await.expect("CRD is accepted");
    Api::namespaced_with(client.clone(), "default", &widget_resource())
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    from(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}))
}

fn managed_entry(obj: &impl Resource, manager: &str, operation: &str) -> Option<Value> {
    obj.meta()
        .managed_fields
        .as_ref()?
        .iter()
        .find(|e| e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(operation))
        .and_then(|e| e.fields_v1.as_ref().map(|f| f.0.clone()))
}

#[tokio::test]
async fn create_get_replace_delete_with_real_status_bodies() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms.create(&PostParams::default(), &cm("a", json!({"k": "v"}))).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv: u64 = created.resource_version().unwrap().parse().unwrap();
    assert!(rv > 0);

    let dup = api_error(cms.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");
    let details = dup.details.unwrap();
    assert_eq!((details.name.as_str(), details.kind.as_str()), ("a", "configmaps"));

    let missing = api_error(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    assert_eq!(missing.details.unwrap().kind, "configmaps");

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms.replace("a", &PostParams::default(), &changed).await.unwrap();
    assert!(replaced.resource_version().unwrap().parse::<u64>().unwrap() > rv);
    assert_eq!(replaced.data.unwrap()["k"], "w");

    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    let status = deleted.right().expect("a finished delete answers with a Status");
    assert_eq!(status.details.unwrap().name, "a");
    assert!(gone(&cms, "a").await);
    server.shutdown().await;
}

#[tokio::test]
async fn missing_and_terminating_namespaces_refuse_creates() {
    let (_server, client) = setup().await;
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = api_error(nowhere.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((err.code, err.message.as_str()), (404, "namespaces \"nowhere\" not found"));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &from(json!({"metadata": {"name": "doomed"}}))).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    let err = api_error(cms.create(&PostParams::default(), &cm("late", json!({}))).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(err.message.contains("because it is being terminated"), "{}", err.message);
}

#[tokio::test]
async fn names_are_validated_and_generated() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let err = api_error(cms.create(&PostParams::default(), &cm("Bad_Name", json!({}))).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let generated: ConfigMap = from(json!({"metadata": {"generateName": "gen-"}}));
    let created = cms.create(&PostParams::default(), &generated).await.unwrap();
    let name = created.name_any();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn stale_resource_versions_conflict() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let first = cms.create(&PostParams::default(), &cm("a", json!({"n": "1"}))).await.unwrap();
    let mut update = first.clone();
    update.data = Some([("n".to_string(), "2".to_string())].into());
    cms.replace("a", &PostParams::default(), &update).await.unwrap();
    let err = api_error(cms.replace("a", &PostParams::default(), &update).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("the object has been modified"), "{}", err.message);

    let stale = json!({"metadata": {"resourceVersion": first.resource_version()}, "data": {"n": "3"}});
    let err = api_error(cms.patch("a", &PatchParams::default(), &Patch::Merge(stale)).await.unwrap_err());
    assert_eq!(err.code, 409);

    let widgets = install_widgets(&client).await;
    let mut w = widgets.create(&PostParams::default(), &widget("w", json!({}))).await.unwrap();
    w.metadata.resource_version = None;
    let err = api_error(widgets.replace("w", &PostParams::default(), &w).await.unwrap_err());
    assert_eq!(err.code, 422, "custom resources need a resourceVersion to update");
}

#[tokio::test]
async fn generation_moves_only_with_spec() {
    let (_server, client) = setup().await;
    let widgets = install_widgets(&client).await;
    let w = widgets.create(&PostParams::default(), &widget("w", json!({"color": "red"}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let w = widgets.patch("w", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1), "metadata changes keep the generation");
    let w = widgets.patch_status("w", &pp, &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1), "status changes keep the generation");
    let w = widgets.patch("w", &pp, &Patch::Merge(json!({"spec": {"color": "blue"}}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_subresource_isolates_status() {
    let (_server, client) = setup().await;
    let widgets = install_widgets(&client).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"color": "red"}))).await.unwrap();
    let pp = PatchParams::default();
    let w = widgets.patch("w", &pp, &Patch::Merge(json!({"spec": {"color": "blue"}, "status": {"phase": "Sneaky"}}))).await.unwrap();
    assert_eq!(w.data["spec"]["color"], "blue");
    assert!(w.data.get("status").is_none(), "the main resource ignores status: {:?}", w.data);

    let w = widgets.patch_status("w", &pp, &Patch::Merge(json!({"spec": {"color": "red"}, "status": {"phase": "Ready"}}))).await.unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["spec"]["color"], "blue", "the status subresource ignores spec");
}

#[tokio::test]
async fn every_patch_type_applies() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("a", json!({"x": "1", "y": "2"}))).await.unwrap();
    let pp = PatchParams::default();
    let merged = cms.patch("a", &pp, &Patch::Merge(json!({"data": {"x": null, "z": "3"}}))).await.unwrap();
    assert_eq!(merged.data.unwrap(), [("y".into(), "2".into()), ("z".into(), "3".into())].into());

    let ops = from(json!([{"op": "replace", "path": "/data/y", "value": "9"}]));
    let patched = cms.patch("a", &pp, &Patch::Json::<()>(ops)).await.unwrap();
    assert_eq!(patched.data.unwrap()["y"], "9");
    let failing = from(json!([{"op": "test", "path": "/data/y", "value": "0"}]));
    let err = api_error(cms.patch("a", &pp, &Patch::Json::<()>(failing)).await.unwrap_err());
    assert_eq!(err.code, 422);

    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = from(json!({
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [
                {"name": "a", "image": "a:1"},
                {"name": "b", "image": "b:1"},
            ]}},
        },
    }));
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}});
    let d = deployments.patch("d", &pp, &Patch::Strategic(smp)).await.unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    let images: Vec<_> = containers.iter().map(|c| c.image.clone().unwrap()).collect();
    assert_eq!(images, ["a:1", "b:2"], "strategic merge merges containers by name");

    let widgets = install_widgets(&client).await;
    widgets.create(&PostParams::default(), &widget("w", json!({}))).await.unwrap();
    let err = api_error(widgets.patch("w", &pp, &Patch::Strategic(json!({"spec": {}}))).await.unwrap_err());
    assert_eq!(err.code, 415, "custom resources refuse strategic merge patches");
}

#[tokio::test]
async fn server_side_apply_tracks_field_ownership() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let alice = PatchParams::apply("alice");
    let applied = cms
        .patch("a", &alice, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "1", "y": "2"}})))
        .await
        .unwrap();
    assert_eq!(managed_entry(&applied, "alice", "Apply"), Some(json!({"f:data": {"f:x": {}, "f:y": {}}})));

    let reapplied =
        cms.patch("a", &alice, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "1"}}))).await.unwrap();
    assert_eq!(reapplied.data.clone().unwrap(), [("x".into(), "1".into())].into(), "y is pruned");

    let bob = PatchParams::apply("bob");
    let err = api_error(
        cms.patch("a", &bob, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "2"}}))).await.unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"alice\": .data.x");
    let cause = &err.details.unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".data.x"));

    let shared = cms.patch("a", &bob, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "1"}}))).await.unwrap();
    assert!(managed_entry(&shared, "bob", "Apply").is_some(), "same value: shared ownership");

    let forced = cms
        .patch("a", &bob.clone().force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "3"}})))
        .await
        .unwrap();
    assert_eq!(forced.data.clone().unwrap()["x"], "3");
    assert_eq!(managed_entry(&forced, "alice", "Apply"), None, "alice lost her only field");

    let rv = forced.resource_version();
    let again = cms
        .patch("a", &bob.clone().force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "3"}})))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), rv, "a no-op apply writes nothing");

    let updated = cms
        .patch("a", &PatchParams { field_manager: Some("carol".into()), ..Default::default() }, &Patch::Merge(json!({"data": {"x": "4"}})))
        .await
        .unwrap();
    assert_eq!(managed_entry(&updated, "carol", "Update"), Some(json!({"f:data": {"f:x": {}}})));
    let err = api_error(
        cms.patch("a", &bob, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "3"}}))).await.unwrap_err(),
    );
    assert!(err.message.contains("conflict with \"carol\" using v1"), "{}", err.message);
}

#[tokio::test]
async fn apply_keys_list_items_and_creates() {
    let (_server, client) = setup().await;
    let widgets = install_widgets(&client).await;
    let config =
        |ports: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"ports": ports}});
    let w = widgets.patch("w", &PatchParams::apply("one"), &Patch::Apply(config(json!([{"name": "http", "port": 80}])))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1), "apply created the object");
    let fields = managed_entry(&w, "one", "Apply").unwrap();
    assert_eq!(fields, json!({"f:spec": {"f:ports": {"k:{\"name\":\"http\"}": {".": {}, "f:name": {}, "f:port": {}}}}}));
    let w = widgets.patch("w", &PatchParams::apply("two"), &Patch::Apply(config(json!([{"name": "grpc", "port": 90}])))).await.unwrap();
    let names: Vec<_> = w.data["spec"]["ports"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, [json!("http"), json!("grpc")], "keyed items from two managers merge");
}

#[tokio::test]
async fn finalizers_hold_deleted_objects() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = pending.left().expect("a pending delete answers with the object");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    assert!(cms.get("held").await.is_ok());

    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let err = api_error(cms.patch("held", &PatchParams::default(), &Patch::Merge(add)).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("no new finalizers can be added"), "{}", err.message);

    let rv = cms.get("held").await.unwrap().resource_version().unwrap();
    let mut events = cms.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    let event = tokio::time::timeout(WAIT, events.try_next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Deleted(_)), "{event:?}");
    assert!(gone(&cms, "held").await);
}

fn owned_cm(name: &str, owners: &[(&str, &str, &str, &str)], block: bool) -> ConfigMap {
    let refs: Vec<Value> = owners
        .iter()
        .map(|(api_version, kind, owner, uid)| {
            json!({"apiVersion": api_version, "kind": kind, "name": owner, "uid": uid, "blockOwnerDeletion": block})
        })
        .collect();
    from(json!({"metadata": {"name": name, "ownerReferences": refs}}))
}

#[tokio::test]
async fn garbage_collector_deletes_orphaned_dependents() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let a = cms.create(&pp, &cm("owner-a", json!({}))).await.unwrap();
    let b = cms.create(&pp, &cm("owner-b", json!({}))).await.unwrap();
    let (ua, ub) = (a.uid().unwrap(), b.uid().unwrap());
    cms.create(&pp, &owned_cm("only-a", &[("v1", "ConfigMap", "owner-a", &ua)], false)).await.unwrap();
    cms.create(&pp, &owned_cm("a-and-b", &[("v1", "ConfigMap", "owner-a", &ua), ("v1", "ConfigMap", "owner-b", &ub)], false))
        .await
        .unwrap();
    cms.delete("owner-a", &DeleteParams::default()).await.unwrap();
    eventually("only-a to be collected", || async { gone(&cms, "only-a").await.then_some(()) }).await;
    let survivor = eventually("a-and-b to lose its dangling reference", || async {
        let c = cms.get("a-and-b").await.ok()?;
        (c.owner_references().len() == 1).then_some(c)
    })
    .await;
    assert_eq!(survivor.owner_references()[0].uid, ub);

    let roles: Api<ClusterRole> = Api::all(client.clone());
    let role = roles.create(&pp, &from(json!({"metadata": {"name": "cluster-owner"}}))).await.unwrap();
    let uid = role.uid().unwrap();
    cms.create(&pp, &owned_cm("of-cluster", &[("rbac.authorization.k8s.io/v1", "ClusterRole", "cluster-owner", &uid)], false))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get("of-cluster").await.is_ok(), "a live cluster-scoped owner keeps its dependent");
    roles.delete("cluster-owner", &DeleteParams::default()).await.unwrap();
    eventually("of-cluster to be collected", || async { gone(&cms, "of-cluster").await.then_some(()) }).await;
}

#[tokio::test]
async fn foreground_and_orphan_propagation() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let owner = cms.create(&pp, &cm("fg-owner", json!({}))).await.unwrap();
    let uid = owner.uid().unwrap();
    let mut blocker = owned_cm("blocker", &[("v1", "ConfigMap", "fg-owner", &uid)], true);
    blocker.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&pp, &blocker).await.unwrap();
    let pending = cms.delete("fg-owner", &DeleteParams::foreground()).await.unwrap().left().unwrap();
    assert!(pending.finalizers().contains(&"foregroundDeletion".to_string()));
    eventually("the blocker to be marked deleted", || async { cms.get("blocker").await.ok()?.metadata.deletion_timestamp.map(|_| ()) })
        .await;
    assert!(cms.get("fg-owner").await.is_ok(), "the owner waits for its blocking dependent");
    cms.patch("blocker", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("the owner to go", || async { gone(&cms, "fg-owner").await.then_some(()) }).await;

    let owner = cms.create(&pp, &cm("orphan-owner", json!({}))).await.unwrap();
    let uid = owner.uid().unwrap();
    cms.create(&pp, &owned_cm("orphan", &[("v1", "ConfigMap", "orphan-owner", &uid)], false)).await.unwrap();
    cms.delete("orphan-owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the orphaning owner to go", || async { gone(&cms, "orphan-owner").await.then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let orphan = cms.get("orphan").await.expect("the dependent survives");
    assert!(orphan.owner_references().is_empty());
}

#[tokio::test]
async fn namespace_deletion_cascades() {
    let (_server, client) = setup().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.create(&PostParams::default(), &from(json!({"metadata": {"name": "tenant"}}))).await.unwrap();
    assert_eq!(ns.status.as_ref().unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(ns.labels()["kubernetes.io/metadata.name"], "tenant");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tenant");
    cms.create(&PostParams::default(), &cm("plain", json!({}))).await.unwrap();
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();

    let terminating = namespaces.delete("tenant", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(terminating.spec.unwrap().finalizers, Some(vec!["kubernetes".to_string()]));
    eventually("plain to go", || async { gone(&cms, "plain").await.then_some(()) }).await;
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(namespaces.get("tenant").await.is_ok(), "the namespace waits for its content");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("the namespace to go", || async { gone(&namespaces, "tenant").await.then_some(()) }).await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ] {
        let obj: ConfigMap = from(json!({"metadata": {"name": name, "labels": labels}}));
        cms.create(&PostParams::default(), &obj).await.unwrap();
    }
    let names = |selector: &'static str| {
        let cms = cms.clone();
        async move {
            let list = cms.list(&ListParams::default().labels(selector)).await.unwrap();
            list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["a", "b"]);
    assert_eq!(names("app==web,tier!=front").await, ["b"]);
    assert_eq!(names("app in (db, web),tier notin (back)").await, ["a", "c"]);
    assert_eq!(names("tier").await, ["a", "b"]);
    assert_eq!(names("!app").await, ["d"]);

    let by_name = cms.list(&ListParams::default().fields("metadata.name=c")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let not_name = cms.list(&ListParams::default().fields("metadata.name!=c,metadata.namespace=default")).await.unwrap();
    assert_eq!(not_name.items.len(), 3);
    let err = api_error(cms.list(&ListParams::default().fields("data.x=1")).await.unwrap_err());
    assert_eq!(err.code, 400);
    assert!(err.message.contains("field label not supported"), "{}", err.message);

    let widgets = install_widgets(&client).await;
    widgets.create(&PostParams::default(), &widget("r", json!({"color": "red"}))).await.unwrap();
    widgets.create(&PostParams::default(), &widget("b", json!({"color": "blue"}))).await.unwrap();
    let red = widgets.list(&ListParams::default().fields("spec.color=red")).await.unwrap();
    assert_eq!(red.items.iter().map(|w| w.name_any()).collect::<Vec<_>>(), ["r"], "selectableFields work");
}

#[tokio::test]
async fn lists_paginate_with_continue_tokens() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), json!({}))).await.unwrap();
    }
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let mut names: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = cms.list(&ListParams::default().limit(2).continue_token(&t)).await.unwrap();
        assert_eq!(page.metadata.resource_version, first.metadata.resource_version);
        names.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_;
    }
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    let err = api_error(cms.list(&ListParams::default().continue_token("garbage!")).await.unwrap_err());
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn watches_resume_and_expire() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms.create(&PostParams::default(), &cm("w", json!({"n": "0"}))).await.unwrap();
    let from_rv = created.resource_version().unwrap();
    for n in 1..=2 {
        cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": n.to_string()}}))).await.unwrap();
    }
    let mut stream = cms.watch(&WatchParams::default().timeout(5), &from_rv).await.unwrap().boxed();
    for n in 1..=2 {
        match tokio::time::timeout(WAIT, stream.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Modified(c) => assert_eq!(c.data.unwrap()["n"], n.to_string()),
            other => panic!("expected MODIFIED, got {other:?}"),
        }
    }

    let mut initial = cms.watch(&WatchParams::default().timeout(5), "0").await.unwrap().boxed();
    let first = tokio::time::timeout(WAIT, initial.try_next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first, WatchEvent::Added(ref c) if c.name_any() == "w"), "{first:?}");

    server.set_watch_history(2);
    for n in 3..=6 {
        cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"n": n.to_string()}}))).await.unwrap();
    }
    let mut expired = cms.watch(&WatchParams::default().timeout(5), &from_rv).await.unwrap().boxed();
    match tokio::time::timeout(WAIT, expired.try_next()).await.unwrap().unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(status.message.starts_with("too old resource version"), "{}", status.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_selectors_turn_leaving_objects_into_deletes() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let labelled: ConfigMap = from(json!({"metadata": {"name": "l", "labels": {"keep": "yes"}}}));
    let created = cms.create(&PostParams::default(), &labelled).await.unwrap();
    let rv = created.resource_version().unwrap();
    let mut stream = cms.watch(&WatchParams::default().labels("keep=yes").timeout(5), &rv).await.unwrap().boxed();
    cms.patch("l", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"keep": "no"}}}))).await.unwrap();
    let event = tokio::time::timeout(WAIT, stream.try_next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Deleted(_)), "{event:?}");
}

#[tokio::test]
async fn watcher_recovers_from_410_by_relisting() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let watched: ConfigMap = from(json!({"metadata": {"name": "watched", "labels": {"watch": "me"}}}));
    cms.create(&PostParams::default(), &watched).await.unwrap();
    let config = watcher::Config::default().labels("watch=me").timeout(1).disable_bookmarks();
    let mut stream = watcher(cms.clone(), config).boxed();
    let mut inits = 0;
    let mut saw_410 = false;
    let run = async {
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::InitDone)) => {
                    inits += 1;
                    if inits == 1 {
                        // Unwatched changes move the history past the watcher's resourceVersion.
                        server.set_watch_history(1);
                        for i in 0..3 {
                            cms.create(&PostParams::default(), &cm(&format!("noise-{i}"), json!({}))).await.unwrap();
                        }
                    } else {
                        return;
                    }
                }
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => saw_410 = true,
                Some(_) => {}
                None => panic!("the watcher ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run).await.expect("the watcher relists");
    assert!(saw_410, "the watcher saw the 410");
}

#[tokio::test]
async fn metadata_requests_and_streaming_lists() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("m", json!({"secret": "x"}))).await.unwrap();
    let meta = cms.get_metadata("m").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("m"));
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);

    let metadata_only: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    let mut stream = watcher(metadata_only, watcher::Config::default()).boxed();
    let first_apply = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(watcher::Event::InitApply(m))) = stream.next().await {
                return m;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first_apply.metadata.name.as_deref(), Some("m"));

    let mut streaming = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let names = tokio::time::timeout(WAIT, async {
        let mut names = Vec::new();
        loop {
            match streaming.next().await {
                Some(Ok(watcher::Event::InitApply(c))) => names.push(c.name_any()),
                Some(Ok(watcher::Event::InitDone)) => return names,
                Some(Err(e)) => panic!("streaming list failed: {e}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(names, ["m"]);
}

#[tokio::test]
async fn crds_register_kinds_and_validate_names() {
    let (_server, client) = setup().await;
    let widgets = install_widgets(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    for kind in ["NamesAccepted", "Established"] {
        assert!(conditions.iter().any(|c| c.type_ == kind && c.status == "True"), "{kind}");
    }
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (found, caps) = discovery.resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget")).expect("discovery lists the new kind");
    assert_eq!(found.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(discovery.resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")).is_some());

    widgets.create(&PostParams::default(), &widget("w", json!({"color": "red"}))).await.unwrap();

    let mut bad = widget_crd();
    bad["metadata"]["name"] = json!("wrong.example.com");
    let err = api_error(crds.create(&PostParams::default(), &from(bad)).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.details.unwrap().causes.iter().any(|c| c.field == "metadata.name"));

    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    eventually("the CRD to go", || async { gone(&crds, "widgets.example.com").await.then_some(()) }).await;
    let err = api_error(widgets.get("w").await.unwrap_err());
    assert_eq!(err.code, 404, "the kind is no longer served");
}

#[tokio::test]
async fn custom_resources_are_defaulted_validated_and_pruned() {
    let (_server, client) = setup().await;
    let widgets = install_widgets(&client).await;
    let w = widgets.create(&PostParams::default(), &widget("d", json!({"color": "red"}))).await.unwrap();
    assert_eq!(w.data["spec"]["size"], 3, "schema defaults apply");

    let err = api_error(widgets.create(&PostParams::default(), &widget("bad", json!({"color": "green", "size": 0}))).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = err.details.unwrap().causes.into_iter().map(|c| c.field).collect();
    assert!(fields.contains(&"spec.color".to_string()), "{fields:?}");
    assert!(fields.contains(&"spec.size".to_string()), "{fields:?}");

    let w = widgets.create(&PostParams::default(), &widget("p", json!({"bogus": true}))).await.unwrap();
    assert!(w.data["spec"].get("bogus").is_none(), "unknown fields are pruned");

    let metadata = json!({"metadata": {"labels": {"a": "b"}, "annotations": {"x/y": "z"}, "finalizers": ["example.com/f"]}});
    let strict_merge = PatchParams::default().validation_strict();
    let w = widgets.patch("p", &strict_merge, &Patch::Merge(metadata)).await.expect("metadata is never an unknown field");
    assert_eq!(w.finalizers(), ["example.com/f".to_string()]);
    let strict = PatchParams::apply("strict").validation_strict();
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"bogus": 1}});
    let err = api_error(widgets.patch("s", &strict, &Patch::Apply(config)).await.unwrap_err());
    assert_eq!(err.code, 400);
    assert!(err.message.contains("unknown field \"spec.bogus\""), "{}", err.message);
}

#[tokio::test]
async fn leases_support_leader_election() {
    let (_server, client) = setup().await;
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let lease: Lease = from(json!({"metadata": {"name": "manual"}, "spec": {"holderIdentity": "a"}}));
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("manual", &PostParams::default(), &next).await.unwrap();
    let err = api_error(leases.replace("manual", &PostParams::default(), &next).await.unwrap_err());
    assert_eq!(err.code, 409);

    let build = |identity: &str| {
        kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "leader")
            .with_namespace("default")
            .with_identity(identity)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let first = build("first").await.unwrap();
    let second = build("second").await.unwrap();
    assert!(tokio::time::timeout(WAIT, first.changed()).await.unwrap().unwrap(), "first leads");
    let contender = tokio::time::timeout(Duration::from_millis(1500), second.changed()).await;
    assert!(contender.is_err(), "second must not lead while first holds the lease");
    first.release().await.unwrap();
    let second_leads = tokio::time::timeout(Duration::from_secs(10), second.changed()).await.unwrap().unwrap();
    assert!(second_leads);
}

#[tokio::test]
async fn requests_are_counted_and_recorded() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let before = server.mutating_requests();
    cms.list(&ListParams::default()).await.unwrap();
    let _ = cms.get("missing").await;
    assert_eq!(server.mutating_requests(), before, "reads are not writes");
    cms.create(&PostParams::default(), &cm("r", json!({}))).await.unwrap();
    cms.patch("r", &PatchParams::apply("me"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})))
        .await
        .unwrap();
    cms.delete("r", &DeleteParams::default()).await.unwrap();
    assert_eq!(server.mutating_requests(), before + 3);
    let records = server.requests();
    let verbs: Vec<(&str, u16)> = records.iter().filter(|r| r.resource == "configmaps").map(|r| (r.verb.as_str(), r.status)).collect();
    assert_eq!(verbs, [("list", 200), ("get", 404), ("create", 201), ("patch", 200), ("delete", 200)]);
    let get = records.iter().find(|r| r.verb == "get" && r.resource == "configmaps").unwrap();
    assert_eq!((get.namespace.as_str(), get.name.as_str(), get.group.as_str(), get.version.as_str()), ("default", "missing", "", "v1"));
}

#[tokio::test]
async fn dry_run_and_delete_collection() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let dry = cms.create(&PostParams { dry_run: true, ..Default::default() }, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(dry.name_any(), "dry");
    assert!(gone(&cms, "dry").await, "a dry run stores nothing");

    for (name, team) in [("x", "a"), ("y", "a"), ("z", "b")] {
        let obj: ConfigMap = from(json!({"metadata": {"name": name, "labels": {"team": team}}}));
        cms.create(&PostParams::default(), &obj).await.unwrap();
    }
    let deleted = cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("team=a")).await.unwrap().left().unwrap();
    assert_eq!(deleted.items.len(), 2);
    let left: Vec<String> = cms.list(&ListParams::default()).await.unwrap().items.iter().map(|c| c.name_any()).collect();
    assert_eq!(left, ["z"]);

    let secrets: Api<Secret> = Api::default_namespaced(client);
    let secret: Secret = from(json!({"metadata": {"name": "s"}, "stringData": {"k": "hi"}}));
    let stored = secrets.create(&PostParams::default(), &secret).await.unwrap();
    assert_eq!(stored.data.unwrap()["k"].0, b"hi");
    assert!(stored.string_data.is_none());
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_works() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event as Finalizer, finalizer};
    use std::sync::Arc;
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("f", json!({}))).await.unwrap();
    let name = "example.com/cleanup";
    let ok = |_: Finalizer<ConfigMap>| async { Ok::<_, std::io::Error>(Action::await_change()) };
    let obj = Arc::new(cms.get("f").await.unwrap());
    finalizer(&cms, name, obj, ok).await.expect("the finalizer is added");
    assert_eq!(cms.get("f").await.unwrap().finalizers(), [name.to_string()]);
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let obj = Arc::new(cms.get("f").await.unwrap());
    finalizer(&cms, name, obj, ok).await.expect("the finalizer is removed");
    assert!(gone(&cms, "f").await);
}

#[tokio::test]
async fn unchanged_writes_keep_the_resource_version_and_stay_silent() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms.create(&PostParams::default(), &cm("q", json!({"a": "b"}))).await.unwrap();
    let rv = created.resource_version().unwrap();
    let mut events = cms.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    let same = cms.patch("q", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    assert_eq!(same.resource_version().unwrap(), rv);
    let replaced = cms.replace("q", &PostParams::default(), &created).await.unwrap();
    assert_eq!(replaced.resource_version().unwrap(), rv);
    let apply = PatchParams::apply("noop");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
    let first = cms.patch("q", &apply, &Patch::Apply(config.clone())).await.unwrap();
    let first_rv = first.resource_version().unwrap();
    assert_ne!(first_rv, rv, "a new manager's ownership is a write");
    let again = cms.patch("q", &apply, &Patch::Apply(config)).await.unwrap();
    assert_eq!(again.resource_version().unwrap(), first_rv);
    let event = tokio::time::timeout(WAIT, events.try_next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Modified(ref c) if c.resource_version().unwrap() == first_rv), "{event:?}");
    let silence = tokio::time::timeout(Duration::from_millis(500), events.try_next()).await;
    assert!(silence.is_err(), "no event after the no-op apply: {silence:?}");
}

async fn raw(client: &Client, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut builder = axum::http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(body.as_bytes().to_vec()).unwrap();
    match client.request_text(request).await {
        Ok(text) => (200, text),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(other) => panic!("request failed: {other}"),
    }
}

#[tokio::test]
async fn raw_http_yaml_apply_tables_and_unknown_paths() {
    let (_server, client) = setup().await;
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n";
    let path = "/api/v1/namespaces/default/configmaps/y?fieldManager=yaml-tool";
    let (code, body) = raw(&client, "PATCH", path, &[("Content-Type", "application/apply-patch+yaml")], yaml).await;
    assert_eq!(code, 200, "{body}");
    let created: ConfigMap = serde_json::from_str(&body).unwrap();
    assert_eq!(created.data.unwrap()["k"], "v");

    let agent = [("Content-Type", "application/merge-patch+json"), ("User-Agent", "my-tool/1.2 (linux)")];
    let (_, body) = raw(&client, "PATCH", "/api/v1/namespaces/default/configmaps/y", &agent, r#"{"data":{"k":"w"}}"#).await;
    let patched: ConfigMap = serde_json::from_str(&body).unwrap();
    assert!(managed_entry(&patched, "my-tool", "Update").is_some(), "the user agent names the manager");

    let table = [("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")];
    let (_, body) = raw(&client, "GET", "/api/v1/namespaces/default/configmaps", &table, "").await;
    let table: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"][0], "y");

    let (code, message) = raw(&client, "GET", "/apis/nothing.example.com/v1/things", &[], "").await;
    assert_eq!((code, message.as_str()), (404, "the server could not find the requested resource"));
    let (code, _) = raw(&client, "POST", "/api/v1/namespaces/default/configmaps/y", &[], "{}").await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn aggregated_discovery_and_built_in_defaults() {
    let (_server, client) = setup().await;
    let discovery = kube::Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let (lease, caps) = discovery.resolve_gvk(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease")).unwrap();
    assert_eq!(lease.plural, "leases");
    assert!(caps.supports_operation(kube::discovery::verbs::WATCH));

    let services: Api<k8s_openapi::api::core::v1::Service> = Api::default_namespaced(client.clone());
    let svc = services
        .create(&PostParams::default(), &from(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})))
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));

    let deployments: Api<Deployment> = Api::default_namespaced(client);
    let mismatched: Deployment = from(json!({
        "metadata": {"name": "bad"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "c"}]}},
        },
    }));
    let err = api_error(deployments.create(&PostParams::default(), &mismatched).await.unwrap_err());
    assert_eq!(err.code, 422);
    let mut good: Value = serde_json::to_value(&mismatched).unwrap();
    good["spec"]["template"]["metadata"]["labels"]["app"] = json!("x");
    let created = deployments.create(&PostParams::default(), &from(good)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
}

/// Method, path, headers, body and the expected status code.
type RawCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, u16);

#[tokio::test]
async fn malformed_requests_get_4xx_statuses() {
    let (_server, client) = setup().await;
    let json = [("Content-Type", "application/json")];
    let cases: [RawCase; 8] = [
        ("POST", "/api/v1/namespaces/default/configmaps", &json, "{not json", 400),
        ("POST", "/api/v1/namespaces/default/configmaps", &json, r#"{"metadata":{"name":"x","labels":"oops"}}"#, 400),
        ("POST", "/api/v1/namespaces/default/configmaps", &json, r#"{"kind":"Secret","metadata":{"name":"x"}}"#, 400),
        ("POST", "/api/v1/namespaces/default/configmaps", &json, "[1, 2]", 400),
        ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20b%20c", &[], "", 400),
        ("GET", "/api/v1/namespaces/default/configmaps?limit=abc", &[], "", 400),
        ("GET", "/api/v1/namespaces/default/configmaps?watch=maybe", &[], "", 400),
        ("PATCH", "/api/v1/namespaces/default/configmaps/x", &[("Content-Type", "text/plain")], "{}", 415),
    ];
    for (method, path, headers, body, code) in cases {
        let (got, message) = raw(&client, method, path, headers, body).await;
        assert_eq!(got, code, "{method} {path} {body}: {message}");
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("x", json!({}))).await.unwrap();
    let root = [("Content-Type", "application/json-patch+json")];
    let (got, _) =
        raw(&client, "PATCH", "/api/v1/namespaces/default/configmaps/x", &root, r#"[{"op":"replace","path":"","value":[1]}]"#).await;
    assert_eq!(got, 400, "a patch that replaces the object with a list is refused");
    let (got, _) = raw(&client, "PATCH", "/api/v1/namespaces/default/configmaps/x", &root, r#"[{"op":"remove","path":"/nope"}]"#).await;
    assert_eq!(got, 422);
    assert!(cms.get("x").await.is_ok(), "the server still answers");
}

#[tokio::test]
async fn kube_runtime_event_recorder_publishes_and_updates_series() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let subject = cms.create(&PostParams::default(), &cm("subject", json!({}))).await.unwrap();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "cx-test".into(), instance: None });
    let event =
        Event { type_: EventType::Normal, reason: "Synced".into(), note: Some("ok".into()), action: "Sync".into(), secondary: None };
    let reference = subject.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(list.items[0].regarding.as_ref().and_then(|r| r.name.as_deref()), Some("subject"));
}
