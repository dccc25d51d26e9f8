//! An operator started over an existing fleet: every controller reconciles every
//! object, new objects still converge, and SIGTERM ends the process in time with the
//! Lease released. Runs against the fake API server, or a real cluster with
//! `CX_TEST_KUBECONFIG`. Sizes: `CX_TEST_FLEET_TENANTS` (default 1000) and
//! `CX_TEST_FLEET_AGENTS` (Agents of the many-Agents fleet, default 4000).

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use cx_operator::{
    api::{Agent, CapabilityQuota, Tenant},
    config::Config,
    controller::{agent, quota, tenant, tenant_desired},
    provider::Providers,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Namespace};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::json;
use support::{
    cluster::{TestCluster, wait_for, wait_until},
    tenant_status::is_ready,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::{Layer, layer::Context as LayerContext, prelude::*, registry::LookupSpan};

/// Concurrent requests of the test when it creates a fleet.
const SEED_CONCURRENCY: usize = 24;
/// How long a fleet may take to converge.
const CONVERGE: Duration = Duration::from_secs(600);

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{var} is a number"))).unwrap_or(default)
}

/// The objects each controller finished reconciling, read from the operator's
/// `reconcile` spans (controller and object fields), and how many reconciles each has
/// started (a controller that starts reconciles that never finish shows there).
#[derive(Clone, Default)]
struct Reconciled {
    /// Objects each controller finished reconciling.
    done: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    /// Reconciles each controller started.
    started: Arc<Mutex<HashMap<String, u64>>>,
}

struct SpanFields {
    controller: String,
    object: String,
}

#[derive(Default)]
struct FieldVisitor {
    controller: String,
    object: String,
}

impl tracing::field::Visit for FieldVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "controller" {
            self.controller = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "object" => self.object = format!("{value:?}"),
            "controller" => self.controller = format!("{value:?}").trim_matches('"').to_string(),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Reconciled {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: LayerContext<'_, S>) {
        if attrs.metadata().name() != "reconcile" {
            return;
        }
        let mut fields = FieldVisitor::default();
        attrs.record(&mut fields);
        *self.started.lock().unwrap().entry(fields.controller.clone()).or_default() += 1;
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields { controller: fields.controller, object: fields.object });
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(f) = span.extensions().get::<SpanFields>() {
            self.done.lock().unwrap().entry(f.controller.clone()).or_default().insert(f.object.clone());
        }
    }
}

impl Reconciled {
    /// The recorder of this test process (one subscriber for the whole binary).
    fn global() -> Reconciled {
        static RECORDER: OnceLock<Reconciled> = OnceLock::new();
        RECORDER
            .get_or_init(|| {
                let recorder = Reconciled::default();
                tracing_subscriber::registry().with(recorder.clone()).try_init().expect("the test binary installs one subscriber");
                recorder
            })
            .clone()
    }

    /// Forgets what was recorded of the fleet's objects (other tests' stay).
    fn forget(&self, fleet: &Fleet) {
        for done in self.done.lock().unwrap().values_mut() {
            done.retain(|o| !fleet.tenants.contains(o) && !fleet.agents.contains(o) && !fleet.quotas.contains(o));
        }
    }

    /// How many of `objects` the controller has finished reconciling.
    fn count(&self, controller: &str, objects: &HashSet<String>) -> usize {
        self.done.lock().unwrap().get(controller).map_or(0, |done| objects.iter().filter(|o| done.contains(*o)).count())
    }
}

/// The key of an object as the operator's spans name it.
fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    kube::runtime::reflector::ObjectRef::from_obj(obj).to_string()
}

/// A fleet created straight through the API, as a GitOps pipeline or an earlier
/// operator would have left it: Tenants, their namespaces, administrator Agents and
/// default quotas, plus `extra_agents` more Agents spread over the tenants.
struct Fleet {
    tenants: HashSet<String>,
    agents: HashSet<String>,
    quotas: HashSet<String>,
}

async fn seed(cluster: &TestCluster, config: &Config, tenants: usize, extra_agents: usize, prefix: &str) -> Fleet {
    let started = Instant::now();
    let per_tenant = extra_agents.div_ceil(tenants.max(1));
    let made: Vec<(String, Vec<String>, String)> = stream::iter(0..tenants)
        .map(|i| seed_tenant(cluster, config, format!("{prefix}{i}"), per_tenant.min(extra_agents.saturating_sub(i * per_tenant))))
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;
    let mut fleet = Fleet { tenants: HashSet::new(), agents: HashSet::new(), quotas: HashSet::new() };
    for (t, agents, q) in made {
        fleet.tenants.insert(t);
        fleet.agents.extend(agents);
        fleet.quotas.insert(q);
    }
    eprintln!(
        "seeded {} Tenants, {} Agents, {} quotas in {:.1?}",
        fleet.tenants.len(),
        fleet.agents.len(),
        fleet.quotas.len(),
        started.elapsed()
    );
    fleet
}

