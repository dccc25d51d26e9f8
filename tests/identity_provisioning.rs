//! The Tenant's identity step end to end: the Tenant controller against a Kubernetes
//! API (the fake, or `CX_TEST_KUBECONFIG`) and the fake Keycloak.

mod support;

use std::time::Duration;

use cx_operator::{
    api::{
        Tenant, TenantPhase,
        conditions::{reasons, types},
    },
    provider::setup,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    fake_keycloak::FakeKeycloak,
    tenant_status::{condition, is_ready},
};

const LIMIT: Duration = Duration::from_secs(30);

/// Reads Keycloak's Admin REST API with the admin client's token.
struct Admin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Admin {
    async fn new(keycloak: &FakeKeycloak) -> Admin {
        Admin { http: reqwest::Client::new(), url: keycloak.url(), token: keycloak.admin_token().await }
    }

    async fn realm(&self, name: &str) -> Option<Value> {
        let response = self.http.get(format!("{}/admin/realms/{name}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        if response.status() == 404 { None } else { Some(response.json().await.unwrap()) }
    }

    async fn create_realm(&self, name: &str) {
        let response = self
            .http
            .post(format!("{}/admin/realms", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"realm": name, "enabled": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

async fn identity_config(cluster: &TestCluster, keycloak: &FakeKeycloak) -> cx_operator::config::Config {
    let data = [("clientId", keycloak.admin_client_id()), ("clientSecret", keycloak.admin_client_secret())];
    cluster.put_platform_secret("keycloak-admin", &data).await;
    cluster.config_with(&format!(
        "identity: {{url: '{}', credentialsSecret: keycloak-admin}}\noperatorNamespace: {}\ningress: {{tls: {{enabled: false}}}}\n",
        keycloak.url(),
        cluster.platform_namespace()
    ))
}

#[tokio::test]
async fn a_realm_follows_its_tenant() {
    let cluster = TestCluster::start().await;
    let keycloak = FakeKeycloak::start().await;
    let config = identity_config(&cluster, &keycloak).await;
    let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up");
    let (op, _) = cluster.operator(config, providers, "a").await;
    let admin = Admin::new(&keycloak).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());

    let mut spec = TestCluster::minimal_spec();
    spec["locale"] = json!({"language": "de", "timeZone": "Europe/Berlin"});
    let tenant = cluster.tenant("realm", spec);
    let id = tenant.name_any();
    cluster.create_tenant(&tenant).await;
    let t = wait_for(&api, &id, LIMIT, "Ready", is_ready).await;
    assert_eq!(condition(&t, types::REALM_READY).unwrap(), ("True".into(), reasons::PROVISIONED.into()));
    assert_eq!(t.status.as_ref().unwrap().realm.as_deref(), Some(id.as_str()));
    let realm = admin.realm(&id).await.expect("the realm exists");
    assert_eq!(realm["enabled"], true);
    assert_eq!(realm["displayName"], "Acme");
    assert_eq!(realm["defaultLocale"], "de");
    assert_eq!(realm["bruteForceProtected"], true);
    assert_eq!(realm["failureFactor"], 5);

    // An unchanged realm gets no write on the next reconcile.
    keycloak.clear_requests();
    let before = op.metrics.reconcile_count("tenant");
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}}))).await.unwrap();
    wait_until("another reconcile", LIMIT, || async { op.metrics.reconcile_count("tenant") > before }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        keycloak.writes().is_empty(),
        "writes to an unchanged realm: {:?}",
        keycloak.writes().iter().map(|r| &r.path).collect::<Vec<_>>()
    );

    // Disable and enable.
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}}))).await.unwrap();
    wait_for(&api, &id, LIMIT, "Disabled", |t| t.status.as_ref().and_then(|s| s.phase) == Some(TenantPhase::Disabled)).await;
    assert_eq!(admin.realm(&id).await.unwrap()["enabled"], false);
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}}))).await.unwrap();
    wait_for(&api, &id, LIMIT, "Ready again", is_ready).await;
    assert_eq!(admin.realm(&id).await.unwrap()["enabled"], true);

    // Deletion with the default policy removes the realm.
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &id, LIMIT).await;
    assert!(admin.realm(&id).await.is_none(), "deletionPolicy Delete removes the realm");

    // Retain keeps it.
    let mut spec = TestCluster::minimal_spec();
    spec["deletionPolicy"] = json!("Retain");
    let kept = cluster.tenant("kept", spec);
    cluster.create_tenant(&kept).await;
    wait_for(&api, &kept.name_any(), LIMIT, "Ready", is_ready).await;
    api.delete(&kept.name_any(), &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &kept.name_any(), LIMIT).await;
    assert!(admin.realm(&kept.name_any()).await.is_some(), "deletionPolicy Retain keeps the realm");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_foreign_realm_is_never_adopted_and_an_outage_is_survived() {
    let cluster = TestCluster::start().await;
    let keycloak = FakeKeycloak::start().await;
    let config = identity_config(&cluster, &keycloak).await;
    let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up");
    let (op, _) = cluster.operator(config, providers, "a").await;
    let admin = Admin::new(&keycloak).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());

    let foreign = cluster.tenant("foreign", TestCluster::minimal_spec());
    admin.create_realm(&foreign.name_any()).await;
    cluster.create_tenant(&foreign).await;
    let t = wait_for(&api, &foreign.name_any(), LIMIT, "Conflict", |t| {
        condition(t, types::REALM_READY).is_some_and(|c| c.1 == reasons::CONFLICT)
    })
    .await;
    assert_eq!(t.status.unwrap().phase, Some(TenantPhase::Failed));
    api.delete(&foreign.name_any(), &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &foreign.name_any(), LIMIT).await;
    assert!(admin.realm(&foreign.name_any()).await.is_some(), "a realm the tenant does not own is never deleted");

    keycloak.set_down(true);
    let tenant = cluster.tenant("outage", TestCluster::minimal_spec());
    cluster.create_tenant(&tenant).await;
    let t =
        wait_for(&api, &tenant.name_any(), LIMIT, "RealmReady False", |t| condition(t, types::REALM_READY).is_some_and(|c| c.0 == "False"))
            .await;
    assert_eq!(condition(&t, types::REALM_READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    keycloak.set_down(false);
    wait_for(&api, &tenant.name_any(), LIMIT, "Ready after recovery", is_ready).await;
    assert!(admin.realm(&tenant.name_any()).await.is_some());
    op.stop().await.unwrap();
    cluster.cleanup().await;
}
