//! External systems behind small traits: identity, database, cache, observability
//! and notifications.
//!
//! The Tenant controller calls every configured provisioner in the same way; an
//! unconfigured one makes its condition report `NotConfigured` and is skipped.

pub mod data;
pub mod grafana;
pub mod http;
pub mod identity;
pub mod keycloak;
pub mod mongodb;
pub mod notifications;
pub mod password;
pub mod redis;
pub mod setup;

use std::{collections::BTreeMap, fmt, sync::Arc};

use async_trait::async_trait;

use crate::{
    api::{
        Tenant,
        conditions::{Cond, reasons, types},
    },
    controller::tenant_desired::DesiredTenant,
};

/// The external systems a tenant is provisioned in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// The identity realm (Keycloak).
    Identity,
    /// The database and its user (MongoDB).
    Database,
    /// The cache user (Redis).
    Cache,
    /// The Grafana data source's allowed hosts.
    Grafana,
}

impl ProviderKind {
    /// Every kind, in provisioning order.
    pub const ALL: [ProviderKind; 4] = [ProviderKind::Identity, ProviderKind::Database, ProviderKind::Cache, ProviderKind::Grafana];

    /// The Tenant condition this provider sets.
    pub fn condition_type(self) -> &'static str {
        match self {
            ProviderKind::Identity => types::REALM_READY,
            ProviderKind::Database => types::DATABASE_READY,
            ProviderKind::Cache => types::CACHE_READY,
            ProviderKind::Grafana => types::GRAFANA_READY,
        }
    }

    /// The operator configuration key of this backend.
    pub fn config_key(self) -> &'static str {
        match self {
            ProviderKind::Identity => "identity",
            ProviderKind::Database => "database",
            ProviderKind::Cache => "cache",
            ProviderKind::Grafana => "grafana",
        }
    }

    /// The condition reported when the backend is not configured.
    pub fn not_configured(self) -> Cond {
        Cond::ok(
            self.condition_type(),
            reasons::NOT_CONFIGURED,
            format!("no {} backend is configured; this step is skipped", self.config_key()),
        )
    }
}

/// An external object a provider would create, as `cx-operator plan` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlannedObject {
    /// What kind of object (`realm`, `database`, `aclUser` ...).
    pub kind: String,
    /// Its name in the backend.
    pub name: String,
    /// Its settings, without any credential.
    pub settings: serde_json::Value,
}

/// What a provider did for a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// The condition to report (True when everything is in place).
    pub condition: Cond,
    /// Human-readable operations performed (empty when nothing had to change); each
    /// becomes an Event on the Tenant. Never contains a credential.
    pub operations: Vec<String>,
    /// The Secret (in the tenant namespace) holding the credentials this provider
    /// generated, published in the Tenant's status by name only.
    pub credentials: Option<String>,
    /// What the tenant has in Grafana, recorded in `status.grafana` (Grafana provider
    /// only): what a later host change or deletion must remove.
    pub grafana: Option<crate::api::tenant::GrafanaStatus>,
}

impl Provisioned {
    /// A result with a condition and operations, and no credentials Secret.
    pub fn new(condition: Cond, operations: Vec<String>) -> Self {
        Self { condition, operations, credentials: None, grafana: None }
    }
}

/// Secrets in the tenant namespace, where providers keep generated credentials.
/// Written Secrets are labelled and owned by the Tenant.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The string data of a Secret, or None when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, ProviderError>;
    /// Creates or replaces a Secret's data.
    async fn write(&self, name: &str, data: BTreeMap<String, String>) -> Result<(), ProviderError>;
}

/// Everything a provider gets for one tenant.
pub struct TenantRequest<'a> {
    /// The Tenant.
    pub tenant: &'a Tenant,
    /// Its desired state (names, whether it is active).
    pub desired: &'a DesiredTenant,
    /// Secrets in the tenant namespace.
    pub secrets: &'a dyn SecretStore,
    /// Whether generated credentials must be replaced now (a rotation was asked for).
    pub rotate: bool,
    /// Whether the tenant may only read its stores: its storage is over the limit
    /// of a quota with `storagePolicy: ReadOnly`.
    pub read_only: bool,
}

/// A provider failure, classified so the controller knows whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The backend was unreachable, slow or answered with a server error: retry with
    /// backoff.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// What happened (no credentials).
        message: String,
    },
    /// An object with the tenant's name exists and belongs to something else.
    #[error("{backend} conflict: {message}")]
    Conflict {
        /// The backend.
        backend: &'static str,
        /// What is in the way.
        message: String,
    },
    /// The backend refused the request for a reason retrying cannot fix.
    #[error("{backend} refused: {message}")]
    Refused {
        /// The backend.
        backend: &'static str,
        /// Why.
        message: String,
    },
}

