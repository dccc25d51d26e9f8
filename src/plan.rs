//! `cx-operator plan`: what a Tenant would become, offline, from the same pure build
//! step the controller uses.

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    api::Tenant,
    config::Config,
    controller::tenant_desired::{self, InvalidSpec},
    provider::{PlannedObject, ProviderKind, Providers},
};

/// Everything a Tenant would become.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The tenant id.
    pub tenant: String,
    /// Derived names and facts.
    pub summary: Summary,
    /// Kubernetes objects, as they would be applied.
    pub kubernetes: Vec<serde_json::Value>,
    /// External objects per configured backend.
    pub external: Vec<ExternalPlan>,
    /// Backends that are not configured and would report NotConfigured.
    pub not_configured: Vec<&'static str>,
}

/// Derived names and facts of the plan.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Tenant namespace.
    pub namespace: String,
    /// Host name.
    pub fqdn: String,
    /// URL.
    pub url: String,
    /// Identity realm.
    pub realm: String,
    /// TLS Secret in the platform namespace, when TLS is on.
    pub tls_secret: Option<String>,
    /// Whether the tenant would be active.
    pub active: bool,
    /// Whether `spec.expiresAt` has passed.
    pub expired: bool,
}

/// The objects one backend would hold for the tenant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPlan {
    /// The backend's configuration key.
    pub backend: &'static str,
    /// Its objects.
    pub objects: Vec<PlannedObject>,
}

/// Builds the plan of a Tenant.
pub fn plan(tenant: &Tenant, config: &Config, providers: &Providers, now: Timestamp) -> Result<Plan, InvalidSpec> {
    let desired = tenant_desired::build(tenant, config, now)?;
    let kubernetes =
        vec![to_json(&desired.namespace), to_json(&desired.config_map), to_json(&desired.ingress), to_json(&desired.admin_agent)];
    let external = providers.iter().map(|p| ExternalPlan { backend: p.kind().config_key(), objects: p.plan(tenant, &desired) }).collect();
    Ok(Plan {
        tenant: desired.names.tenant.clone(),
        summary: Summary {
            namespace: desired.names.namespace.clone(),
            fqdn: desired.names.fqdn.clone(),
            url: desired.names.url.clone(),
            realm: desired.names.realm.clone(),
            tls_secret: desired.names.tls_secret.clone(),
            active: desired.active,
            expired: desired.expired,
        },
        kubernetes,
        external,
        not_configured: providers.unconfigured().map(ProviderKind::config_key).collect(),
    })
}

fn to_json<T: Serialize>(object: &T) -> serde_json::Value {
    serde_json::to_value(object).expect("Kubernetes objects serialize")
}
