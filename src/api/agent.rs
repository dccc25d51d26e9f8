//! The `Agent`: a person answering chats and calls, namespaced in the tenant namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Activation, SecretKeyRef};

/// Annotation whose fresh value asks the operator to reset the Agent's password once.
pub const RESET_PASSWORD_ANNOTATION: &str = "cx-operator.io/reset-password";
/// Annotation whose fresh value asks the operator to clear a brute-force lockout once.
pub const UNLOCK_ANNOTATION: &str = "cx-operator.io/unlock";
/// Annotation whose fresh value asks the operator to reset second-factor credentials once.
pub const RESET_2FA_ANNOTATION: &str = "cx-operator.io/reset-2fa";
/// Label marking the Agent the operator created for the tenant administrator.
pub const TENANT_ADMIN_LABEL: &str = "cx-operator.io/tenant-admin";

/// A person answering chats and calls for a tenant. Lives in the tenant namespace;
/// the operator keeps a matching user in the tenant's identity realm.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cx-operator.io",
    version = "v1alpha1",
    kind = "Agent",
    plural = "agents",
    namespaced,
    shortname = "ag",
    category = "cx",
    status = "AgentStatus",
    derive = "PartialEq",
    doc = "A person answering chats and calls for a tenant, kept as a user in the tenant's identity realm.",
    printcolumn(name = "Username", type_ = "string", json_path = ".status.username", description = "Login name"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Locked", type_ = "boolean", json_path = ".status.locked", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.username) || self.metadata.name.size() <= 63").message("metadata.name is the default username and must then be at most 63 characters")
)]
#[x_kube(validation = Rule::new("has(self.username) == has(oldSelf.username) && (!has(self.username) || self.username == oldSelf.username)").message("spec.username is immutable: it cannot be added, changed or removed after creation"))]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Login name; defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9._@]*[a-z0-9])?$"))]
    pub username: Option<String>,
    /// E-mail address. Changing it marks it unverified and sends a verification e-mail.
    #[schemars(length(min = 3, max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: String,
    /// Given name.
    #[schemars(length(min = 1, max = 100))]
    pub first_name: String,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub last_name: Option<String>,
    /// Name shown to customers; defaults to "first last".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub alias: Option<String>,
    /// Phone number in E.164 form, e.g. `+4930123456`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{6,14}$"))]
    pub phone: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub title: Option<String>,
    /// Short biography shown in the agent's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub bio: Option<String>,
    /// Realm roles of the agent (for example admin, supervisor, agent). Defaults to
    /// `[agent]`.
    #[serde(default = "default_roles")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<RoleName>,
    /// Queues the agent answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "set"))]
    pub queues: Vec<Label>,
    /// Skills used for routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "set"))]
    pub skills: Vec<Label>,
    /// false disables the user: the agent cannot log in; nothing is deleted.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether the agent may use the mobile app.
    #[serde(default)]
    pub mobile_app: bool,
    /// Clock format shown to the agent.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// A Secret key in this namespace holding the initial password. Without it,
    /// `activation` decides how the agent gets access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Without a password: `Email` (default) sends an activation e-mail; `Credentials`
    /// stores a generated temporary password in a Secret in this namespace.
    #[serde(default)]
    pub activation: Activation,
    /// Second factor: `required` makes the agent configure an OTP at next login.
    #[serde(default)]
    pub two_factor: TwoFactor,
}

/// A realm role name.
pub type RoleName = String;
/// A queue or skill name.
pub type Label = String;

fn default_roles() -> Vec<String> {
    vec!["agent".into()]
}

fn default_true() -> bool {
    true
}

/// Clock formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TimeFormat {
    /// 12-hour clock with AM/PM.
    #[serde(rename = "12h")]
    H12,
    /// 24-hour clock.
    #[default]
    #[serde(rename = "24h")]
    H24,
}

/// Second-factor requirement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TwoFactor {
    /// The agent must configure an OTP.
    Required,
    /// The agent may configure an OTP.
    #[default]
    Optional,
}

/// Lifecycle phase of an Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AgentPhase {
    /// The user is not provisioned yet.
    Pending,
    /// The user exists and matches the spec.
    Ready,
    /// The user exists and is disabled.
    Disabled,
    /// The tenant's agent quota has no room for this Agent; it is not provisioned.
    QuotaExceeded,
    /// A step failed permanently; see the conditions.
    Failed,
}

/// Observed state of an Agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AgentPhase>,
    /// Ready, QuotaExceeded and the provisioning conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The effective login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The user's id in the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Whether brute-force protection has locked the user out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// The last handled value of the reset-password annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_password_reset: Option<String>,
    /// The last handled value of the unlock annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unlock: Option<String>,
    /// The last handled value of the reset-2fa annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_two_factor_reset: Option<String>,
}

impl Agent {
    /// The login name: `spec.username`, or `metadata.name` when unset.
    pub fn username(&self) -> String {
        self.spec.username.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// Whether this is the Agent the operator created for the tenant administrator.
    pub fn is_tenant_admin(&self) -> bool {
        self.metadata.labels.as_ref().and_then(|l| l.get(TENANT_ADMIN_LABEL)).is_some_and(|v| v == "true")
    }
}
