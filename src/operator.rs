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
    controller::{self, Context, Stores, agent, events::EventPublisher, quota, tenant, tenant_desired},
    labels::{FIELD_MANAGER, managed_selector},
    provider::Providers,
    telemetry::Metrics,
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
    /// This instance's identity in leader election.
    pub identity: String,
}

impl Operator {
    /// Starts an operator instance; it reconciles while it holds the leader lease (or
    /// always, when leader election is off).
    pub fn start(client: Client, config: Arc<Config>, providers: Providers, identity: String) -> Operator {
        let metrics = Metrics::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (leader_tx, leader) = watch::channel(false);
        let task = tokio::spawn(run(client, config, providers, identity.clone(), metrics.clone(), shutdown_rx, leader_tx));
        Operator { shutdown, leader, task, metrics, identity }
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

async fn run(
    client: Client,
    config: Arc<Config>,
    providers: Providers,
    identity: String,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
    leader: watch::Sender<bool>,
) -> Result<(), OperatorError> {
    let le = config.leader_election.clone();
    if !le.enabled {
        let _ = leader.send(true);
        let stop = wait_for(shutdown.clone(), true).boxed();
        run_controllers(client, config, providers, identity, metrics, stop).await;
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
        run_controllers(client.clone(), config.clone(), providers.clone(), identity.clone(), metrics.clone(), stop).await;
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

/// Runs the three controllers until `stop` resolves, then lets in-flight reconciles finish.
async fn run_controllers(
    client: Client,
    config: Arc<Config>,
    providers: Providers,
    identity: String,
    metrics: Metrics,
    stop: BoxFuture<'static, ()>,
) {
    let stop = stop.shared();
    let managed = watcher::Config::default().labels(&managed_selector());
    let mut tenant_wc = watcher::Config::default();
    if let Some(selector) = &config.sharding.tenant_selector {
        tenant_wc = tenant_wc.labels(selector);
    }

    let (tenants, tenant_writer) = reflector::store_shared::<Tenant>(1024);
    let tenant_subs = [tenant_writer.subscribe(), tenant_writer.subscribe(), tenant_writer.subscribe()];
    let tenant_feed = watcher(Api::<Tenant>::all(client.clone()), tenant_wc).default_backoff().modify(slim).reflect_shared(tenant_writer);
    let (agents, agent_writer) = reflector::store_shared::<Agent>(1024);
    let agent_subs = [agent_writer.subscribe(), agent_writer.subscribe(), agent_writer.subscribe()];
    let agent_feed =
        watcher(Api::<Agent>::all(client.clone()), watcher::Config::default()).default_backoff().modify(slim).reflect_shared(agent_writer);
    let (quotas, quota_writer) = reflector::store_shared::<CapabilityQuota>(1024);
    let quota_subs = [quota_writer.subscribe(), quota_writer.subscribe(), quota_writer.subscribe()];
    let quota_feed = watcher(Api::<CapabilityQuota>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect_shared(quota_writer);

    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let ns_stream =
        watcher(Api::<Namespace>::all(client.clone()), managed.clone()).default_backoff().modify(slim).reflect(ns_writer).touched_objects();
    let (config_maps, cm_writer) = reflector::store::<ConfigMap>();
    let cm_stream =
        watcher(Api::<ConfigMap>::all(client.clone()), managed.clone()).default_backoff().modify(slim).reflect(cm_writer).touched_objects();
    let (ingresses, ing_writer) = reflector::store::<Ingress>();
    let ing_stream = watcher(Api::<Ingress>::namespaced(client.clone(), &config.platform_namespace), managed)
        .default_backoff()
        .modify(slim)
        .reflect(ing_writer)
        .touched_objects();
    let secret_stream =
        watcher(Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &config.platform_namespace), watcher::Config::default())
            .default_backoff()
            .touched_objects();

    let stores = Stores { tenants: tenants.clone(), namespaces, config_maps, ingresses, agents: agents.clone(), quotas: quotas.clone() };
    let recorder = EventPublisher::new(client.clone(), "cx-operator", &identity);
    let ctx = Arc::new(Context::new(client, config.clone(), providers, recorder, metrics, stores));
    let controller_config = ControllerConfig::default().concurrency(config.reconcile.concurrency).debounce(Duration::from_millis(100));

    let [t1, t2, t3] = tenant_subs.map(|s| s.expect("shared store has subscribers"));
    let [a1, a2, a3] = agent_subs.map(|s| s.expect("shared store has subscribers"));
    let [q1, q2, q3] = quota_subs.map(|s| s.expect("shared store has subscribers"));

    let tenant_controller = {
        let (secret_cfg, secret_tenants) = (config.clone(), tenants.clone());
        Controller::for_shared_stream(t1, tenants.clone())
            .with_config(controller_config.clone())
            .watches_stream(ns_stream, owning_tenant)
            .watches_stream(cm_stream, owning_tenant)
            .watches_stream(ing_stream, owning_tenant)
            .watches_stream(secret_stream, move |secret| tenants_using_secret(&secret.name_any(), &secret_tenants, &secret_cfg))
            .watches_shared_stream(q1, namespace_tenant(config.clone()))
            .graceful_shutdown_on(stop.clone())
            .run(tenant::reconcile, controller::error_policy::<Tenant>(tenant::CONTROLLER), ctx.clone())
            .for_each(|_| futures::future::ready(()))
    };
    let agent_controller = {
        let (by_agent, by_quota, by_tenant) = (agents.clone(), agents.clone(), agents.clone());
        let prefix = config.namespace_prefix.clone();
        Controller::for_shared_stream(a1, agents.clone())
            .with_config(controller_config.clone())
            .watches_shared_stream(a2, move |a: Arc<Agent>| agents_in(&by_agent, a.namespace().as_deref()))
            .watches_shared_stream(q2, move |q: Arc<CapabilityQuota>| agents_in(&by_quota, q.namespace().as_deref()))
            .watches_shared_stream(t2, move |t: Arc<Tenant>| agents_in(&by_tenant, Some(&format!("{prefix}{}", t.name_any()))))
            .graceful_shutdown_on(stop.clone())
            .run(agent::reconcile, controller::error_policy::<Agent>(agent::CONTROLLER), ctx.clone())
            .for_each(|_| futures::future::ready(()))
    };
    let quota_controller = {
        let (by_agent, by_tenant) = (quotas.clone(), quotas.clone());
        let prefix = config.namespace_prefix.clone();
        Controller::for_shared_stream(q3, quotas.clone())
            .with_config(controller_config)
            .watches_shared_stream(a3, move |a: Arc<Agent>| quotas_in(&by_agent, a.namespace().as_deref()))
            .watches_shared_stream(t3, move |t: Arc<Tenant>| quotas_in(&by_tenant, Some(&format!("{prefix}{}", t.name_any()))))
            .graceful_shutdown_on(stop.clone())
            .run(quota::reconcile, controller::error_policy::<CapabilityQuota>(quota::CONTROLLER), ctx.clone())
            .for_each(|_| futures::future::ready(()))
    };
    let feeds = async {
        let drain = |s: futures::stream::BoxStream<'static, ()>| s.for_each(|_| futures::future::ready(()));
        futures::join!(
            drain(tenant_feed.map(|_| ()).boxed()),
            drain(agent_feed.map(|_| ()).boxed()),
            drain(quota_feed.map(|_| ()).boxed())
        );
    };
    // The feeds never end on their own; the controllers end on `stop`.
    tokio::select! {
        _ = async { futures::join!(tenant_controller, agent_controller, quota_controller) } => {}
        _ = feeds => {}
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
fn owning_tenant<K: Resource>(obj: K) -> Option<ObjectRef<Tenant>> {
    let tenant_kind = (Tenant::api_version(&()), Tenant::kind(&()));
    obj.owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true) && (o.api_version.as_str(), o.kind.as_str()) == (tenant_kind.0.as_ref(), tenant_kind.1.as_ref())
        })
        .map(|o| ObjectRef::new(&o.name))
}

/// Maps an object in a tenant namespace to its Tenant.
fn namespace_tenant<K: Resource>(config: Arc<Config>) -> impl Fn(Arc<K>) -> Option<ObjectRef<Tenant>> + Send + Sync + 'static {
    move |obj| {
        let ns = obj.namespace()?;
        ns.strip_prefix(&config.namespace_prefix).map(ObjectRef::new)
    }
}

fn agents_in(store: &Store<Agent>, namespace: Option<&str>) -> Vec<ObjectRef<Agent>> {
    store.state().iter().filter(|a| a.namespace().as_deref() == namespace).map(|a| ObjectRef::from_obj(a.as_ref())).collect()
}

fn quotas_in(store: &Store<CapabilityQuota>, namespace: Option<&str>) -> Vec<ObjectRef<CapabilityQuota>> {
    store.state().iter().filter(|q| q.namespace().as_deref() == namespace).map(|q| ObjectRef::from_obj(q.as_ref())).collect()
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
        let mapped = owning_tenant(owned_config_map(owner)).expect("the Tenant");
        // The same key as the Tenant's own watch events: no namespace.
        assert_eq!(mapped, ObjectRef::from_obj(&tenant));
        assert_eq!(mapped.namespace, None);
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
        assert_eq!(owning_tenant(owned_config_map(owner)), None);
    }
}
