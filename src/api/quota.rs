//! The `CapabilityQuota`: limits on platform capabilities, like a ResourceQuota.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{Condition, Time},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Caps what a tenant may use of the platform's capabilities and shows what it uses.
/// The effective limit of a capability is the tightest over all quotas in the
/// namespace; a capability whose feature is off in the Tenant is limited to 0.
// Two printer columns share the `date` type, which the attribute lint mistakes for a
// repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cx-operator.io",
    version = "v1alpha1",
    kind = "CapabilityQuota",
    plural = "capabilityquotas",
    namespaced,
    shortname = "cq",
    category = "cx",
    status = "CapabilityQuotaStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Limits on the platform capabilities a tenant may use, with the measured use.",
    printcolumn(
        name = "Within",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"WithinLimits\")].status",
        description = "Whether every capability is within its limit"
    ),
    printcolumn(name = "Measured", type_ = "date", json_path = ".status.lastMeasured"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityQuotaSpec {
    /// Limits per capability; an absent capability is not limited by this quota.
    #[serde(default)]
    pub limits: Limits,
    /// What happens while storage is over its limit: `Report` (default) only reports;
    /// `ReadOnly` leaves the tenant's database and cache users read-only until usage
    /// falls below the limit or the limit is raised.
    #[serde(default)]
    pub storage_policy: StoragePolicy,
}

/// Limits per capability. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Number of Agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub agents: Option<i64>,
    /// Storage of the tenant's database and cache, as a Kubernetes quantity (`10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Chat widgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub widgets: Option<i64>,
    /// Connected channel accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub channel_accounts: Option<i64>,
    /// Workflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub workflows: Option<i64>,
    /// Concurrent audio/video sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub concurrent_audio_video: Option<i64>,
    /// Canned messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub canned_messages: Option<i64>,
    /// AI agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ai_agents: Option<i64>,
    /// Files in AI agent datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub dataset_files: Option<i64>,
    /// URLs in AI agent datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub dataset_urls: Option<i64>,
    /// Workflow triggers on top of the 1,000 free ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub extra_workflow_triggers: Option<i64>,
}

/// What happens while storage is over its limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StoragePolicy {
    /// Report the excess only.
    #[default]
    Report,
    /// Make the tenant's database and cache users read-only until usage falls below.
    ReadOnly,
}

/// A platform capability a quota can limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Agents.
    Agents,
    /// Storage.
    Storage,
    /// Widgets.
    Widgets,
    /// Channel accounts.
    ChannelAccounts,
    /// Workflows.
    Workflows,
    /// Concurrent audio/video sessions.
    ConcurrentAudioVideo,
    /// Canned messages.
    CannedMessages,
    /// AI agents.
    AiAgents,
    /// Dataset files.
    DatasetFiles,
    /// Dataset URLs.
    DatasetUrls,
    /// Extra workflow triggers.
    ExtraWorkflowTriggers,
}

impl Capability {
    /// Every capability, in API order.
    pub const ALL: [Capability; 11] = [
        Capability::Agents,
        Capability::Storage,
        Capability::Widgets,
        Capability::ChannelAccounts,
        Capability::Workflows,
        Capability::ConcurrentAudioVideo,
        Capability::CannedMessages,
        Capability::AiAgents,
        Capability::DatasetFiles,
        Capability::DatasetUrls,
        Capability::ExtraWorkflowTriggers,
    ];

    /// The capability's name in the API (`spec.limits`, `status.hard`, `status.used`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Agents => "agents",
            Capability::Storage => "storage",
            Capability::Widgets => "widgets",
            Capability::ChannelAccounts => "channelAccounts",
            Capability::Workflows => "workflows",
            Capability::ConcurrentAudioVideo => "concurrentAudioVideo",
            Capability::CannedMessages => "cannedMessages",
            Capability::AiAgents => "aiAgents",
            Capability::DatasetFiles => "datasetFiles",
            Capability::DatasetUrls => "datasetUrls",
            Capability::ExtraWorkflowTriggers => "extraWorkflowTriggers",
        }
    }

    /// The Tenant feature (`spec.features`) that must be on for this capability, if any.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Capability::Agents | Capability::Storage => None,
            Capability::Widgets => Some("widgets"),
            Capability::ChannelAccounts => Some("channelAccounts"),
            Capability::Workflows | Capability::ExtraWorkflowTriggers => Some("workflows"),
            Capability::ConcurrentAudioVideo => Some("audioVideo"),
            Capability::CannedMessages => Some("cannedMessages"),
            Capability::AiAgents | Capability::DatasetFiles | Capability::DatasetUrls => Some("aiAgents"),
        }
    }
}

impl Limits {
    /// The limit of one capability as a quantity, if this quota sets it.
    pub fn get(&self, capability: Capability) -> Option<Quantity> {
        let count = |v: Option<i64>| v.map(|n| Quantity(n.to_string()));
        match capability {
            Capability::Agents => count(self.agents),
            Capability::Storage => self.storage.clone(),
            Capability::Widgets => count(self.widgets),
            Capability::ChannelAccounts => count(self.channel_accounts),
            Capability::Workflows => count(self.workflows),
            Capability::ConcurrentAudioVideo => count(self.concurrent_audio_video),
            Capability::CannedMessages => count(self.canned_messages),
            Capability::AiAgents => count(self.ai_agents),
            Capability::DatasetFiles => count(self.dataset_files),
            Capability::DatasetUrls => count(self.dataset_urls),
            Capability::ExtraWorkflowTriggers => count(self.extra_workflow_triggers),
        }
    }
}

/// Observed state of a CapabilityQuota.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityQuotaStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Effective limits per capability: the tightest over all quotas in the namespace,
    /// 0 for a capability whose feature is off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, Quantity>,
    /// Measured use per capability; a capability that could not be measured is absent
    /// (see the WithinLimits condition message), never reported as 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, Quantity>,
    /// WithinLimits, naming every exceeded capability when False.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When usage was last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured: Option<Time>,
}
