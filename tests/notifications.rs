//! Lifecycle notifications end to end: the Tenant controller against a Kubernetes API
//! (the fake, or `CX_TEST_KUBECONFIG`) sending signed CloudEvents to a webhook
//! receiver on a loopback port.

mod support;

use std::time::Duration;

use cx_operator::{
    api::{
        Tenant, TenantPhase,
        notifications::{NotificationStatus, NotificationType},
    },
    config::{Config, NotificationsConfig},
    provider::{Providers, notifications, setup},
};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use support::{
    cluster::{TestCluster, wait_for, wait_gone, wait_until},
    tenant_status::{is_ready, phase},
    webhook_receiver::WebhookReceiver,
};

/// How long an operator instance must write nothing to count as settled.
const QUIET: Duration = Duration::from_millis(1500);
const LIMIT: Duration = Duration::from_secs(30);

/// The receiver's signing key (and the operator's, unless a test says otherwise).
const KEY: &str = "test-signing-key-0123456789abcdef-0123456789";

fn outbox(t: &Tenant) -> NotificationStatus {
    t.status.as_ref().and_then(|s| s.notifications.clone()).unwrap_or_default()
}

/// Whether every event of the tenant has left the outbox.
fn settled(t: &Tenant) -> bool {
    outbox(t).pending.is_empty()
}

/// The operator configuration with one webhook (the receiver) whose signing key is
/// `key` in a Secret of the operator namespace, and the providers built from it.
async fn notifying(cluster: &TestCluster, receiver: &WebhookReceiver, key: &str, extra: &str) -> (Config, Providers) {
    cluster.put_platform_secret("webhook-keys", &[("signingKey", key)]).await;
    let config = cluster.config_with(&format!(
        "operatorNamespace: {platform}\ningress: {{tls: {{enabled: false}}}}\n\
         notifications:\n  source: /cx-operator/test\n  timeout: 2s\n  minBackoff: 200ms\n  maxBackoff: 1s\n{extra}\
         \x20 webhooks:\n  - {{name: receiver, url: '{url}', signingKey: {{secretName: webhook-keys}}}}\n",
        platform = cluster.platform_namespace(),
        url = receiver.url(),
    ));
    let providers = setup::from_config(&cluster.client, &config).await.expect("providers set up from the configuration");
    (config, providers)
}

/// Events about a Tenant (cluster-scoped, so they are kept in `default`).
async fn events_for(cluster: &TestCluster, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let events = api.list(&ListParams::default()).await.unwrap().items;
    events.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect()
}

async fn event_notes(cluster: &TestCluster, name: &str, reason: &str) -> Vec<String> {
    events_for(cluster, name).await.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).filter_map(|e| e.note).collect()
}

/// Requests the receiver saw for one event id.
fn attempts_for(receiver: &WebhookReceiver, id: &str) -> Vec<support::webhook_receiver::Request> {
    receiver.requests().into_iter().filter(|r| r.id.as_deref() == Some(id)).collect()
}

#[tokio::test]
async fn the_receiver_verifies_the_operators_signature() {
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    let http = reqwest::Client::new();
    let body = br#"{"specversion":"1.0","id":"x.1","type":"io.cx-operator.tenant.ready"}"#.to_vec();
    let send = |signature: Option<String>| {
        let mut request = http.post(receiver.url()).header("content-type", notifications::CONTENT_TYPE).body(body.clone());
        if let Some(s) = signature {
            request = request.header(notifications::SIGNATURE_HEADER, s);
        }
        request.send()
    };
    assert_eq!(send(Some(notifications::signature(KEY.as_bytes(), &body))).await.unwrap().status(), 200);
    assert_eq!(send(Some(notifications::signature(b"another key of at least thirty-two bytes", &body))).await.unwrap().status(), 401);
    assert_eq!(send(None).await.unwrap().status(), 401);
    assert_eq!(receiver.accepted_types(), ["ready"], "only the correctly signed request is accepted");
}

