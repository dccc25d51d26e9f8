//! The Tenant controller: namespace, tenant ConfigMap, Ingress, TLS check, providers,
//! status, and cleanup behind a finalizer.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Namespace, Secret},
        networking::v1::Ingress,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{Event as FinalizerEvent, finalizer},
        reflector::ObjectRef,
    },
};
use serde_json::json;

use super::{Applied, Context, Error, apply, notifications, quota, secrets, tenant_desired};
use crate::{
    api::{
        Agent, CapabilityQuota, CapabilityQuotaSpec, Tenant, TenantPhase, TenantStatus,
        common::{SecretReference, UsageFigure},
        conditions::{self, Cond, reasons, types},
        quota::Capability,
        tenant::{DeletionPolicy, ROTATE_CREDENTIALS_ANNOTATION, TenantUsage},
    },
    labels::{FIELD_MANAGER, TENANT_FINALIZER},
    provider::{ProviderKind, TenantRequest},
    tls,
};

/// Name of the CapabilityQuota created from the configured defaults.
pub const DEFAULT_QUOTA: &str = "default";

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "tenant";

/// How soon a tenant that is not settled yet is looked at again, even without a
/// watch event (a certificate being issued, a namespace terminating).
const UNSETTLED_RECHECK: Duration = Duration::from_secs(30);

/// Reconciles one Tenant.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::traced(CONTROLLER, tenant.as_ref(), reconcile_in_span(tenant.clone(), ctx)).await
}

