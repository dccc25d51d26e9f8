//! The Agent controller: tenant and quota checks, the user in the tenant's identity
//! realm, initial access, the imperative operations (reset password, unlock, reset
//! second factor), status, and removal of the user behind a finalizer.
//!
//! Without a configured identity provider the Agent only reports `NotConfigured`.

use std::{collections::BTreeMap, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{Event as FinalizerEvent, finalizer},
        reflector::ObjectRef,
    },
};
use serde_json::json;

use super::{Context, Error, quota, secrets::TenantSecrets};
use crate::{
    api::{
        Agent, AgentStatus, Tenant,
        agent::{AgentPhase, RESET_2FA_ANNOTATION, RESET_PASSWORD_ANNOTATION, UNLOCK_ANNOTATION},
        common::Activation,
        conditions::{self, Cond, reasons, types},
        quota::Capability,
    },
    labels::FIELD_MANAGER,
    provider::{
        ProviderError, ProviderKind, identity,
        keycloak::{KeycloakProvider, UPDATE_PASSWORD, VERIFY_EMAIL},
    },
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agent";

/// Finalizer that removes the Agent's user from the identity realm before the Agent
/// goes away.
pub const USER_FINALIZER: &str = "cx-operator.io/user-cleanup";

/// Key of the password in the `<agent>-credentials` Secret.
pub const PASSWORD_KEY: &str = "password";
/// Key of the login name in the operator's Secrets for an Agent.
pub const USERNAME_KEY: &str = "username";
/// Key of the one-time recovery code in the `<agent>-recovery` Secret.
pub const RECOVERY_CODE_KEY: &str = "recoveryCode";

/// Name of the Secret holding an Agent's generated temporary password.
pub fn credentials_secret(agent: &str) -> String {
    format!("{agent}-credentials")
}

/// Name of the Secret holding an Agent's one-time recovery credential.
pub fn recovery_secret(agent: &str) -> String {
    format!("{agent}-recovery")
}

/// Reconciles one Agent.
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::traced(CONTROLLER, agent.as_ref(), reconcile_in_span(agent.clone(), ctx)).await
}

async fn reconcile_in_span(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    if quota::other_shard(&agent.namespace().unwrap_or_default(), &ctx) {
        return Ok(Action::await_change());
    }
    let key = ObjectRef::from_obj(agent.as_ref()).to_string();
    let action = match ctx.providers.keycloak().cloned() {
        Some(keycloak) => {
            let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &agent.namespace().unwrap_or_default());
            let Some(agent) = super::current_if_deleting(&api, agent).await? else {
                ctx.succeeded(&key);
                return Ok(Action::await_change());
            };
            finalizer(&api, USER_FINALIZER, agent, |event| async {
                match event {
                    FinalizerEvent::Apply(a) => provision(a, &ctx, &keycloak).await,
                    FinalizerEvent::Cleanup(a) => cleanup(a, &ctx, &keycloak).await,
                }
            })
            .await
            .map_err(|e| Error::Finalizer(Box::new(e)))?
        }
        None => {
            let (phase, conds) = assess(&agent, &ctx);
            let previous = agent.status.clone().unwrap_or_default();
            write_status(&agent, next_status(&agent, &previous, phase, &conds), &previous, &ctx).await?;
            Action::requeue(ctx.resync())
        }
    };
    ctx.succeeded(&key);
    Ok(action)
}

/// The status after this reconcile: phase and conditions on top of `base`.
fn next_status(agent: &Agent, base: &AgentStatus, phase: AgentPhase, conds: &[Cond]) -> AgentStatus {
    let previous = agent.status.clone().unwrap_or_default();
    AgentStatus {
        observed_generation: agent.metadata.generation,
        phase: Some(phase),
        conditions: conditions::settle(&previous.conditions, conds, agent.metadata.generation, Time(Timestamp::now())),
        username: Some(agent.username()),
        ..base.clone()
    }
}

