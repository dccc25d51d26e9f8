//! The Tenant's data step end to end: the Tenant controller against a Kubernetes API
//! (the fake, or `CX_TEST_KUBECONFIG`), a real redis-server, and the in-memory MongoDB.

#[allow(dead_code)]
#[path = "support/fake_mongodb.rs"]
mod fake_mongodb;
mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use cx_operator::{
    api::{
        Tenant,
        conditions::{reasons, types},
        tenant::ROTATE_CREDENTIALS_ANNOTATION,
    },
    provider::{
        ProviderKind,
        data::{CACHE_SECRET, DATABASE_SECRET, DatabaseProvisioner},
        mongodb::{MongoProvider, MongoSettings},
        setup,
    },
};
use fake_mongodb::MemoryMongo;
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    redis_server::RedisServer,
    tenant_status::{condition, is_ready},
};

const LIMIT: Duration = Duration::from_secs(30);

/// Every log line of this test process, for the no-credentials-in-logs check.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt().with_env_filter("debug").json().with_writer(move || LogWriter(writer.clone())).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only log subscriber of this test binary");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The operator configuration with the cache on `redis` (admin password in a Secret)
/// and TLS off, so that Ready depends on the data step alone.
async fn cache_config(cluster: &TestCluster, redis: &[&RedisServer]) -> cx_operator::config::Config {
    cluster.put_platform_secret("redis-admin", &[("password", redis[0].password())]).await;
    let nodes: Vec<String> = redis.iter().map(|r| r.url()).collect();
    cluster.config_with(&format!(
        "cache: {{nodes: {nodes:?}, credentialsSecret: redis-admin, purgeBatch: 500}}\noperatorNamespace: {}\ningress: {{tls: {{enabled: false}}}}\n",
        cluster.platform_namespace()
    ))
}

async fn secret_data(cluster: &TestCluster, namespace: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secret = api.get(name).await.unwrap();
    secret.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

async fn redis_auth(server: &RedisServer, user: &str, password: &str) -> bool {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}", server.port());
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else { return false };
    redis::cmd("PING").query_async::<String>(&mut con).await.is_ok()
}

