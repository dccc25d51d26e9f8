//! The CapabilityQuota controller: effective limits and measured use.
//!
//! Agents are counted from the cluster on every change; storage and the configured
//! sources are measured in the tenant's stores (see [`super::usage`]). A capability
//! that cannot be measured is left out of `used` and named in the condition, never
//! reported as 0.

use std::{collections::BTreeMap, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use serde_json::json;

use super::{Context, Error, jittered, usage::Measurement};
pub use crate::licence::quantity_value;
use crate::licence::{self, LicenceUse};
use crate::{
    api::{
        CapabilityQuota, Tenant,
        conditions::{self, Cond, reasons, types},
        quota::{Capability, CapabilityQuotaStatus, Limits, StoragePolicy},
    },
    labels::FIELD_MANAGER,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "capabilityquota";

/// The Tenant that owns a tenant namespace, if it is served by this instance.
pub fn tenant_of_namespace(namespace: &str, ctx: &Context) -> Option<Arc<Tenant>> {
    let name = namespace.strip_prefix(&ctx.config.namespace_prefix)?;
    ctx.stores.tenants.get(&ObjectRef::new(name))
}

/// Whether an object in `namespace` belongs to another shard: with
/// `sharding.tenantSelector` an instance serves only its own Tenants, and an Agent or
/// quota whose Tenant it does not serve is another instance's to write (it may well
/// be served there). Without sharding, every tenant namespace is this instance's.
pub fn other_shard(namespace: &str, ctx: &Context) -> bool {
    ctx.config.sharding.tenant_selector.is_some() && tenant_of_namespace(namespace, ctx).is_none()
}

/// The effective limit of a capability in a namespace: the tightest over all quotas,
/// and 0 when the capability's feature is off in the Tenant.
pub fn effective_limit(capability: Capability, namespace: &str, tenant: Option<&Tenant>, ctx: &Context) -> Option<Quantity> {
    let quotas = ctx.stores.quotas_in(namespace);
    let limits: Vec<&Limits> = quotas.iter().map(|q| &q.spec.limits).collect();
    licence::effective_limit(capability, tenant.map(|t| &t.spec.features), &limits)
}

/// Agents in a namespace.
pub fn agents_in(namespace: &str, ctx: &Context) -> usize {
    ctx.stores.agents_by_namespace.keys_in(namespace).len()
}

/// Whether a tenant namespace must be read-only: a quota there with
/// `storagePolicy: ReadOnly` reports storage over its limit.
pub fn storage_read_only(namespace: &str, ctx: &Context) -> bool {
    ctx.stores.quotas_in(namespace).iter().any(|q| {
        let storage = Capability::Storage.name();
        q.spec.storage_policy == StoragePolicy::ReadOnly
            && q.status.as_ref().is_some_and(|s| match (s.used.get(storage), s.hard.get(storage)) {
                (Some(used), Some(limit)) => quantity_value(used) > quantity_value(limit),
                _ => false,
            })
    })
}

/// The licence use over every Tenant this instance serves, published as gauges.
pub fn licence_use(ctx: &Context) -> Vec<LicenceUse> {
    let Some(licence) = &ctx.config.licence else { return Vec::new() };
    let tenants = ctx.stores.tenants.state();
    let quotas = ctx.stores.quotas.state();
    let view = licence::tenant_quotas(&tenants, &quotas, &ctx.config.namespace_prefix);
    let uses = licence::licence_use(licence, &view);
    for u in &uses {
        let allotted = if u.unlimited.is_empty() { u.allotted as f64 } else { f64::INFINITY };
        ctx.metrics.set_licence(u.licensed.name(), allotted, u.cap as f64);
    }
    uses
}

/// How close a use is to its limit: below 80 %, from 80 %, or at or over 100 %.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Below 80 % of the limit.
    Below,
    /// At least 80 % of the limit.
    Near,
    /// At or over the limit.
    Reached,
}

/// The level of `used` against `limit`. A zero limit is reached by any use.
pub fn level(used: &Quantity, limit: &Quantity) -> Level {
    let (used, limit) = (quantity_value(used), quantity_value(limit));
    if limit <= 0.0 {
        return if used > 0.0 { Level::Reached } else { Level::Below };
    }
    match used / limit {
        r if r >= 1.0 => Level::Reached,
        r if r >= 0.8 => Level::Near,
        _ => Level::Below,
    }
}

/// The level of each capability that has a use and a limit.
fn levels(used: &BTreeMap<String, Quantity>, hard: &BTreeMap<String, Quantity>) -> BTreeMap<String, Level> {
    used.iter().filter_map(|(name, u)| hard.get(name).map(|h| (name.clone(), level(u, h)))).collect()
}

/// The Events of the capabilities whose level changed since the last status: one per
/// crossing, never one per measurement.
fn crossings(
    before: &BTreeMap<String, Level>,
    after: &BTreeMap<String, Level>,
    hard: &BTreeMap<String, Quantity>,
) -> Vec<(EventType, &'static str, String)> {
    let mut events = Vec::new();
    for (name, now) in after {
        let was = before.get(name).copied().unwrap_or(Level::Below);
        let limit = hard.get(name).map_or("?", |q| q.0.as_str());
        match (was, *now) {
            (w, n) if w == n => {}
            (_, Level::Reached) => {
                events.push((EventType::Warning, reasons::LIMIT_REACHED, format!("{name} reached its limit of {limit}")));
            }
            (Level::Below, Level::Near) => {
                events.push((EventType::Warning, reasons::NEAR_LIMIT, format!("{name} passed 80% of its limit of {limit}")));
            }
            (_, _) => {
                events.push((EventType::Normal, reasons::WITHIN_LIMITS, format!("{name} fell back below its limit of {limit}")));
            }
        }
    }
    events
}

/// Reconciles one CapabilityQuota.
pub async fn reconcile(quota: Arc<CapabilityQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::traced(CONTROLLER, quota.as_ref(), reconcile_in_span(quota.clone(), ctx)).await
}

async fn reconcile_in_span(quota: Arc<CapabilityQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = quota.namespace().unwrap_or_default();
    if other_shard(&namespace, &ctx) {
        return Ok(Action::await_change());
    }
    let tenant = tenant_of_namespace(&namespace, &ctx);
    let mut hard = BTreeMap::new();
    for capability in Capability::ALL {
        if let Some(limit) = effective_limit(capability, &namespace, tenant.as_deref(), &ctx) {
            hard.insert(capability.name().to_string(), limit);
        }
    }
    let previous = quota.status.clone().unwrap_or_default();
    // An edited quota is judged against a fresh measurement, not one up to an
    // interval old; edits are rare, so the cost stays bounded.
    if previous.observed_generation != quota.metadata.generation {
        ctx.usage.invalidate(&namespace).await;
    }
    let measurement = match &tenant {
        Some(t) => ctx.usage.get(&namespace, t, &ctx).await,
        None => Measurement::default(),
    };
    let mut used = measurement.used.clone();
    used.insert(Capability::Agents.name().to_string(), Quantity(agents_in(&namespace, &ctx).to_string()));
    let now = Timestamp::now();
    let status = CapabilityQuotaStatus {
        observed_generation: quota.metadata.generation,
        conditions: conditions::settle(
            &previous.conditions,
            &[within_limits(&used, &hard, &measurement)],
            quota.metadata.generation,
            Time(now),
        ),
        last_measured: if previous.used != used || previous.hard != hard { Some(Time(now)) } else { previous.last_measured.clone() },
        hard,
        used,
    };
    if let Some(t) = &tenant {
        publish_metrics(&t.name_any(), &status, &ctx);
    }
    if status != previous {
        let api: Api<CapabilityQuota> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "CapabilityQuota", "status": status});
        api.patch_status(&quota.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!("updating status of CapabilityQuota {namespace}/{}", quota.name_any())))?;
        let before = levels(&previous.used, &previous.hard);
        for (type_, reason, note) in crossings(&before, &levels(&status.used, &status.hard), &status.hard) {
            ctx.event(quota.as_ref(), type_, reason, "Measure", note).await;
        }
    }
    ctx.succeeded(&ObjectRef::from_obj(quota.as_ref()).to_string());
    let next = jittered(ctx.config.usage.interval, ctx.config.usage.jitter).min(ctx.resync());
    Ok(Action::requeue(next))
}

