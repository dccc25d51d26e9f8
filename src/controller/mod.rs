//! Controllers: one reconciler per kind, sharing a [`Context`].
//!
//! Every reconcile is a pipeline: read → validate → build desired state (pure) →
//! apply (server-side apply, only where the observed object differs) → status.

pub mod agent;
pub mod diff;
pub mod events;
pub mod index;
pub mod notifications;
pub mod quota;
pub mod secrets;
pub mod tenant;
pub mod tenant_desired;
pub mod trigger;
pub mod usage;

use std::{
    collections::HashMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{ConfigMap, Namespace},
        networking::v1::Ingress,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};
use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    api::{Agent, CapabilityQuota, Tenant, conditions::reasons},
    config::Config,
    labels::FIELD_MANAGER,
    provider::{ProviderError, Providers},
    telemetry::Metrics,
};

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be provisioned as it is; waits for an edit.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] tenant_desired::InvalidSpec),
    /// A Kubernetes API request failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object with the name the operator needs belongs to something else.
    #[error("{0}")]
    Conflict(String),
    /// A backend failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A lifecycle notification could not be delivered; it is retried at the time it
    /// carries (its delivery backoff), not at the reconcile backoff.
    #[error(transparent)]
    Notification(#[from] notifications::Undelivered),
    /// Adding or removing the finalizer, or the cleanup behind it, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Wraps a client error with what the operator was doing.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// Whether a retry without a spec change can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidSpec(_) | Error::Conflict(_) => false,
            Error::Kube { source, .. } => !matches!(source, kube::Error::Api(s) if s.code == 400 || s.code == 422),
            Error::Provider(e) => e.is_retryable(),
            Error::Notification(_) => true,
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_retryable(),
                _ => true,
            },
        }
    }

    /// The condition reason and metrics label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => reasons::INVALID_SPEC,
            Error::Kube { .. } => reasons::API_ERROR,
            Error::Conflict(_) => reasons::CONFLICT,
            Error::Provider(e) => e.reason(),
            Error::Notification(_) => notifications::UNDELIVERED,
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => reasons::API_ERROR,
            },
        }
    }

    /// When a retry is due, for errors that know it (a notification's delivery
    /// backoff); others back off per object.
    pub fn retry_at(&self) -> Option<jiff::Timestamp> {
        match self {
            Error::Notification(e) => Some(e.retry_at),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e.retry_at(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Runs a reconcile inside a `reconcile{controller, object}` span, so that every log
/// line of it, the backends' included, names the object.
pub async fn traced<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    obj: &K,
    reconcile: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let span = tracing::info_span!("reconcile", controller, object = %ObjectRef::from_obj(obj));
    tracing::Instrument::instrument(reconcile, span).await
}

/// The object as the API server has it now, when the cached copy is being deleted.
///
/// The caches are fed by separate watches that are not ordered with each other: an
/// event on an owned object can start a reconcile of its owner while the owner's own
/// cache still holds it with the finalizer that an earlier reconcile already removed.
/// Cleanup deletes external data irreversibly, so it runs only on a fresh read. None
/// when the object is gone or was replaced by another of the same name.
pub async fn current_if_deleting<K>(api: &Api<K>, cached: Arc<K>) -> Result<Option<Arc<K>>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if cached.meta().deletion_timestamp.is_none() {
        return Ok(Some(cached));
    }
    let name = cached.name_any();
    let fresh = api.get_opt(&name).await.map_err(Error::kube(format!("reading {name} before its cleanup")))?;
    Ok(fresh.filter(|f| f.uid() == cached.uid()).map(Arc::new))
}

/// Caches of the objects the controllers read, shared with the watches that feed them.
///
/// Controllers start only once every cache holds its complete initial list (see
/// `operator::run_controllers`), so a reconcile never mistakes a cache still filling
/// for missing objects.
#[derive(Clone)]
pub struct Stores {
    /// Tenants served by this instance.
    pub tenants: Store<Tenant>,
    /// Tenant namespaces.
    pub namespaces: Store<Namespace>,
    /// Tenant ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Tenant Ingresses.
    pub ingresses: Store<Ingress>,
    /// Agents.
    pub agents: Store<Agent>,
    /// CapabilityQuotas.
    pub quotas: Store<CapabilityQuota>,
    /// Agents by namespace (kept by the Agent watch).
    pub agents_by_namespace: index::NamespaceIndex<Agent>,
    /// CapabilityQuotas by namespace (kept by the quota watch).
    pub quotas_by_namespace: index::NamespaceIndex<CapabilityQuota>,
}

impl Stores {
    /// The cached Agents of a namespace; costs what the namespace holds, not the fleet.
    pub fn agents_in(&self, namespace: &str) -> Vec<Arc<Agent>> {
        self.agents_by_namespace.keys_in(namespace).iter().filter_map(|k| self.agents.get(k)).collect()
    }

    /// The cached CapabilityQuotas of a namespace.
    pub fn quotas_in(&self, namespace: &str) -> Vec<Arc<CapabilityQuota>> {
        self.quotas_by_namespace.keys_in(namespace).iter().filter_map(|k| self.quotas.get(k)).collect()
    }
}

/// What every reconcile gets.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The operator configuration.
    pub config: Arc<Config>,
    /// The configured external systems.
    pub providers: Providers,
    /// Publishes Events.
    pub recorder: events::EventPublisher,
    /// Metrics.
    pub metrics: Metrics,
    /// Caches.
    pub stores: Stores,
    /// The last usage measurement per tenant namespace.
    pub usage: usage::MeasurementCache,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Creates a context.
    pub fn new(
        client: Client,
        config: Arc<Config>,
        providers: Providers,
        recorder: events::EventPublisher,
        metrics: Metrics,
        stores: Stores,
    ) -> Self {
        Self { client, config, providers, recorder, metrics, stores, usage: usage::MeasurementCache::default(), failures: Mutex::default() }
    }

    /// The delay until a settled object is checked again, with jitter so that resyncs
    /// of many objects spread out.
    pub fn resync(&self) -> Duration {
        jittered(self.config.reconcile.resync_interval, self.config.reconcile.jitter)
    }

    /// Forgets the failures of an object after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("failure counts lock").remove(key);
    }

    /// The next backoff for an object that failed again: `minBackoff * 2^n`, capped at
    /// `maxBackoff`, with jitter.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("failure counts lock");
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let r = &self.config.reconcile;
        let base = r.min_backoff.saturating_mul(2u32.saturating_pow((*n - 1).min(16)));
        jittered(base.min(r.max_backoff), 0.1)
    }

    /// Publishes an Event on an object; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, action: &str, note: String) {
        if let Err(e) = self.recorder.publish(&obj.object_ref(&()), type_, reason, action, note).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// `base` plus a random share of up to `fraction` of it.