/// Writes the status when it differs from `previous`, with an Event when the Agent
/// just went over quota.
async fn write_status(agent: &Agent, status: AgentStatus, previous: &AgentStatus, ctx: &Context) -> Result<(), Error> {
    if &status == previous {
        return Ok(());
    }
    let namespace = agent.namespace().unwrap_or_default();
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "Agent", "status": status});
    api.patch_status(&agent.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(format!("updating status of Agent {namespace}/{}", agent.name_any())))?;
    if status.phase != previous.phase && status.phase == Some(AgentPhase::QuotaExceeded) {
        let note = "the tenant's agent quota is used up; this Agent is not provisioned".to_string();
        ctx.event(agent, EventType::Warning, reasons::OVER_QUOTA, "Provision", note).await;
    }
    Ok(())
}

/// The phase and conditions of an Agent, from its tenant and the quota.
fn assess(agent: &Agent, ctx: &Context) -> (AgentPhase, Vec<Cond>) {
    let namespace = agent.namespace().unwrap_or_default();
    let Some(tenant) = quota::tenant_of_namespace(&namespace, ctx) else {
        let msg = format!("namespace {namespace} belongs to no Tenant served by this operator");
        return (AgentPhase::Pending, vec![Cond::fail(types::READY, reasons::TENANT_UNAVAILABLE, msg)]);
    };
    let within = within_quota(agent, &namespace, tenant.as_ref(), ctx);
    let quota_cond = match &within {
        Ok(()) => Cond::fail(types::QUOTA_EXCEEDED, reasons::WITHIN_QUOTA, "the tenant's agent quota has room for this Agent"),
        Err(msg) => Cond::ok(types::QUOTA_EXCEEDED, reasons::OVER_QUOTA, msg.clone()),
    };
    if let Err(msg) = within {
        return (AgentPhase::QuotaExceeded, vec![Cond::fail(types::READY, reasons::OVER_QUOTA, msg), quota_cond]);
    }
    if !tenant_active(&tenant) || !agent.spec.enabled {
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

/// Whether the tenant is enabled and not expired.
fn tenant_active(tenant: &Tenant) -> bool {
    tenant.spec.enabled && !tenant.status.as_ref().is_some_and(|s| s.expired)
}

/// Whether the Agent fits the tenant's agent quota. Agents are admitted in creation
/// order, so the ones over the limit are always the newest.
fn within_quota(agent: &Agent, namespace: &str, tenant: &Tenant, ctx: &Context) -> Result<(), String> {
    let Some(limit) = quota::effective_limit(Capability::Agents, namespace, Some(tenant), ctx) else {
        return Ok(());
    };
    let limit = quota::quantity_value(&limit);
    let mut agents: Vec<Arc<Agent>> = ctx.stores.agents_in(namespace);
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

/// Whether the Agent gets its access by e-mail.
fn needs_activation_email(agent: &Agent) -> bool {
    agent.spec.password_secret_ref.is_none() && agent.spec.activation == Activation::Email
}

/// Whether the operator configures the realms with an SMTP server.
fn can_send_email(ctx: &Context) -> bool {
    ctx.config.identity.as_ref().and_then(|i| i.realm.smtp.get("host")).is_some_and(|h| !h.trim().is_empty())
}

/// An annotation's value when it asks for something not handled yet.
fn requested(agent: &Agent, annotation: &str, handled: &Option<String>) -> Option<String> {
    agent.annotations().get(annotation).filter(|v| !v.is_empty() && handled.as_deref() != Some(v.as_str())).cloned()
}

/// Provisions the user and handles the requested operations.
async fn provision(agent: Arc<Agent>, ctx: &Context, keycloak: &KeycloakProvider) -> Result<Action, Error> {
    let (phase, mut conds) = assess(&agent, ctx);
    let previous = agent.status.clone().unwrap_or_default();
    let namespace = agent.namespace().unwrap_or_default();
    let tenant = quota::tenant_of_namespace(&namespace, ctx);
    let Some(tenant) = tenant.filter(|_| phase != AgentPhase::QuotaExceeded) else {
        write_status(&agent, next_status(&agent, &previous, phase, &conds), &previous, ctx).await?;
        return Ok(Action::requeue(ctx.resync()));
    };
    let mut status = previous.clone();
    let mut operations = Vec::new();
    let result = provision_user(&agent, &tenant, ctx, keycloak, &mut status, &mut operations).await;
    for op in &operations {
        ctx.event(agent.as_ref(), EventType::Normal, "Provisioned", "Provision", op.clone()).await;
    }
    let (phase, error) = match result {
        Ok(()) => (phase, None),
        Err(e) => {
            let ready = Cond::fail(types::READY, e.reason(), e.to_string());
            match conds.iter_mut().find(|c| c.type_ == types::READY) {
                Some(c) => *c = ready,
                None => conds.push(ready),
            }
            (if e.is_retryable() { AgentPhase::Pending } else { AgentPhase::Failed }, Some(e))
        }
    };
    let status = next_status(&agent, &status, phase, &conds);
    let changed = status.phase != previous.phase;
    write_status(&agent, status, &previous, ctx).await?;
    if let Some(e) = error {
        if changed || !e.is_retryable() {
            ctx.event(agent.as_ref(), EventType::Warning, e.reason(), "Provision", e.to_string()).await;
        }
        return Err(e);
    }
    Ok(Action::requeue(ctx.resync()))
}

/// The user, its initial access and the requested operations, recorded into
/// `status` as they succeed.
async fn provision_user(
    agent: &Agent,
    tenant: &Tenant,
    ctx: &Context,
    keycloak: &KeycloakProvider,
    status: &mut AgentStatus,
    operations: &mut Vec<String>,
) -> Result<(), Error> {
    let realm = tenant.name_any();
    let name = agent.name_any();
    let spec = identity::agent_user(agent, tenant_active(tenant));
    if status.user_id.is_none() && needs_activation_email(agent) && !can_send_email(ctx) {
        return Err(ProviderError::Refused {
            backend: "keycloak",
            message: "activation Email needs an SMTP server (identity.realm.smtp.host in the operator configuration); \
                      set spec.activation to Credentials or spec.passwordSecretRef instead"
                .into(),
        }
        .into());
    }
    let (id, ops) = keycloak.ensure_user(&realm, &spec).await?;
    operations.extend(ops);
    // The user id is recorded only once the initial access is granted, so that a
    // failure on the way is retried instead of leaving the agent without access.
    if status.user_id.as_deref() != Some(id.as_str()) {
        initial_access(agent, &realm, &id, ctx, keycloak, operations).await?;
        status.user_id = Some(id.clone());
    }
    let secrets = AgentSecrets::new(ctx, agent);
    if let Some(value) = requested(agent, RESET_PASSWORD_ANNOTATION, &status.last_password_reset) {
        if needs_activation_email(agent) && can_send_email(ctx) {
            keycloak.send_actions_email(&realm, &id, &[UPDATE_PASSWORD]).await?;
            operations.push(format!("sent user {} an e-mail to choose a new password", spec.username));
        } else {
            let password = keycloak.generate_password();
            secrets.write(&credentials_secret(&name), &spec.username, PASSWORD_KEY, &password).await?;
            keycloak.set_password(&realm, &id, &password, true).await?;
            operations.push(format!(
                "reset the password of user {}: a temporary password is in Secret {}",
                spec.username,
                credentials_secret(&name)
            ));
        }
        status.last_password_reset = Some(value);
    }
    if let Some(value) = requested(agent, UNLOCK_ANNOTATION, &status.last_unlock) {
        keycloak.unlock(&realm, &id).await?;
        operations.push(format!("cleared the login failures of user {}", spec.username));
        status.last_unlock = Some(value);
    }
    if let Some(value) = requested(agent, RESET_2FA_ANNOTATION, &status.last_two_factor_reset) {
        let removed = keycloak.remove_otp(&realm, &id).await?;
        let code = keycloak.generate_password();
        secrets.write(&recovery_secret(&name), &spec.username, RECOVERY_CODE_KEY, &code).await?;
        keycloak.set_password(&realm, &id, &code, true).await?;
        if spec.require_otp {
            operations.extend(keycloak.ensure_user(&realm, &spec).await?.1);
        }
        operations.push(format!(
            "removed {removed} one-time-password credential(s) of user {}; a one-time recovery credential is in Secret {}",
            spec.username,
            recovery_secret(&name)
        ));
        status.last_two_factor_reset = Some(value);
    }
    status.locked = Some(keycloak.locked(&realm, &id).await?);
    Ok(())
}

/// Gives a user that is new to this Agent its first access: the password from the
/// referenced Secret, an activation e-mail, or a generated temporary password.
async fn initial_access(
    agent: &Agent,
    realm: &str,
    id: &str,
    ctx: &Context,
    keycloak: &KeycloakProvider,
    operations: &mut Vec<String>,
) -> Result<(), Error> {
    let username = agent.username();
    let namespace = agent.namespace().unwrap_or_default();
    if let Some(reference) = &agent.spec.password_secret_ref {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let secret = api.get_opt(&reference.name).await.map_err(Error::kube(format!("reading Secret {namespace}/{}", reference.name)))?;
        let password =
            secret.and_then(|s| s.data).and_then(|d| d.get(&reference.key).cloned()).and_then(|v| String::from_utf8(v.0).ok()).ok_or_else(
                || ProviderError::Unavailable {
                    backend: "kubernetes",
                    message: format!("Secret {namespace}/{} has no key {} yet", reference.name, reference.key),
                },
            )?;
        keycloak.set_password(realm, id, &password, false).await?;
        operations.push(format!("set the password of user {username} from Secret {}", reference.name));
        return Ok(());
    }
    match agent.spec.activation {
        Activation::Email => {
            keycloak.send_actions_email(realm, id, &[VERIFY_EMAIL, UPDATE_PASSWORD]).await?;
            operations.push(format!("sent user {username} an activation e-mail"));
        }
        Activation::Credentials => {
            let name = credentials_secret(&agent.name_any());
            let password = keycloak.generate_password();
            AgentSecrets::new(ctx, agent).write(&name, &username, PASSWORD_KEY, &password).await?;
            keycloak.set_password(realm, id, &password, true).await?;
            operations.push(format!("stored a temporary password for user {username} in Secret {name}"));
        }
    }
    Ok(())
}

/// Secrets owned by one Agent in its tenant namespace.
struct AgentSecrets(TenantSecrets);

impl AgentSecrets {
    fn new(ctx: &Context, agent: &Agent) -> Self {
        let namespace = agent.namespace().unwrap_or_default();
        let tenant = namespace.strip_prefix(&ctx.config.namespace_prefix).unwrap_or(&namespace);
        Self(TenantSecrets::owned_by(ctx.client.clone(), &namespace, tenant, agent.controller_owner_ref(&())))
    }

    /// Writes the login name and one credential.
    async fn write(&self, name: &str, username: &str, key: &str, value: &str) -> Result<(), Error> {
        let data = BTreeMap::from([(USERNAME_KEY.to_string(), username.to_string()), (key.to_string(), value.to_string())]);
        self.0.apply(name, data).await.map_err(Error::kube(format!("writing Secret {name}")))
    }
}

/// Removes the user, unless this is the tenant administrator of a Tenant that
/// still exists.
async fn cleanup(agent: Arc<Agent>, ctx: &Context, keycloak: &KeycloakProvider) -> Result<Action, Error> {
    let namespace = agent.namespace().unwrap_or_default();
    let tenant = quota::tenant_of_namespace(&namespace, ctx);
    if agent.is_tenant_admin()
        && let Some(t) = tenant.as_ref().filter(|t| t.metadata.deletion_timestamp.is_none())
    {
        let note = format!("the tenant administrator cannot be deleted while Tenant {} exists", t.name_any());
        ctx.event(agent.as_ref(), EventType::Warning, "DeletionRefused", "Delete", note.clone()).await;
        return Err(Error::Conflict(note));
    }
    let realm = match &tenant {
        Some(t) => t.name_any(),
        None => namespace.strip_prefix(&ctx.config.namespace_prefix).unwrap_or(&namespace).to_string(),
    };
    for op in keycloak.delete_user(&realm, &agent.username()).await? {
        ctx.event(agent.as_ref(), EventType::Normal, "Deleted", "Delete", op).await;
    }
    Ok(Action::await_change())
}
