//! The Tenant step "Identity": the tenant's realm in Keycloak as a [`Provisioner`].

use std::sync::Arc;

use async_trait::async_trait;
use kube::ResourceExt;

use super::{
    PlannedObject, ProviderError, ProviderKind, Provisioned, Provisioner, TenantRequest,
    keycloak::{KeycloakProvider, RealmSpec, UserSpec},
    leave_foreign,
};
use crate::{
    api::{
        Tenant,
        conditions::{Cond, reasons},
    },
    controller::tenant_desired::DesiredTenant,
};

/// The realm step on one Keycloak.
pub struct IdentityProvisioner {
    keycloak: Arc<KeycloakProvider>,
}

impl IdentityProvisioner {
    /// A provisioner over a Keycloak provider.
    pub fn new(keycloak: Arc<KeycloakProvider>) -> Self {
        Self { keycloak }
    }
}

/// The realm a tenant should have.
pub fn realm_spec(tenant: &Tenant, desired: &DesiredTenant) -> RealmSpec {
    RealmSpec {
        name: desired.names.realm.clone(),
        display_name: tenant.spec.display_name.clone(),
        enabled: desired.active,
        default_locale: tenant.spec.locale.language.clone(),
        tenant_uid: tenant.uid().unwrap_or_default(),
        url: desired.names.url.clone(),
    }
}

/// The tenant administrator as a realm user (shown by `plan`; the Agent controller
/// provisions it from the `admin` Agent).
pub fn admin_user_spec(tenant: &Tenant) -> UserSpec {
    let admin = &tenant.spec.admin;
    UserSpec {
        username: admin.username.clone(),
        email: admin.email.clone(),
        first_name: admin.first_name.clone(),
        last_name: admin.last_name.clone(),
        enabled: true,
        attributes: Default::default(),
        roles: vec!["admin".into()],
        require_otp: false,
    }
}

#[async_trait]
impl Provisioner for IdentityProvisioner {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Identity
    }

    fn plan(&self, tenant: &Tenant, desired: &DesiredTenant) -> Vec<PlannedObject> {
        let mut objects = self.keycloak.plan_realm(&realm_spec(tenant, desired));
        objects.push(self.keycloak.plan_user(&admin_user_spec(tenant)));
        objects
    }

    async fn ensure(&self, request: &TenantRequest<'_>) -> Result<Provisioned, ProviderError> {
        let spec = realm_spec(request.tenant, request.desired);
        let operations = self.keycloak.ensure_realm(&spec).await?;
        let message = if spec.enabled {
            format!("realm {} is in place", spec.name)
        } else {
            format!("realm {} is disabled: nobody can log in; everything is kept", spec.name)
        };
        Ok(Provisioned::new(Cond::ok(ProviderKind::Identity.condition_type(), reasons::PROVISIONED, message), operations))
    }

    async fn delete(&self, request: &TenantRequest<'_>) -> Result<Vec<String>, ProviderError> {
        let uid = request.tenant.uid().unwrap_or_default();
        leave_foreign(self.keycloak.delete_owned_realm(&request.desired.names.realm, &uid).await)
    }
}