/// The WithinLimits condition: False names every exceeded capability; capabilities
/// with a limit but no measurement are named with the reason.
fn within_limits(used: &BTreeMap<String, Quantity>, hard: &BTreeMap<String, Quantity>, measurement: &Measurement) -> Cond {
    let exceeded: Vec<String> = used
        .iter()
        .filter_map(|(name, value)| {
            hard.get(name)
                .filter(|limit| quantity_value(value) > quantity_value(limit))
                .map(|limit| format!("{name} ({} > {})", value.0, limit.0))
        })
        .collect();
    let unmeasured: Vec<String> = Capability::ALL
        .iter()
        .map(|c| c.name())
        .filter(|n| hard.contains_key(*n) && !used.contains_key(*n))
        .map(|n| match measurement.unmeasured.get(n) {
            Some(why) => format!("{n} ({why})"),
            None => format!("{n} (no usage source is configured)"),
        })
        .collect();
    let note = if unmeasured.is_empty() { String::new() } else { format!("; not measured: {}", unmeasured.join(", ")) };
    if exceeded.is_empty() {
        Cond::ok(types::WITHIN_LIMITS, reasons::WITHIN_LIMITS, format!("every measured capability is within its limit{note}"))
    } else {
        Cond::fail(types::WITHIN_LIMITS, reasons::LIMITS_EXCEEDED, format!("over the limit: {}{note}", exceeded.join(", ")))
    }
}

