//! Platform licence arithmetic: what the tenants' quotas allot against the caps in
//! `licence`, and whether a proposed CapabilityQuota keeps the platform within them.
//!
//! Pure functions over plain slices, so the admission webhook, the quota controller's
//! metrics and the Tenant status can share them.
//!
//! Decisions:
//! - A tenant's allotment of a licensed capability is its effective limit: the
//!   tightest over all CapabilityQuotas in its namespace, 0 when the capability's
//!   feature is off in the Tenant.
//! - Workflow triggers per tenant are the 1,000 free triggers plus the effective
//!   `extraWorkflowTriggers` limit; a tenant whose `workflows` feature is off has none.
//! - A tenant without a limit for a licensed capability counts as unlimited, so while a
//!   cap exists every tenant needs a limit for it. A quota change that would leave its
//!   tenant unlimited is refused.
//! - A quota change that does not raise its tenant's allotment is always allowed, even
//!   while the platform is over a cap (for example after the cap was lowered), so that
//!   limits can always be brought down.
//! - A raise (or a tenant's first limit) is allowed while the sum over the tenants that
//!   have a limit, this one included, stays within the cap. Tenants still without a limit
//!   (from before the cap was configured) are reported by [`licence_use`] but do not
//!   block others: they are brought under the licence one quota at a time.

use std::{borrow::Borrow, collections::HashMap};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use crate::{
    api::{
        CapabilityQuota, Tenant,
        quota::{Capability, Limits},
        tenant::Features,
    },
    config::Licence,
};

/// Workflow triggers every tenant with the `workflows` feature gets for free.
pub const FREE_WORKFLOW_TRIGGERS: i64 = 1000;

/// A capability the platform licence caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Licensed {
    /// Agents (`licence.agents`).
    Agents,
    /// AI agents (`licence.aiAgents`).
    AiAgents,
    /// Workflow triggers (`licence.workflowTriggers`).
    WorkflowTriggers,
}

impl Licensed {
    /// Every licensed capability.
    pub const ALL: [Licensed; 3] = [Licensed::Agents, Licensed::AiAgents, Licensed::WorkflowTriggers];

    /// The name under `licence` in the operator configuration.
    pub fn name(self) -> &'static str {
        match self {
            Licensed::Agents => "agents",
            Licensed::AiAgents => "aiAgents",
            Licensed::WorkflowTriggers => "workflowTriggers",
        }
    }

    /// The cap the licence sets, if any.
    pub fn cap(self, licence: &Licence) -> Option<i64> {
        match self {
            Licensed::Agents => licence.agents,
            Licensed::AiAgents => licence.ai_agents,
            Licensed::WorkflowTriggers => licence.workflow_triggers,
        }
    }

    /// The quota capability whose limit makes up a tenant's allotment.
    pub fn capability(self) -> Capability {
        match self {
            Licensed::Agents => Capability::Agents,
            Licensed::AiAgents => Capability::AiAgents,
            Licensed::WorkflowTriggers => Capability::ExtraWorkflowTriggers,
        }
    }
}

/// One tenant as the licence sees it: its features and the limits of every
/// CapabilityQuota in its namespace.
#[derive(Clone, Debug)]
pub struct TenantQuotas<'a> {
    /// The tenant id.
    pub tenant: &'a str,
    /// The Tenant's features.
    pub features: &'a Features,
    /// `spec.limits` of every CapabilityQuota in the tenant namespace.
    pub quotas: Vec<&'a Limits>,
}

