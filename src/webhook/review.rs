//! The admission rules as pure functions: plain objects in, a [`Verdict`] out.
//!
//! Every denial names the field the user has to change, in the form
//! `spec.limits.agents: ...`, which is how the API server shows it to `kubectl`.

use std::fmt;

use kube::ResourceExt;

use crate::{
    api::{Agent, CapabilityQuota, Tenant, quota::Capability},
    config::{Config, Licence},
    controller::tenant_desired,
    licence,
};

/// Why a request is refused, and which field to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Path of the field, e.g. `spec.deletionProtection`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The outcome of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request passes this rule.
    Allowed,
    /// The request is refused.
    Denied(Denial),
}

impl Verdict {
    fn deny(field: &str, message: impl Into<String>) -> Verdict {
        Verdict::Denied(Denial { field: field.into(), message: message.into() })
    }

    /// The first denial of several rules, or Allowed.
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().find(|v| matches!(v, Verdict::Denied(_))).unwrap_or(Verdict::Allowed)
    }
}

/// The tenant id a namespace belongs to, by the configured prefix.
pub fn tenant_name_of_namespace<'a>(namespace: &'a str, prefix: &str) -> Option<&'a str> {
    namespace.strip_prefix(prefix).filter(|name| !name.is_empty())
}

/// CREATE Agent: the namespace must belong to a Tenant (`tenant`, looked up by
/// [`tenant_name_of_namespace`]) that is enabled. The tenant administrator's Agent is
/// exempt from the enabled check, because the operator creates it for every Tenant,
/// disabled or not (its realm user is disabled with the tenant).
pub fn agent_namespace(agent: &Agent, namespace: &str, prefix: &str, tenant: Option<&Tenant>) -> Verdict {
    let Some(name) = tenant_name_of_namespace(namespace, prefix) else {
        return Verdict::deny(
            "metadata.namespace",
            format!("{namespace} is not a tenant namespace: Agents live in the namespace {prefix}<tenant> of their Tenant"),
        );
    };
    match tenant {
        None => Verdict::deny("metadata.namespace", format!("{namespace} belongs to no Tenant: Tenant {name} does not exist")),
        Some(t) if t.metadata.deletion_timestamp.is_some() => {
            Verdict::deny("metadata.namespace", format!("Tenant {name} is being deleted; no new Agents are accepted"))
        }
        Some(t) if !t.spec.enabled && !agent.is_tenant_admin() => {
            Verdict::deny("metadata.namespace", format!("Tenant {name} is disabled (spec.enabled: false); enable it to add Agents"))
        }
        Some(_) => Verdict::Allowed,
    }
}

/// CREATE Agent: the tenant's agents must be below their effective limit (the
/// tightest `spec.limits.agents` over the namespace's CapabilityQuotas). `agents` is
/// the number of Agents in the namespace now, without the new one.
pub fn agent_quota(namespace: &str, tenant: Option<&Tenant>, quotas: &[CapabilityQuota], agents: usize) -> Verdict {
    let limits: Vec<_> = quotas.iter().map(|q| &q.spec.limits).collect();
    let features = tenant.map(|t| &t.spec.features);
    let Some(limit) = licence::effective_count(Capability::Agents, features, &limits) else {
        return Verdict::Allowed;
    };
    if (agents as i64) < limit {
        return Verdict::Allowed;
    }
    let tightest: Vec<String> =
        quotas.iter().filter(|q| q.spec.limits.agents == Some(limit)).map(|q| format!("CapabilityQuota {}", q.name_any())).collect();
    Verdict::deny(
        "metadata.namespace",
        format!(
            "{namespace} is at its agents limit: {agents} of {limit} (spec.limits.agents of {}); raise the limit or remove an Agent",
            tightest.join(", ")
        ),
    )
}

/// DELETE Agent: the tenant administrator's Agent cannot go while its Tenant exists
/// and is not being deleted.
pub fn admin_agent_delete(agent: &Agent, tenant: Option<&Tenant>) -> Verdict {
    if !agent.is_tenant_admin() {
        return Verdict::Allowed;
    }
    match tenant {
        Some(t) if t.metadata.deletion_timestamp.is_none() => Verdict::deny(
            "metadata.name",
            format!(
                "{} is the tenant administrator of Tenant {}; it goes with its Tenant and cannot be deleted alone",
                agent.name_any(),
                t.name_any()
            ),
        ),
        _ => Verdict::Allowed,
    }
}