async fn seed_tenant(cluster: &TestCluster, config: &Config, name: String, extra_agents: usize) -> (String, Vec<String>, String) {
    let created = cluster.create_tenant(&cluster.tenant(&name, TestCluster::minimal_spec())).await;
    let desired = tenant_desired::assemble(&created, config, jiff::Timestamp::now());
    let namespace = desired.names.namespace.clone();
    Api::<Namespace>::all(cluster.client.clone()).create(&PostParams::default(), &desired.namespace).await.expect("namespace is created");
    let quotas: Api<CapabilityQuota> = Api::namespaced(cluster.client.clone(), &namespace);
    let quota: CapabilityQuota = serde_json::from_value(json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "CapabilityQuota",
        "metadata": {"name": tenant::DEFAULT_QUOTA, "namespace": namespace},
        "spec": {"limits": {"agents": 1000}},
    }))
    .expect("quota is well formed");
    let quota = quotas.create(&PostParams::default(), &quota).await.expect("quota is created");
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), &namespace);
    let mut keys = vec![key(&agents.create(&PostParams::default(), &desired.admin_agent).await.expect("admin Agent is created"))];
    for j in 0..extra_agents {
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": format!("agent-{j}"), "namespace": namespace},
            "spec": {"email": format!("agent-{j}@acme.test"), "firstName": "Agent"},
        }))
        .expect("agent is well formed");
        keys.push(key(&agents.create(&PostParams::default(), &agent).await.expect("Agent is created")));
    }
    (key(&created), keys, key(&quota))
}

/// Waits until each controller has finished a reconcile of every object of the fleet.
async fn wait_every_object_reconciled(recorder: &Reconciled, fleet: &Fleet, limit: Duration) {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let counts = [
            (tenant::CONTROLLER, recorder.count(tenant::CONTROLLER, &fleet.tenants), fleet.tenants.len()),
            (agent::CONTROLLER, recorder.count(agent::CONTROLLER, &fleet.agents), fleet.agents.len()),
            (quota::CONTROLLER, recorder.count(quota::CONTROLLER, &fleet.quotas), fleet.quotas.len()),
        ];
        let begun = recorder.started.lock().unwrap().clone();
        let line = counts
            .iter()
            .map(|(c, done, all)| format!("{c} {done}/{all} ({} started)", begun.get(*c).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ");
        if counts.iter().all(|(_, done, all)| done == all) {
            eprintln!("every object reconciled in {:.1?}: {line}", started.elapsed());
            return;
        }
        assert!(started.elapsed() < limit, "after {limit:?} not every object was reconciled: {line}");
        if line != last {
            eprintln!("{:.0?}: {line}", started.elapsed());
            last = line;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every Tenant, Agent and quota of the fleet carries a status for its
/// generation: the first instance has provisioned the fleet.
async fn wait_fleet_provisioned(cluster: &TestCluster, fleet: &Fleet) {
    let selector = ListParams::default();
    wait_until("every Tenant, Agent and quota of the fleet observed", CONVERGE, || async {
        let tenants: Api<Tenant> = Api::all(cluster.client.clone());
        let agents: Api<Agent> = Api::all(cluster.client.clone());
        let quotas: Api<CapabilityQuota> = Api::all(cluster.client.clone());
        let t = tenants.list(&selector).await.map(|l| {
            l.items
                .iter()
                .filter(|t| fleet.tenants.contains(&key(*t)) && observed(t.meta(), t.status.as_ref().and_then(|s| s.observed_generation)))
                .count()
        });
        let a = agents.list(&selector).await.map(|l| {
            l.items
                .iter()
                .filter(|a| fleet.agents.contains(&key(*a)) && observed(a.meta(), a.status.as_ref().and_then(|s| s.observed_generation)))
                .count()
        });
        let q = quotas.list(&selector).await.map(|l| {
            l.items
                .iter()
                .filter(|q| fleet.quotas.contains(&key(*q)) && observed(q.meta(), q.status.as_ref().and_then(|s| s.observed_generation)))
                .count()
        });
        matches!((t, a, q), (Ok(t), Ok(a), Ok(q)) if t == fleet.tenants.len() && a == fleet.agents.len() && q == fleet.quotas.len())
    })
    .await;
}

fn observed(meta: &kube::api::ObjectMeta, generation: Option<i64>) -> bool {
    generation.is_some() && generation == meta.generation
}

/// The configuration of a platform without backends and without TLS on the Ingress.
const KUBERNETES_ONLY: &str = "ingress: {tls: {enabled: false}}\n";

fn kubernetes_only(cluster: &TestCluster) -> Config {
    let mut config = cluster.config_with(KUBERNETES_ONLY);
    config.leader_election.enabled = false;
    config
}

/// After the fleet: a new Tenant becomes Ready and a new Agent is provisioned.
async fn new_objects_converge(cluster: &TestCluster, config: &Config) {
    let tenant = cluster.create_tenant(&cluster.tenant("late", TestCluster::minimal_spec())).await;
    let tenants: Api<Tenant> = Api::all(cluster.client.clone());
    wait_for(&tenants, &tenant.name_any(), Duration::from_secs(120), "the Tenant created after the start is Ready", is_ready).await;
    let namespace = tenant_desired::names(&tenant, config).namespace;
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), &namespace);
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "late-agent", "namespace": namespace},
        "spec": {"email": "late@acme.test", "firstName": "Late"},
    }))
    .unwrap();
    agents.create(&PostParams::default(), &agent).await.expect("the late Agent is created");
    wait_for(&agents, "late-agent", Duration::from_secs(120), "the Agent created after the start is Ready", |a| {
        a.status.as_ref().is_some_and(|s| cx_operator::api::conditions::is_true(&s.conditions, cx_operator::api::conditions::types::READY))
    })
    .await;
}

