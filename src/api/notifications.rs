//! The lifecycle notifications of a Tenant as its status records them: an outbox of
//! CloudEvents still to be delivered to the configured webhooks, and what was
//! delivered last.
//!
//! The outbox lives in the status so that an operator restart neither loses an
//! event nor sends one again: an event is written there in the same status update
//! as the phase change it reports, and removed once every webhook has it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prefix of the CloudEvents `type` of every lifecycle event.
pub const EVENT_TYPE_PREFIX: &str = "io.cx-operator.tenant.";

/// A lifecycle event of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NotificationType {
    /// The tenant became Ready for the first time.
    Ready,
    /// The tenant was disabled (by `spec.enabled: false` or expiry).
    Disabled,
    /// The tenant was enabled again after being disabled.
    Enabled,
    /// The tenant was deleted.
    Deleted,
}

impl NotificationType {
    /// The lower-case name: the last part of the CloudEvents `type`.
    pub fn name(self) -> &'static str {
        match self {
            NotificationType::Ready => "ready",
            NotificationType::Disabled => "disabled",
            NotificationType::Enabled => "enabled",
            NotificationType::Deleted => "deleted",
        }
    }

    /// The CloudEvents `type`, e.g. `io.cx-operator.tenant.ready`.
    pub fn event_type(self) -> String {
        format!("{EVENT_TYPE_PREFIX}{}", self.name())
    }

    /// Whether the tenant is active after this event.
    pub fn is_active(self) -> bool {
        matches!(self, NotificationType::Ready | NotificationType::Enabled)
    }
}

/// The lifecycle notifications of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationStatus {
    /// Number of events recorded for this tenant. The CloudEvents `id` of an event is
    /// `<tenant uid>.<sequence>`, so receivers can de-duplicate by `id`.
    #[serde(default)]
    pub sequence: u64,
    /// The last event recorded: the state receivers have been, or are being, told
    /// about. The next event is chosen from it (`enabled` only after `disabled` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced: Option<NotificationType>,
    /// Events not yet delivered to every webhook, oldest first (the outbox). Each
    /// webhook gets them in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingNotification>,
    /// The last event of each type that every webhook is done with: delivered,
    /// refused or given up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<DeliveredNotification>,
}

/// An event in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingNotification {
    /// The CloudEvents `id`.
    pub id: String,
    /// Which lifecycle event.
    #[serde(rename = "type")]
    pub type_: NotificationType,
    /// The CloudEvents `time`: when the phase change was recorded.
    pub time: Time,
    /// The webhooks that still have to receive it.
    pub webhooks: Vec<WebhookDelivery>,
    /// The webhooks that accepted it so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// The webhooks that refused it or were given up on so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedDelivery>,
}

/// The delivery of one event to one webhook, while it is not done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The webhook's name in the operator configuration.
    pub name: String,
    /// Failed attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The earliest time of the next attempt; absent means at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An event every webhook is done with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredNotification {
    /// Which lifecycle event.
    #[serde(rename = "type")]
    pub type_: NotificationType,
    /// The CloudEvents `id`.
    pub id: String,
    /// The CloudEvents `time`.
    pub time: Time,
    /// When the last webhook was done with it.
    pub completion_time: Time,
    /// The webhooks that accepted it (answered 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// The webhooks that refused it or were given up on, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedDelivery>,
}

/// A webhook that did not get an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedDelivery {
    /// The webhook's name in the operator configuration.
    pub name: String,
    /// Why: the webhook's answer, or the last error before the delivery was given up.
    pub reason: String,
}
