//! Assembles and runs the operator: caches, the three controllers, leader election.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Secret},
    networking::v1::Ingress,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::{
    api::{Agent, CapabilityQuota, Tenant},
    config::Config,
    controller::{
        self, Context, Stores, agent, events::EventPublisher, index::NamespaceIndex, quota, tenant, tenant_desired, trigger::TriggerQueue,
    },
    labels::{FIELD_MANAGER, managed_selector},
    provider::Providers,
    telemetry::Metrics,
    webhook::review::tenant_name_of_namespace,
};

/// Errors that stop the operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Leader election could not start or release its Lease.
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    /// The operator task panicked or was cancelled.
    #[error("operator task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running operator instance.
pub struct Operator {
    shutdown: watch::Sender<bool>,
    leader: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<(), OperatorError>>,
    /// This instance's metrics.
    pub metrics: Metrics,
    /// Whether this instance's controllers take their work (for `/healthz`).
    pub health: Health,
    /// This instance's identity in leader election.
    pub identity: String,
}

impl Operator {
    /// Starts an operator instance; it reconciles while it holds the leader lease (or
    /// always, when leader election is off).
    pub fn start(client: Client, config: Arc<Config>, providers: Providers, identity: String) -> Operator {
        let metrics = Metrics::default();
        let health = Health::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (leader_tx, leader) = watch::channel(false);
        let instance = Instance { client, config, providers, identity: identity.clone(), metrics: metrics.clone(), health: health.clone() };
        let task = tokio::spawn(run(instance, shutdown_rx, leader_tx));
        Operator { shutdown, leader, task, metrics, health, identity }
    }

    /// Whether this instance holds the leader lease now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// A receiver that follows leadership changes.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Whether the instance has stopped (on its own, after an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops gracefully: in-flight reconciles finish, the lease is released.
    pub async fn stop(self) -> Result<(), OperatorError> {
        let _ = self.shutdown.send(true);
        self.task.await?
    }

    /// Waits until the instance stops by itself.
    pub async fn wait(self) -> Result<(), OperatorError> {
        self.task.await?
    }