/// DELETE Tenant: refused while `spec.deletionProtection` is true.
pub fn tenant_delete(tenant: &Tenant) -> Verdict {
    if tenant.spec.deletion_protection {
        return Verdict::deny(
            "spec.deletionProtection",
            format!("Tenant {} is protected from deletion; set spec.deletionProtection to false first", tenant.name_any()),
        );
    }
    Verdict::Allowed
}

/// CREATE/UPDATE Tenant: its FQDN (`spec.domain.fqdn`, default `<name>.<rootDomain>`)
/// must not be another Tenant's. On UPDATE only a changed FQDN is checked (`old`), so
/// that a conflict from before never blocks the operator's own updates (finalizers).
pub fn tenant_fqdn(tenant: &Tenant, old: Option<&Tenant>, others: &[Tenant], config: &Config) -> Verdict {
    let fqdn = tenant_desired::fqdn(tenant, config).to_ascii_lowercase();
    if old.is_some_and(|o| tenant_desired::fqdn(o, config).eq_ignore_ascii_case(&fqdn)) {
        return Verdict::Allowed;
    }
    let name = tenant.name_any();
    let Some(other) = others.iter().find(|o| o.name_any() != name && tenant_desired::fqdn(o, config).eq_ignore_ascii_case(&fqdn)) else {
        return Verdict::Allowed;
    };
    let field = if tenant.spec.domain.fqdn.is_some() { "spec.domain.fqdn" } else { "metadata.name" };
    Verdict::deny(field, format!("host name {fqdn} is already used by Tenant {}; choose another spec.domain.fqdn", other.name_any()))
}

/// CREATE/UPDATE CapabilityQuota: a capability whose feature is off in the Tenant
/// cannot get a limit above 0.
pub fn quota_features(quota: &CapabilityQuota, tenant: Option<&Tenant>) -> Verdict {
    let Some(tenant) = tenant else {
        return Verdict::Allowed;
    };
    for capability in Capability::ALL {
        let (Some(feature), Some(limit)) = (capability.feature(), quota.spec.limits.get(capability)) else {
            continue;
        };
        let on = tenant.spec.features.list().iter().any(|(f, on)| *f == feature && *on);
        if !on && licence::quantity_value(&limit) > 0.0 {
            return Verdict::deny(
                &format!("spec.limits.{}", capability.name()),
                format!(
                    "must be 0 or absent: feature {feature} is off in Tenant {} (spec.features.{feature}); turn the feature on first",
                    tenant.name_any()
                ),
            );
        }
    }
    Verdict::Allowed
}