async fn reconcile_in_span(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    let key = ObjectRef::from_obj(tenant.as_ref()).to_string();
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let Some(tenant) = super::current_if_deleting(&api, tenant).await? else {
        ctx.succeeded(&key);
        return Ok(Action::await_change());
    };
    let action = finalizer(&api, TENANT_FINALIZER, tenant, |event| async {
        match event {
            FinalizerEvent::Apply(t) => provision(t, &ctx).await,
            FinalizerEvent::Cleanup(t) => cleanup(t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&key);
    Ok(action)
}

/// The result of the provisioning steps: conditions, operations done, the first
/// error, and when to look again.
#[derive(Default)]
struct Outcome {
    conditions: Vec<Cond>,
    operations: Vec<String>,
    credentials: Vec<(&'static str, String)>,
    /// What the Grafana provider wrote, for `status.grafana`; None keeps the recorded one.
    grafana: Option<crate::api::tenant::GrafanaStatus>,
    error: Option<Error>,
    recheck_at: Option<Timestamp>,
}

impl Outcome {
    fn fail(&mut self, type_: &'static str, error: Error) {
        self.conditions.push(Cond::fail(type_, error.reason(), error.to_string()));
        self.error.get_or_insert(error);
    }

    fn recheck(&mut self, at: Timestamp) {
        self.recheck_at = Some(self.recheck_at.map_or(at, |t| t.min(at)));
    }
}

async fn provision(tenant: Arc<Tenant>, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let desired = match tenant_desired::build(&tenant, &ctx.config, now) {
        Ok(d) => d,
        Err(invalid) => {
            let ready = Cond::fail(types::READY, reasons::INVALID_SPEC, invalid.to_string());
            let status = next_status(&tenant, None, vec![ready], TenantPhase::Failed, ctx, now);
            if write_status(&tenant, status, ctx).await? {
                ctx.event(tenant.as_ref(), EventType::Warning, reasons::INVALID_SPEC, "Validate", invalid.to_string()).await;
            }
            return Err(invalid.into());
        }
    };
    let mut outcome = Outcome::default();
    if namespace_step(&tenant, &desired, ctx, &mut outcome).await {
        ingress_step(&tenant, &desired, ctx, &mut outcome).await;
        domain_step(&desired, ctx, now, &mut outcome).await;
        provider_steps(&tenant, &desired, ctx, &mut outcome).await;
    } else {
        for kind in ProviderKind::ALL {
            outcome.conditions.push(Cond::unknown(kind.condition_type(), reasons::PROGRESSING, "waiting for the tenant namespace"));
        }
    }
    if let Some(at) = tenant.spec.expires_at.as_ref().map(|t| t.0).filter(|t| *t > now) {
        outcome.recheck(at);
    }
    for op in &outcome.operations {
        ctx.event(tenant.as_ref(), EventType::Normal, "Provisioned", "Provision", op.clone()).await;
    }
    let (phase, ready) = summarize(&desired, &outcome);
    let mut conditions = vec![ready];
    conditions.append(&mut outcome.conditions);
    let previous = tenant.status.clone().unwrap_or_default();
    let mut status = next_status(&tenant, Some(&desired), conditions, phase, ctx, now);
    record_credentials(&mut status, &tenant, &desired.names.namespace, &outcome);
    if rotation_requested(&tenant).is_some() && status.last_credential_rotation != previous.last_credential_rotation {
        let note = "rotated the generated credentials of every backend; the old passwords no longer work".to_string();
        ctx.event(tenant.as_ref(), EventType::Normal, "CredentialsRotated", "Rotate", note).await;
    }
    // A lifecycle event goes into the outbox in the same status write as the phase
    // change it reports, then is delivered.
    notifications::record_transition(&mut status, &previous, &tenant, ctx, now).await?;
    if write_status(&tenant, status.clone(), ctx).await? {
        transition_events(&tenant, &previous, &status, ctx).await;
    }
    let next_delivery = notifications::deliver(&tenant, &mut status, ctx, Timestamp::now()).await;
    if let Some(error) = outcome.error {
        return Err(error);
    }
    Ok(next_action(phase, outcome.recheck_at, next_delivery?, now, ctx))
}

/// Namespace and tenant ConfigMap; false when the namespace is not usable yet.
async fn namespace_step(tenant: &Tenant, desired: &tenant_desired::DesiredTenant, ctx: &Context, out: &mut Outcome) -> bool {
    let uid = tenant.uid();
    let ns_name = &desired.names.namespace;
    let observed = ctx.stores.namespaces.get(&ObjectRef::new(ns_name));
    if observed.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        out.conditions.push(Cond::fail(types::NAMESPACE_READY, reasons::PROGRESSING, format!("namespace {ns_name} is still terminating")));
        out.recheck(Timestamp::now() + UNSETTLED_RECHECK);
        return false;
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match apply(&namespaces, &desired.namespace, observed, uid.as_deref(), &[]).await {
        Ok(applied) => record(out, applied, "Namespace", ns_name),
        Err(e) => {
            out.fail(types::NAMESPACE_READY, e);
            return false;
        }
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns_name);
    let observed = ctx.stores.config_maps.get(&ObjectRef::from_obj(&desired.config_map));
    match apply(&config_maps, &desired.config_map, observed, uid.as_deref(), &["/data"]).await {
        Ok(applied) => record(out, applied, "ConfigMap", &format!("{ns_name}/{}", desired.config_map.name_any())),
        Err(e) => {
            out.fail(types::NAMESPACE_READY, e);
            return false;
        }
    }
    if let Err(e) = ensure_default_quota(desired, ctx, out).await {
        out.fail(types::NAMESPACE_READY, e);
        return false;
    }
    if let Err(e) = ensure_admin_agent(tenant, desired, ctx, out).await {
        out.fail(types::NAMESPACE_READY, e);
        return false;
    }
    out.conditions.push(Cond::ok(
        types::NAMESPACE_READY,
        reasons::PROVISIONED,
        format!("namespace {ns_name} and its tenant ConfigMap are in place"),
    ));
    true
}

/// Creates `CapabilityQuota/default` from the configured defaults in a tenant
/// namespace that has no quota. Created, never applied: what an admin changes later
/// is never overwritten.
async fn ensure_default_quota(desired: &tenant_desired::DesiredTenant, ctx: &Context, out: &mut Outcome) -> Result<(), Error> {
    let namespace = &desired.names.namespace;
    if !ctx.stores.quotas_by_namespace.keys_in(namespace).is_empty() {
        return Ok(());
    }
    let mut quota =
        CapabilityQuota::new(DEFAULT_QUOTA, CapabilityQuotaSpec { limits: ctx.config.defaults.quota.clone(), ..Default::default() });
    quota.metadata.namespace = Some(namespace.clone());
    quota.metadata.labels = Some(tenant_desired::tenant_labels(&desired.names.tenant));
    let api: Api<CapabilityQuota> = Api::namespaced(ctx.client.clone(), namespace);
    match api.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &quota).await {
        Ok(_) => {
            out.operations.push(format!("created CapabilityQuota {namespace}/{DEFAULT_QUOTA} from the configured defaults"));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("creating CapabilityQuota {namespace}/{DEFAULT_QUOTA}"))(e)),
    }
}

/// Applies the Agent of the tenant administrator; an unchanged Agent gets no write.
async fn ensure_admin_agent(
    tenant: &Tenant,
    desired: &tenant_desired::DesiredTenant,
    ctx: &Context,
    out: &mut Outcome,
) -> Result<(), Error> {
    let agent = &desired.admin_agent;
    let namespace = &desired.names.namespace;
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), namespace);
    let observed = ctx.stores.agents.get(&ObjectRef::from_obj(agent));
    let applied = apply(&api, agent, observed, tenant.uid().as_deref(), &[]).await?;
    record(out, applied, "Agent", &format!("{namespace}/{}", tenant_desired::ADMIN_AGENT));
    Ok(())
}