impl ProviderError {
    /// Whether retrying later can succeed without a spec change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Unavailable { .. })
    }

    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Unavailable { .. } => reasons::BACKEND_UNAVAILABLE,
            ProviderError::Conflict { .. } => reasons::CONFLICT,
            ProviderError::Refused { .. } => reasons::INVALID_SPEC,
        }
    }
}

/// Refuses a tenant id that is not a DNS label: anything else would make odd user,
/// database or key names in a backend.
pub fn check_tenant_id(backend: &'static str, tenant: &str) -> Result<(), ProviderError> {
    if crate::config::is_dns_label(tenant) {
        Ok(())
    } else {
        Err(ProviderError::Refused { backend, message: format!("tenant id {tenant:?} is not a DNS label") })
    }
}

/// On deletion, an object that belongs to something else was never the tenant's: it is
/// left in place (never deleted) and the deletion goes on, with an operation saying so.
pub fn leave_foreign(result: Result<Vec<String>, ProviderError>) -> Result<Vec<String>, ProviderError> {
    match result {
        Err(ProviderError::Conflict { backend, message }) => Ok(vec![format!("left {backend} object in place: {message}")]),
        other => other,
    }
}

/// One external system a tenant is provisioned in.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Which system this is.
    fn kind(&self) -> ProviderKind;

    /// The external objects the tenant would get; pure, for `cx-operator plan`.
    fn plan(&self, tenant: &Tenant, desired: &DesiredTenant) -> Vec<PlannedObject>;

    /// Makes the backend match the desired state (including `desired.active`), writing
    /// only where it differs.
    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError>;

    /// Removes everything of the tenant from the backend; "already gone" is success.
    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError>;

    /// What the tenant uses in this backend, for quotas; None where the backend
    /// measures nothing. Bounded in cost.
    async fn usage(&self, _tenant: &Tenant) -> Result<Option<Usage>, ProviderError> {
        Ok(None)
    }

    /// Counts what a usage source names in the tenant's store; None when the source
    /// lives in another backend.
    async fn count(&self, _tenant: &Tenant, _source: &crate::config::UsageSource) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }
}

/// Usage figures a backend measures for a tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of storage.
    pub storage_bytes: u64,
    /// Number of keys (cache) or documents, where the backend counts them.
    pub items: Option<u64>,
}

/// The configured provisioners, and the identity provider the Agent controller uses
/// for users.
#[derive(Clone, Default)]
pub struct Providers {
    provisioners: Vec<Arc<dyn Provisioner>>,
    keycloak: Option<Arc<keycloak::KeycloakProvider>>,
    notifier: Option<Arc<notifications::Notifier>>,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.provisioners.iter().map(|p| p.kind())).finish()
    }
}

impl Providers {
    /// Adds a provisioner, replacing any of the same kind.
    pub fn with(mut self, provisioner: Arc<dyn Provisioner>) -> Self {
        self.provisioners.retain(|p| p.kind() != provisioner.kind());
        self.provisioners.push(provisioner);
        self.provisioners.sort_by_key(|p| ProviderKind::ALL.iter().position(|k| *k == p.kind()));
        self
    }

    /// Sets the identity provider: the realm step of Tenants and the users of Agents.
    pub fn with_keycloak(self, keycloak: Arc<keycloak::KeycloakProvider>) -> Self {
        let mut providers = self.with(Arc::new(identity::IdentityProvisioner::new(keycloak.clone())));
        providers.keycloak = Some(keycloak);
        providers
    }

    /// Sets the notifier of lifecycle events.
    pub fn with_notifier(mut self, notifier: Arc<notifications::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The notifier of lifecycle events, when webhooks are configured.
    pub fn notifier(&self) -> Option<&Arc<notifications::Notifier>> {
        self.notifier.as_ref()
    }

    /// The identity provider, when configured.
    pub fn keycloak(&self) -> Option<&Arc<keycloak::KeycloakProvider>> {
        self.keycloak.as_ref()
    }

    /// The provisioner of a kind, when configured.
    pub fn get(&self, kind: ProviderKind) -> Option<&Arc<dyn Provisioner>> {
        self.provisioners.iter().find(|p| p.kind() == kind)
    }

    /// Every configured provisioner, in provisioning order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provisioner>> {
        self.provisioners.iter()
    }

    /// The kinds that are not configured, in provisioning order.
    pub fn unconfigured(&self) -> impl Iterator<Item = ProviderKind> + '_ {
        ProviderKind::ALL.into_iter().filter(|k| self.get(*k).is_none())
    }
}