/// A plain HTTP/1.0 GET on loopback: the status code and the body.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_started_over_a_fleet_reconciles_every_object() {
    let recorder = Reconciled::global();
    let cluster = TestCluster::start().await;
    let config = kubernetes_only(&cluster);
    let fleet = seed(&cluster, &config, size("CX_TEST_FLEET_TENANTS", 1000), 0, "f").await;

    // A first instance provisions the fleet it finds.
    let (first, _) = cluster.operator(config.clone(), Providers::default(), "first").await;
    wait_every_object_reconciled(&recorder, &fleet, CONVERGE).await;
    wait_fleet_provisioned(&cluster, &fleet).await;
    let started = Instant::now();
    first.stop().await.expect("the first instance stops");
    eprintln!("first instance stopped in {:.1?}", started.elapsed());

    // A restart (a rollout, a crash) over the Ready fleet: every controller reconciles
    // every object again.
    recorder.forget(&fleet);
    let (second, writes) = cluster.operator(config.clone(), Providers::default(), "second").await;
    wait_every_object_reconciled(&recorder, &fleet, CONVERGE).await;
    eprintln!("the restarted instance wrote {} times over the settled fleet", writes.writes());
    new_objects_converge(&cluster, &config).await;
    second.stop().await.expect("the second instance stops");
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_large_start_exits_in_time_and_a_new_instance_reconciles_thousands_of_agents() {
    let recorder = Reconciled::global();
    let cluster = TestCluster::start().await;
    let config = kubernetes_only(&cluster);
    let agents = size("CX_TEST_FLEET_AGENTS", 4000);
    let fleet = seed(&cluster, &config, (agents / 10).max(1), agents, "m").await;

    // The real binary, started over the fleet, is told to stop while it reconciles.
    let dir = tempfile::tempdir().unwrap();
    let shutdown_timeout = Duration::from_secs(5);
    let config_path = dir.path().join("config.yaml");
    let text = cluster.config_text(KUBERNETES_ONLY).replace("maxBackoff: 2s}", "maxBackoff: 2s, shutdownTimeout: 5s}");
    std::fs::write(&config_path, text).unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cx-operator"))
        .args(["run", "--config"])
        .arg(&config_path)
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}"), "--identity", "process"])
        .env("KUBECONFIG", cluster.write_kubeconfig(dir.path()))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("the operator binary starts");
    wait_until("the process reconciles Agents", Duration::from_secs(120), || async {
        http_get(metrics_port, "/metrics")
            .await
            .is_some_and(|(_, body)| body.contains("cx_operator_reconciles_total{controller=\"agent\"}"))
    })
    .await;
    let (status, body) = http_get(metrics_port, "/healthz").await.expect("healthz answers");
    assert_eq!(status, 200, "a controller that takes its work is healthy: {body}");
    let pid = child.id().expect("the process runs").to_string();
    let signalled = Instant::now();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(shutdown_timeout + Duration::from_secs(10), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running {:?} after SIGTERM", signalled.elapsed()))
        .expect("the process exits");
    eprintln!("the process exited {:.1?} after SIGTERM with {exit}", signalled.elapsed());
    assert!(exit.success(), "a graceful stop exits 0: {exit}");
    let lease: Lease = Api::namespaced(cluster.client.clone(), &cluster.platform_namespace())
        .get(&format!("cx-operator-{}", cluster.run))
        .await
        .expect("the process held the Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    assert!(holder != "process", "the Lease is released on SIGTERM, still held by {holder:?}");

    // An instance started afterwards reconciles every Tenant, Agent and quota.
    recorder.forget(&fleet);
    let (op, _) = cluster.operator(config.clone(), Providers::default(), "next").await;
    wait_every_object_reconciled(&recorder, &fleet, CONVERGE).await;
    new_objects_converge(&cluster, &config).await;
    let metrics = op.metrics.render();
    for controller in [tenant::CONTROLLER, agent::CONTROLLER, quota::CONTROLLER] {
        let series = format!("cx_operator_last_reconcile_timestamp_seconds{{controller=\"{controller}\"}}");
        assert!(metrics.contains(&series), "{series} is published: {metrics}");
    }
    assert!(op.health.stalled().is_empty(), "no controller is stalled: {:?}", op.health.stalled());
    op.stop().await.expect("the instance stops");
    cluster.cleanup().await;
}
