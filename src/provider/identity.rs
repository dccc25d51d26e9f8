//! The Tenant step "Identity": the tenant's realm in Keycloak as a [`Provisioner`],
//! and the realm user of an Agent.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use kube::ResourceExt;

use super::{
    PlannedObject, ProviderError, ProviderKind, Provisioned, Provisioner, TenantRequest,
    keycloak::{KeycloakProvider, RealmSpec, UserSpec},
    leave_foreign,
};
use crate::{
    api::{
        Agent, Tenant,
        agent::TwoFactor,
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

/// The realm user an Agent should have; `tenant_active` false disables it with its
/// Tenant.
pub fn agent_user(agent: &Agent, tenant_active: bool) -> UserSpec {
    let spec = &agent.spec;
    let mut attributes = BTreeMap::new();
    let alias = spec.alias.clone().unwrap_or_else(|| match &spec.last_name {
        Some(last) if !last.trim().is_empty() => format!("{} {last}", spec.first_name),
        _ => spec.first_name.clone(),
    });
    attributes.insert("alias".to_string(), vec![alias]);
    for (key, value) in [("phone", &spec.phone), ("title", &spec.title), ("bio", &spec.bio)] {
        if let Some(v) = value {
            attributes.insert(key.to_string(), vec![v.clone()]);
        }
    }
    if !spec.queues.is_empty() {
        attributes.insert("queues".to_string(), spec.queues.clone());
    }
    if !spec.skills.is_empty() {
        attributes.insert("skills".to_string(), spec.skills.clone());
    }
    attributes.insert("mobileApp".to_string(), vec![spec.mobile_app.to_string()]);
    let time_format = serde_json::to_value(spec.time_format).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    attributes.insert("timeFormat".to_string(), vec![time_format]);
    UserSpec {
        username: agent.username(),
        email: spec.email.clone(),
        first_name: spec.first_name.clone(),
        last_name: spec.last_name.clone(),
        enabled: spec.enabled && tenant_active,
        attributes,
        roles: spec.roles.clone(),
        require_otp: spec.two_factor == TwoFactor::Required,
    }
}

#[async_trait]
impl Provisioner for IdentityProvisioner {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Identity
    }

    fn plan(&self, tenant: &Tenant, desired: &DesiredTenant) -> Vec<PlannedObject> {
        let mut objects = self.keycloak.plan_realm(&realm_spec(tenant, desired));
        objects.push(self.keycloak.plan_user(&agent_user(&desired.admin_agent, desired.active)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(spec: serde_json::Value) -> Agent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "bob", "namespace": "tenant-acme"}, "spec": spec,
        }))
        .expect("a valid Agent")
    }

    #[test]
    fn an_agent_maps_to_a_user_with_attributes() {
        let a = agent(serde_json::json!({
            "email": "bob@acme.example", "firstName": "Bob", "lastName": "Meyer", "phone": "+4930123456",
            "roles": ["agent"], "queues": ["billing", "general"], "timeFormat": "12h", "twoFactor": "required",
        }));
        let user = agent_user(&a, true);
        assert_eq!(user.username, "bob");
        assert!(user.enabled && user.require_otp);
        assert_eq!(user.roles, ["agent"]);
        assert_eq!(user.attributes["alias"], ["Bob Meyer"], "the alias defaults to the full name");
        assert_eq!(user.attributes["phone"], ["+4930123456"]);
        assert_eq!(user.attributes["queues"], ["billing", "general"]);
        assert_eq!(user.attributes["mobileApp"], ["false"]);
        assert_eq!(user.attributes["timeFormat"], ["12h"]);
        assert!(!user.attributes.contains_key("skills") && !user.attributes.contains_key("title"), "absent fields are no attributes");
    }

    #[test]
    fn an_alias_wins_and_a_first_name_alone_is_the_default_alias() {
        let named = agent(serde_json::json!({"email": "b@acme.example", "firstName": "Bob", "alias": "Bobby"}));
        assert_eq!(agent_user(&named, true).attributes["alias"], ["Bobby"]);
        let single = agent(serde_json::json!({"email": "b@acme.example", "firstName": "Bob"}));
        assert_eq!(agent_user(&single, true).attributes["alias"], ["Bob"]);
    }

    #[test]
    fn a_user_is_disabled_by_its_agent_or_its_tenant() {
        let off = agent(serde_json::json!({"email": "b@acme.example", "firstName": "Bob", "enabled": false}));
        assert!(!agent_user(&off, true).enabled);
        let on = agent(serde_json::json!({"email": "b@acme.example", "firstName": "Bob"}));
        assert!(!agent_user(&on, false).enabled, "a disabled Tenant disables its Agents' users");
        assert!(agent_user(&on, true).enabled);
    }
}