#[tokio::test]
async fn the_notifier_classifies_the_receivers_answers() {
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    let config: NotificationsConfig = serde_yaml_ng::from_str("webhooks: []\ntimeout: 2s\n").unwrap();
    let webhook = |name: &str, url: String, key: &str| notifications::WebhookSettings {
        name: name.into(),
        url,
        signing_key: notifications::SigningKey::new(key.as_bytes()),
        ca_pem: None,
    };
    let notifier = notifications::Notifier::new(
        &config,
        vec![
            webhook("good", receiver.url(), KEY),
            webhook("wrong-key", receiver.url(), "a-different-key-that-is-long-enough-0123"),
            webhook("moved", receiver.moved_url(), KEY),
            webhook("closed", "http://127.0.0.1:9/events".into(), KEY),
        ],
    )
    .unwrap();
    let body = br#"{"specversion":"1.0","id":"x.1","type":"io.cx-operator.tenant.ready"}"#;
    assert_eq!(notifier.deliver("good", body).await, Ok(()));
    receiver.fail_next(1);
    let unavailable = notifier.deliver("good", body).await.unwrap_err();
    assert!(unavailable.is_retryable() && unavailable.to_string() == "HTTP 503", "{unavailable}");
    assert_eq!(notifier.deliver("wrong-key", body).await, Err(notifications::DeliveryError::Refused { status: 401 }));
    assert_eq!(notifier.deliver("moved", body).await, Err(notifications::DeliveryError::Redirected));
    let refused = notifier.deliver("closed", body).await.unwrap_err();
    assert!(refused.is_retryable() && !refused.to_string().contains("127.0.0.1:9"), "no URL in errors: {refused}");
    assert_eq!(notifier.deliver("unknown", body).await, Err(notifications::DeliveryError::NotConfigured));
}

