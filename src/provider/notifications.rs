//! Lifecycle notifications: CloudEvents 1.0 in structured JSON mode, signed with
//! HMAC-SHA256 and POSTed to the configured webhooks.
//!
//! This is not a [`Provisioner`](super::Provisioner): nothing is provisioned, events are
//! sent. The event and its signature are pure functions of their inputs; the outbox
//! that makes delivery survive restarts lives in the Tenant's status and is kept by
//! `controller::notifications`.
//!
//! # Signature
//!
//! Every request carries `X-CX-Signature: sha256=<hex>`, the lower-case hex HMAC-SHA256
//! of the exact request body bytes, keyed with the webhook's signing key. A receiver
//! computes the same over the body it read (before parsing it), compares in constant
//! time, and refuses the request (401) when they differ. The CloudEvents `id`
//! (`<tenant uid>.<sequence>`) is stable across retries, so a receiver that already
//! processed an `id` acknowledges it again without acting twice.

use std::{fmt, time::Duration};

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ProviderError, http};
use crate::{
    api::{Tenant, TenantStatus, notifications::NotificationType},
    config::NotificationsConfig,
};

/// The configuration key of this backend, named in errors.
pub const BACKEND: &str = "notifications";

/// The CloudEvents version sent.
pub const SPEC_VERSION: &str = "1.0";

/// Content type of a CloudEvent in structured JSON mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Content type of the event's `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The header carrying the signature of the body.
pub const SIGNATURE_HEADER: &str = "X-CX-Signature";

/// The scheme prefix of the signature header's value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Signing keys shorter than this are refused: RFC 2104 advises against keys shorter
/// than the hash output (32 bytes for SHA-256).
pub const MIN_KEY_BYTES: usize = 32;

/// A CloudEvent as it is sent: the fields in this order, serialized as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event and stable across retries: `<tenant uid>.<sequence>`.
    pub id: String,
    /// The configured `notifications.source`.
    pub source: String,
    /// `io.cx-operator.tenant.<ready|disabled|enabled|deleted>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The tenant id.
    pub subject: String,
    /// When the phase change was recorded (RFC 3339).
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// What the tenant is.
    pub data: TenantEventData,
}

/// The `data` of a lifecycle event: where the tenant lives and what it may use. Never
/// a credential, nor the name of a credential Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantEventData {
    /// The tenant id (`metadata.name`).
    pub tenant_id: String,
    /// The Tenant's uid: tells a re-created tenant of the same name apart.
    pub uid: String,
    /// The tenant namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The tenant's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The tenant's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The tenant's identity realm, when an identity backend is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// The features that are on, by their API name.
    pub features: Vec<String>,
}

/// The event data of a tenant, from its spec and the names its status records.
pub fn event_data(tenant: &Tenant, status: &TenantStatus) -> TenantEventData {
    TenantEventData {
        tenant_id: tenant.name_any(),
        uid: tenant.uid().unwrap_or_default(),
        namespace: status.namespace.clone(),
        fqdn: status.fqdn.clone(),
        url: status.url.clone(),
        realm: status.realm.clone(),
        features: tenant.spec.features.list().iter().filter(|(_, on)| *on).map(|(name, _)| name.to_string()).collect(),
    }
}

/// The CloudEvent of a lifecycle event.
pub fn cloud_event(source: &str, id: &str, type_: NotificationType, time: Timestamp, data: TenantEventData) -> CloudEvent {
    CloudEvent {
        specversion: SPEC_VERSION.into(),
        id: id.into(),
        source: source.into(),
        type_: type_.event_type(),
        subject: data.tenant_id.clone(),
        time: time.to_string(),
        datacontenttype: DATA_CONTENT_TYPE.into(),
        data,
    }
}

/// The request body of an event: the bytes that are signed and sent.
pub fn body(event: &CloudEvent) -> Vec<u8> {
    serde_json::to_vec(event).expect("a CloudEvent serializes")
}

/// The HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The value of the signature header for `body`: `sha256=<lower-case hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    format!("{SIGNATURE_PREFIX}{}", hex::encode(hmac_sha256(key, body)))
}

/// Whether `header` is the signature of `body` under `key`, compared in constant time.
pub fn verify_signature(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(Ok(expected)) = header.trim().strip_prefix(SIGNATURE_PREFIX).map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Why a delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No answer, a timeout, or an answer that may change (408, 429, 5xx): retried
    /// with backoff.
    #[error("{0}")]
    Transient(String),
    /// The webhook refused the event (a 4xx other than 408 and 429, or an unexpected
    /// status): sending it again would not help.
    #[error("refused with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The webhook redirected the request elsewhere: it must answer at its own URL.
    #[error("refused: the webhook answered with a redirect to another URL")]
    Redirected,
    /// The outbox names a webhook that is no longer configured.
    #[error("the webhook is no longer configured")]
    NotConfigured,
}

