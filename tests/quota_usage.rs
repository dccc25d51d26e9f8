//! CapabilityQuota usage end to end: the operator against a Kubernetes API (the fake,
//! or `CX_TEST_KUBECONFIG`), a real redis-server and the in-memory MongoDB (or the
//! server of `CX_TEST_MONGODB_URI` is not used here: the sources are seeded directly).

#[allow(dead_code)]
#[path = "support/fake_mongodb.rs"]
mod fake_mongodb;
mod support;

use std::{sync::Arc, time::Duration};

use cx_operator::{
    api::{
        CapabilityQuota, Tenant,
        conditions::{self, reasons, types},
    },
    provider::{
        data::{CACHE_SECRET, DATABASE_SECRET, DatabaseProvisioner},
        mongodb::{MongoProvider, MongoSettings},
        setup,
    },
};
use fake_mongodb::MemoryMongo;
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use mongodb::bson::doc;
use serde_json::{Value, json};
use support::{
    cluster::{TestCluster, wait_for, wait_until},
    redis_server::RedisServer,
};

const LIMIT: Duration = Duration::from_secs(30);

fn within(q: &CapabilityQuota) -> Option<(String, String, String)> {
    let c = conditions::find(&q.status.as_ref()?.conditions, types::WITHIN_LIMITS)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn used(q: &CapabilityQuota, capability: &str) -> Option<String> {
    q.status.as_ref()?.used.get(capability).map(|v| v.0.clone())
}

async fn events(cluster: &TestCluster, namespace: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), namespace);
    let events = api.list(&ListParams::default()).await.unwrap().items;
    events.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.note).collect()
}