#[tokio::test]
async fn cache_credentials_live_only_in_secrets_and_follow_the_tenant() {
    let logs = captured_logs();
    let cluster = TestCluster::start().await;
    let redis = RedisServer::start();
    let replica = RedisServer::start();
    let config = cache_config(&cluster, &[&redis, &replica]).await;
    let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up from the configuration");
    let (op, _) = cluster.operator(config.clone(), providers, "a").await;

    let tenant = cluster.tenant("data", TestCluster::minimal_spec());
    let id = tenant.name_any();
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let t = wait_for(&api, &id, LIMIT, "Ready", is_ready).await;
    assert_eq!(condition(&t, types::CACHE_READY).unwrap(), ("True".into(), reasons::PROVISIONED.into()));
    let ns = t.status.as_ref().unwrap().namespace.clone().unwrap();
    let refs = &t.status.as_ref().unwrap().credentials;
    assert_eq!(refs["cache"].name, CACHE_SECRET);

    let data = secret_data(&cluster, &ns, CACHE_SECRET).await;
    let (user, password) = (data["username"].clone(), data["password"].clone());
    assert!(password.len() >= 32);
    assert_eq!(data["keyPrefix"], format!("{id}:"));
    assert!(data["url"].contains(&password));
    let owner = Api::<Secret>::namespaced(cluster.client.clone(), &ns).get(CACHE_SECRET).await.unwrap();
    assert_eq!(owner.owner_references()[0].uid, t.uid().unwrap(), "the Secret is owned by the Tenant");
    for server in [&redis, &replica] {
        assert!(redis_auth(server, &user, &password).await, "every node has the tenant user");
    }

    // Disable: the user is off everywhere; enable: back.
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}}))).await.unwrap();
    wait_until("cache user switched off", LIMIT, || async { !redis_auth(&redis, &user, &password).await }).await;
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}}))).await.unwrap();
    wait_until("cache user back on", LIMIT, || async { redis_auth(&redis, &user, &password).await }).await;

    // Rotation: once per annotation value; the old password stops working.
    let rotate = json!({"metadata": {"annotations": {ROTATE_CREDENTIALS_ANNOTATION: "r1"}}});
    api.patch(&id, &PatchParams::default(), &Patch::Merge(&rotate)).await.unwrap();
    let t = wait_for(&api, &id, LIMIT, "rotation recorded", |t| {
        t.status.as_ref().and_then(|s| s.last_credential_rotation.as_deref()) == Some("r1")
    })
    .await;
    let rotated = secret_data(&cluster, &ns, CACHE_SECRET).await["password"].clone();
    assert_ne!(rotated, password);
    assert!(!redis_auth(&redis, &user, &password).await, "the old password no longer works");
    assert!(redis_auth(&redis, &user, &rotated).await);
    assert!(is_ready(&t));

    // A deleted credentials Secret is recreated with a new password.
    Api::<Secret>::namespaced(cluster.client.clone(), &ns).delete(CACHE_SECRET, &DeleteParams::default()).await.unwrap();
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"displayName": "Poke"}}))).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), &ns);
    let recreated = wait_for(&secrets, CACHE_SECRET, LIMIT, "recreated", |_| true).await;
    let recreated = String::from_utf8(recreated.data.unwrap()["password"].0.clone()).unwrap();
    assert_ne!(recreated, rotated);
    wait_until("the recreated password works", LIMIT, || async { redis_auth(&redis, &user, &recreated).await }).await;

    // No credential in status, Events or logs.
    let status = serde_json::to_string(&api.get(&id).await.unwrap().status).unwrap();
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let events = serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    let log = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(log.contains(&id), "the log capture works");
    for secret in [&password, &rotated, &recreated] {
        assert!(!status.contains(secret.as_str()), "a password in status");
        assert!(!events.contains(secret.as_str()), "a password in Events");
        assert!(!log.contains(secret.as_str()), "a password in the logs");
    }

    // Deletion removes the user and every key under the prefix, and no other key.
    let mut con = redis::Client::open(redis.admin_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.set(format!("{id}:k{i}"), i).ignore();
    }
    pipe.set(format!("{id}2:other"), 1).ignore();
    pipe.set("unrelated", 1).ignore();
    pipe.query_async::<()>(&mut con).await.unwrap();
    let measuring = setup::from_config(&cluster.client, &config).await.unwrap();
    let tenant = api.get(&id).await.unwrap();
    let usage = measuring.get(ProviderKind::Cache).unwrap().usage(&tenant).await.unwrap().expect("the cache measures usage");
    assert_eq!(usage.items, Some(10_000), "exactly the tenant's keys are counted");
    assert!(usage.storage_bytes > 10_000, "memory of 10,000 keys: {}", usage.storage_bytes);
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &id, LIMIT).await;
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    assert_eq!(left.iter().filter(|k| k.starts_with(&format!("{id}:"))).count(), 0);
    assert!(left.contains(&format!("{id}2:other")) && left.contains(&"unrelated".to_string()), "{left:?}");
    assert!(!redis_auth(&redis, &user, &recreated).await, "the user is deleted");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn database_and_cache_together_survive_an_outage() {
    let cluster = TestCluster::start().await;
    let mut redis = RedisServer::start();
    let config = cache_config(&cluster, &[&redis]).await;
    let mongo = MemoryMongo::new();
    let settings = MongoSettings { uri: mongo.uri(), ..MongoSettings::default() };
    let mongo_provider = MongoProvider::new(mongo.client(&mongo.uri()), settings).unwrap();
    let providers = setup::from_config(&cluster.client, &config)
        .await
        .unwrap()
        .with(Arc::new(DatabaseProvisioner::new(Arc::new(mongo_provider), &mongo.uri())));
    let (op, _) = cluster.operator(config, providers, "a").await;

    let tenant = cluster.tenant("both", TestCluster::minimal_spec());
    let id = tenant.name_any();
    cluster.create_tenant(&tenant).await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let t = wait_for(&api, &id, LIMIT, "Ready", is_ready).await;
    assert_eq!(condition(&t, types::DATABASE_READY).unwrap(), ("True".into(), reasons::PROVISIONED.into()));
    let ns = t.status.as_ref().unwrap().namespace.clone().unwrap();
    assert_eq!(t.status.as_ref().unwrap().credentials["database"].name, DATABASE_SECRET);
    let data = secret_data(&cluster, &ns, DATABASE_SECRET).await;
    let db = format!("cx_{}", id.replace('-', "_"));
    assert_eq!(data["database"], db);
    assert!(data["uri"].starts_with(&format!("mongodb://{}:", data["username"])) && data["uri"].contains("@fake-mongodb:27017/"));
    assert!(!data["uri"].contains(fake_mongodb::ADMIN_PASSWORD), "the admin credentials never reach a tenant");
    assert!(mongo.login(&db, &data["username"], &data["password"]));
    assert_eq!(mongo.roles(&db, &data["username"]).unwrap().len(), 2);

    // The database backend goes down: its condition says so, Ready drops, retries back off.
    mongo.set_down(true);
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"displayName": "During outage"}}))).await.unwrap();
    let t =
        wait_for(&api, &id, LIMIT, "DatabaseReady False", |t| condition(t, types::DATABASE_READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&t, types::DATABASE_READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    assert_eq!(condition(&t, types::CACHE_READY).unwrap().0, "True", "the other backend is unaffected");
    assert!(!is_ready(&t));
    let attempts = op.metrics.reconcile_count("tenant");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retried = op.metrics.reconcile_count("tenant") - attempts;
    assert!((1..=12).contains(&retried), "retries back off (200ms doubling to 2s): {retried} attempts in 2s");

    // Recovery without duplicates: the same user and password, Ready again.
    mongo.set_down(false);
    wait_for(&api, &id, LIMIT, "Ready after recovery", is_ready).await;

    // The cache node goes down and comes back empty: the user is recreated with the
    // password already in the Secret.
    let cache = secret_data(&cluster, &ns, CACHE_SECRET).await;
    redis.stop();
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"displayName": "Cache outage"}}))).await.unwrap();
    let t = wait_for(&api, &id, LIMIT, "CacheReady False", |t| condition(t, types::CACHE_READY).is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&t, types::CACHE_READY).unwrap().1, reasons::BACKEND_UNAVAILABLE);
    redis.restart();
    wait_for(&api, &id, LIMIT, "Ready after the cache came back", |t| is_ready(t) && condition(t, types::CACHE_READY).unwrap().0 == "True")
        .await;
    assert!(redis_auth(&redis, &cache["username"], &cache["password"]).await, "the user is back with the same password");
    let again = secret_data(&cluster, &ns, DATABASE_SECRET).await;
    assert_eq!(again["password"], data["password"], "an outage never rotates credentials");
    assert!(mongo.login(&db, &data["username"], &data["password"]));

    // Deletion drops the user and the database.
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_gone(&api, &id, LIMIT).await;
    assert!(mongo.roles(&db, &data["username"]).is_none(), "dropUser ran");
    assert!(!mongo.database_exists(&db), "dropDatabase ran");
    op.stop().await.unwrap();
    cluster.cleanup().await;
}
