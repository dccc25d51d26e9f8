//! Reading a Tenant's status in assertions.

use cx_operator::api::{
    Tenant, TenantPhase,
    conditions::{self, types},
};

/// The status and reason of a condition of the Tenant, when it has one.
pub fn condition(t: &Tenant, type_: &str) -> Option<(String, String)> {
    let c = conditions::find(&t.status.as_ref()?.conditions, type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Whether the Tenant is Ready: the condition True and the phase Ready.
pub fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, types::READY) && s.phase == Some(TenantPhase::Ready))
}

/// The Tenant's phase, when it has a status.
pub fn phase(t: &Tenant) -> Option<TenantPhase> {
    t.status.as_ref().and_then(|s| s.phase)
}
