//! Measures what a tenant uses in its stores: storage from the data providers and
//! the configured per-capability sources. A measurement is shared by every quota of
//! the namespace and taken at most once per `usage.interval`, so the cost per tenant
//! is bounded whatever the number of quotas and reconciles.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use tokio::sync::Mutex;

use super::Context;
use crate::api::Tenant;

/// What was measured in a tenant's stores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// Measured values by capability name.
    pub used: BTreeMap<String, Quantity>,
    /// Capabilities that could not be measured, with the reason.
    pub unmeasured: BTreeMap<String, String>,
}

/// The last measurement per tenant namespace.
#[derive(Default)]
pub struct MeasurementCache {
    entries: Mutex<HashMap<String, (Instant, Measurement)>>,
}

impl MeasurementCache {
    /// The measurement of a tenant, taken anew when the last one is older than the
    /// configured interval.
    pub async fn get(&self, namespace: &str, tenant: &Tenant, ctx: &Context) -> Measurement {
        let mut entries = self.entries.lock().await;
        if let Some((at, m)) = entries.get(namespace)
            && at.elapsed() < ctx.config.usage.interval
        {
            return m.clone();
        }
        let m = measure(tenant, ctx).await;
        entries.insert(namespace.to_string(), (Instant::now(), m.clone()));
        m
    }

    /// Forgets a namespace's measurement, so the next read measures again.
    pub async fn invalidate(&self, namespace: &str) {
        self.entries.lock().await.remove(namespace);
    }
}

/// Measures storage (database plus cache bytes) and every configured source.
async fn measure(tenant: &Tenant, ctx: &Context) -> Measurement {
    let mut m = Measurement::default();
    let mut bytes = 0u64;
    let mut storage_problem = None;
    let mut measured_any = false;
    for provider in ctx.providers.iter() {
        match provider.usage(tenant).await {
            Ok(Some(usage)) => {
                bytes = bytes.saturating_add(usage.storage_bytes);
                measured_any = true;
            }
            Ok(None) => {}
            Err(e) => storage_problem = Some(e.to_string()),
        }
    }
    match (storage_problem, measured_any) {
        (Some(problem), _) => {
            m.unmeasured.insert("storage".into(), problem);
        }
        (None, false) => {
            m.unmeasured.insert("storage".into(), "no database or cache backend is configured".into());
        }
        (None, true) => {
            m.used.insert("storage".into(), Quantity(bytes.to_string()));
        }
    }
    for (capability, source) in &ctx.config.usage.sources {
        let mut counted = None;
        let mut problem = format!("no configured backend holds the source of {capability}");
        for provider in ctx.providers.iter() {
            match provider.count(tenant, source).await {
                Ok(Some(n)) => {
                    counted = Some(n);
                    break;
                }
                Ok(None) => {}
                Err(e) => problem = e.to_string(),
            }
        }
        if let Some(n) = counted {
            m.used.insert(capability.clone(), Quantity(n.to_string()));
        } else {
            m.unmeasured.insert(capability.clone(), problem);
        }
    }
    tracing::debug!(tenant = %tenant.name_any(), used = ?m.used, unmeasured = ?m.unmeasured, "measured usage");
    m
}