    /// Asks the instance to stop without waiting.
    pub fn request_stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// What one operator instance runs with.
#[derive(Clone)]
struct Instance {
    client: Client,
    config: Arc<Config>,
    providers: Providers,
    identity: String,
    metrics: Metrics,
    health: Health,
}

async fn run(instance: Instance, mut shutdown: watch::Receiver<bool>, leader: watch::Sender<bool>) -> Result<(), OperatorError> {
    let Instance { client, config, identity, metrics, .. } = instance.clone();
    let le = config.leader_election.clone();
    if !le.enabled {
        let _ = leader.send(true);
        let stop = wait_for(shutdown.clone(), true).boxed();
        run_controllers(instance, stop).await;
        return Ok(());
    }
    let namespace = le.lease_namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or_else(|| "default".into());
    let manager = LeaseManagerBuilder::new(client.clone(), &le.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(le.lease_duration.as_secs().max(1))
        .with_grace(le.renew_grace.as_secs().max(1))
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await?;
    let (lease, lease_task) = manager.watch().await;
    loop {
        tokio::select! {
            _ = wait_for(lease.clone(), true) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        tracing::info!(identity, lease = le.lease_name, "became leader; starting controllers");
        metrics.leader.set(1);
        let _ = leader.send(true);
        let lost = wait_for(lease.clone(), false);
        let stop = wait_for(shutdown.clone(), true);
        let stop = async move {
            tokio::select! { _ = lost => {}, _ = stop => {} }
        }
        .boxed();
        run_controllers(instance.clone(), stop).await;
        metrics.leader.set(0);
        let _ = leader.send(false);
        if *shutdown.borrow() {
            break;
        }
        tracing::warn!(identity, "lost the leader lease; controllers stopped until it is regained");
    }
    drop(lease);
    let manager = lease_task.await??;
    manager.release().await?;
    tracing::info!(identity, "released the leader lease");
    Ok(())
}

async fn wait_for(mut rx: watch::Receiver<bool>, value: bool) {
    // A closed channel means the sender is gone for good: treat it as reached.
    let _ = rx.wait_for(|v| *v == value).await;
}

/// Strips what reconciles never read, so caches stay small.
fn slim<K: Resource>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    obj.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Runs the three controllers until `stop` resolves, then lets in-flight reconciles
/// finish for at most `reconcile.shutdownTimeout` and cancels what is left.
///
/// Every watch runs in a task of its own: it updates its cache and pushes the keys its
/// events concern into the controllers' [`TriggerQueue`]s, which never make it wait.
/// Every controller runs in a task of its own and only drains its queue. No consumer
/// can hold up a watch, a cache or another controller (docs/design.md, "Watches,
/// caches and queues").
async fn run_controllers(instance: Instance, stop: BoxFuture<'static, ()>) {
    let Instance { client, config, providers, identity, metrics, health } = instance;
    let stop = stop.shared();
    let managed = watcher::Config::default().labels(&managed_selector());
    let mut tenant_wc = watcher::Config::default();
    if let Some(selector) = &config.sharding.tenant_selector {
        tenant_wc = tenant_wc.labels(selector);
    }
    let queues = Queues::default();
    let (agent_index, quota_index) = (NamespaceIndex::<Agent>::default(), NamespaceIndex::<CapabilityQuota>::default());

    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let (agents, agent_writer) = reflector::store::<Agent>();
    let (quotas, quota_writer) = reflector::store::<CapabilityQuota>();
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (config_maps, cm_writer) = reflector::store::<ConfigMap>();
    let (ingresses, ing_writer) = reflector::store::<Ingress>();
    let (secrets, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();

    let feeds = Feeds(vec![
        spawn_feed(
            "tenants",
            watcher(Api::<Tenant>::all(client.clone()), tenant_wc).default_backoff().modify(slim).reflect(tenant_writer),
            tenants.clone(),
            None,
            {
                let (q, agents_by_ns, quotas_by_ns, config) = (queues.clone(), agent_index.clone(), quota_index.clone(), config.clone());
                move |t: &Tenant, _| {
                    let namespace = tenant_desired::names(t, &config).namespace;
                    q.tenants.push(ObjectRef::from_obj(t));
                    q.agents.extend(agents_by_ns.keys_in(&namespace));
                    q.quotas.extend(quotas_by_ns.keys_in(&namespace));
                }
            },
        ),
        spawn_feed(
            "agents",
            watcher(Api::<Agent>::all(client.clone()), watcher::Config::default()).default_backoff().modify(slim).reflect(agent_writer),
            agents.clone(),
            Some(agent_index.clone()),
            {
                let (q, agents_by_ns, quotas_by_ns) = (queues.clone(), agent_index.clone(), quota_index.clone());
                // Agents of one namespace share its agent quota, taken in creation order:
                // only an Agent that comes or goes can move another across the limit or
                // change the count, so only then are its neighbours and quotas queued (a
                // status write of one Agent requeues nothing else).
                move |a: &Agent, membership| {
                    q.agents.push(ObjectRef::from_obj(a));
                    if membership == Membership::Changed {
                        let namespace = a.namespace().unwrap_or_default();
                        q.agents.extend(agents_by_ns.keys_in(&namespace));
                        q.quotas.extend(quotas_by_ns.keys_in(&namespace));
                    }
                }
            },
        ),
        spawn_feed(
            "capabilityquotas",
            watcher(Api::<CapabilityQuota>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .modify(slim)
                .reflect(quota_writer),
            quotas.clone(),
            Some(quota_index.clone()),
            {
                let (q, agents_by_ns, prefix) = (queues.clone(), agent_index.clone(), config.namespace_prefix.clone());
                move |quota: &CapabilityQuota, _| {
                    let namespace = quota.namespace().unwrap_or_default();
                    q.quotas.push(ObjectRef::from_obj(quota));
                    q.agents.extend(agents_by_ns.keys_in(&namespace));
                    if let Some(tenant) = tenant_name_of_namespace(&namespace, &prefix) {
                        q.tenants.push(ObjectRef::new(tenant));
                    }
                }
            },
        ),
        spawn_feed(
            "namespaces",
            watcher(Api::<Namespace>::all(client.clone()), managed.clone()).default_backoff().modify(slim).reflect(ns_writer),
            namespaces.clone(),
            None,
            route_to_owner(&queues),
        ),
        spawn_feed(
            "configmaps",
            watcher(Api::<ConfigMap>::all(client.clone()), managed.clone()).default_backoff().modify(slim).reflect(cm_writer),
            config_maps.clone(),
            None,
            route_to_owner(&queues),
        ),
        spawn_feed(
            "ingresses",
            watcher(Api::<Ingress>::namespaced(client.clone(), &config.platform_namespace), managed)
                .default_backoff()
                .modify(slim)
                .reflect(ing_writer),
            ingresses.clone(),
            None,
            route_to_owner(&queues),
        ),
        spawn_feed(
            "secrets",
            watcher(Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &config.platform_namespace), watcher::Config::default())
                .default_backoff()
                .reflect(secret_writer),
            secrets,
            None,
            {
                let (q, tenants, config) = (queues.clone(), tenants.clone(), config.clone());
                move |secret: &PartialObjectMeta<Secret>, _| q.tenants.extend(tenants_using_secret(&secret.name_any(), &tenants, &config))
            },
        ),
    ]);

    let stores = Stores {
        tenants: tenants.clone(),
        namespaces,
        config_maps,
        ingresses,
        agents: agents.clone(),
        quotas: quotas.clone(),
        agents_by_namespace: agent_index,
        quotas_by_namespace: quota_index,
    };
    let recorder = EventPublisher::new(client.clone(), "cx-operator", &identity);
    let ctx = Arc::new(Context::new(client, config.clone(), providers, recorder, metrics.clone(), stores));
    let controller_config = ControllerConfig::default().concurrency(config.reconcile.concurrency).debounce(Duration::from_millis(100));

    // Controllers start once every cache is complete: a reconcile never mistakes a cache
    // still filling for missing objects (and writes for it).
    tokio::select! {
        _ = feeds.ready() => {}
        _ = stop.clone() => return,
    }
    let controllers = [
        spawn_controller(tenants, &queues.tenants, &controller_config, stop.clone(), tenant::reconcile, tenant::CONTROLLER, ctx.clone()),
        spawn_controller(agents, &queues.agents, &controller_config, stop.clone(), agent::reconcile, agent::CONTROLLER, ctx.clone()),
        spawn_controller(quotas, &queues.quotas, &controller_config, stop.clone(), quota::reconcile, quota::CONTROLLER, ctx),
    ];
    health.watch(&queues, config.reconcile.stall_timeout);
    let gauges = tokio::spawn(publish_queue_gauges(queues.clone(), metrics));
    stop.await;
    let aborts: Vec<_> = controllers.iter().map(|c| c.abort_handle()).collect();
    let limit = config.reconcile.shutdown_timeout;
    if tokio::time::timeout(limit, futures::future::join_all(controllers)).await.is_err() {
        tracing::warn!(?limit, "reconciles still running at the end of reconcile.shutdownTimeout; cancelling them");
        aborts.iter().for_each(|a| a.abort());
    }
    gauges.abort();
    health.clear();
    drop(feeds);
}

/// The queue of each controller.
#[derive(Clone, Default)]
struct Queues {
    tenants: TriggerQueue<Tenant>,
    agents: TriggerQueue<Agent>,
    quotas: TriggerQueue<CapabilityQuota>,
}

impl Queues {
    fn each(&self) -> [(&'static str, usize, Duration); 3] {
        [
            (tenant::CONTROLLER, self.tenants.len(), self.tenants.stalled_for()),
            (agent::CONTROLLER, self.agents.len(), self.agents.stalled_for()),
            (quota::CONTROLLER, self.quotas.len(), self.quotas.stalled_for()),
        ]
    }
}

/// A watch task and whether its cache holds a complete list yet.
struct Feed {
    task: tokio::task::JoinHandle<()>,
    ready: watch::Receiver<bool>,
}

/// The watch tasks; dropping them stops the watches.
struct Feeds(Vec<Feed>);

impl Feeds {
    /// Waits until every cache holds its complete initial list.
    ///
    /// Not `Store::wait_until_ready`: its readiness is a single oneshot receiver that
    /// keeps the waker of the last task that polled it, so when several tasks wait on
    /// one store, all but one may never be woken. That lost wake-up is what stalled
    /// whole controllers after a restart over a large fleet (docs/design.md).
    async fn ready(&self) {
        for feed in &self.0 {
            let mut ready = feed.ready.clone();
            // A watch task that ended has nothing more to say: go on.
            let _ = ready.wait_for(|r| *r).await;
        }
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        self.0.iter().for_each(|f| f.task.abort());
    }
}

/// Runs a watch in its own task: its cache (and index) follow every event, then
/// `route` queues the keys each changed object concerns, told whether the object came
/// into or left its namespace. After a complete (re)list, every listed object is
/// routed once, as the cache now holds it.
fn spawn_feed<K, S>(
    name: &'static str,
    events: S,
    cache: Store<K>,
    index: Option<NamespaceIndex<K>>,
    route: impl Fn(&K, Membership) + Send + 'static,
) -> Feed
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + std::fmt::Debug + Send + Sync,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (ready_tx, ready) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(watch = name, %error, "watch failed; retrying with backoff");
                    continue;
                }
            };
            let membership = match &index {
                Some(index) if index.apply(&event) => Membership::Changed,
                _ => Membership::Same,
            };
            match &event {
                watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => route(obj, membership),
                watcher::Event::InitDone => {
                    cache.state().iter().for_each(|obj| route(obj, Membership::Same));
                    ready_tx.send_replace(true);
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
    });
    Feed { task, ready }
}

/// Whether an event added an object to its namespace or removed it from there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Membership {
    Changed,
    Same,
}

/// Runs a controller in its own task, fed by its queue alone.
fn spawn_controller<K, F, Fut>(
    cache: Store<K>,
    queue: &TriggerQueue<K>,
    config: &ControllerConfig,
    stop: futures::future::Shared<BoxFuture<'static, ()>>,
    reconcile: F,
    name: &'static str,
    ctx: Arc<Context>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, controller::Error>> + Send + 'static,
{
    let run = Controller::for_stream(futures::stream::pending::<Result<K, watcher::Error>>(), cache)
        .reconcile_on(queue.stream())
        .with_config(config.clone())
        .graceful_shutdown_on(stop)
        .run(reconcile, controller::error_policy::<K>(name), ctx)
        .for_each(|_| futures::future::ready(()));
    tokio::spawn(run)
}

/// Keeps the queue gauges current.
async fn publish_queue_gauges(queues: Queues, metrics: Metrics) {
    loop {
        for (controller, depth, wait) in queues.each() {
            metrics.set_queue(controller, depth, wait);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Routes an object the operator created for a Tenant to that Tenant's queue.
fn route_to_owner<K: Resource>(queues: &Queues) -> impl Fn(&K, Membership) + Send + 'static {
    let tenants = queues.tenants.clone();
    move |obj, _| {
        if let Some(key) = owning_tenant(obj) {
            tenants.push(key);
        }
    }
}

/// What `/healthz` checks: whether a running controller has stopped taking the work
/// queued for it.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<std::sync::Mutex<Option<(Queues, Duration)>>>,
}

impl Health {
    fn watch(&self, queues: &Queues, stall_timeout: Duration) {
        *self.inner.lock().expect("health lock") = Some((queues.clone(), stall_timeout));
    }

    fn clear(&self) {
        *self.inner.lock().expect("health lock") = None;
    }

    /// The controllers whose queued objects have waited longer than
    /// `reconcile.stallTimeout`, each with what waits; empty when all is well (or no
    /// controller runs on this instance).
    pub fn stalled(&self) -> Vec<String> {
        let guard = self.inner.lock().expect("health lock");
        let Some((queues, limit)) = guard.as_ref() else { return Vec::new() };
        queues
            .each()
            .into_iter()
            .filter(|(_, _, wait)| wait > limit)
            .map(|(controller, depth, wait)| format!("{controller}: {depth} queued objects waiting for {}s", wait.as_secs()))
            .collect()
    }
}

/// The Tenants whose TLS Secret has this name.
fn tenants_using_secret(secret: &str, tenants: &Store<Tenant>, config: &Config) -> Vec<ObjectRef<Tenant>> {
    tenants
        .state()
        .iter()
        .filter(|t| tenant_desired::names(t, config).tls_secret.as_deref() == Some(secret))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// Maps an object the operator created for a Tenant to that Tenant.
///
/// Not `Controller::owns`: it keys the owner with the child's namespace, and a Tenant is
/// cluster-scoped, so a ConfigMap in the tenant namespace and an Ingress in the platform
/// namespace would each schedule the same Tenant under another key, and reconciles of
/// one Tenant could run at the same time.
fn owning_tenant<K: Resource>(obj: &K) -> Option<ObjectRef<Tenant>> {
    let tenant_kind = (Tenant::api_version(&()), Tenant::kind(&()));
    obj.owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true) && (o.api_version.as_str(), o.kind.as_str()) == (tenant_kind.0.as_ref(), tenant_kind.1.as_ref())
        })
        .map(|o| ObjectRef::new(&o.name))
}

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn owned_config_map(owner: OwnerReference) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("cx-tenant".into());
        cm.metadata.namespace = Some("tenant-acme".into());
        cm.metadata.owner_references = Some(vec![owner]);
        cm
    }

    #[test]
    fn an_owned_object_maps_to_its_cluster_scoped_tenant() {
        let spec = serde_json::json!({
            "displayName": "Acme", "company": {"name": "Acme GmbH"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"}
        });
        let mut tenant = Tenant::new("acme", serde_json::from_value(spec).unwrap());
        tenant.metadata.uid = Some("uid-1".into());
        let owner = tenant.controller_owner_ref(&()).unwrap();
        let mapped = owning_tenant(&owned_config_map(owner)).expect("the Tenant");
        // The same key as the Tenant's own watch events: no namespace.
        assert_eq!(mapped, ObjectRef::from_obj(&tenant));
        assert_eq!(mapped.namespace, None);
    }

    #[tokio::test]
    async fn a_controller_that_stops_taking_its_queue_is_reported() {
        let (health, queues) = (Health::default(), Queues::default());
        assert!(health.stalled().is_empty(), "no controller runs: nothing to report");
        health.watch(&queues, Duration::from_millis(20));
        queues.agents.push(ObjectRef::new("a").within("tenant-acme"));
        assert!(health.stalled().is_empty(), "just queued");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let stalled = health.stalled();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert!(stalled[0].starts_with("agent: 1 queued objects waiting for"), "{stalled:?}");
        let _ = queues.agents.stream().boxed().next().await;
        assert!(health.stalled().is_empty(), "the controller took its work");
        health.clear();
    }

    /// Why the controllers wait on the feeds' own readiness: kube-runtime's store
    /// readiness wakes one of several waiting tasks, and the others sleep on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_wakes_only_one_of_several_tasks_waiting_for_it() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.wait_until_ready().await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let woken = waiters.iter().filter(|w| w.is_finished()).count();
        assert!(woken < waiters.len(), "every waiter was woken: kube-runtime fixed its readiness, and Feeds::ready could use it");
        waiters.iter().for_each(|w| w.abort());
    }

    #[test]
    fn objects_owned_by_something_else_map_to_nothing() {
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "acme".into(),
            uid: "uid-2".into(),
            controller: Some(true),
            ..Default::default()
        };
        assert_eq!(owning_tenant(&owned_config_map(owner)), None);
    }
}
