//! The Tenant's observability step end to end: the Tenant controller against a
//! Kubernetes API (the fake, or `CX_TEST_KUBECONFIG`) and the fake Grafana, with the
//! providers built by `setup::from_config` from the token Secret.

mod support;

use std::time::Duration;

use cx_operator::{
    api::{
        Tenant,
        conditions::{self, reasons, types},
    },
    operator::Operator,
    provider::setup,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    fake_grafana::FakeGrafana,
    tenant_status::{condition, is_ready},
};

const LIMIT: Duration = Duration::from_secs(30);

/// The data source of the fake.
const UID: &str = "cx-tenants";

/// A host someone else put into the data source.
const FOREIGN: &str = "https://status.example.com";

fn recorded_host(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.grafana.as_ref()?.allowed_host.clone()
}

/// A test cluster, a fake Grafana with the shared data source (holding a host someone
/// else added), and an operator configured for it with the token in a Secret of the
/// operator namespace, as an admin would set it up.
async fn start() -> (TestCluster, FakeGrafana, Operator, Api<Tenant>) {
    let cluster = TestCluster::start().await;
    let grafana = FakeGrafana::start().await;
    grafana.add_data_source(UID, &[FOREIGN], false);
    cluster.put_platform_secret("grafana-token", &[("token", grafana.token())]).await;
    let config = cluster.config_with(&format!(
        "grafana: {{url: '{}', credentialsSecret: grafana-token, dataSourceUid: {UID}}}\noperatorNamespace: {}\ningress: {{tls: {{enabled: false}}}}\n",
        grafana.url(),
        cluster.platform_namespace()
    ));
    let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up");
    let (op, _) = cluster.operator(config, providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    (cluster, grafana, op, api)
}

#[tokio::test]
async fn the_tenant_url_follows_its_tenant_in_grafana() {
    let (cluster, grafana, op, api) = start().await;

    let tenant = cluster.tenant("dash", TestCluster::minimal_spec());
    let id = tenant.name_any();
    let host = format!("https://{id}.cx.test");
    cluster.create_tenant(&tenant).await;
    let t = wait_for(&api, &id, LIMIT, "Ready", is_ready).await;
    assert_eq!(condition(&t, types::GRAFANA_READY).unwrap(), ("True".into(), reasons::PROVISIONED.into()));
    assert_eq!(recorded_host(&t).as_deref(), Some(host.as_str()));
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string(), host.clone()]);

    // An unchanged tenant costs Grafana no write. Reconciles of one object never
    // overlap, so once the second poke's reconcile reads Grafana, the first one is
    // complete.
    grafana.clear_requests();
    for poke in 1..=2 {
        api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"poke": poke.to_string()}}}))).await.unwrap();
        wait_until("a reconcile that reads the data source", LIMIT, || async { grafana.requests().len() >= poke }).await;
    }
    assert!(grafana.writes().is_empty(), "writes for an unchanged tenant: {:?}", grafana.writes());

    // A new FQDN moves the host.
    let moved = format!("{id}-new.cx.test");
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"domain": {"fqdn": moved}}}))).await.unwrap();
    let new_host = format!("https://{moved}");
    wait_for(&api, &id, LIMIT, "the new host recorded", |t| recorded_host(t).as_deref() == Some(new_host.as_str())).await;
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string(), new_host.clone()]);

    // Deletion with the default policy removes the host, and only it.
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &id, LIMIT).await;
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string()]);

    // Retain keeps it.
    let mut spec = TestCluster::minimal_spec();
    spec["deletionPolicy"] = json!("Retain");
    let kept = cluster.tenant("kept", spec);
    cluster.create_tenant(&kept).await;
    wait_for(&api, &kept.name_any(), LIMIT, "Ready", is_ready).await;
    api.delete(&kept.name_any(), &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &kept.name_any(), LIMIT).await;
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string(), format!("https://{}.cx.test", kept.name_any())]);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_grafana_outage_is_reported_and_survived() {
    let (cluster, grafana, op, api) = start().await;

    grafana.set_down(true);
    let tenant = cluster.tenant("outage", TestCluster::minimal_spec());
    let id = tenant.name_any();
    cluster.create_tenant(&tenant).await;
    let t = wait_for(&api, &id, LIMIT, "GrafanaReady False", |t| condition(t, types::GRAFANA_READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&t, types::GRAFANA_READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    assert!(!is_ready(&t));
    grafana.set_down(false);
    let t = wait_for(&api, &id, LIMIT, "Ready after recovery", is_ready).await;
    assert_eq!(condition(&t, types::GRAFANA_READY).unwrap(), ("True".into(), reasons::PROVISIONED.into()));
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string(), format!("https://{id}.cx.test")]);

    // An FQDN changed while Grafana is down: the status already names the new host, but
    // status.grafana still records the old entry, which goes once Grafana is back.
    grafana.set_down(true);
    let moved = format!("{id}-moved.cx.test");
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"domain": {"fqdn": moved}}}))).await.unwrap();
    let t = wait_for(&api, &id, LIMIT, "the new FQDN with GrafanaReady False", |t| {
        t.status.as_ref().and_then(|s| s.fqdn.as_deref()) == Some(moved.as_str())
            && condition(t, types::GRAFANA_READY).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(recorded_host(&t), Some(format!("https://{id}.cx.test")), "the entry in Grafana is still the old one");
    grafana.set_down(false);
    wait_for(&api, &id, LIMIT, "the moved host recorded", |t| recorded_host(t) == Some(format!("https://{moved}"))).await;
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string(), format!("https://{moved}")]);

    // A deletion while Grafana is down waits behind the finalizer, then completes.
    grafana.set_down(true);
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_until("a failed removal attempt", LIMIT, || async { grafana.requests().iter().any(|r| r.status == 503) }).await;
    assert!(api.get_opt(&id).await.unwrap().is_some(), "the finalizer holds the deletion while Grafana is down");
    assert_eq!(grafana.allowed_hosts(UID).len(), 2, "nothing was removed yet");
    grafana.set_down(false);
    wait_gone(&api, &id, LIMIT).await;
    assert_eq!(grafana.allowed_hosts(UID), [FOREIGN.to_string()]);

    // A data source that does not exist is a configuration problem, not an outage.
    grafana.remove_data_source(UID);
    let missing = cluster.tenant("missing", TestCluster::minimal_spec());
    cluster.create_tenant(&missing).await;
    let t = wait_for(&api, &missing.name_any(), LIMIT, "GrafanaReady False", |t| {
        condition(t, types::GRAFANA_READY).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(condition(&t, types::GRAFANA_READY).unwrap().1, reasons::INVALID_SPEC);
    let message = conditions::find(&t.status.as_ref().unwrap().conditions, types::GRAFANA_READY).unwrap().message.clone();
    assert!(message.contains("dataSourceUid") && !message.contains(grafana.token()), "{message}");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}
