//! The pure "build desired state" step of the Tenant pipeline.
//!
//! No client, no clock of its own: the same function powers reconciles and the
//! offline `cx-operator plan`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Namespace},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec, IngressTLS,
            ServiceBackendPort,
        },
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};

use crate::{
    api::{
        Agent, AgentSpec, Tenant,
        agent::{TENANT_ADMIN_LABEL, TimeFormat, TwoFactor},
        tenant::IssuerKind,
    },
    config::{self, Config},
    labels::{MANAGED_BY, MANAGED_BY_LABEL, TENANT_CONFIGMAP, TENANT_LABEL},
};

/// Name of the Agent of the tenant administrator in the tenant namespace.
pub const ADMIN_AGENT: &str = "admin";

/// The realm role of the tenant administrator.
pub const ADMIN_ROLE: &str = "admin";

/// Maximum length of a tenant id, so every derived name stays legal.
pub const MAX_TENANT_ID: usize = 40;

/// A spec problem, with the path of the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    /// Path of the field, e.g. `spec.domain.fqdn`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The names a tenant gets everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantNames {
    /// The tenant id (`metadata.name`).
    pub tenant: String,
    /// The tenant namespace.
    pub namespace: String,
    /// The tenant's host name.
    pub fqdn: String,
    /// `https://<fqdn>` (or `http://` when TLS is off).
    pub url: String,
    /// The identity realm.
    pub realm: String,
    /// The TLS Secret in the platform namespace, when TLS is on.
    pub tls_secret: Option<String>,
}

/// Everything a Tenant should become in Kubernetes, plus the facts the rest of the
/// pipeline needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredTenant {
    /// Derived names.
    pub names: TenantNames,
    /// Whether the tenant should be active: enabled and not expired.
    pub active: bool,
    /// Whether `spec.expiresAt` has passed.
    pub expired: bool,
    /// The tenant namespace.
    pub namespace: Namespace,
    /// The tenant ConfigMap in the tenant namespace.
    pub config_map: ConfigMap,
    /// The tenant Ingress in the platform namespace.
    pub ingress: Ingress,
    /// The Agent of the tenant administrator in the tenant namespace.
    pub admin_agent: Agent,
}

/// Checks what the schema cannot: derived names must stay legal.
pub fn validate(tenant: &Tenant, config: &Config) -> Result<(), InvalidSpec> {
    let name = tenant.name_any();
    let invalid = |field: &str, message: String| InvalidSpec { field: field.into(), message };
    if name.len() > MAX_TENANT_ID || !config::is_dns_label(&name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid(
            "metadata.name",
            format!("tenant id {name:?} must be a DNS label of at most {MAX_TENANT_ID} characters starting with a letter"),
        ));
    }
    let fqdn = fqdn(tenant, config);
    if !config::is_dns_name(&fqdn) {
        let field = if tenant.spec.domain.fqdn.is_some() { "spec.domain.fqdn" } else { "metadata.name" };
        return Err(invalid(field, format!("host name {fqdn:?} is not a legal DNS name")));
    }
    if let Some(tls) = &tenant.spec.domain.tls
        && tls.secret_name.is_none()
        && tls.issuer_ref.is_none()
    {
        return Err(invalid("spec.domain.tls", "needs secretName, issuerRef or both".into()));
    }
    Ok(())
}

/// The tenant's host name: `spec.domain.fqdn` or `<name>.<rootDomain>`.
pub fn fqdn(tenant: &Tenant, config: &Config) -> String {
    tenant.spec.domain.fqdn.clone().unwrap_or_else(|| format!("{}.{}", tenant.name_any(), config.root_domain))
}

/// Derives every name of a tenant.
pub fn names(tenant: &Tenant, config: &Config) -> TenantNames {
    let tenant_id = tenant.name_any();
    let fqdn = fqdn(tenant, config);
    let tls_secret = config.ingress.tls.enabled.then(|| {
        tenant
            .spec
            .domain
            .tls
            .as_ref()
            .and_then(|t| t.secret_name.clone())
            .unwrap_or_else(|| config.ingress.tls.secret_name.replace("{tenant}", &tenant_id))
    });
    let scheme = if tls_secret.is_some() { "https" } else { "http" };
    TenantNames {
        namespace: format!("{}{}", config.namespace_prefix, tenant_id),
        url: format!("{scheme}://{fqdn}"),
        realm: tenant_id.clone(),
        tenant: tenant_id,
        fqdn,
        tls_secret,
    }
}

