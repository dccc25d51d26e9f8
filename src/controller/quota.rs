//! The CapabilityQuota controller: effective limits and measured use.
//!
//! This controller measures what Kubernetes itself knows (Agents). Capabilities that
//! live in the tenant's stores are measured by their providers once configured;
//! until then they are left out of `used`, never reported as 0.

use std::{collections::BTreeMap, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use serde_json::json;

use super::{Context, Error};
use crate::{
    api::{
        CapabilityQuota, Tenant,
        conditions::{self, Cond, reasons, types},
        quota::{Capability, CapabilityQuotaStatus},
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

/// The effective limit of a capability in a namespace: the tightest over all quotas,
/// and 0 when the capability's feature is off in the Tenant.
pub fn effective_limit(capability: Capability, namespace: &str, tenant: Option<&Tenant>, ctx: &Context) -> Option<Quantity> {
    if let (Some(feature), Some(t)) = (capability.feature(), tenant)
        && !t.spec.features.list().iter().any(|(f, on)| *f == feature && *on)
    {
        return Some(Quantity("0".into()));
    }
    ctx.stores
        .quotas
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(namespace))
        .filter_map(|q| q.spec.limits.get(capability))
        .min_by(|a, b| quantity_value(a).total_cmp(&quantity_value(b)))
}

/// A quantity as a number (binary and decimal suffixes), for comparing limits.
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

/// Agents in a namespace.
pub fn agents_in(namespace: &str, ctx: &Context) -> usize {
    ctx.stores.agents.state().iter().filter(|a| a.namespace().as_deref() == Some(namespace)).count()
}

/// Reconciles one CapabilityQuota.
pub async fn reconcile(quota: Arc<CapabilityQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.stores.wait_ready().await;
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = quota.namespace().unwrap_or_default();
    let tenant = tenant_of_namespace(&namespace, &ctx);
    let mut hard = BTreeMap::new();
    for capability in Capability::ALL {
        if let Some(limit) = effective_limit(capability, &namespace, tenant.as_deref(), &ctx) {
            hard.insert(capability.name().to_string(), limit);
        }
    }
    let mut used = BTreeMap::new();
    used.insert(Capability::Agents.name().to_string(), Quantity(agents_in(&namespace, &ctx).to_string()));
    let exceeded: Vec<&str> = used
        .iter()
        .filter(|(name, value)| hard.get(*name).is_some_and(|limit| quantity_value(value) > quantity_value(limit)))
        .map(|(name, _)| name.as_str())
        .collect();
    let unmeasured: Vec<&str> =
        Capability::ALL.iter().map(|c| c.name()).filter(|n| hard.contains_key(*n) && !used.contains_key(*n)).collect();
    let note = if unmeasured.is_empty() { String::new() } else { format!("; not measured yet: {}", unmeasured.join(", ")) };
    let cond = if exceeded.is_empty() {
        Cond::ok(types::WITHIN_LIMITS, reasons::WITHIN_LIMITS, format!("every measured capability is within its limit{note}"))
    } else {
        Cond::fail(types::WITHIN_LIMITS, reasons::LIMITS_EXCEEDED, format!("over the limit: {}{note}", exceeded.join(", ")))
    };
    let previous = quota.status.clone().unwrap_or_default();
    let measurement_changed = previous.used != used || previous.hard != hard;
    let now = Timestamp::now();
    let status = CapabilityQuotaStatus {
        observed_generation: quota.metadata.generation,
        conditions: conditions::settle(&previous.conditions, &[cond], quota.metadata.generation, Time(now)),
        last_measured: if measurement_changed { Some(Time(now)) } else { previous.last_measured.clone() },
        hard,
        used,
    };
    if status != previous {
        let api: Api<CapabilityQuota> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "CapabilityQuota", "status": status});
        api.patch_status(&quota.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!("updating status of CapabilityQuota {namespace}/{}", quota.name_any())))?;
    }
    ctx.succeeded(&ObjectRef::from_obj(quota.as_ref()).to_string());
    Ok(Action::requeue(ctx.resync()))
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
}