async fn ingress_step(tenant: &Tenant, desired: &tenant_desired::DesiredTenant, ctx: &Context, out: &mut Outcome) {
    let platform = &ctx.config.platform_namespace;
    let api: Api<Ingress> = Api::namespaced(ctx.client.clone(), platform);
    let observed = ctx.stores.ingresses.get(&ObjectRef::from_obj(&desired.ingress));
    let name = format!("{platform}/{}", desired.ingress.name_any());
    match apply(&api, &desired.ingress, observed, tenant.uid().as_deref(), &["/spec"]).await {
        Ok(applied) => {
            record(out, applied, "Ingress", &name);
            out.conditions.push(Cond::ok(
                types::INGRESS_READY,
                reasons::PROVISIONED,
                format!("Ingress {name} routes {}", desired.names.fqdn),
            ));
        }
        Err(e) => out.fail(types::INGRESS_READY, e),
    }
}

async fn domain_step(desired: &tenant_desired::DesiredTenant, ctx: &Context, now: Timestamp, out: &mut Outcome) {
    let Some(secret_name) = &desired.names.tls_secret else {
        out.conditions.push(Cond::fail(
            types::DOMAIN_SECURE,
            reasons::TLS_DISABLED,
            "TLS is switched off in the operator's Ingress configuration",
        ));
        return;
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.config.platform_namespace);
    let secret = match secrets.get_opt(secret_name).await {
        Ok(s) => s,
        Err(e) => return out.fail(types::DOMAIN_SECURE, Error::kube(format!("reading TLS Secret {secret_name}"))(e)),
    };
    let check = tls::check(secret.as_ref(), secret_name, &desired.names.fqdn, now);
    if let Some(at) = check.not_after {
        out.recheck(at);
    }
    out.conditions.push(check.condition);
}

async fn provider_steps(tenant: &Tenant, desired: &tenant_desired::DesiredTenant, ctx: &Context, out: &mut Outcome) {
    let secrets = secrets::TenantSecrets::new(ctx.client.clone(), tenant, &desired.names.namespace);
    // The data providers report the change of roles or ACL rules as operations.
    let read_only = quota::storage_read_only(&desired.names.namespace, ctx);
    let request = TenantRequest { tenant, desired, secrets: &secrets, rotate: rotation_requested(tenant).is_some(), read_only };
    for kind in ProviderKind::ALL {
        let Some(provider) = ctx.providers.get(kind) else {
            out.conditions.push(kind.not_configured());
            continue;
        };
        match provider.ensure(&request).await {
            Ok(done) => {
                out.operations.extend(done.operations);
                out.conditions.push(done.condition);
                if let Some(name) = done.credentials {
                    out.credentials.push((kind.config_key(), name));
                }
                out.grafana = done.grafana.or(out.grafana.take());
            }
            Err(e) => out.fail(kind.condition_type(), e.into()),
        }
    }
}

/// The value of the rotate-credentials annotation when it was not handled yet.
fn rotation_requested(tenant: &Tenant) -> Option<String> {
    let value = tenant.annotations().get(ROTATE_CREDENTIALS_ANNOTATION)?;
    let handled = tenant.status.as_ref().and_then(|s| s.last_credential_rotation.as_ref());
    (handled != Some(value)).then(|| value.clone())
}

fn record(out: &mut Outcome, applied: Applied, kind: &str, name: &str) {
    match applied {
        Applied::Created => out.operations.push(format!("created {kind} {name}")),
        Applied::Updated => out.operations.push(format!("updated {kind} {name} to match the Tenant")),
        Applied::Unchanged => {}
    }
}