impl DeliveryError {
    /// Whether a later attempt can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Transient(_))
    }
}

/// What an HTTP status means for a delivery.
pub fn classify_status(status: u16) -> Result<(), DeliveryError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(DeliveryError::Transient(format!("HTTP {status}"))),
        _ => Err(DeliveryError::Refused { status }),
    }
}

/// A signing key; never printed.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Wraps the key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        SigningKey(bytes.into())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// One webhook as the notifier needs it: its settings and the key from its Secret.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Name in the configuration.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC key.
    pub signing_key: SigningKey,
    /// A CA bundle (PEM) to trust instead of the platform's trust store.
    pub ca_pem: Option<String>,
}

/// When deliveries are retried and given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub min_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// How long after an event was recorded it is given up.
    pub give_up_after: Duration,
    /// How long after a deletion started the outstanding events are given up.
    pub deletion_give_up_after: Duration,
}

impl RetryPolicy {
    /// The policy of a configuration.
    pub fn from_config(config: &NotificationsConfig) -> Self {
        RetryPolicy {
            min_backoff: config.min_backoff,
            max_backoff: config.max_backoff,
            give_up_after: config.give_up_after,
            deletion_give_up_after: config.deletion_give_up_after,
        }
    }

    /// The delay after `attempts` failed attempts: `minBackoff * 2^(attempts-1)`, at
    /// most `maxBackoff`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.min_backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

/// A configured webhook, ready to send to.
struct Webhook {
    /// Name in the configuration.
    name: String,
    /// Where events are POSTed.
    url: reqwest::Url,
    /// The HMAC key.
    key: SigningKey,
    /// The client, with the webhook's CA and the configured timeout.
    http: reqwest::Client,
}

/// Sends lifecycle events to the configured webhooks.
pub struct Notifier {
    /// The CloudEvents `source`.
    source: String,
    /// When deliveries are retried and given up.
    retry: RetryPolicy,
    /// The webhooks, in configuration order.
    webhooks: Vec<Webhook>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier").field("source", &self.source).field("webhooks", &self.webhook_names()).finish()
    }
}