#[tokio::test]
async fn every_lifecycle_event_reaches_the_webhook_once_and_deletion_waits_for_it() {
    let cluster = TestCluster::start().await;
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    let (config, providers) = notifying(&cluster, &receiver, KEY, "").await;
    let (op, _) = cluster.operator(config, providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let tenant = cluster.create_tenant(&cluster.tenant("life", TestCluster::minimal_spec())).await;
    let id = tenant.name_any();
    let uid = tenant.uid().unwrap();

    let t = wait_for(&api, &id, LIMIT, "Ready with the ready event delivered", |t| is_ready(t) && settled(t)).await;
    assert_eq!(receiver.accepted_types(), ["ready"]);
    let event = &receiver.accepted()[0];
    let status = t.status.clone().unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], format!("{uid}.1"));
    assert_eq!(event["source"], "/cx-operator/test");
    assert_eq!(event["type"], "io.cx-operator.tenant.ready");
    assert_eq!(event["subject"], id.as_str());
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(event["data"]["tenantId"], id.as_str());
    assert_eq!(event["data"]["uid"], uid.as_str());
    assert_eq!(event["data"]["namespace"], status.namespace.clone().unwrap());
    assert_eq!(event["data"]["url"], status.url.clone().unwrap());
    assert_eq!(event["data"]["fqdn"], status.fqdn.clone().unwrap());
    assert!(event["data"]["features"].as_array().unwrap().contains(&json!("contacts")));
    let time: jiff::Timestamp = event["time"].as_str().unwrap().parse().expect("time is RFC 3339");
    assert!(status.first_ready_time.is_some_and(|first| first.0 <= jiff::Timestamp::now() && time <= jiff::Timestamp::now()));
    let delivered = outbox(&t).delivered;
    assert_eq!(delivered.len(), 1);
    assert_eq!((delivered[0].type_, delivered[0].delivered_to.clone()), (NotificationType::Ready, vec!["receiver".to_string()]));
    assert_eq!(event_notes(&cluster, &id, "NotificationDelivered").await.len(), 1);

    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}}))).await.unwrap();
    wait_for(&api, &id, LIMIT, "Disabled and announced", |t| phase(t) == Some(TenantPhase::Disabled) && settled(t)).await;
    assert_eq!(receiver.accepted_types(), ["ready", "disabled"]);
    api.patch(&id, &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}}))).await.unwrap();
    wait_for(&api, &id, LIMIT, "Ready again and announced", |t| is_ready(t) && settled(t)).await;
    assert_eq!(receiver.accepted_types(), ["ready", "disabled", "enabled"]);

    // The webhook fails the deleted event for a while: the Tenant stays until it has it.
    receiver.fail_next(3);
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    let deleted_id = format!("{uid}.4");
    wait_until("the deleted event was refused once", LIMIT, || async { !attempts_for(&receiver, &deleted_id).is_empty() }).await;
    let held = api.get(&id).await.expect("deletion waits for the deleted event");
    assert_eq!(phase(&held), Some(TenantPhase::Deleting));
    assert_eq!(outbox(&held).pending.iter().map(|p| p.type_).collect::<Vec<_>>(), [NotificationType::Deleted]);
    wait_gone(&api, &id, LIMIT).await;
    assert_eq!(receiver.accepted_types(), ["ready", "disabled", "enabled", "deleted"], "each event exactly once");
    let ids: Vec<String> = receiver.accepted().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, (1..=4).map(|n| format!("{uid}.{n}")).collect::<Vec<_>>());
    let statuses: Vec<u16> = attempts_for(&receiver, &deleted_id).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 503, 200]);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_and_gets_the_event_once() {
    let cluster = TestCluster::start().await;
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    receiver.fail_next(4);
    let (config, providers) = notifying(&cluster, &receiver, KEY, "").await;
    let (op, _) = cluster.operator(config, providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let tenant = cluster.create_tenant(&cluster.tenant("retry", TestCluster::minimal_spec())).await;
    let id = tenant.name_any();

    let waiting = wait_for(&api, &id, LIMIT, "a failed attempt in the outbox", |t| {
        outbox(t).pending.first().is_some_and(|p| p.webhooks.first().is_some_and(|d| d.attempts >= 1))
    })
    .await;
    let delivery = &outbox(&waiting).pending[0].webhooks[0];
    assert_eq!(delivery.name, "receiver");
    assert_eq!(delivery.last_error.as_deref(), Some("HTTP 503"));
    assert!(delivery.next_attempt_time.is_some());
    assert!(is_ready(&waiting), "a webhook never holds back Ready");

    wait_for(&api, &id, LIMIT, "the ready event delivered", settled).await;
    assert_eq!(receiver.accepted_types(), ["ready"], "delivered exactly once");
    let ready_id = receiver.accepted()[0]["id"].as_str().unwrap().to_string();
    let attempts = attempts_for(&receiver, &ready_id);
    assert_eq!(attempts.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 503, 503, 503, 200]);
    // minBackoff 200ms doubling to maxBackoff 1s: each wait at least the backoff.
    for (i, expected_ms) in [200u64, 400, 800, 1000].into_iter().enumerate() {
        let gap = attempts[i + 1].at - attempts[i].at;
        assert!(gap >= Duration::from_millis(expected_ms - 20), "attempt {} came {gap:?} after the previous one", i + 2);
    }
    assert_eq!(event_notes(&cluster, &id, "NotificationDelayed").await.len(), 1, "one Warning when delivery starts failing");
    assert_eq!(event_notes(&cluster, &id, "NotificationDelivered").await.len(), 1);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_restarted_operator_delivers_the_outbox_once_and_resends_nothing() {
    let cluster = TestCluster::start().await;
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    receiver.set_down(true);
    let (mut config, providers) = notifying(&cluster, &receiver, KEY, "").await;
    config.leader_election.enabled = false;
    let (first, _) = cluster.operator(config.clone(), providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let tenant = cluster.create_tenant(&cluster.tenant("restart", TestCluster::minimal_spec())).await;
    let id = tenant.name_any();
    let t = wait_for(&api, &id, LIMIT, "Ready with an undelivered event", |t| {
        is_ready(t) && outbox(t).pending.first().is_some_and(|p| p.webhooks[0].attempts >= 1)
    })
    .await;
    first.stop().await.unwrap();
    let pending_id = outbox(&t).pending[0].id.clone();
    assert!(receiver.accepted().is_empty());

    receiver.set_down(false);
    let providers = setup::from_config(&cluster.client, &config).await.unwrap();
    let (second, second_writes) = cluster.operator(config.clone(), providers, "b").await;
    wait_for(&api, &id, LIMIT, "the outbox delivered by the new instance", settled).await;
    assert_eq!(receiver.accepted_types(), ["ready"]);
    assert_eq!(receiver.accepted()[0]["id"], pending_id.as_str(), "the recorded event, with its id");
    second_writes.wait_idle(QUIET, LIMIT).await;
    second.stop().await.unwrap();

    let seen = receiver.requests().len();
    let providers = setup::from_config(&cluster.client, &config).await.unwrap();
    let (third, writes) = cluster.operator(config, providers, "c").await;
    wait_until("the third instance reconciled the tenant", LIMIT, || async {
        third.metrics.reconcile_count("tenant") >= 1 && third.metrics.reconcile_count("capabilityquota") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests().len(), seen, "nothing pending, nothing sent again");
    assert_eq!(writes.writes(), 0, "a delivered outbox costs no writes");
    third.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_refused_signature_is_recorded_and_not_retried() {
    let cluster = TestCluster::start().await;
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    let (config, providers) = notifying(&cluster, &receiver, "a-different-key-that-is-long-enough-0123", "").await;
    let (op, _) = cluster.operator(config, providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let tenant = cluster.create_tenant(&cluster.tenant("wrongkey", TestCluster::minimal_spec())).await;
    let id = tenant.name_any();

    let t = wait_for(&api, &id, LIMIT, "the ready event done with", |t| is_ready(t) && !outbox(t).delivered.is_empty()).await;
    let done = &outbox(&t).delivered[0];
    assert!(done.delivered_to.is_empty());
    assert_eq!(done.failed.len(), 1);
    assert_eq!(done.failed[0].name, "receiver");
    assert!(done.failed[0].reason.contains("HTTP 401"), "{}", done.failed[0].reason);
    assert!(settled(&t));
    let notes = event_notes(&cluster, &id, "NotificationRefused").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(!notes[0].contains(KEY) && !notes[0].contains("a-different-key"), "no key in Events: {}", notes[0]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [401], "refused once, never retried");
    assert!(receiver.accepted().is_empty());
    op.stop().await.unwrap();
    cluster.cleanup().await;
}

#[tokio::test]
async fn a_webhook_that_stays_down_delays_deletion_then_is_given_up() {
    let cluster = TestCluster::start().await;
    let receiver = WebhookReceiver::start(KEY.as_bytes()).await;
    let (config, providers) = notifying(&cluster, &receiver, KEY, "  deletionGiveUpAfter: 3s\n").await;
    let (op, _) = cluster.operator(config, providers, "a").await;
    let api: Api<Tenant> = Api::all(cluster.client.clone());
    let tenant = cluster.create_tenant(&cluster.tenant("gone", TestCluster::minimal_spec())).await;
    let id = tenant.name_any();
    wait_for(&api, &id, LIMIT, "Ready and announced", |t| is_ready(t) && settled(t)).await;

    receiver.set_down(true);
    let started = std::time::Instant::now();
    api.delete(&id, &DeleteParams::default()).await.unwrap();
    wait_for(&api, &id, LIMIT, "the deleted event waiting for a retry", |t| {
        outbox(t).pending.first().is_some_and(|p| p.type_ == NotificationType::Deleted && p.webhooks[0].attempts >= 1)
    })
    .await;
    wait_gone(&api, &id, LIMIT).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "deletion waited for the webhook, {:?}", started.elapsed());
    assert_eq!(receiver.accepted_types(), ["ready"]);
    let abandoned = event_notes(&cluster, &id, "NotificationAbandoned").await;
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert!(abandoned[0].contains("io.cx-operator.tenant.deleted") && abandoned[0].contains("given up"), "{}", abandoned[0]);
    op.stop().await.unwrap();
    cluster.cleanup().await;
}