/// The phase and Ready condition from the step conditions. DomainSecure counts unless
/// TLS is switched off in the configuration.
fn summarize(desired: &tenant_desired::DesiredTenant, out: &Outcome) -> (TenantPhase, Cond) {
    let pending: Vec<&str> = out.conditions.iter().filter(|c| !c.is_true() && c.reason != reasons::TLS_DISABLED).map(|c| c.type_).collect();
    let permanent = out.error.as_ref().is_some_and(|e| !e.is_retryable());
    if !pending.is_empty() {
        let phase = if permanent { TenantPhase::Failed } else { TenantPhase::Provisioning };
        let reason = out.error.as_ref().map_or(reasons::NOT_READY, Error::reason);
        return (phase, Cond::fail(types::READY, reason, format!("not ready: {}", pending.join(", "))));
    }
    if desired.expired {
        return (
            TenantPhase::Disabled,
            Cond::fail(types::READY, reasons::EXPIRED, "the tenant expired at spec.expiresAt and is deactivated"),
        );
    }
    if !desired.active {
        return (TenantPhase::Disabled, Cond::fail(types::READY, reasons::DISABLED, "the tenant is disabled by spec.enabled"));
    }
    (TenantPhase::Ready, Cond::ok(types::READY, reasons::PROVISIONED, format!("serving at {}", desired.names.url)))
}

fn next_status(
    tenant: &Tenant,
    desired: Option<&tenant_desired::DesiredTenant>,
    conditions: Vec<Cond>,
    phase: TenantPhase,
    ctx: &Context,
    now: Timestamp,
) -> TenantStatus {
    let mut status = tenant.status.clone().unwrap_or_default();
    status.observed_generation = tenant.metadata.generation;
    status.phase = Some(phase);
    status.conditions = conditions::settle(&status.conditions, &conditions, tenant.metadata.generation, Time(now));
    if let Some(d) = desired {
        status.namespace = Some(d.names.namespace.clone());
        status.fqdn = Some(d.names.fqdn.clone());
        status.url = Some(d.names.url.clone());
        status.realm = ctx.providers.get(ProviderKind::Identity).map(|_| d.names.realm.clone());
        status.expired = d.expired;
        status.usage = usage(&d.names.namespace, ctx);
    }
    status
}

/// Records the Secrets the providers reported and, when every step succeeded, the
/// rotation that was handled.
fn record_credentials(status: &mut TenantStatus, tenant: &Tenant, namespace: &str, out: &Outcome) {
    for (backend, name) in &out.credentials {
        status.credentials.insert(backend.to_string(), SecretReference { namespace: namespace.to_string(), name: name.clone() });
    }
    if let Some(grafana) = &out.grafana {
        status.grafana = Some(grafana.clone());
    }
    if out.error.is_none()
        && let Some(value) = rotation_requested(tenant)
    {
        status.last_credential_rotation = Some(value);
    }
}

/// The agents and storage summary from the tenant's CapabilityQuotas.
fn usage(namespace: &str, ctx: &Context) -> Option<TenantUsage> {
    let quotas = ctx.stores.quotas_in(namespace);
    if quotas.is_empty() {
        return None;
    }
    let figure = |c: Capability| {
        let name = c.name();
        let status = quotas.iter().filter_map(|q| q.status.as_ref());
        let used = status.clone().find_map(|s| s.used.get(name)).map(|q| q.0.clone());
        let limit = status.clone().find_map(|s| s.hard.get(name)).map(|q| q.0.clone());
        (used.is_some() || limit.is_some()).then_some(UsageFigure { used, limit })
    };
    let licence = quota::licence_use(ctx)
        .into_iter()
        .map(|u| {
            let used = if u.unlimited.is_empty() { u.allotted.to_string() } else { "unlimited".into() };
            (u.licensed.name().to_string(), UsageFigure { used: Some(used), limit: Some(u.cap.to_string()) })
        })
        .collect();
    Some(TenantUsage { agents: figure(Capability::Agents), storage: figure(Capability::Storage), licence })
}

/// Writes the status through the status subresource when it changed; returns
/// whether it wrote.
async fn write_status(tenant: &Tenant, status: TenantStatus, ctx: &Context) -> Result<bool, Error> {
    if tenant.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    patch_status(tenant, &status, ctx).await?;
    Ok(true)
}

/// Applies the whole status through the status subresource.
pub(super) async fn patch_status(tenant: &Tenant, status: &TenantStatus, ctx: &Context) -> Result<(), Error> {
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": "cx-operator.io/v1alpha1", "kind": "Tenant", "status": status});
    api.patch_status(&tenant.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(format!("updating status of Tenant {}", tenant.name_any())))?;
    Ok(())
}