pub fn jittered(base: Duration, fraction: f64) -> Duration {
    let extra = base.as_secs_f64() * fraction.clamp(0.0, 1.0) * rand::rng().random::<f64>();
    base + Duration::from_secs_f64(extra)
}

/// The backoff decision shared by every controller: transient errors are retried
/// with growing delays, permanent ones wait for the object to change.
pub fn error_policy<K: Resource<DynamicType = ()>>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, error, ctx| {
        ctx.metrics.reconcile_failed(controller, error.reason());
        let key = ObjectRef::from_obj(obj.as_ref()).to_string();
        if error.is_retryable() {
            let delay = match error.retry_at() {
                Some(at) => Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO),
                None => ctx.backoff(&key),
            };
            tracing::warn!(controller, object = %key, error = %error, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        } else {
            tracing::warn!(controller, object = %key, error = %error, "reconcile failed; waiting for a change");
            Action::await_change()
        }
    }
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The object was created.
    Created,
    /// The object was changed.
    Updated,
    /// The object already matched; nothing was written.
    Unchanged,
}

/// Server-side applies `desired` unless the cached `observed` already matches it.
/// An object that exists but is not owned by `owner_uid` is never adopted: that is a
/// [`Error::Conflict`].
pub async fn apply<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<Arc<K>>,
    owner_uid: Option<&str>,
    exact: &[&str],
) -> Result<Applied, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let observed = match observed {
        Some(o) => Some(o),
        // Not in the cache (which only holds labelled objects): look before creating.
        None => api.get_opt(&name).await.map_err(Error::kube(format!("reading {kind} {name}")))?.map(Arc::new),
    };
    if let Some(o) = &observed {
        ensure_owned(o.as_ref(), owner_uid, &kind)?;
        let desired_json = serde_json::to_value(desired).expect("Kubernetes objects serialize");
        let observed_json = serde_json::to_value(o.as_ref()).expect("Kubernetes objects serialize");
        if !diff::needs_apply(&desired_json, &observed_json, exact) {
            return Ok(Applied::Unchanged);
        }
    }
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired))
        .await
        .map_err(Error::kube(format!("applying {kind} {name}")))?;
    Ok(if observed.is_some() { Applied::Updated } else { Applied::Created })
}

fn ensure_owned<K: Resource>(obj: &K, owner_uid: Option<&str>, kind: &str) -> Result<(), Error> {
    let Some(uid) = owner_uid else { return Ok(()) };
    let owned = obj.owner_references().iter().any(|o| o.uid == uid);
    if owned {
        Ok(())
    } else {
        Err(Error::Conflict(format!("{kind} {} already exists and does not belong to this tenant; it is not adopted", obj.name_any())))
    }
}

/// A namespaced API for an object's namespace.
pub fn namespaced_api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), namespace)
}
