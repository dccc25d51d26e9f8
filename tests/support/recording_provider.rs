//! A provisioner that records what the Tenant controller asks of it and can be told
//! to fail, to test the provider seam without a backend.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU32, Ordering},
};

use async_trait::async_trait;
use cx_operator::{
    api::{
        Tenant,
        conditions::{Cond, reasons},
    },
    controller::tenant_desired::DesiredTenant,
    provider::{PlannedObject, ProviderError, ProviderKind, Provisioned, Provisioner, TenantRequest},
};
use kube::ResourceExt;

/// Records calls; fails with `Unavailable` while `down` is set.
#[derive(Default)]
pub struct RecordingProvider {
    /// While true, every call fails as if the backend were unreachable.
    pub down: AtomicBool,
    /// Calls to `ensure` so far.
    pub ensures: AtomicU32,
    /// Tenants whose resources were deleted, in order.
    pub deleted: Mutex<Vec<String>>,
    /// Tenants provisioned as active / inactive, last call wins.
    pub active: Mutex<std::collections::BTreeMap<String, bool>>,
}

impl RecordingProvider {
    /// A shared instance.
    pub fn new() -> Arc<RecordingProvider> {
        Arc::new(RecordingProvider::default())
    }
}

#[async_trait]
impl Provisioner for RecordingProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Identity
    }

    fn plan(&self, tenant: &Tenant, _desired: &DesiredTenant) -> Vec<PlannedObject> {
        vec![PlannedObject { kind: "realm".into(), name: tenant.name_any(), settings: serde_json::json!({}) }]
    }

    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError> {
        let (tenant, desired) = (request.tenant, request.desired);
        self.ensures.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable { backend: "identity", message: "connection refused".into() });
        }
        let previous = self.active.lock().unwrap().insert(tenant.name_any(), desired.active);
        let operations = if previous == Some(desired.active) {
            vec![]
        } else {
            vec![format!("realm {} {}", desired.names.realm, if desired.active { "enabled" } else { "disabled" })]
        };
        Ok(Provisioned::new(Cond::ok(ProviderKind::Identity.condition_type(), reasons::PROVISIONED, "realm is in place"), operations))
    }

    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError> {
        let tenant = request.tenant;
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable { backend: "identity", message: "connection refused".into() });
        }
        self.deleted.lock().unwrap().push(tenant.name_any());
        Ok(vec![format!("deleted realm {}", tenant.name_any())])
    }
}
