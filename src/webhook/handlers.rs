//! The HTTP side of the webhook: one path per kind, AdmissionReview in and out, and
//! the Kubernetes reads each rule needs, behind [`ClusterView`].
//!
//! Failure policies (see `examples/webhook.yaml`): Tenants and CapabilityQuotas use
//! `Fail`, so a read that fails here denies with the reason; Agents use `Ignore`
//! (the Agent controller enforces the same rules after the fact), so a failed read
//! admits the Agent with a warning.

use std::sync::Arc;

use async_trait::async_trait;
use axum::{Json, Router, body::Bytes, extract::State, routing::post};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, ConvertAdmissionReviewError, Operation},
    },
};
use serde::de::DeserializeOwned;

use super::review::{self, Verdict};
use crate::{
    api::{Agent, CapabilityQuota, Tenant},
    config::Config,
    controller::tenant_desired,
};

/// Path of the Tenant webhook.
pub const TENANTS_PATH: &str = "/validate/tenants";
/// Path of the Agent webhook.
pub const AGENTS_PATH: &str = "/validate/agents";
/// Path of the CapabilityQuota webhook.
pub const QUOTAS_PATH: &str = "/validate/capabilityquotas";

/// A read of the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct ViewError {
    /// What was being read.
    pub context: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

/// What the rules read from the cluster at review time.
#[async_trait]
pub trait ClusterView: Send + Sync + 'static {
    /// One Tenant by name.
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>, ViewError>;
    /// Every Tenant (all shards: FQDNs and the licence are platform-wide).
    async fn tenants(&self) -> Result<Vec<Tenant>, ViewError>;
    /// The number of Agents in a namespace.
    async fn agent_count(&self, namespace: &str) -> Result<usize, ViewError>;
    /// The CapabilityQuotas of one namespace, or of every namespace.
    async fn quotas(&self, namespace: Option<&str>) -> Result<Vec<CapabilityQuota>, ViewError>;
}

/// [`ClusterView`] through the Kubernetes API.
pub struct KubeView {
    client: Client,
}

impl KubeView {
    /// A view reading through `client`.
    pub fn new(client: Client) -> KubeView {
        KubeView { client }
    }
}

fn view_error(context: String) -> impl FnOnce(kube::Error) -> ViewError {
    move |source| ViewError { context, source }
}

