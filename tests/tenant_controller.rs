//! The Tenant, Agent and CapabilityQuota controllers end to end against a Kubernetes
//! API: the fake API server, or a real cluster with `CX_TEST_KUBECONFIG`.

mod support;

use std::{sync::atomic::Ordering, time::Duration};

use cx_operator::{
    api::{
        Agent, CapabilityQuota, Tenant, TenantPhase,
        conditions::{self, reasons, types},
    },
    labels::{TENANT_CONFIGMAP, TENANT_FINALIZER},
    provider::Providers,
};
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Namespace, Secret},
        events::v1::Event,
        networking::v1::Ingress,
    },
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    recording_provider::RecordingProvider,
    tenant_status::{condition, is_ready, phase},
};

const LIMIT: Duration = Duration::from_secs(30);

/// A TLS Secret in the platform namespace holding a self-signed certificate for `hosts`.
async fn tls_secret(cluster: &TestCluster, name: &str, hosts: &[&str], expired: bool) {
    let mut params = rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(cert.pem().into_bytes())),
                ("tls.key".to_string(), ByteString(key.serialize_pem().into_bytes())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), &cluster.platform_namespace());
    api.patch(name, &PatchParams::apply("cx-operator-tests").force(), &Patch::Apply(&secret)).await.expect("TLS secret applied");
}

/// Creates a Tenant with a valid certificate for its default host.
async fn ready_tenant(cluster: &TestCluster, name: &str, spec: serde_json::Value) -> Tenant {
    let tenant = cluster.tenant(name, spec);
    let id = tenant.name_any();
    tls_secret(cluster, &format!("{id}-tls"), &[&format!("{id}.cx.test")], false).await;
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    wait_for(&api, &id, LIMIT, "Ready", is_ready).await
}

/// Events about a Tenant (cluster-scoped, so they are kept in `default`).
async fn events_for(cluster: &TestCluster, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let events = api.list(&ListParams::default()).await.unwrap().items;
    events.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect()
}