/// Whether `spec.expiresAt` lies at or before `now`.
pub fn is_expired(tenant: &Tenant, now: Timestamp) -> bool {
    tenant.spec.expires_at.as_ref().is_some_and(|t| t.0 <= now)
}

/// Builds the desired state of a tenant. Pure: the same inputs give the same output.
pub fn build(tenant: &Tenant, config: &Config, now: Timestamp) -> Result<DesiredTenant, InvalidSpec> {
    validate(tenant, config)?;
    Ok(assemble(tenant, config, now))
}

/// Builds the desired state without validating it first; deletion uses it so that a
/// Tenant whose spec became invalid can still be cleaned up.
pub fn assemble(tenant: &Tenant, config: &Config, now: Timestamp) -> DesiredTenant {
    let names = names(tenant, config);
    let expired = is_expired(tenant, now);
    let active = tenant.spec.enabled && !expired;
    let owner = owner_reference(tenant);
    DesiredTenant {
        namespace: namespace(&names, owner.clone()),
        config_map: config_map(tenant, &names, active, owner.clone()),
        ingress: ingress(tenant, &names, config, owner.clone()),
        admin_agent: admin_agent(tenant, &names, owner),
        names,
        active,
        expired,
    }
}

/// The labels every object of a tenant carries.
pub fn tenant_labels(tenant_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()), (TENANT_LABEL.to_string(), tenant_id.to_string())])
}

/// The controller owner reference to the Tenant; absent for a Tenant not yet stored
/// (offline plans), which has no uid.
fn owner_reference(tenant: &Tenant) -> Option<OwnerReference> {
    tenant.controller_owner_ref(&())
}