#[async_trait]
impl ClusterView for KubeView {
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>, ViewError> {
        Api::<Tenant>::all(self.client.clone()).get_opt(name).await.map_err(view_error(format!("reading Tenant {name}")))
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, ViewError> {
        let list = Api::<Tenant>::all(self.client.clone()).list(&ListParams::default()).await;
        list.map(|l| l.items).map_err(view_error("listing Tenants".into()))
    }

    async fn agent_count(&self, namespace: &str) -> Result<usize, ViewError> {
        // Metadata only: the count is all the rule needs.
        let list = Api::<Agent>::namespaced(self.client.clone(), namespace).list_metadata(&ListParams::default()).await;
        list.map(|l| l.items.len()).map_err(view_error(format!("listing Agents in {namespace}")))
    }

    async fn quotas(&self, namespace: Option<&str>) -> Result<Vec<CapabilityQuota>, ViewError> {
        let api = match namespace {
            Some(ns) => Api::<CapabilityQuota>::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let context = format!("listing CapabilityQuotas{}", namespace.map(|ns| format!(" in {ns}")).unwrap_or_default());
        api.list(&ListParams::default()).await.map(|l| l.items).map_err(view_error(context))
    }
}

/// Reviews admission requests against the rules.
pub struct Reviewer {
    view: Arc<dyn ClusterView>,
    config: Arc<Config>,
}

/// What a review decided, before it becomes a response.
#[derive(Debug)]
pub enum Outcome {
    /// The rules decided.
    Decided(Verdict),
    /// A read failed; the failure policy of the rule decides.
    Unchecked(ViewError),
}

impl From<Result<Verdict, ViewError>> for Outcome {
    fn from(r: Result<Verdict, ViewError>) -> Self {
        match r {
            Ok(v) => Outcome::Decided(v),
            Err(e) => Outcome::Unchecked(e),
        }
    }
}

impl Reviewer {
    /// A reviewer reading through `view`.
    pub fn new(view: Arc<dyn ClusterView>, config: Arc<Config>) -> Reviewer {
        Reviewer { view, config }
    }

    /// Tenant: deletion protection on DELETE, FQDN uniqueness on CREATE/UPDATE.
    pub async fn tenant(&self, req: &AdmissionRequest<Tenant>) -> Outcome {
        match (&req.operation, &req.object, &req.old_object) {
            (Operation::Delete, _, Some(old)) => Outcome::Decided(review::tenant_delete(old)),
            (Operation::Create | Operation::Update, Some(new), old) => {
                if new.metadata.deletion_timestamp.is_some() {
                    return Outcome::Decided(Verdict::Allowed);
                }
                // The FQDN did not change: skip the list (review::tenant_fqdn would allow it too).
                let fqdn = |t: &Tenant| tenant_desired::fqdn(t, &self.config).to_ascii_lowercase();
                let unchanged = old.as_ref().is_some_and(|o| fqdn(o) == fqdn(new));
                if unchanged {
                    return Outcome::Decided(Verdict::Allowed);
                }
                self.view.tenants().await.map(|others| review::tenant_fqdn(new, old.as_ref(), &others, &self.config)).into()
            }
            _ => Outcome::Decided(Verdict::Allowed),
        }
    }

    /// Agent: namespace and quota on CREATE, the tenant administrator on DELETE.
    pub async fn agent(&self, req: &AdmissionRequest<Agent>) -> Outcome {
        let prefix = &self.config.namespace_prefix;
        let namespace = req.namespace.clone().unwrap_or_default();
        let tenant_name = review::tenant_name_of_namespace(&namespace, prefix).map(str::to_string);
        match (&req.operation, &req.object, &req.old_object) {
            (Operation::Create, Some(agent), _) => {
                let checked = async {
                    let tenant = match &tenant_name {
                        Some(name) => self.view.tenant(name).await?,
                        None => None,
                    };
                    let placed = review::agent_namespace(agent, &namespace, prefix, tenant.as_ref());
                    if placed != Verdict::Allowed {
                        return Ok(placed);
                    }
                    let quotas = self.view.quotas(Some(&namespace)).await?;
                    let agents = self.view.agent_count(&namespace).await?;
                    Ok(review::agent_quota(&namespace, tenant.as_ref(), &quotas, agents))
                };
                checked.await.into()
            }
            (Operation::Delete, _, Some(agent)) if agent.is_tenant_admin() => {
                let tenant = match &tenant_name {
                    Some(name) => self.view.tenant(name).await,
                    None => Ok(None),
                };
                tenant.map(|t| review::admin_agent_delete(agent, t.as_ref())).into()
            }
            _ => Outcome::Decided(Verdict::Allowed),
        }
    }

    /// CapabilityQuota: features and licence on CREATE/UPDATE of the spec.
    pub async fn quota(&self, req: &AdmissionRequest<CapabilityQuota>) -> Outcome {
        let (Operation::Create | Operation::Update, Some(quota)) = (&req.operation, &req.object) else {
            return Outcome::Decided(Verdict::Allowed);
        };
        if req.old_object.as_ref().is_some_and(|old| old.spec == quota.spec) {
            // Metadata-only updates never change what the tenant may use.
            return Outcome::Decided(Verdict::Allowed);
        }
        let namespace = req.namespace.clone().or_else(|| quota.namespace()).unwrap_or_default();
        let Some(tenant_name) = review::tenant_name_of_namespace(&namespace, &self.config.namespace_prefix) else {
            return Outcome::Decided(Verdict::Allowed);
        };
        let mut quota = quota.clone();
        quota.metadata.namespace = Some(namespace.clone());
        let checked = async {
            let tenant = self.view.tenant(tenant_name).await?;
            let features = review::quota_features(&quota, tenant.as_ref());
            if features != Verdict::Allowed {
                return Ok(features);
            }
            let Some(licence) = self.config.licence.as_ref().filter(|l| crate::licence::Licensed::ALL.iter().any(|c| c.cap(l).is_some()))
            else {
                return Ok(Verdict::Allowed);
            };
            let tenants = self.view.tenants().await?;
            let quotas = self.view.quotas(None).await?;
            Ok(review::quota_licence(&quota, licence, &tenants, &quotas, &self.config.namespace_prefix))
        };
        checked.await.into()
    }
}

/// The failure policy a rule group is registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// A failed check denies.
    Fail,
    /// A failed check admits, with a warning.
    Ignore,
}

/// Turns an outcome into the AdmissionResponse for `req`.
pub fn respond<K: Resource>(req: &AdmissionRequest<K>, outcome: Outcome, policy: FailurePolicy, kind: &str) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match (outcome, policy) {
        (Outcome::Decided(Verdict::Allowed), _) => response,
        (Outcome::Decided(Verdict::Denied(denial)), _) => deny(response, denial.to_string()),
        (Outcome::Unchecked(e), FailurePolicy::Fail) => {
            tracing::warn!(error = %e, kind, name = req.name, "admission check failed; denying");
            deny(response, format!("cx-operator could not check this {kind}: {e}; try again"))
        }
        (Outcome::Unchecked(e), FailurePolicy::Ignore) => {
            tracing::warn!(error = %e, kind, name = req.name, "admission check failed; admitting");
            let mut response = response;
            response.warnings = Some(vec![format!("cx-operator could not check this {kind} ({e}); the controller checks it instead")]);
            response
        }
    }
}

fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

/// The webhook's routes.
pub fn router(reviewer: Arc<Reviewer>) -> Router {
    Router::new()
        .route(TENANTS_PATH, post(tenants))
        .route(AGENTS_PATH, post(agents))
        .route(QUOTAS_PATH, post(quotas))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(reviewer)
}

type ReviewResponse = Json<AdmissionReview<DynamicObject>>;

/// A body that is no AdmissionReview this webhook understands.
struct Undecodable {
    /// The request uid, when one can be found, so the API server can match the answer.
    uid: String,
    /// Why it could not be decoded.
    message: String,
}

impl Undecodable {
    fn into_response(self) -> ReviewResponse {
        let mut response = AdmissionResponse::invalid(format!("not an AdmissionReview this webhook understands: {}", self.message));
        response.uid = self.uid;
        Json(response.into_review())
    }
}

/// Decodes a review of `K`.
fn decode<K: Resource + DeserializeOwned>(body: &[u8]) -> Result<AdmissionRequest<K>, Undecodable> {
    let review: Result<AdmissionReview<K>, String> = serde_json::from_slice(body).map_err(|e| e.to_string());
    review.and_then(|r| r.try_into().map_err(|e: ConvertAdmissionReviewError| e.to_string())).map_err(|message| Undecodable {
        uid: serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["request"]["uid"].as_str().map(str::to_string))
            .unwrap_or_default(),
        message,
    })
}

async fn tenants(State(reviewer): State<Arc<Reviewer>>, body: Bytes) -> ReviewResponse {
    let req = match decode::<Tenant>(&body) {
        Ok(req) => req,
        Err(undecodable) => return undecodable.into_response(),
    };
    let outcome = reviewer.tenant(&req).await;
    Json(respond(&req, outcome, FailurePolicy::Fail, "Tenant").into_review())
}

async fn agents(State(reviewer): State<Arc<Reviewer>>, body: Bytes) -> ReviewResponse {
    let req = match decode::<Agent>(&body) {
        Ok(req) => req,
        Err(undecodable) => return undecodable.into_response(),
    };
    let outcome = reviewer.agent(&req).await;
    Json(respond(&req, outcome, FailurePolicy::Ignore, "Agent").into_review())
}

async fn quotas(State(reviewer): State<Arc<Reviewer>>, body: Bytes) -> ReviewResponse {
    let req = match decode::<CapabilityQuota>(&body) {
        Ok(req) => req,
        Err(undecodable) => return undecodable.into_response(),
    };
    let outcome = reviewer.quota(&req).await;
    Json(respond(&req, outcome, FailurePolicy::Fail, "CapabilityQuota").into_review())
}