/// The licence's view of `tenants`: each with the limits of the quotas in its
/// namespace (`prefix` + tenant id).
pub fn tenant_quotas<'a, T, Q>(tenants: &'a [T], quotas: &'a [Q], prefix: &str) -> Vec<TenantQuotas<'a>>
where
    T: Borrow<Tenant>,
    Q: Borrow<CapabilityQuota>,
{
    // Grouped once, so the view costs one pass over each list, not tenants × quotas.
    let mut by_namespace: HashMap<&str, Vec<&'a Limits>> = HashMap::new();
    for q in quotas.iter().map(|q| q.borrow()) {
        if let Some(namespace) = q.metadata.namespace.as_deref() {
            by_namespace.entry(namespace).or_default().push(&q.spec.limits);
        }
    }
    tenants
        .iter()
        .map(|t| {
            let t: &Tenant = t.borrow();
            let namespace = format!("{prefix}{}", t.name_any());
            TenantQuotas {
                tenant: t.metadata.name.as_deref().unwrap_or_default(),
                features: &t.spec.features,
                quotas: by_namespace.get(namespace.as_str()).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Whether a feature is on; `None` (no Tenant known) counts as on, so that nothing is
/// forced to 0 without a Tenant saying so.
fn feature_on(capability: Capability, features: Option<&Features>) -> bool {
    match (capability.feature(), features) {
        (Some(feature), Some(features)) => features.list().iter().any(|(f, on)| *f == feature && *on),
        _ => true,
    }
}

/// The effective limit of a capability: the tightest over `quotas`, and 0 when the
/// capability's feature is off. `None` means unlimited.
pub fn effective_limit(capability: Capability, features: Option<&Features>, quotas: &[&Limits]) -> Option<Quantity> {
    if !feature_on(capability, features) {
        return Some(Quantity("0".into()));
    }
    quotas.iter().filter_map(|l| l.get(capability)).min_by(|a, b| quantity_value(a).total_cmp(&quantity_value(b)))
}

/// The effective limit of a counted capability as an integer; `None` means unlimited.
pub fn effective_count(capability: Capability, features: Option<&Features>, quotas: &[&Limits]) -> Option<i64> {
    effective_limit(capability, features, quotas).map(|q| quantity_value(&q).floor().clamp(0.0, i64::MAX as f64) as i64)
}

/// What one tenant is allotted of a licensed capability; `None` means unlimited.
pub fn allotment(licensed: Licensed, features: &Features, quotas: &[&Limits]) -> Option<i64> {
    let count = effective_count(licensed.capability(), Some(features), quotas);
    match licensed {
        Licensed::WorkflowTriggers if !features.workflows => Some(0),
        Licensed::WorkflowTriggers => count.map(|extra| FREE_WORKFLOW_TRIGGERS.saturating_add(extra)),
        Licensed::Agents | Licensed::AiAgents => count,
    }
}

/// The use of one licensed capability over all tenants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenceUse {
    /// The capability.
    pub licensed: Licensed,
    /// The licence cap.
    pub cap: i64,
    /// Sum of the allotments of the tenants that have a limit.
    pub allotted: i64,
    /// Tenants without a limit, which make the total unlimited.
    pub unlimited: Vec<String>,
}

impl LicenceUse {
    /// Whether the tenants are allotted more than the licence allows.
    pub fn is_over(&self) -> bool {
        !self.unlimited.is_empty() || self.allotted > self.cap
    }
}

/// Allotted-versus-cap for every capability the licence caps.
pub fn licence_use(licence: &Licence, tenants: &[TenantQuotas<'_>]) -> Vec<LicenceUse> {
    Licensed::ALL
        .into_iter()
        .filter_map(|licensed| {
            let cap = licensed.cap(licence)?;
            let mut use_ = LicenceUse { licensed, cap, allotted: 0, unlimited: Vec::new() };
            for t in tenants {
                match allotment(licensed, t.features, &t.quotas) {
                    Some(n) => use_.allotted = use_.allotted.saturating_add(n),
                    None => use_.unlimited.push(t.tenant.to_string()),
                }
            }
            Some(use_)
        })
        .collect()
}

/// Why a quota change would break the licence; `field` is the quota field to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenceViolation {
    /// Path of the quota field, e.g. `spec.limits.agents`.
    pub field: String,
    /// What is wrong and what the licence allows.
    pub message: String,
}

/// Checks the quotas a tenant would have after a change (`after`: every quota of its
/// namespace, the changed one in its new form) against the licence. `tenants` holds
/// every tenant as it is now, `tenant` the one being changed; a quota of a namespace
/// that belongs to no Tenant allots nothing and passes.
pub fn check_quota_change(
    licence: &Licence,
    tenants: &[TenantQuotas<'_>],
    tenant: &str,
    after: &[&Limits],
) -> Result<(), LicenceViolation> {
    let Some(current) = tenants.iter().find(|t| t.tenant == tenant) else {
        return Ok(());
    };
    for licensed in Licensed::ALL {
        let Some(cap) = licensed.cap(licence) else { continue };
        let field = format!("spec.limits.{}", licensed.capability().name());
        let before = allotment(licensed, current.features, &current.quotas);
        let Some(new) = allotment(licensed, current.features, after) else {
            return Err(LicenceViolation {
                field,
                message: format!(
                    "required: the platform licence caps {} at {cap} over all tenants (licence.{}), so tenant {tenant} needs a limit, and no CapabilityQuota in its namespace sets one",
                    licensed.name(),
                    licensed.name()
                ),
            });
        };
        if new == 0 || before.is_some_and(|b| new <= b) {
            continue;
        }
        let others: Vec<TenantQuotas<'_>> = tenants.iter().filter(|t| t.tenant != tenant).cloned().collect();
        let use_ = licence_use(licence, &others).into_iter().find(|u| u.licensed == licensed).expect("the cap is set");
        let total = use_.allotted.saturating_add(new);
        if total > cap {
            return Err(LicenceViolation {
                field,
                message: format!(
                    "{tenant}'s {} would be {new}, bringing the platform total to {total}, over the licence cap of {cap} (licence.{}); {} remain for this tenant",
                    licensed.name(),
                    licensed.name(),
                    (cap - use_.allotted).max(0)
                ),
            });
        }
    }
    Ok(())
}

/// A quantity as a number (binary and decimal suffixes), for comparing limits. A value
/// that cannot be parsed counts as unlimited, so it never wins as the tightest limit.
pub fn quantity_value(q: &Quantity) -> f64 {
    let s = q.0.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in suffixes {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().map(|n| n * factor).unwrap_or(f64::INFINITY);
        }
    }
    s.parse().unwrap_or(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(agents: Option<i64>, ai: Option<i64>, extra: Option<i64>) -> Limits {
        Limits { agents, ai_agents: ai, extra_workflow_triggers: extra, ..Limits::default() }
    }

    fn licence(agents: Option<i64>, ai: Option<i64>, triggers: Option<i64>) -> Licence {
        Licence { agents, ai_agents: ai, workflow_triggers: triggers }
    }

    fn ai_on() -> Features {
        Features { ai_agents: true, ..Features::default() }
    }

    #[test]
    fn effective_limit_is_the_tightest_and_zero_for_features_off() {
        let (a, b) = (limits(Some(10), Some(3), None), limits(Some(5), None, None));
        assert_eq!(effective_count(Capability::Agents, None, &[&a, &b]), Some(5));
        assert_eq!(effective_count(Capability::AiAgents, Some(&Features::default()), &[&a, &b]), Some(0));
        assert_eq!(effective_count(Capability::AiAgents, Some(&ai_on()), &[&a, &b]), Some(3));
        assert_eq!(effective_count(Capability::Widgets, None, &[&a]), None);
        let storage = Limits { storage: Some(Quantity("1Gi".into())), ..Limits::default() };
        let smaller = Limits { storage: Some(Quantity("1G".into())), ..Limits::default() };
        assert_eq!(effective_limit(Capability::Storage, None, &[&storage, &smaller]), Some(Quantity("1G".into())));
    }

    #[test]
    fn workflow_triggers_are_free_plus_extra_and_none_without_the_feature() {
        let f = Features::default();
        assert_eq!(allotment(Licensed::WorkflowTriggers, &f, &[&limits(None, None, Some(500))]), Some(1500));
        assert_eq!(allotment(Licensed::WorkflowTriggers, &f, &[&limits(None, None, None)]), None);
        let off = Features { workflows: false, ..Features::default() };
        assert_eq!(allotment(Licensed::WorkflowTriggers, &off, &[&limits(None, None, None)]), Some(0));
    }

    #[test]
    fn licence_use_sums_limits_and_names_unlimited_tenants() {
        let f = Features::default();
        let (a, b) = (limits(Some(10), None, Some(0)), limits(None, None, Some(100)));
        let tenants =
            [TenantQuotas { tenant: "a", features: &f, quotas: vec![&a] }, TenantQuotas { tenant: "b", features: &f, quotas: vec![&b] }];
        let uses = licence_use(&licence(Some(100), Some(5), Some(5000)), &tenants);
        assert_eq!(uses.len(), 3);
        assert_eq!(uses[0], LicenceUse { licensed: Licensed::Agents, cap: 100, allotted: 10, unlimited: vec!["b".into()] });
        assert!(uses[0].is_over());
        assert_eq!((uses[1].allotted, uses[1].is_over()), (0, false), "aiAgents is off everywhere");
        assert_eq!((uses[2].allotted, uses[2].is_over()), (2100, false));
        assert!(licence_use(&licence(None, None, None), &tenants).is_empty());
    }

    #[test]
    fn a_raise_over_the_cap_is_refused_and_a_reduction_allowed() {
        let f = Features::default();
        let (a, b) = (limits(Some(60), None, None), limits(Some(30), None, None));
        let tenants =
            [TenantQuotas { tenant: "a", features: &f, quotas: vec![&a] }, TenantQuotas { tenant: "b", features: &f, quotas: vec![&b] }];
        let lic = licence(Some(100), None, None);
        assert_eq!(check_quota_change(&lic, &tenants, "b", &[&limits(Some(40), None, None)]), Ok(()));
        let err = check_quota_change(&lic, &tenants, "b", &[&limits(Some(41), None, None)]).unwrap_err();
        assert_eq!(err.field, "spec.limits.agents");
        assert!(err.message.contains("101") && err.message.contains("40 remain"), "{}", err.message);
        // Over the cap already (the cap was lowered): reductions still pass.
        let low = licence(Some(50), None, None);
        assert_eq!(check_quota_change(&low, &tenants, "a", &[&limits(Some(55), None, None)]), Ok(()));
        // A quota of a namespace without a Tenant allots nothing.
        assert_eq!(check_quota_change(&lic, &tenants, "ghost", &[&limits(Some(1000), None, None)]), Ok(()));
    }

    #[test]
    fn a_tenant_needs_a_limit_while_a_cap_exists() {
        let f = ai_on();
        let a = limits(Some(1), Some(1), Some(0));
        let tenants = [TenantQuotas { tenant: "a", features: &f, quotas: vec![&a] }];
        let lic = licence(None, Some(10), Some(2000));
        let err = check_quota_change(&lic, &tenants, "a", &[&limits(Some(1), None, Some(0))]).unwrap_err();
        assert_eq!(err.field, "spec.limits.aiAgents");
        assert!(err.message.starts_with("required"), "{}", err.message);
        let err = check_quota_change(&lic, &tenants, "a", &[&limits(Some(1), Some(1), None)]).unwrap_err();
        assert_eq!(err.field, "spec.limits.extraWorkflowTriggers");
        let err = check_quota_change(&lic, &tenants, "a", &[&limits(Some(1), Some(1), Some(1001))]).unwrap_err();
        assert_eq!(err.field, "spec.limits.extraWorkflowTriggers");
    }

    #[test]
    fn unlimited_tenants_are_left_out_of_the_sum_of_a_change() {
        let f = Features::default();
        let (a, b) = (limits(Some(1), None, None), limits(None, None, None));
        let tenants =
            [TenantQuotas { tenant: "a", features: &f, quotas: vec![&a] }, TenantQuotas { tenant: "b", features: &f, quotas: vec![&b] }];
        let lic = licence(Some(100), None, None);
        assert_eq!(check_quota_change(&lic, &tenants, "a", &[&limits(Some(2), None, None)]), Ok(()));
        // The unlimited tenant gets its first limit, within what is left.
        assert_eq!(check_quota_change(&lic, &tenants, "b", &[&limits(Some(99), None, None)]), Ok(()));
        assert!(check_quota_change(&lic, &tenants, "b", &[&limits(Some(100), None, None)]).is_err());
    }
}
