//! The `Tenant`: one customer of the platform, cluster-scoped.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Activation, SecretKeyRef, SecretReference, UsageFigure};
use super::notifications::NotificationStatus;

/// Annotation whose fresh value asks the operator to rotate the tenant's generated
/// credentials once (database and cache passwords).
pub const ROTATE_CREDENTIALS_ANNOTATION: &str = "cx-operator.io/rotate-credentials";

/// A tenant of the customer-experience platform. `metadata.name` is the tenant id: a
/// DNS label of at most 40 characters, used for every derived name and never changed.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cx-operator.io",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    shortname = "tn",
    category = "cx",
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A tenant of the customer-experience platform: its identity realm, databases, cache user, subdomain with TLS, observability access and quotas.",
    printcolumn(name = "FQDN", type_ = "string", json_path = ".status.fqdn", description = "The tenant's host name"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled", description = "Whether the tenant is enabled"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the tenant is fully provisioned"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase", priority = 1),
    printcolumn(name = "Agents", type_ = "string", json_path = ".status.usage.agents.used", description = "Agents in use"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name (the tenant id) must be at most 40 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name (the tenant id) must be a DNS label starting with a letter: lowercase letters, digits and '-'")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the tenant, shown in the platform and the login page.
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// The company the tenant belongs to.
    pub company: Company,
    /// The tenant administrator, created as the Agent `admin` in the tenant namespace.
    #[x_kube(validation = Rule::new("self.username == oldSelf.username").message("spec.admin.username is immutable"))]
    pub admin: TenantAdmin,
    /// Time zone and language the tenant's users get by default.
    #[serde(default)]
    pub locale: Locale,
    /// The tenant's host name and TLS.
    #[serde(default)]
    pub domain: Domain,
    /// false deactivates the tenant everywhere at once (realm disabled, cache user off,
    /// database user without roles) and keeps all data; true activates it again.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What deleting the Tenant does outside Kubernetes: `Delete` wipes its realm,
    /// database, cache keys and registrations irrecoverably; `Retain` keeps them and
    /// removes only the Kubernetes objects.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// While true, deleting the Tenant is refused.
    #[serde(default)]
    pub deletion_protection: bool,
    /// The platform features the tenant may use. A feature that is off has no quota
    /// and is published as off to the platform.
    #[serde(default)]
    pub features: Features,
    /// When set, the tenant is deactivated automatically once this time (RFC 3339) has
    /// passed; data is kept. Clear or move it to reactivate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Free key/values (campaign, survey, dialer URLs ...) published in the tenant
    /// ConfigMap for the platform to read. Keys follow ConfigMap key rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]+$') && k.size() <= 253)").message("spec.config keys must consist of letters, digits, '-', '_' or '.' and be at most 253 characters"))]
    pub config: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

/// The company a tenant belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    /// Legal or trading name of the company.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// Number of employees, as a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<CompanySize>,
    /// Country of the company, as an ISO 3166-1 alpha-2 code (e.g. `DE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: Option<String>,
}

/// Company size ranges (number of employees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CompanySize {
    /// 1 to 10 employees.
    #[serde(rename = "1-10")]
    Micro,
    /// 11 to 50 employees.
    #[serde(rename = "11-50")]
    Small,
    /// 51 to 200 employees.
    #[serde(rename = "51-200")]
    Medium,
    /// 201 to 1000 employees.
    #[serde(rename = "201-1000")]
    Large,
    /// 1001 to 5000 employees.
    #[serde(rename = "1001-5000")]
    Enterprise,
    /// More than 5000 employees.
    #[serde(rename = "5001+")]
    Global,
}

/// The tenant administrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantAdmin {
    /// Login name of the administrator; immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9._@]*[a-z0-9])?$"))]
    pub username: String,
    /// E-mail address of the administrator; activation and recovery e-mails go here.
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: String,
    /// Given name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub last_name: Option<String>,
    /// A Secret key (in the tenant namespace) holding the administrator's initial
    /// password. Without it, `activation` decides how the administrator gets access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Without a password: `Email` (default) sends an activation e-mail; `Credentials`
    /// stores a generated temporary password in a Secret in the tenant namespace.
    #[serde(default)]
    pub activation: Activation,
}

/// Default locale of the tenant's users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Locale {
    /// IANA time zone name, e.g. `Europe/Berlin`. Defaults to `UTC`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^(UTC|[A-Za-z_]+(/[A-Za-z0-9_+\-]+){1,2})$"))]
    pub time_zone: String,
    /// BCP 47 language tag, e.g. `en` or `pt-BR`. Defaults to `en`.
    #[serde(default = "default_language")]
    #[schemars(length(min = 2, max = 35), regex(pattern = r"^[a-z]{2,3}(-[A-Za-z]{4})?(-([A-Z]{2}|[0-9]{3}))?$"))]
    pub language: String,
}