impl Notifier {
    /// A notifier for the configuration and the webhooks' keys. Refuses keys shorter
    /// than [`MIN_KEY_BYTES`] and unusable CA bundles.
    pub fn new(config: &NotificationsConfig, webhooks: Vec<WebhookSettings>) -> Result<Notifier, ProviderError> {
        let webhooks = webhooks
            .into_iter()
            .map(|w| {
                if w.signing_key.0.len() < MIN_KEY_BYTES {
                    let message = format!("the signing key of webhook {} is shorter than {MIN_KEY_BYTES} bytes", w.name);
                    return Err(ProviderError::Refused { backend: BACKEND, message });
                }
                let url = reqwest::Url::parse(&w.url).map_err(|e| ProviderError::Refused {
                    backend: BACKEND,
                    message: format!("the URL of webhook {} is not valid: {e}", w.name),
                })?;
                let http = http::client(BACKEND, &format!("webhook {}", w.name), w.ca_pem.as_deref(), config.timeout)?;
                Ok(Webhook { name: w.name, url, key: w.signing_key, http })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Notifier { source: config.source.clone(), retry: RetryPolicy::from_config(config), webhooks })
    }

    /// The CloudEvents `source`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// When deliveries are retried and given up.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The webhooks' names, in configuration order.
    pub fn webhook_names(&self) -> Vec<String> {
        self.webhooks.iter().map(|w| w.name.clone()).collect()
    }

    /// POSTs one event body to a webhook, signed with its key.
    pub async fn deliver(&self, webhook: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let Some(w) = self.webhooks.iter().find(|w| w.name == webhook) else {
            return Err(DeliveryError::NotConfigured);
        };
        let response = w
            .http
            .post(w.url.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::USER_AGENT, concat!("cx-operator/", env!("CARGO_PKG_VERSION")))
            .header(SIGNATURE_HEADER, signature(&w.key.0, body))
            .body(body.to_vec())
            .send()
            .await
            // The URL is left out: it may hold a receiver's token in its query.
            .map_err(|e| DeliveryError::Transient(http::describe_transport(&e.without_url())))?;
        // The client follows redirects, and a redirected POST may arrive as a GET
        // elsewhere: an answer from another URL is not a delivery.
        if response.url() != &w.url {
            return Err(DeliveryError::Redirected);
        }
        classify_status(response.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TenantSpec;

    fn tenant() -> Tenant {
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Acme", "company": {"name": "Acme GmbH"},
            "admin": {"username": "alice", "email": "alice@acme.test", "firstName": "Alice"},
            "features": {"aiAgents": true, "widgets": false}
        }))
        .unwrap();
        let mut t = Tenant::new("acme", spec);
        t.metadata.uid = Some("0d2c7c1e-uid".into());
        t
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 1: key 0x0b × 20, "Hi There".
        assert_eq!(hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2: a key shorter than the block, "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signatures_verify_only_with_the_key_and_the_exact_body() {
        let key = [7u8; 32];
        let body = br#"{"specversion":"1.0"}"#;
        let header = signature(&key, body);
        assert!(verify_signature(&key, body, &header));
        assert!(!verify_signature(&[8u8; 32], body, &header), "another key");
        assert!(!verify_signature(&key, br#"{"specversion": "1.0"}"#, &header), "a re-serialized body");
        assert!(!verify_signature(&key, body, header.trim_start_matches(SIGNATURE_PREFIX)), "no scheme");
        assert!(!verify_signature(&key, body, "sha256=zz"), "not hex");
        assert!(!verify_signature(&key, body, &header[..header.len() - 2]), "truncated");
    }

    #[test]
    fn the_event_is_a_cloud_event_without_credentials() {
        let t = tenant();
        let status = TenantStatus {
            namespace: Some("tenant-acme".into()),
            fqdn: Some("acme.cx.example.com".into()),
            url: Some("https://acme.cx.example.com".into()),
            realm: Some("acme".into()),
            credentials: [("database".to_string(), Default::default())].into(),
            ..TenantStatus::default()
        };
        let time: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let event = cloud_event("/cx-operator", "0d2c7c1e-uid.1", NotificationType::Ready, time, event_data(&t, &status));
        let json: serde_json::Value = serde_json::from_slice(&body(&event)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0", "id": "0d2c7c1e-uid.1", "source": "/cx-operator",
                "type": "io.cx-operator.tenant.ready", "subject": "acme", "time": "2026-01-02T03:04:05Z",
                "datacontenttype": "application/json",
                "data": {
                    "tenantId": "acme", "uid": "0d2c7c1e-uid", "namespace": "tenant-acme", "fqdn": "acme.cx.example.com",
                    "url": "https://acme.cx.example.com", "realm": "acme",
                    "features": ["contacts", "helpCenter", "workflows", "aiAgents", "cannedMessages", "channelAccounts"]
                }
            })
        );
        assert!(!String::from_utf8(body(&event)).unwrap().contains("credentials"));
    }

    #[test]
    fn the_body_is_the_same_for_the_same_event() {
        let t = tenant();
        let time: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let build = || body(&cloud_event("s", "id", NotificationType::Deleted, time, event_data(&t, &TenantStatus::default())));
        assert_eq!(build(), build());
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(204), Ok(()));
        for retried in [408, 429, 500, 503] {
            assert!(classify_status(retried).unwrap_err().is_retryable(), "{retried}");
        }
        for refused in [400, 401, 404, 410, 302] {
            assert_eq!(classify_status(refused), Err(DeliveryError::Refused { status: refused }));
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = RetryPolicy {
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            deletion_give_up_after: Duration::from_secs(600),
        };
        let delays: Vec<u64> = (1..=6).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        let config: NotificationsConfig =
            serde_yaml_ng::from_str("webhooks: [{name: a, url: 'http://127.0.0.1:1/', signingKey: {secretName: k}}]\ntimeout: 1s\n")
                .unwrap();
        let settings = |key: &str| WebhookSettings {
            name: "a".into(),
            url: "http://127.0.0.1:1/".into(),
            signing_key: SigningKey::new(key.as_bytes()),
            ca_pem: None,
        };
        let error = Notifier::new(&config, vec![settings("short")]).unwrap_err();
        assert!(error.to_string().contains("shorter than 32 bytes") && !error.to_string().contains("short\""), "{error}");
        let key = "k".repeat(32);
        assert!(!format!("{:?}", settings(&key)).contains(&key));
        let notifier = Notifier::new(&config, vec![settings(&key)]).unwrap();
        assert_eq!(notifier.webhook_names(), ["a"]);
    }
}