fn meta(name: &str, namespace: Option<&str>, names: &TenantNames, owner: Option<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(tenant_labels(&names.tenant)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The Agent `admin` of the tenant administrator, from `spec.admin`, with the admin
/// role and the tenant-admin label. The Agent controller provisions its user like
/// any other Agent's; it counts towards the tenant's agent quota.
fn admin_agent(tenant: &Tenant, names: &TenantNames, owner: Option<OwnerReference>) -> Agent {
    let admin = &tenant.spec.admin;
    let spec = AgentSpec {
        username: Some(admin.username.clone()),
        email: admin.email.clone(),
        first_name: admin.first_name.clone(),
        last_name: admin.last_name.clone(),
        alias: None,
        phone: None,
        title: None,
        bio: None,
        roles: vec![ADMIN_ROLE.into()],
        queues: Vec::new(),
        skills: Vec::new(),
        enabled: true,
        mobile_app: false,
        time_format: TimeFormat::default(),
        password_secret_ref: admin.password_secret_ref.clone(),
        activation: admin.activation,
        two_factor: TwoFactor::default(),
    };
    let mut agent = Agent::new(ADMIN_AGENT, spec);
    agent.metadata = meta(ADMIN_AGENT, Some(&names.namespace), names, owner);
    agent.metadata.labels.get_or_insert_default().insert(TENANT_ADMIN_LABEL.to_string(), "true".to_string());
    agent
}

fn namespace(names: &TenantNames, owner: Option<OwnerReference>) -> Namespace {
    Namespace { metadata: meta(&names.namespace, None, names, owner), ..Namespace::default() }
}

fn config_map(tenant: &Tenant, names: &TenantNames, active: bool, owner: Option<OwnerReference>) -> ConfigMap {
    let mut data = BTreeMap::from([
        ("tenantId".to_string(), names.tenant.clone()),
        ("displayName".to_string(), tenant.spec.display_name.clone()),
        ("namespace".to_string(), names.namespace.clone()),
        ("fqdn".to_string(), names.fqdn.clone()),
        ("url".to_string(), names.url.clone()),
        ("realm".to_string(), names.realm.clone()),
        ("enabled".to_string(), active.to_string()),
        ("language".to_string(), tenant.spec.locale.language.clone()),
        ("timeZone".to_string(), tenant.spec.locale.time_zone.clone()),
    ]);
    for (feature, on) in tenant.spec.features.list() {
        data.insert(format!("features.{feature}"), on.to_string());
    }
    for (key, value) in &tenant.spec.config {
        data.insert(format!("config.{key}"), value.clone());
    }
    ConfigMap { metadata: meta(TENANT_CONFIGMAP, Some(&names.namespace), names, owner), data: Some(data), ..ConfigMap::default() }
}

fn ingress(tenant: &Tenant, names: &TenantNames, config: &Config, owner: Option<OwnerReference>) -> Ingress {
    let mut metadata = meta(&names.namespace, Some(&config.platform_namespace), names, owner);
    let mut annotations = config.ingress.annotations.clone();
    if let Some((kind, issuer)) = issuer(tenant, config) {
        let key = match kind {
            IssuerKind::ClusterIssuer => "cert-manager.io/cluster-issuer",
            IssuerKind::Issuer => "cert-manager.io/issuer",
        };
        annotations.insert(key.to_string(), issuer);
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let paths = config
        .ingress
        .paths
        .iter()
        .map(|p| HTTPIngressPath {
            path: Some(p.path.clone()),
            path_type: p.path_type.as_str().to_string(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: p.service.name.clone(),
                    port: Some(ServiceBackendPort { number: Some(p.service.port), name: None }),
                }),
                resource: None,
            },
        })
        .collect();
    let tls = names
        .tls_secret
        .as_ref()
        .map(|secret| vec![IngressTLS { hosts: Some(vec![names.fqdn.clone()]), secret_name: Some(secret.clone()) }]);
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: config.ingress.class_name.clone(),
            rules: Some(vec![IngressRule { host: Some(names.fqdn.clone()), http: Some(HTTPIngressRuleValue { paths }) }]),
            tls,
            default_backend: None,
        }),
        status: None,
    }
}