/// CREATE/UPDATE CapabilityQuota: the tenants' allotments must stay within the
/// platform licence (see [`crate::licence`] for the arithmetic and its decisions).
/// `tenants` are every Tenant, `quotas` every CapabilityQuota in the cluster as they
/// are now; `quota` is the proposed object.
pub fn quota_licence(quota: &CapabilityQuota, licence: &Licence, tenants: &[Tenant], quotas: &[CapabilityQuota], prefix: &str) -> Verdict {
    let namespace = quota.namespace().unwrap_or_default();
    let Some(tenant) = tenant_name_of_namespace(&namespace, prefix) else {
        return Verdict::Allowed;
    };
    let view = licence::tenant_quotas(tenants, quotas, prefix);
    let after: Vec<_> = quotas
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(namespace.as_str()) && q.name_any() != quota.name_any())
        .map(|q| &q.spec.limits)
        .chain(std::iter::once(&quota.spec.limits))
        .collect();
    match licence::check_quota_change(licence, &view, tenant, &after) {
        Ok(()) => Verdict::Allowed,
        Err(v) => Verdict::Denied(Denial { field: v.field, message: v.message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::agent::TENANT_ADMIN_LABEL;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn config() -> Config {
        Config::parse("rootDomain: cx.example.com\nplatformNamespace: p\nnamespacePrefix: tenant-\n").unwrap()
    }

    fn tenant(name: &str, extra: serde_json::Value) -> Tenant {
        let mut spec = serde_json::json!({
            "displayName": "Acme", "company": {"name": "Acme"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"}
        });
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(
            serde_json::json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap()
    }

    fn agent(name: &str, admin: bool) -> Agent {
        let labels = if admin { serde_json::json!({TENANT_ADMIN_LABEL: "true"}) } else { serde_json::json!({}) };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": "tenant-acme", "labels": labels},
            "spec": {"email": "a@acme.test", "firstName": "A"}
        }))
        .unwrap()
    }

    fn quota(namespace: &str, name: &str, limits: serde_json::Value) -> CapabilityQuota {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cx-operator.io/v1alpha1", "kind": "CapabilityQuota",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"limits": limits}
        }))
        .unwrap()
    }

    fn denied_field(v: Verdict) -> String {
        match v {
            Verdict::Denied(d) => {
                assert!(d.to_string().starts_with(&format!("{}: ", d.field)));
                d.field
            }
            Verdict::Allowed => panic!("expected a denial"),
        }
    }

    fn deleting(mut t: Tenant) -> Tenant {
        t.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        t
    }

    #[test]
    fn agents_need_an_enabled_tenant() {
        let acme = tenant("acme", serde_json::json!({}));
        assert_eq!(agent_namespace(&agent("bob", false), "tenant-acme", "tenant-", Some(&acme)), Verdict::Allowed);
        assert_eq!(denied_field(agent_namespace(&agent("bob", false), "default", "tenant-", None)), "metadata.namespace");
        let v = agent_namespace(&agent("bob", false), "tenant-ghost", "tenant-", None);
        assert!(matches!(&v, Verdict::Denied(d) if d.message.contains("Tenant ghost does not exist")), "{v:?}");
        let off = tenant("acme", serde_json::json!({"enabled": false}));
        let v = agent_namespace(&agent("bob", false), "tenant-acme", "tenant-", Some(&off));
        assert!(matches!(&v, Verdict::Denied(d) if d.field == "metadata.namespace" && d.message.contains("disabled")), "{v:?}");
        assert_eq!(agent_namespace(&agent("admin", true), "tenant-acme", "tenant-", Some(&off)), Verdict::Allowed);
        assert_eq!(
            denied_field(agent_namespace(&agent("bob", false), "tenant-acme", "tenant-", Some(&deleting(acme)))),
            "metadata.namespace"
        );
    }

    #[test]
    fn agents_stop_at_the_tightest_limit() {
        let acme = tenant("acme", serde_json::json!({}));
        let quotas = [
            quota("tenant-acme", "default", serde_json::json!({"agents": 5})),
            quota("tenant-acme", "small", serde_json::json!({"agents": 2})),
        ];
        assert_eq!(agent_quota("tenant-acme", Some(&acme), &quotas, 1), Verdict::Allowed);
        let v = agent_quota("tenant-acme", Some(&acme), &quotas, 2);
        assert!(
            matches!(&v, Verdict::Denied(d) if d.field == "metadata.namespace" && d.message.contains("2 of 2") && d.message.contains("CapabilityQuota small")),
            "{v:?}"
        );
        assert_eq!(agent_quota("tenant-acme", Some(&acme), &[], 1000), Verdict::Allowed, "no quota, no limit");
    }

    #[test]
    fn the_tenant_admin_agent_stays_while_its_tenant_lives() {
        let acme = tenant("acme", serde_json::json!({}));
        assert_eq!(denied_field(admin_agent_delete(&agent("admin", true), Some(&acme))), "metadata.name");
        assert_eq!(admin_agent_delete(&agent("admin", true), Some(&deleting(acme.clone()))), Verdict::Allowed);
        assert_eq!(admin_agent_delete(&agent("admin", true), None), Verdict::Allowed);
        assert_eq!(admin_agent_delete(&agent("bob", false), Some(&acme)), Verdict::Allowed);
    }

    #[test]
    fn protected_tenants_are_not_deleted() {
        assert_eq!(
            denied_field(tenant_delete(&tenant("acme", serde_json::json!({"deletionProtection": true})))),
            "spec.deletionProtection"
        );
        assert_eq!(tenant_delete(&tenant("acme", serde_json::json!({}))), Verdict::Allowed);
    }

    #[test]
    fn fqdns_are_unique() {
        let c = config();
        let acme = tenant("acme", serde_json::json!({}));
        let others = [acme.clone(), tenant("shop", serde_json::json!({"domain": {"fqdn": "shop.example.org"}}))];
        assert_eq!(tenant_fqdn(&acme, None, &others, &c), Verdict::Allowed, "a tenant never conflicts with itself");
        let copy = tenant("copy", serde_json::json!({"domain": {"fqdn": "acme.cx.example.com"}}));
        let v = tenant_fqdn(&copy, None, &others, &c);
        assert!(matches!(&v, Verdict::Denied(d) if d.field == "spec.domain.fqdn" && d.message.contains("Tenant acme")), "{v:?}");
        // The default FQDN of a new tenant collides with an explicit one: the name is at fault.
        let shop = tenant("shop", serde_json::json!({}));
        let others = [tenant("x", serde_json::json!({"domain": {"fqdn": "shop.cx.example.com"}}))];
        assert_eq!(denied_field(tenant_fqdn(&shop, None, &others, &c)), "metadata.name");
        // An update that keeps the FQDN is never refused, even with an old conflict.
        assert_eq!(tenant_fqdn(&shop, Some(&shop), &others, &c), Verdict::Allowed);
    }

    #[test]
    fn features_off_allow_no_limit_above_zero() {
        let acme = tenant("acme", serde_json::json!({}));
        let q = quota("tenant-acme", "q", serde_json::json!({"aiAgents": 2, "widgets": 3}));
        let v = quota_features(&q, Some(&acme));
        assert!(
            matches!(&v, Verdict::Denied(d) if d.field == "spec.limits.aiAgents" && d.message.contains("spec.features.aiAgents")),
            "{v:?}"
        );
        let zero = quota("tenant-acme", "q", serde_json::json!({"aiAgents": 0, "widgets": 3}));
        assert_eq!(quota_features(&zero, Some(&acme)), Verdict::Allowed);
        assert_eq!(quota_features(&q, None), Verdict::Allowed, "no Tenant: nothing to compare with");
    }

    #[test]
    fn quotas_stay_within_the_licence() {
        let lic = Licence { agents: Some(10), ai_agents: None, workflow_triggers: None };
        let tenants = [tenant("acme", serde_json::json!({})), tenant("shop", serde_json::json!({}))];
        let quotas = [
            quota("tenant-acme", "default", serde_json::json!({"agents": 4})),
            quota("tenant-shop", "default", serde_json::json!({"agents": 4})),
        ];
        let raise = quota("tenant-shop", "default", serde_json::json!({"agents": 6}));
        assert_eq!(quota_licence(&raise, &lic, &tenants, &quotas, "tenant-"), Verdict::Allowed);
        let too_much = quota("tenant-shop", "default", serde_json::json!({"agents": 7}));
        let v = quota_licence(&too_much, &lic, &tenants, &quotas, "tenant-");
        assert!(matches!(&v, Verdict::Denied(d) if d.field == "spec.limits.agents" && d.message.contains("licence cap of 10")), "{v:?}");
        let unlimited = quota("tenant-shop", "default", serde_json::json!({"widgets": 1}));
        assert_eq!(denied_field(quota_licence(&unlimited, &lic, &tenants, &quotas, "tenant-")), "spec.limits.agents");
        // A second, looser quota keeps the tightest limit: nothing is raised.
        let loose = quota("tenant-shop", "extra", serde_json::json!({"agents": 100}));
        assert_eq!(quota_licence(&loose, &lic, &tenants, &quotas, "tenant-"), Verdict::Allowed);
        let elsewhere = quota("team-x", "q", serde_json::json!({"agents": 100}));
        assert_eq!(quota_licence(&elsewhere, &lic, &tenants, &quotas, "tenant-"), Verdict::Allowed);
    }

    #[test]
    fn all_returns_the_first_denial() {
        let d = Verdict::deny("a", "b");
        assert_eq!(Verdict::all([Verdict::Allowed, d.clone(), Verdict::deny("c", "d")]), d);
        assert_eq!(Verdict::all([Verdict::Allowed]), Verdict::Allowed);
    }
}