/// Events for phase changes: the tenant's operation log.
async fn transition_events(tenant: &Tenant, previous: &TenantStatus, status: &TenantStatus, ctx: &Context) {
    if status.expired && !previous.expired {
        let note = "spec.expiresAt has passed: the tenant is deactivated; its data is kept".to_string();
        ctx.event(tenant, EventType::Warning, reasons::EXPIRED, "Disable", note).await;
    }
    if previous.phase == status.phase {
        return;
    }
    let url = status.url.clone().unwrap_or_default();
    let (type_, reason, action, note) = match (previous.phase, status.phase) {
        (Some(TenantPhase::Disabled), Some(TenantPhase::Ready)) => {
            (EventType::Normal, "Enabled", "Enable", format!("tenant enabled again, serving at {url}"))
        }
        (_, Some(TenantPhase::Ready)) => (EventType::Normal, "Ready", "Provision", format!("tenant is ready at {url}")),
        (_, Some(TenantPhase::Disabled)) if !status.expired => {
            (EventType::Normal, "Disabled", "Disable", "tenant disabled; its data is kept".into())
        }
        (_, Some(TenantPhase::Failed)) => {
            let message = conditions::find(&status.conditions, types::READY).map(|c| c.message.clone()).unwrap_or_default();
            (EventType::Warning, "Failed", "Provision", message)
        }
        _ => return,
    };
    ctx.event(tenant, type_, reason, action, note).await;
}

/// When to look again: the jittered resync, sooner while provisioning, a second after
/// a recheck time, and exactly when a waiting notification delivery is due (its
/// stored time is already rounded up).
fn next_action(phase: TenantPhase, recheck_at: Option<Timestamp>, delivery_at: Option<Timestamp>, now: Timestamp, ctx: &Context) -> Action {
    let mut delay = ctx.resync();
    if phase == TenantPhase::Provisioning {
        delay = delay.min(UNSETTLED_RECHECK);
    }
    if let Some(at) = recheck_at {
        let until = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
        delay = delay.min(until + Duration::from_secs(1));
    }
    if let Some(at) = delivery_at {
        delay = delay.min(Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO));
    }
    Action::requeue(delay)
}

/// Deletion: external resources go with `deletionPolicy: Delete`, stay with `Retain`;
/// Kubernetes objects are garbage-collected through their owner references.
async fn cleanup(tenant: Arc<Tenant>, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let desired = tenant_desired::assemble(&tenant, &ctx.config, now);
    let mut status = tenant.status.clone().unwrap_or_default();
    let starting = status.phase != Some(TenantPhase::Deleting);
    if starting {
        status.phase = Some(TenantPhase::Deleting);
        let deleting = Cond::fail(types::READY, reasons::DELETING, "the tenant is being deleted");
        conditions::set(&mut status.conditions, &deleting, tenant.metadata.generation, Time(now));
    }
    // The `deleted` event goes into the outbox in the same write as the phase.
    let recorded = notifications::record_deletion(&mut status, &tenant, ctx, now);
    if starting || recorded {
        write_status(&tenant, status.clone(), ctx).await?;
    }
    if starting {
        let note = format!("deleting tenant (deletionPolicy {:?})", tenant.spec.deletion_policy);
        ctx.event(tenant.as_ref(), EventType::Normal, reasons::DELETING, "Delete", note).await;
    }
    match tenant.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let secrets = secrets::TenantSecrets::new(ctx.client.clone(), &tenant, &desired.names.namespace);
            let request = TenantRequest { tenant: &tenant, desired: &desired, secrets: &secrets, rotate: false, read_only: false };
            for provider in ctx.providers.iter() {
                for op in provider.delete(&request).await? {
                    ctx.event(tenant.as_ref(), EventType::Normal, "Deleted", "Delete", op).await;
                }
            }
        }
        DeletionPolicy::Retain => {
            let kept: Vec<&str> = ctx.providers.iter().map(|p| p.kind().config_key()).collect();
            let note = if kept.is_empty() {
                "deletionPolicy Retain: no external backend is configured; nothing outside Kubernetes to keep".to_string()
            } else {
                format!("deletionPolicy Retain: kept the tenant's data in {}", kept.join(", "))
            };
            ctx.event(tenant.as_ref(), EventType::Normal, "Retained", "Delete", note).await;
        }
    }
    // Receivers hear of the deletion (or the event is given up after
    // notifications.deletionGiveUpAfter) before the finalizer goes.
    notifications::deliver_before_deletion(&tenant, &mut status, ctx).await?;
    ctx.event(
        tenant.as_ref(),
        EventType::Normal,
        "Deleted",
        "Delete",
        format!("tenant cleaned up; namespace {} and Ingress are garbage-collected", desired.names.namespace),
    )
    .await;
    Ok(Action::await_change())
}