/// The cert-manager issuer for the tenant: its own, else the configured default.
fn issuer(tenant: &Tenant, config: &Config) -> Option<(IssuerKind, String)> {
    if !config.ingress.tls.enabled {
        return None;
    }
    if let Some(r) = tenant.spec.domain.tls.as_ref().and_then(|t| t.issuer_ref.as_ref()) {
        return Some((r.kind, r.name.clone()));
    }
    config.ingress.tls.issuer.as_ref().map(|i| {
        let kind = if i.kind == "Issuer" { IssuerKind::Issuer } else { IssuerKind::ClusterIssuer };
        (kind, i.name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tenant::{DomainTls, IssuerRef, TenantSpec};

    fn tenant(name: &str) -> Tenant {
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Acme", "company": {"name": "Acme GmbH"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"}
        }))
        .unwrap();
        let mut t = Tenant::new(name, spec);
        t.metadata.uid = Some("uid-1".into());
        t
    }

    fn config() -> Config {
        Config::parse("rootDomain: cx.example.com\nplatformNamespace: cx-platform\ningress:\n  className: nginx\n  annotations: {a: b}\n")
            .unwrap()
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn names_derive_from_tenant_id_and_root_domain() {
        let d = build(&tenant("acme"), &config(), now()).unwrap();
        assert_eq!(d.names.namespace, "tenant-acme");
        assert_eq!(d.names.fqdn, "acme.cx.example.com");
        assert_eq!(d.names.url, "https://acme.cx.example.com");
        assert_eq!(d.names.tls_secret.as_deref(), Some("acme-tls"));
        assert!(d.active && !d.expired);
    }

    #[test]
    fn every_object_is_labelled_and_owned_by_the_tenant() {
        let d = build(&tenant("acme"), &config(), now()).unwrap();
        for meta in [&d.namespace.metadata, &d.config_map.metadata, &d.ingress.metadata, &d.admin_agent.metadata] {
            assert_eq!(meta.labels.as_ref().unwrap()[TENANT_LABEL], "acme");
            let owner = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Tenant", "uid-1", Some(true)));
        }
        assert_eq!(d.ingress.metadata.namespace.as_deref(), Some("cx-platform"));
        assert_eq!(d.config_map.metadata.namespace.as_deref(), Some("tenant-acme"));
    }

    #[test]
    fn the_tenant_administrator_is_an_admin_agent_in_the_tenant_namespace() {
        let t = tenant("acme");
        let agent = build(&t, &config(), now()).unwrap().admin_agent;
        assert_eq!(agent.metadata.name.as_deref(), Some(ADMIN_AGENT));
        assert_eq!(agent.metadata.namespace.as_deref(), Some("tenant-acme"));
        assert_eq!(agent.metadata.labels.as_ref().unwrap()[TENANT_ADMIN_LABEL], "true");
        assert!(agent.is_tenant_admin());
        assert_eq!(agent.spec.roles, [ADMIN_ROLE]);
        assert_eq!(agent.spec.username.as_deref(), Some(t.spec.admin.username.as_str()));
        assert_eq!(agent.spec.email, t.spec.admin.email);
        assert_eq!(agent.spec.activation, t.spec.admin.activation);
    }

    #[test]
    fn ingress_follows_the_configured_template() {
        let d = build(&tenant("acme"), &config(), now()).unwrap();
        let spec = d.ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("acme.cx.example.com"));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(path.backend.service.as_ref().unwrap().name, "web");
        assert_eq!(spec.tls.unwrap()[0].hosts.as_ref().unwrap(), &["acme.cx.example.com".to_string()]);
        assert_eq!(d.ingress.metadata.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn tenant_issuer_becomes_a_cert_manager_annotation() {
        let mut t = tenant("acme");
        t.spec.domain.tls = Some(DomainTls {
            secret_name: None,
            issuer_ref: Some(IssuerRef { name: "letsencrypt".into(), kind: IssuerKind::ClusterIssuer }),
        });
        let d = build(&t, &config(), now()).unwrap();
        assert_eq!(d.ingress.metadata.annotations.unwrap()["cert-manager.io/cluster-issuer"], "letsencrypt");
    }

    #[test]
    fn config_map_publishes_ids_features_and_config() {
        let mut t = tenant("acme");
        t.spec.features.ai_agents = true;
        t.spec.config.insert("dialerUrl".into(), "https://dialer.test".into());
        let d = build(&t, &config(), now()).unwrap();
        let data = d.config_map.data.unwrap();
        assert_eq!(data["tenantId"], "acme");
        assert_eq!(data["features.aiAgents"], "true");
        assert_eq!(data["features.audioVideo"], "false");
        assert_eq!(data["config.dialerUrl"], "https://dialer.test");
        assert_eq!(data["enabled"], "true");
    }

    #[test]
    fn expiry_and_disabling_make_the_tenant_inactive() {
        let mut t = tenant("acme");
        t.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-05-01T00:00:00Z".parse().unwrap()));
        let d = build(&t, &config(), now()).unwrap();
        assert!(d.expired && !d.active);
        assert_eq!(d.config_map.data.unwrap()["enabled"], "false");
        let mut t = tenant("acme");
        t.spec.enabled = false;
        let d = build(&t, &config(), now()).unwrap();
        assert!(!d.expired && !d.active);
    }

    #[test]
    fn illegal_names_are_refused_with_the_field() {
        let err = build(&tenant(&"a".repeat(41)), &config(), now()).unwrap_err();
        assert_eq!(err.field, "metadata.name");
        let mut t = tenant("acme");
        t.spec.domain.fqdn = Some("-bad-.example.com".into());
        assert_eq!(build(&t, &config(), now()).unwrap_err().field, "spec.domain.fqdn");
    }

    #[test]
    fn build_is_pure() {
        let t = tenant("acme");
        assert_eq!(build(&t, &config(), now()), build(&t, &config(), now()));
    }
}
