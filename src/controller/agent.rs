//! The Agent controller: tenant and quota checks, status.
//!
//! The user in the identity realm is provisioned by the identity provider when one
//! is configured; without one the Agent reports `NotConfigured`.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use serde_json::json;

use super::{Context, Error, quota};
use crate::{
    api::{
        Agent, AgentStatus,
        agent::AgentPhase,
        conditions::{self, Cond, reasons, types},
        quota::Capability,
    },
    labels::FIELD_MANAGER,
    provider::ProviderKind,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agent";

/// Reconciles one Agent.
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.stores.wait_ready().await;
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let namespace = agent.namespace().unwrap_or_default();
    let (phase, conds) = assess(&agent, &namespace, &ctx);
    let previous = agent.status.clone().unwrap_or_default();
    let status = AgentStatus {
        observed_generation: agent.metadata.generation,
        phase: Some(phase),
        conditions: conditions::settle(&previous.conditions, &conds, agent.metadata.generation, Time(Timestamp::now())),
        username: Some(agent.username()),
        ..previous.clone()
    };
    if status != previous {
        let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent", "status": status});
        api.patch_status(&agent.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::kube(format!("updating status of Agent {namespace}/{}", agent.name_any())))?;
        if status.phase != previous.phase && phase == AgentPhase::QuotaExceeded {
            let note = "the tenant's agent quota is used up; this Agent is not provisioned".to_string();
            ctx.event(agent.as_ref(), EventType::Warning, reasons::OVER_QUOTA, "Provision", note).await;
        }
    }
    ctx.succeeded(&ObjectRef::from_obj(agent.as_ref()).to_string());
    Ok(Action::requeue(ctx.resync()))
}

/// The phase and conditions of an Agent, from its tenant and the quota.
fn assess(agent: &Agent, namespace: &str, ctx: &Context) -> (AgentPhase, Vec<Cond>) {
    let Some(tenant) = quota::tenant_of_namespace(namespace, ctx) else {
        let msg = format!("namespace {namespace} belongs to no Tenant served by this operator");
        return (AgentPhase::Pending, vec![Cond::fail(types::READY, reasons::TENANT_UNAVAILABLE, msg)]);
    };
    let within = within_quota(agent, namespace, tenant.as_ref(), ctx);
    let quota_cond = match &within {
        Ok(()) => Cond::fail(types::QUOTA_EXCEEDED, reasons::WITHIN_QUOTA, "the tenant's agent quota has room for this Agent"),
        Err(msg) => Cond::ok(types::QUOTA_EXCEEDED, reasons::OVER_QUOTA, msg.clone()),
    };
    if let Err(msg) = within {
        return (AgentPhase::QuotaExceeded, vec![Cond::fail(types::READY, reasons::OVER_QUOTA, msg), quota_cond]);
    }
    let tenant_active = tenant.spec.enabled && !tenant.status.as_ref().is_some_and(|s| s.expired);
    if !tenant_active || !agent.spec.enabled {
        let who = if agent.spec.enabled { "its tenant is disabled" } else { "spec.enabled is false" };
        return (
            AgentPhase::Disabled,
            vec![Cond::fail(types::READY, reasons::DISABLED, format!("the agent is disabled: {who}")), quota_cond],
        );
    }
    let ready = if ctx.providers.get(ProviderKind::Identity).is_none() {
        Cond::ok(types::READY, reasons::NOT_CONFIGURED, "no identity backend is configured; no user is provisioned")
    } else {
        Cond::ok(types::READY, reasons::PROVISIONED, "the agent is provisioned")
    };
    (AgentPhase::Ready, vec![ready, quota_cond])
}

/// Whether the Agent fits the tenant's agent quota. Agents are admitted in creation
/// order, so the ones over the limit are always the newest.
fn within_quota(agent: &Agent, namespace: &str, tenant: &crate::api::Tenant, ctx: &Context) -> Result<(), String> {
    let Some(limit) = quota::effective_limit(Capability::Agents, namespace, Some(tenant), ctx) else {
        return Ok(());
    };
    let limit = quota::quantity_value(&limit);
    let mut agents: Vec<Arc<Agent>> =
        ctx.stores.agents.state().into_iter().filter(|a| a.namespace().as_deref() == Some(namespace)).collect();
    agents.sort_by(|a, b| {
        let key = |x: &Agent| (x.creation_timestamp().map(|t| t.0), x.name_any());
        key(a).cmp(&key(b))
    });
    let position = agents.iter().position(|a| a.name_any() == agent.name_any()).unwrap_or(agents.len());
    if (position as f64) < limit {
        Ok(())
    } else {
        Err(format!("the tenant's agent limit is {limit}; this Agent would be number {}", position + 1))
    }
}