#[tokio::test]
async fn tenant_becomes_ready_with_namespace_config_map_and_ingress() {
    let cluster = TestCluster::start().await;
    let (op, _) = cluster.operator(cluster.config(), Providers::default(), "a").await;
    let mut spec = TestCluster::minimal_spec();
    spec["config"] = json!({"dialerUrl": "https://dialer.test"});
    let t = ready_tenant(&cluster, "acme", spec).await;
    let id = t.name_any();
    let status = t.status.clone().unwrap();
    let ns = format!("{}{id}", cluster.namespace_prefix());
    assert_eq!(status.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(status.fqdn.as_deref(), Some(format!("{id}.cx.test").as_str()));
    assert_eq!(status.url.as_deref(), Some(format!("https://{id}.cx.test").as_str()));
    assert_eq!(status.observed_generation, t.metadata.generation);
    assert!(t.finalizers().contains(&TENANT_FINALIZER.to_string()));
    for type_ in [types::NAMESPACE_READY, types::INGRESS_READY, types::DOMAIN_SECURE] {
        assert_eq!(condition(&t, type_).unwrap().0, "True", "{type_}");
    }
    assert_eq!(condition(&t, types::REALM_READY).unwrap(), ("True".into(), reasons::NOT_CONFIGURED.into()));

    let namespace = Api::<Namespace>::all(cluster.client.clone()).get(&ns).await.unwrap();
    assert_eq!(namespace.labels()["cx-operator.io/tenant"], id);
    assert_eq!(namespace.owner_references()[0].uid, t.uid().unwrap());
    let cm = Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns).get(TENANT_CONFIGMAP).await.unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data["tenantId"], id);
    assert_eq!(data["config.dialerUrl"], "https://dialer.test");
    assert_eq!(data["enabled"], "true");
    let ing = Api::<Ingress>::namespaced(cluster.client.clone(), &cluster.platform_namespace()).get(&ns).await.unwrap();
    let spec = ing.spec.unwrap();
    assert_eq!(spec.rules.unwrap()[0].host.as_deref(), Some(format!("{id}.cx.test").as_str()));
    assert_eq!(spec.tls.unwrap()[0].secret_name.as_deref(), Some(format!("{id}-tls").as_str()));
    let quota = Api::<CapabilityQuota>::namespaced(cluster.client.clone(), &ns).get("default").await;
    assert!(quota.is_ok(), "the default CapabilityQuota is created");

    let reasons: Vec<String> = events_for(&cluster, &id).await.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.contains(&"Provisioned".to_string()) && reasons.contains(&"Ready".to_string()), "{reasons:?}");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn editing_the_spec_converges() {
    let cluster = TestCluster::start().await;
    let (op, _) = cluster.operator(cluster.config(), Providers::default(), "a").await;
    let t = ready_tenant(&cluster, "edit", TestCluster::minimal_spec()).await;
    let id = t.name_any();
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let patch = json!({"spec": {"displayName": "Acme Renamed", "config": {"surveyUrl": "https://s.test"}, "domain": {"fqdn": "support.acme.test", "tls": {"secretName": "acme-support"}}}});
    api.patch(&id, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    tls_secret(&cluster, "acme-support", &["*.acme.test"], false).await;
    let t = wait_for(&api, &id, LIMIT, "converged on the new generation", |t| {
        is_ready(t)
            && t.status.as_ref().unwrap().observed_generation == t.metadata.generation
            && t.status.as_ref().unwrap().fqdn.as_deref() == Some("support.acme.test")
    })
    .await;
    assert_eq!(t.metadata.generation, Some(2));
    let ns = t.status.unwrap().namespace.unwrap();
    let cm = Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns).get(TENANT_CONFIGMAP).await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["displayName"], "Acme Renamed");
    assert_eq!(cm.data.as_ref().unwrap()["config.surveyUrl"], "https://s.test");
    let ing = Api::<Ingress>::namespaced(cluster.client.clone(), &cluster.platform_namespace()).get(&ns).await.unwrap();
    assert_eq!(ing.spec.unwrap().rules.unwrap()[0].host.as_deref(), Some("support.acme.test"));

    // Drift: a config key removed from the spec disappears; a hand edit is repaired.
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"config": null}}))).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    wait_for(&cms, TENANT_CONFIGMAP, LIMIT, "stale config key removed", |c| !c.data.as_ref().unwrap().contains_key("config.surveyUrl"))
        .await;
    cms.patch(TENANT_CONFIGMAP, &PatchParams::default(), &Patch::Merge(json!({"data": {"tenantId": "tampered"}}))).await.unwrap();
    wait_for(&cms, TENANT_CONFIGMAP, LIMIT, "hand edit repaired", |c| c.data.as_ref().unwrap()["tenantId"] == id).await;
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn disabling_and_enabling_reaches_every_provider() {
    let cluster = TestCluster::start().await;
    let provider = RecordingProvider::new();
    let (op, _) = cluster.operator(cluster.config(), Providers::default().with(provider.clone()), "a").await;
    let t = ready_tenant(&cluster, "toggle", TestCluster::minimal_spec()).await;
    let id = t.name_any();
    assert_eq!(provider.active.lock().unwrap().get(&id), Some(&true));
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}}))).await.unwrap();
    let t = wait_for(&api, &id, LIMIT, "Disabled", |t| phase(t) == Some(TenantPhase::Disabled)).await;
    assert_eq!(condition(&t, types::READY).unwrap(), ("False".into(), reasons::DISABLED.into()));
    assert_eq!(provider.active.lock().unwrap().get(&id), Some(&false));
    let ns = t.status.unwrap().namespace.unwrap();
    let cm = Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns).get(TENANT_CONFIGMAP).await.unwrap();
    assert_eq!(cm.data.unwrap()["enabled"], "false");

    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}}))).await.unwrap();
    wait_for(&api, &id, LIMIT, "Ready again", is_ready).await;
    assert_eq!(provider.active.lock().unwrap().get(&id), Some(&true));
    let reasons: Vec<String> = events_for(&cluster, &id).await.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.contains(&"Disabled".to_string()) && reasons.contains(&"Enabled".to_string()), "{reasons:?}");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn an_expired_tenant_is_disabled_with_an_event() {
    let cluster = TestCluster::start().await;
    let (op, _) = cluster.operator(cluster.config(), Providers::default(), "a").await;
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    let mut spec = TestCluster::minimal_spec();
    spec["expiresAt"] = json!(expires.to_string());
    let t = ready_tenant(&cluster, "expiring", spec).await;
    let id = t.name_any();
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let t = wait_for(&api, &id, LIMIT, "Disabled after expiry", |t| phase(t) == Some(TenantPhase::Disabled)).await;
    assert!(t.status.as_ref().unwrap().expired);
    assert_eq!(condition(&t, types::READY).unwrap().1, reasons::EXPIRED);
    assert!(t.spec.enabled, "expiry never rewrites the spec");
    let events = events_for(&cluster, &id).await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some(reasons::EXPIRED) && e.type_.as_deref() == Some("Warning")));
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn deletion_honours_the_deletion_policy() {
    let cluster = TestCluster::start().await;
    let provider = RecordingProvider::new();
    let (op, _) = cluster.operator(cluster.config(), Providers::default().with(provider.clone()), "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for policy in ["Delete", "Retain"] {
        let mut spec = TestCluster::minimal_spec();
        spec["deletionPolicy"] = json!(policy);
        let t = ready_tenant(&cluster, &policy.to_lowercase(), spec).await;
        let id = t.name_any();
        let ns = t.status.unwrap().namespace.unwrap();
        api.delete(&id, &DeleteParams::default()).await.unwrap();
        wait_gone(&api, &id, LIMIT).await;
        let deleted = provider.deleted.lock().unwrap().contains(&id);
        assert_eq!(deleted, policy == "Delete", "external cleanup with deletionPolicy {policy}");
        // Kubernetes objects go with both policies (garbage collection by owner).
        wait_until(&format!("namespace {ns} removed"), LIMIT, || async {
            namespaces.get_opt(&ns).await.unwrap().is_none_or(|n| n.metadata.deletion_timestamp.is_some())
        })
        .await;
    }
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_backend_outage_holds_deletion_and_recovers_without_duplicates() {
    let cluster = TestCluster::start().await;
    let provider = RecordingProvider::new();
    let (op, _) = cluster.operator(cluster.config(), Providers::default().with(provider.clone()), "a").await;
    let tenant = cluster.tenant("outage", TestCluster::minimal_spec());
    let id = tenant.name_any();
    tls_secret(&cluster, &format!("{id}-tls"), &[&format!("{id}.cx.test")], false).await;
    provider.down.store(true, Ordering::SeqCst);
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let t = wait_for(&api, &id, LIMIT, "RealmReady False", |t| condition(t, types::REALM_READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&t, types::REALM_READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    assert_eq!(phase(&t), Some(TenantPhase::Provisioning));
    let first = provider.ensures.load(Ordering::SeqCst);
    wait_until("retries with backoff", LIMIT, || async { provider.ensures.load(Ordering::SeqCst) >= first + 2 }).await;

    provider.down.store(false, Ordering::SeqCst);
    wait_for(&api, &id, LIMIT, "Ready after recovery", is_ready).await;

    provider.down.store(true, Ordering::SeqCst);
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = api.get(&id).await.expect("deletion waits behind the finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(phase(&held), Some(TenantPhase::Deleting));
    provider.down.store(false, Ordering::SeqCst);
    wait_gone(&api, &id, LIMIT).await;
    assert_eq!(provider.deleted.lock().unwrap().iter().filter(|n| **n == id).count(), 1);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn an_unchanged_ready_tenant_costs_no_writes() {
    let cluster = TestCluster::start().await;
    let mut config = cluster.config();
    config.leader_election.enabled = false;
    let (first, first_writes) = cluster.operator(config.clone(), Providers::default(), "a").await;
    let t = ready_tenant(&cluster, "steady", TestCluster::minimal_spec()).await;
    let id = t.name_any();
    // Let the first instance settle, then hand over to a fresh instance.
    first_writes.wait_idle(Duration::from_millis(1500), LIMIT).await;
    first.stop().await.unwrap();
    assert!(first_writes.writes() >= 5, "provisioning writes are counted (namespace, ConfigMap, quota, Ingress, status)");
    let (second, writes) = cluster.operator(config, Providers::default(), "b").await;
    wait_until("the second instance reconciled the tenant", LIMIT, || async {
        second.metrics.reconcile_count("tenant") >= 1 && second.metrics.reconcile_count("capabilityquota") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes.writes(), 0, "a reconcile of an unchanged Ready Tenant must not write");
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    assert!(is_ready(&api.get(&id).await.unwrap()));
    second.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn an_existing_namespace_is_never_adopted() {
    let cluster = TestCluster::start().await;
    let (op, _) = cluster.operator(cluster.config(), Providers::default(), "a").await;
    let tenant = cluster.tenant("squatted", TestCluster::minimal_spec());
    let ns = format!("{}{}", cluster.namespace_prefix(), tenant.name_any());
    cluster.ensure_namespace(&ns).await;
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let t = wait_for(&api, &tenant.name_any(), LIMIT, "Conflict", |t| {
        condition(t, types::NAMESPACE_READY).is_some_and(|c| c.1 == reasons::CONFLICT)
    })
    .await;
    assert_eq!(phase(&t), Some(TenantPhase::Failed));
    let namespace = Api::<Namespace>::all(cluster.client.clone()).get(&ns).await.unwrap();
    assert!(namespace.owner_references().is_empty(), "the foreign namespace is left alone");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn domain_secure_follows_the_certificate() {
    let cluster = TestCluster::start().await;
    let (op, _) = cluster.operator(cluster.config(), Providers::default(), "a").await;
    let tenant = cluster.tenant("tls", TestCluster::minimal_spec());
    let id = tenant.name_any();
    let host = format!("{id}.cx.test");
    let secret = format!("{id}-tls");
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let reason = |r: &'static str| move |t: &Tenant| condition(t, types::DOMAIN_SECURE).is_some_and(|c| c.1 == r);
    let t = wait_for(&api, &id, LIMIT, "SecretMissing", reason(reasons::SECRET_MISSING)).await;
    assert!(!is_ready(&t), "Ready waits for TLS");
    tls_secret(&cluster, &secret, &["other.cx.test"], false).await;
    wait_for(&api, &id, LIMIT, "HostNotCovered", reason(reasons::HOST_NOT_COVERED)).await;
    tls_secret(&cluster, &secret, &[&host], true).await;
    wait_for(&api, &id, LIMIT, "CertificateExpired", reason(reasons::CERTIFICATE_EXPIRED)).await;
    tls_secret(&cluster, &secret, &["*.cx.test"], false).await;
    wait_for(&api, &id, LIMIT, "Ready with a wildcard certificate", is_ready).await;
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn invalid_tenants_are_refused_with_the_field() {
    let cluster = TestCluster::start().await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    // Untyped, so that the API server, not serde, judges the input.
    let raw: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ApiResource::erase::<Tenant>(&()));
    let cases = [
        ("badcountry", json!({"company": {"name": "X", "country": "Germany"}}), "spec.company.country"),
        ("badsize", json!({"company": {"name": "X", "size": "huge"}}), "spec.company.size"),
        ("bademail", json!({"admin": {"username": "a", "email": "not-an-email", "firstName": "A"}}), "spec.admin.email"),
        ("badconfig", json!({"config": {"bad key": "v"}}), "spec.config"),
        ("unknown", json!({"colour": "red"}), "spec.colour"),
    ];
    for (name, overlay, field) in cases {
        // Unknown fields are refused (400) under strict field validation, as kubectl asks for.
        let expected = if name == "unknown" { 400 } else { 422 };
        let mut spec = TestCluster::minimal_spec();
        for (k, v) in overlay.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let tenant = json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": cluster.tenant_name(name), "labels": {support::cluster::RUN_LABEL: cluster.run}},
            "spec": spec,
        });
        let tenant: DynamicObject = serde_json::from_value(tenant).unwrap();
        let params = PatchParams::apply("cx-operator-tests").validation_strict();
        let err = raw.patch(&tenant.name_any(), &params, &Patch::Apply(&tenant)).await.expect_err(&format!("{name} must be refused"));
        let kube::Error::Api(status) = err else { panic!("{name}: unexpected error {err}") };
        assert_eq!(status.code, expected, "{name}: {}", status.message);
        assert!(status.message.contains(field), "{name}: message should name {field}: {}", status.message);
    }
    let long = cluster.tenant(&"x".repeat(40), TestCluster::minimal_spec());
    let err = api.create(&PostParams::default(), &long).await.expect_err("a tenant id over 40 characters is refused");
    assert!(err.to_string().contains("at most 40"), "{err}");

    let ok = cluster.create_tenant(&cluster.tenant("immutable", TestCluster::minimal_spec())).await;
    let err = api
        .patch(&ok.name_any(), &PatchParams::default(), &Patch::Merge(json!({"spec": {"admin": {"username": "mallory"}}})))
        .await
        .expect_err("the admin username is immutable");
    assert!(err.to_string().contains("spec.admin.username is immutable"), "{err}");
    cluster.cleanup().await;
}

#[tokio::test]
async fn leadership_hands_over_between_instances() {
    let cluster = TestCluster::start().await;
    let (a, _) = cluster.operator(cluster.config(), Providers::default(), "instance-a").await;
    let mut lead = a.leadership();
    tokio::time::timeout(LIMIT, lead.wait_for(|l| *l)).await.expect("a becomes leader").unwrap();
    let (b, _) = cluster.operator(cluster.config(), Providers::default(), "instance-b").await;
    ready_tenant(&cluster, "first", TestCluster::minimal_spec()).await;
    assert!(!b.is_leader(), "only one instance leads");
    assert_eq!(b.metrics.reconcile_count("tenant"), 0, "a standby instance does not reconcile");

    a.stop().await.unwrap();
    let mut lead = b.leadership();
    tokio::time::timeout(LIMIT, lead.wait_for(|l| *l)).await.expect("b takes over").unwrap();
    ready_tenant(&cluster, "second", TestCluster::minimal_spec()).await;
    assert!(b.metrics.reconcile_count("tenant") >= 1);
    b.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn agents_over_the_quota_are_not_provisioned() {
    let cluster = TestCluster::start().await;
    let mut config = cluster.config();
    // The tenant administrator's Agent counts: it takes the first of the two places.
    config.defaults.quota.agents = Some(2);
    let (op, _) = cluster.operator(config, Providers::default(), "a").await;
    let t = ready_tenant(&cluster, "quota", TestCluster::minimal_spec()).await;
    let ns = t.status.unwrap().namespace.unwrap();
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), &ns);
    wait_for(&agents, "admin", LIMIT, "the administrator's Agent", |a| a.status.is_some()).await;
    for name in ["first", "second"] {
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"email": format!("{name}@acme.test"), "firstName": name}
        }))
        .unwrap();
        agents.create(&PostParams::default(), &agent).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let phase_of = |p: &'static str| move |a: &Agent| a.status.as_ref().and_then(|s| s.phase).is_some_and(|x| format!("{x:?}") == p);
    let first = wait_for(&agents, "first", LIMIT, "Ready", phase_of("Ready")).await;
    assert_eq!(first.status.unwrap().username.as_deref(), Some("first"));
    let second = wait_for(&agents, "second", LIMIT, "QuotaExceeded", phase_of("QuotaExceeded")).await;
    let c = conditions::find(&second.status.unwrap().conditions, types::QUOTA_EXCEEDED).cloned().unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reasons::OVER_QUOTA));

    let quotas: Api<CapabilityQuota> = Api::namespaced(cluster.client.clone(), &ns);
    let q = wait_for(&quotas, "default", LIMIT, "measured", |q| {
        q.status.as_ref().is_some_and(|s| s.used.get("agents").is_some_and(|v| v.0 == "3"))
    })
    .await;
    let status = q.status.unwrap();
    assert_eq!(status.hard["agents"].0, "2");
    assert_eq!(status.hard["aiAgents"].0, "0", "a feature that is off has a zero limit");
    let within = conditions::find(&status.conditions, types::WITHIN_LIMITS).unwrap();
    assert_eq!(within.status, "False");
    assert!(within.message.contains("agents"), "{}", within.message);

    // Raising the limit provisions the waiting Agent.
    quotas.patch("default", &PatchParams::default(), &Patch::Merge(json!({"spec": {"limits": {"agents": 5}}}))).await.unwrap();
    wait_for(&agents, "second", LIMIT, "Ready after the limit was raised", phase_of("Ready")).await;
    let tenants: Api<Tenant> = Api::all(cluster.client.clone());
    wait_for(&tenants, &t.metadata.name.clone().unwrap(), LIMIT, "usage summary", |t| {
        t.status
            .as_ref()
            .and_then(|s| s.usage.as_ref())
            .and_then(|u| u.agents.as_ref())
            .is_some_and(|a| a.used.as_deref() == Some("3") && a.limit.as_deref() == Some("5"))
    })
    .await;
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

/// An Agent whose namespace belongs to no Tenant: an unsharded operator (alone on the
/// fake API server) marks it `TenantUnavailable`; a shard (on a shared real cluster)
/// leaves it to the other shards and writes nothing to it.
#[tokio::test]
async fn an_agent_outside_a_tenant_namespace_is_not_provisioned() {
    let cluster = TestCluster::start().await;
    let mut config = cluster.config();
    let sharded = cluster.fake.is_none();
    if !sharded {
        config.sharding.tenant_selector = None;
    }
    let (op, _) = cluster.operator(config, Providers::default(), "a").await;
    let ns = format!("cxt-{}-elsewhere", cluster.run);
    cluster.ensure_namespace(&ns).await;
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), &ns);
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "stray", "namespace": ns},
        "spec": {"email": "stray@acme.test", "firstName": "Stray"}
    }))
    .unwrap();
    agents.create(&PostParams::default(), &agent).await.unwrap();
    if sharded {
        // The shard's own Tenant converges while the stray Agent stays untouched.
        ready_tenant(&cluster, "own", TestCluster::minimal_spec()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = agents.get("stray").await.unwrap();
        assert!(a.status.is_none(), "a shard writes nothing to an Agent of no Tenant it serves: {:?}", a.status);
        assert!(a.finalizers().is_empty());
    } else {
        let a = wait_for(&agents, "stray", LIMIT, "TenantUnavailable", |a| {
            a.status
                .as_ref()
                .is_some_and(|s| conditions::find(&s.conditions, types::READY).is_some_and(|c| c.reason == reasons::TENANT_UNAVAILABLE))
        })
        .await;
        assert!(a.status.unwrap().user_id.is_none());
    }
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn losing_the_lease_stops_reconciling() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cluster = TestCluster::start().await;
    let config = cluster.config();
    let (op, _) = cluster.operator(config.clone(), Providers::default(), "holder").await;
    let mut lead = op.leadership();
    tokio::time::timeout(LIMIT, lead.wait_for(|l| *l)).await.expect("becomes leader").unwrap();

    // Another party takes the lease over for a long time.
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &cluster.platform_namespace());
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let steal = json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 300, "acquireTime": now, "renewTime": now}});
    leases.patch(&config.leader_election.lease_name, &PatchParams::default(), &Patch::Merge(&steal)).await.unwrap();
    tokio::time::timeout(LIMIT, lead.wait_for(|l| !*l)).await.expect("notices the loss").unwrap();
    assert_eq!(op.metrics.render().lines().find(|l| l.starts_with("cx_operator_leader ")), Some("cx_operator_leader 0"));

    let before = op.metrics.reconcile_count("tenant");
    let tenant = cluster.tenant("unserved", TestCluster::minimal_spec());
    cluster.create_tenant(&tenant).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    assert!(api.get(&tenant.name_any()).await.unwrap().status.is_none(), "no reconcile without the lease");
    assert_eq!(op.metrics.reconcile_count("tenant"), before);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}