impl Default for Locale {
    fn default() -> Self {
        Self { time_zone: default_time_zone(), language: default_language() }
    }
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_language() -> String {
    "en".into()
}

/// The tenant's host name and TLS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// Fully qualified host name of the tenant. Defaults to `<name>.<rootDomain>` from
    /// the operator configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 4, max = 253), regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub fqdn: Option<String>,
    /// TLS for the host. Defaults to the operator configuration's Ingress TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DomainTls>,
}

/// TLS for the tenant's host: an existing Secret, or a cert-manager issuer that
/// fills the Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) || has(self.issuerRef)").message("spec.domain.tls needs secretName, issuerRef or both"))]
pub struct DomainTls {
    /// Name of the `kubernetes.io/tls` Secret in the platform namespace that serves the
    /// host. With `issuerRef`, cert-manager writes it; defaults to `<name>-tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub secret_name: Option<String>,
    /// A cert-manager issuer that issues the certificate through the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `ClusterIssuer` (default) or `Issuer` (in the platform namespace).
    #[serde(default)]
    pub kind: IssuerKind,
}

/// Kinds of cert-manager issuers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IssuerKind {
    /// A cluster-wide issuer.
    #[default]
    ClusterIssuer,
    /// An issuer in the platform namespace.
    Issuer,
}

/// What deleting a Tenant does outside Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Wipe the realm, database, cache keys and registrations.
    #[default]
    Delete,
    /// Keep everything outside Kubernetes.
    Retain,
}

/// Platform features a tenant may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// Contact management.
    #[serde(default = "default_true")]
    pub contacts: bool,
    /// The public help center.
    #[serde(default = "default_true")]
    pub help_center: bool,
    /// Automated workflows and their triggers.
    #[serde(default = "default_true")]
    pub workflows: bool,
    /// Audio and video calls.
    #[serde(default)]
    pub audio_video: bool,
    /// AI agents and their datasets.
    #[serde(default)]
    pub ai_agents: bool,
    /// Canned (saved) replies.
    #[serde(default = "default_true")]
    pub canned_messages: bool,
    /// Chat widgets for the tenant's web sites.
    #[serde(default = "default_true")]
    pub widgets: bool,
    /// Connected channel accounts (e-mail, messaging apps ...).
    #[serde(default = "default_true")]
    pub channel_accounts: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            contacts: true,
            help_center: true,
            workflows: true,
            audio_video: false,
            ai_agents: false,
            canned_messages: true,
            widgets: true,
            channel_accounts: true,
        }
    }
}

impl Features {
    /// Every feature with its API name and whether it is on, in a stable order.
    pub fn list(&self) -> [(&'static str, bool); 8] {
        [
            ("contacts", self.contacts),
            ("helpCenter", self.help_center),
            ("workflows", self.workflows),
            ("audioVideo", self.audio_video),
            ("aiAgents", self.ai_agents),
            ("cannedMessages", self.canned_messages),
            ("widgets", self.widgets),
            ("channelAccounts", self.channel_accounts),
        ]
    }
}

/// Lifecycle phase of a Tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TenantPhase {
    /// Some provisioning step is not done yet.
    Provisioning,
    /// Everything is provisioned and the tenant is enabled.
    Ready,
    /// The tenant is disabled (by spec or expiry); data is kept.
    Disabled,
    /// The Tenant is being deleted.
    Deleting,
    /// The spec is invalid or a step failed permanently; see the conditions.
    Failed,
}

/// Observed state of a Tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TenantPhase>,
    /// Ready, plus one condition per provisioning step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The tenant namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The tenant's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The tenant's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The tenant's identity realm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// True once `spec.expiresAt` has passed and the tenant was deactivated for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// When the tenant first became Ready. The `ready` lifecycle notification is sent
    /// for this first time only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ready_time: Option<Time>,
    /// Lifecycle notifications (CloudEvents to the configured webhooks): the events
    /// still being delivered and the last one of each type delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationStatus>,
    /// The Secrets holding the tenant's generated credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, SecretReference>,
    /// The last handled value of the `cx-operator.io/rotate-credentials` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_credential_rotation: Option<String>,
    /// What the tenant has in Grafana, as last written there: the allowed host in the
    /// shared data source and the tenant's organisation. The operator removes exactly
    /// these on a host change or deletion, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<GrafanaStatus>,
    /// Usage summary, from the tenant's CapabilityQuota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
}

/// What the tenant has in Grafana.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaStatus {
    /// The entry of the tenant in the `jsonData.allowedHosts` of the platform's Grafana
    /// data source (the tenant URL in the configured `grafana.hostFormat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_host: Option<String>,
    /// The id of the tenant's Grafana organisation (with `grafana.organizations: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<i64>,
}

/// Usage summary of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Agents used and their limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<UsageFigure>,
    /// Storage used and its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<UsageFigure>,
    /// The platform licence by capability (`agents`, `aiAgents`, `workflowTriggers`):
    /// `used` is the sum of the limits allotted to all tenants (`unlimited` when a
    /// tenant has none), `limit` is the licence cap. Refreshed when the Tenant is
    /// reconciled.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub licence: BTreeMap<String, UsageFigure>,
}