/// Sets the capability gauges of a tenant from a quota's status.
fn publish_metrics(tenant: &str, status: &CapabilityQuotaStatus, ctx: &Context) {
    for capability in Capability::ALL {
        let name = capability.name();
        ctx.metrics.set_capability(tenant, name, status.used.get(name).map(quantity_value), status.hard.get(name).map(quantity_value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_across_suffixes() {
        assert!(quantity_value(&Quantity("1Gi".into())) > quantity_value(&Quantity("1G".into())));
        assert_eq!(quantity_value(&Quantity("500Mi".into())), 500.0 * 1024.0 * 1024.0);
        assert_eq!(quantity_value(&Quantity("12".into())), 12.0);
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn levels_follow_the_80_and_100_percent_marks() {
        assert_eq!(level(&q("7"), &q("10")), Level::Below);
        assert_eq!(level(&q("8"), &q("10")), Level::Near);
        assert_eq!(level(&q("10"), &q("10")), Level::Reached);
        assert_eq!(level(&q("11Gi"), &q("10Gi")), Level::Reached);
        assert_eq!(level(&q("0"), &q("0")), Level::Below, "nothing used of nothing allowed is fine");
        assert_eq!(level(&q("1"), &q("0")), Level::Reached);
    }

    #[test]
    fn an_event_is_due_per_crossing_only() {
        let hard = BTreeMap::from([("agents".to_string(), q("10"))]);
        let at = |l: Level| BTreeMap::from([("agents".to_string(), l)]);
        assert!(crossings(&at(Level::Near), &at(Level::Near), &hard).is_empty(), "no Event without a crossing");
        let near = crossings(&at(Level::Below), &at(Level::Near), &hard);
        assert_eq!((near[0].1, near[0].2.as_str()), (reasons::NEAR_LIMIT, "agents passed 80% of its limit of 10"));
        let reached = crossings(&at(Level::Below), &at(Level::Reached), &hard);
        assert_eq!(reached.len(), 1, "jumping from below 80% to the limit is one crossing");
        assert_eq!(reached[0].1, reasons::LIMIT_REACHED);
        let back = crossings(&at(Level::Reached), &at(Level::Below), &hard);
        assert_eq!((back[0].0, back[0].1), (EventType::Normal, reasons::WITHIN_LIMITS));
        assert_eq!(crossings(&BTreeMap::new(), &at(Level::Near), &hard).len(), 1, "a first measurement near the limit counts");
    }

    #[test]
    fn within_limits_names_every_exceeded_and_unmeasured_capability() {
        let hard = BTreeMap::from([("agents".into(), q("2")), ("storage".into(), q("1Ki")), ("widgets".into(), q("3"))]);
        let used = BTreeMap::from([("agents".into(), q("3")), ("storage".into(), q("2048"))]);
        let measurement =
            Measurement { unmeasured: BTreeMap::from([("widgets".into(), "database unavailable".into())]), ..Default::default() };
        let cond = within_limits(&used, &hard, &measurement);
        assert_eq!((cond.status, cond.reason), (conditions::FALSE, reasons::LIMITS_EXCEEDED));
        assert!(cond.message.contains("agents (3 > 2)") && cond.message.contains("storage (2048 > 1Ki)"), "{}", cond.message);
        assert!(cond.message.contains("widgets (database unavailable)"), "{}", cond.message);
    }
}