async fn set_limits(quotas: &Api<CapabilityQuota>, spec: Value) {
    quotas.patch("default", &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.unwrap();
}

#[tokio::test]
async fn usage_is_measured_reported_and_enforced_by_the_storage_policy() {
    let cluster = TestCluster::start().await;
    let redis = RedisServer::start();
    let mongo = MemoryMongo::new();
    cluster.put_platform_secret("redis-admin", &[("password", redis.password())]).await;
    cluster.put_platform_secret("mongo-admin", &[("uri", &mongo.uri())]).await;
    let config = cluster.config_with(&format!(
        "cache: {{nodes: ['{}'], credentialsSecret: redis-admin}}\ndatabase: {{uriSecret: mongo-admin}}\n\
         usage: {{interval: 10m, jitter: 0, sources: {{widgets: {{collection: widgets, filter: {{deleted: {{$ne: true}}}}}}, \
         concurrentAudioVideo: {{cacheSet: 'av:active'}}}}}}\n\
         licence: {{agents: 50}}\ndefaults: {{quota: {{agents: 10}}}}\n\
         operatorNamespace: {}\ningress: {{tls: {{enabled: false}}}}\n",
        redis.url(),
        cluster.platform_namespace()
    ));
    let memory = MongoProvider::new(mongo.client(&mongo.uri()), MongoSettings { uri: mongo.uri(), ..MongoSettings::default() }).unwrap();
    let providers = setup::from_config(&cluster.client, &config)
        .await
        .unwrap()
        .with(Arc::new(DatabaseProvisioner::new(Arc::new(memory), &mongo.uri())));
    let (op, _) = cluster.operator(config, providers, "a").await;

    let mut spec = TestCluster::minimal_spec();
    spec["features"] = json!({"widgets": true, "audioVideo": true});
    let tenant = cluster.tenant("usage", spec);
    let id = tenant.name_any();
    cluster.create_tenant(&tenant).await;
    let tenants: Api<Tenant> = Api::all(cluster.client.clone());
    wait_for(&tenants, &id, LIMIT, "Ready", |t| t.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY))).await;
    let ns = format!("{}{id}", cluster.namespace_prefix());
    let db = format!("cx_{}", id.replace('-', "_"));

    // The tenant's stores hold three live widgets, one deleted, and two calls.
    for (n, deleted) in [(1, false), (2, false), (3, false), (4, true)] {
        mongo.seed(&db, "widgets", doc! { "n": n, "deleted": deleted });
    }
    let mut con = redis::Client::open(redis.admin_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SADD").arg(format!("{id}:av:active")).arg("call-1").arg("call-2").query_async::<()>(&mut con).await.unwrap();

    let quotas: Api<CapabilityQuota> = Api::namespaced(cluster.client.clone(), &ns);
    set_limits(&quotas, json!({"limits": {"agents": 10, "widgets": 5, "concurrentAudioVideo": 2, "storage": "1Gi", "workflows": 9}})).await;
    // A measurement taken for the edited quota (the edit measures anew), with the
    // administrator's Agent in the cache.
    let q = wait_for(&quotas, "default", LIMIT, "measured", |q| {
        q.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == q.metadata.generation && s.hard.get("widgets").is_some_and(|w| w.0 == "5"))
            && used(q, "agents").as_deref() == Some("1")
    })
    .await;
    assert_eq!(used(&q, "concurrentAudioVideo").as_deref(), Some("2"), "the set's members are counted");
    assert_eq!(used(&q, "agents").as_deref(), Some("1"), "the tenant administrator's Agent");
    let storage: u64 = used(&q, "storage").expect("storage is measured").parse().unwrap();
    assert!(storage > 0, "database and cache bytes");
    assert!(used(&q, "workflows").is_none(), "a capability without a source is never reported as 0");
    let (status, _, message) = within(&q).unwrap();
    assert_eq!(status, "True");
    assert!(message.contains("workflows (no usage source is configured)"), "{message}");
    assert!(q.status.as_ref().unwrap().last_measured.is_some());
    wait_until("a LimitReached Event for concurrentAudioVideo", LIMIT, || async {
        events(&cluster, &ns, reasons::LIMIT_REACHED).await.iter().any(|n| n.contains("concurrentAudioVideo"))
    })
    .await;

    // Metrics per tenant and capability.
    let metrics = op.metrics.render();
    assert!(metrics.contains(&format!("cx_capability_used{{tenant=\"{id}\",capability=\"widgets\"}} 3")), "{metrics}");
    assert!(metrics.contains(&format!("cx_capability_limit{{tenant=\"{id}\",capability=\"widgets\"}} 5")), "{metrics}");

    // The licence: the tenants' allotments against the cap, on the Tenant and as gauges.
    let t = wait_for(&tenants, &id, LIMIT, "the licence use", |t| {
        t.status.as_ref().and_then(|s| s.usage.as_ref()).is_some_and(|u| u.licence.contains_key("agents"))
    })
    .await;
    let agents = &t.status.unwrap().usage.unwrap().licence["agents"];
    assert_eq!((agents.used.as_deref(), agents.limit.as_deref()), (Some("10"), Some("50")));
    assert!(metrics_text(&op).contains("cx_licence_cap{capability=\"agents\"} 50"), "{}", metrics_text(&op));

    // Lowering the limit under the use: 80 %, then over; one Event per crossing.
    set_limits(&quotas, json!({"limits": {"widgets": 3}})).await;
    wait_until("a LimitReached Event for widgets", LIMIT, || async {
        events(&cluster, &ns, reasons::LIMIT_REACHED).await.iter().any(|n| n.contains("widgets"))
    })
    .await;
    set_limits(&quotas, json!({"limits": {"widgets": 2}})).await;
    let q = wait_for(&quotas, "default", LIMIT, "WithinLimits False", |q| within(q).is_some_and(|c| c.0 == "False")).await;
    let (_, reason, message) = within(&q).unwrap();
    assert_eq!(reason, reasons::LIMITS_EXCEEDED);
    assert!(message.contains("widgets (3 > 2)"), "{message}");
    let reached = events(&cluster, &ns, reasons::LIMIT_REACHED).await;
    assert_eq!(reached.iter().filter(|n| n.contains("widgets")).count(), 1, "staying over the limit is no new crossing: {reached:?}");

    // ReadOnly: storage over its limit leaves the tenant only reads, in both stores.
    let cache = secret_of(&cluster, &ns, CACHE_SECRET).await;
    let database = secret_of(&cluster, &ns, DATABASE_SECRET).await;
    set_limits(&quotas, json!({"storagePolicy": "ReadOnly", "limits": {"storage": "1"}})).await;
    wait_until("the database user only reads", LIMIT, || async {
        mongo.roles(&db, &database["username"]).is_some_and(|r| r.iter().map(|(role, _)| role.as_str()).collect::<Vec<_>>() == ["read"])
    })
    .await;
    wait_until("the cache user only reads", LIMIT, || async { !cache_write(&redis, &cache, &id).await }).await;
    assert!(cache_read(&redis, &cache, &id).await, "reads still work");

    // Raising the limit gives the writes back.
    set_limits(&quotas, json!({"limits": {"storage": "1Gi"}})).await;
    wait_until("the database user writes again", LIMIT, || async { mongo.roles(&db, &database["username"]).is_some_and(|r| r.len() == 2) })
        .await;
    wait_until("the cache user writes again", LIMIT, || async { cache_write(&redis, &cache, &id).await }).await;
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

fn metrics_text(op: &cx_operator::operator::Operator) -> String {
    op.metrics.render()
}

async fn secret_of(cluster: &TestCluster, namespace: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secret = wait_for(&api, name, LIMIT, "the credentials Secret", |_| true).await;
    secret.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

async fn tenant_connection(redis: &RedisServer, cache: &std::collections::BTreeMap<String, String>) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{}:{}@127.0.0.1:{}", cache["username"], cache["password"], redis.port());
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.expect("the tenant user logs in")
}

async fn cache_write(redis: &RedisServer, cache: &std::collections::BTreeMap<String, String>, id: &str) -> bool {
    let mut con = tenant_connection(redis, cache).await;
    redis::cmd("SET").arg(format!("{id}:probe")).arg("1").query_async::<()>(&mut con).await.is_ok()
}

async fn cache_read(redis: &RedisServer, cache: &std::collections::BTreeMap<String, String>, id: &str) -> bool {
    let mut con = tenant_connection(redis, cache).await;
    redis::cmd("GET").arg(format!("{id}:probe")).query_async::<Option<String>>(&mut con).await.is_ok()
}
