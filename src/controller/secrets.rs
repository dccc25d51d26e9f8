//! Secrets in a tenant namespace, for providers' generated credentials.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::{ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client, Resource,
    api::{ObjectMeta, Patch, PatchParams},
};

use super::tenant_desired;
use crate::{
    api::Tenant,
    labels::FIELD_MANAGER,
    provider::{ProviderError, SecretStore},
};

/// The Kubernetes-backed [`SecretStore`] of one tenant: Secrets in its namespace,
/// labelled with the tenant and owned by the Tenant (or another object of it).
pub struct TenantSecrets {
    api: Api<Secret>,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
}

impl TenantSecrets {
    /// The Secrets of `tenant` in its namespace, owned by the Tenant.
    pub fn new(client: Client, tenant: &Tenant, namespace: &str) -> Self {
        Self::owned_by(client, namespace, &tenant.meta().name.clone().unwrap_or_default(), tenant.controller_owner_ref(&()))
    }

    /// Secrets of tenant `tenant_id` in `namespace` owned by `owner`, so that they go
    /// with it (an Agent's generated passwords go with the Agent).
    pub fn owned_by(client: Client, namespace: &str, tenant_id: &str, owner: Option<OwnerReference>) -> Self {
        Self { api: Api::namespaced(client, namespace), labels: tenant_desired::tenant_labels(tenant_id), owner }
    }

    /// Creates or replaces a Secret's data with server-side apply.
    pub async fn apply(&self, name: &str, data: BTreeMap<String, String>) -> Result<(), kube::Error> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(self.labels.clone()),
                owner_references: self.owner.clone().map(|o| vec![o]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
            ..Secret::default()
        };
        self.api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await.map(drop)
    }
}

fn unavailable(action: &str, name: &str, e: kube::Error) -> ProviderError {
    ProviderError::Unavailable { backend: "kubernetes", message: format!("{action} Secret {name}: {e}") }
}

#[async_trait]
impl SecretStore for TenantSecrets {
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        let secret = self.api.get_opt(name).await.map_err(|e| unavailable("reading", name, e))?;
        Ok(secret
            .map(|s| s.data.unwrap_or_default().into_iter().filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v))).collect()))
    }

    async fn write(&self, name: &str, data: BTreeMap<String, String>) -> Result<(), ProviderError> {
        self.apply(name, data).await.map_err(|e| unavailable("writing", name, e))
    }
}
