//! The outbox of lifecycle notifications, kept in the Tenant's status.
//!
//! A phase change that calls for an event (`ready`, `disabled`, `enabled`, `deleted`)
//! puts the event into `status.notifications.pending` in the same status write that
//! records the new phase. Deliveries then remove it webhook by webhook; a failed
//! attempt stays with its attempt count and next attempt time. Because the outbox is
//! in the status, a restarted operator delivers what is pending and nothing else, and
//! the event `id` (`<tenant uid>.<sequence>`) stays the same across retries.
//!
//! Each webhook gets the events of a tenant in the order they were recorded: while an
//! event waits for a retry, the later ones wait behind it. A delivery is given up
//! (Warning Event `NotificationAbandoned`, recorded in `failed`) once
//! `notifications.giveUpAfter` has passed since the event, or — while the Tenant is
//! being deleted — once `notifications.deletionGiveUpAfter` has passed since the
//! deletion started, so a webhook that is down delays a deletion but never blocks it.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::{Context, Error};
use crate::{
    api::{
        Tenant, TenantPhase, TenantStatus,
        notifications::{
            DeliveredNotification, FailedDelivery, NotificationStatus, NotificationType, PendingNotification, WebhookDelivery,
        },
    },
    provider::notifications::{self as notify, DeliveryError, Notifier, RetryPolicy, TenantEventData},
};

/// The reason of the reconcile error while a failed delivery waits for its retry.
pub const UNDELIVERED: &str = "NotificationUndelivered";
/// Event reason: a webhook accepted an event.
pub const DELIVERED: &str = "NotificationDelivered";
/// Event reason: a delivery failed and is retried.
pub const DELAYED: &str = "NotificationDelayed";
/// Event reason: a webhook refused an event; it is not sent again.
pub const REFUSED: &str = "NotificationRefused";
/// Event reason: a delivery was given up.
pub const ABANDONED: &str = "NotificationAbandoned";

/// The Event action of every notification Event.
const ACTION: &str = "Notify";

/// A delivery failed and is retried at `retry_at`.
#[derive(Debug, thiserror::Error)]
#[error("lifecycle notification {id} not delivered to webhook {webhook}: {message}; next attempt at {retry_at}")]
pub struct Undelivered {
    /// The event id.
    pub id: String,
    /// The webhook.
    pub webhook: String,
    /// What went wrong (no credentials: the URL is left out).
    pub message: String,
    /// When the next attempt is due.
    pub retry_at: Timestamp,
}

/// `t` cut to whole seconds, as a status `Time` stores it: a value written and read
/// back stays the same, so the event `time` is the same in every attempt.
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a whole second of a valid timestamp is valid")
}

/// `t` rounded up to whole seconds: a retry is never due before its backoff passed.
fn ceil_seconds(t: Timestamp) -> Timestamp {
    let floor = whole_seconds(t);
    if floor == t { t } else { floor + SignedDuration::from_secs(1) }
}

/// Records the first time the tenant is Ready. Done with or without notifications
/// configured, so that configuring them later never announces old tenants as new.
pub fn mark_first_ready(status: &mut TenantStatus, now: Timestamp) {
    if status.phase == Some(TenantPhase::Ready) && status.first_ready_time.is_none() {
        status.first_ready_time = Some(Time(whole_seconds(now)));
    }
}

/// What receivers were last told about the tenant. A tenant that was Ready before
/// notifications were configured counts as announced in the phase it had.
fn announced(status: &TenantStatus) -> Option<NotificationType> {
    let recorded = status.notifications.as_ref().and_then(|n| n.announced);
    recorded.or_else(|| {
        let baseline = if status.phase == Some(TenantPhase::Disabled) { NotificationType::Disabled } else { NotificationType::Ready };
        status.first_ready_time.as_ref().map(|_| baseline)
    })
}

/// The event the change from `previous` to `status` calls for:
/// - `ready` when the tenant becomes Ready for the first time (a tenant created
///   disabled is announced when it is first enabled);
/// - `disabled` when an announced, active tenant becomes Disabled (also by expiry);
/// - `enabled` when a tenant announced as disabled becomes Ready again.
///
/// A tenant never Ready is not announced, so it gets no `disabled` either.
pub fn lifecycle_event(previous: &TenantStatus, status: &TenantStatus) -> Option<NotificationType> {
    let announced = announced(previous);
    match status.phase? {
        TenantPhase::Ready => match announced {
            None if previous.first_ready_time.is_none() && previous.phase != Some(TenantPhase::Ready) => Some(NotificationType::Ready),
            Some(NotificationType::Disabled) => Some(NotificationType::Enabled),
            _ => None,
        },
        TenantPhase::Disabled => announced.filter(|a| a.is_active()).map(|_| NotificationType::Disabled),
        _ => None,
    }
}

/// The event a deletion calls for: `deleted`, once, for a tenant that was announced.
pub fn deletion_event(status: &TenantStatus) -> Option<NotificationType> {
    match announced(status) {
        None | Some(NotificationType::Deleted) => None,
        Some(_) => Some(NotificationType::Deleted),
    }
}

/// Puts an event for every webhook into the outbox; returns its id.
pub fn record(status: &mut TenantStatus, type_: NotificationType, uid: &str, webhooks: &[String], now: Timestamp) -> String {
    let n = status.notifications.get_or_insert_with(NotificationStatus::default);
    n.sequence += 1;
    n.announced = Some(type_);
    let id = format!("{uid}.{}", n.sequence);
    n.pending.push(PendingNotification {
        id: id.clone(),
        type_,
        time: Time(whole_seconds(now)),
        webhooks: webhooks.iter().map(|name| WebhookDelivery { name: name.clone(), ..WebhookDelivery::default() }).collect(),
        delivered_to: vec![],
        failed: vec![],
    });
    id
}

/// Records the event the reconcile's phase change calls for, when notifications are
/// configured, and the first Ready time in any case. Called before the status write,
/// so the event is in the same write as the phase change.
///
/// When the status is going to be written, the outbox is taken from a fresh read: a
/// cache that lags behind the write of the last deliveries would otherwise put a
/// delivered event back, or record a transition a second time.
pub async fn record_transition(
    status: &mut TenantStatus,
    previous: &TenantStatus,
    tenant: &Tenant,
    ctx: &Context,
    now: Timestamp,
) -> Result<(), Error> {
    let Some(notifier) = ctx.providers.notifier() else {
        mark_first_ready(status, now);
        return Ok(());
    };
    let mut previous = previous.clone();
    let mut probe = status.clone();
    mark_first_ready(&mut probe, now);
    if tenant.status.as_ref() != Some(&probe)
        && let Some(fresh) = fresh_status(tenant, ctx).await?
    {
        previous.notifications = fresh.notifications.clone();
        previous.first_ready_time = fresh.first_ready_time.clone().or(previous.first_ready_time);
        status.notifications = fresh.notifications;
        status.first_ready_time = fresh.first_ready_time.or(status.first_ready_time.take());
    }
    let event = lifecycle_event(&previous, status);
    mark_first_ready(status, now);
    if let Some(type_) = event {
        record(status, type_, &tenant.metadata.uid.clone().unwrap_or_default(), &notifier.webhook_names(), now);
    }
    Ok(())
}

/// The Tenant's status as the API server has it now; None when the Tenant is gone or
/// was replaced by another of the same name.
async fn fresh_status(tenant: &Tenant, ctx: &Context) -> Result<Option<TenantStatus>, Error> {
    let api: kube::Api<Tenant> = kube::Api::all(ctx.client.clone());
    let name = kube::ResourceExt::name_any(tenant);
    let fresh = api.get_opt(&name).await.map_err(Error::kube(format!("reading the notification outbox of Tenant {name}")))?;
    Ok(fresh.filter(|f| f.metadata.uid == tenant.metadata.uid).map(|f| f.status.unwrap_or_default()))
}

/// Records the `deleted` event when notifications are configured; true when it did.
/// `status` is that of a fresh read (cleanup runs only on one, see
/// `controller::current_if_deleting`), so a deletion is announced once.
pub fn record_deletion(status: &mut TenantStatus, tenant: &Tenant, ctx: &Context, now: Timestamp) -> bool {
    let Some(notifier) = ctx.providers.notifier() else {
        return false;
    };
    let Some(type_) = deletion_event(status) else {
        return false;
    };
    record(status, type_, &tenant.metadata.uid.clone().unwrap_or_default(), &notifier.webhook_names(), now);
    true
}

/// When the outbox has something to send: for each webhook, its oldest waiting
/// delivery counts (the later ones wait behind it). None when the outbox is empty.
pub fn next_due(status: &TenantStatus) -> Option<Timestamp> {
    let pending = &status.notifications.as_ref()?.pending;
    let mut seen: Vec<&str> = Vec::new();
    let mut next: Option<Timestamp> = None;
    for delivery in pending.iter().flat_map(|p| &p.webhooks) {
        if seen.contains(&delivery.name.as_str()) {
            continue;
        }
        seen.push(&delivery.name);
        let at = delivery.next_attempt_time.as_ref().map_or(Timestamp::MIN, |t| t.0);
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    next
}

/// An Event to publish on the Tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// What one round of deliveries did.
#[derive(Debug, Default)]
pub struct Round {
    /// Events to publish on the Tenant.
    pub notes: Vec<Note>,
    /// The first attempt of this round that failed and will be retried.
    pub failure: Option<Undelivered>,
    /// When the next waiting delivery is due.
    pub next_attempt: Option<Timestamp>,
}

impl Round {
    fn wait_until(&mut self, at: Timestamp) {
        self.next_attempt = Some(self.next_attempt.map_or(at, |t| t.min(at)));
    }
}

/// Sends what is due in the outbox and records the outcome in `status`.
pub async fn deliver_due(tenant: &Tenant, status: &mut TenantStatus, notifier: &Notifier, now: Timestamp) -> Round {
    let data = notify::event_data(tenant, status);
    let deletion_deadline = tenant
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0 + SignedDuration::try_from(notifier.retry().deletion_give_up_after).unwrap_or(SignedDuration::MAX));
    let mut round = Round::default();
    let Some(outbox) = status.notifications.as_mut() else { return round };
    let mut webhooks: Vec<String> = Vec::new();
    for delivery in outbox.pending.iter().flat_map(|p| &p.webhooks) {
        if !webhooks.contains(&delivery.name) {
            webhooks.push(delivery.name.clone());
        }
    }
    for webhook in webhooks {
        let context = Attempt { notifier, data: &data, webhook: &webhook, now, deletion_deadline };
        for entry in outbox.pending.iter_mut() {
            if !context.run(entry, &mut round).await {
                break;
            }
        }
    }
    complete(outbox, now);
    round
}

/// One webhook's deliveries in one round.
struct Attempt<'a> {
    /// Sends the events.
    notifier: &'a Notifier,
    /// The tenant as every event of this round describes it.
    data: &'a TenantEventData,
    /// The webhook this round delivers to.
    webhook: &'a str,
    /// The time of this round.
    now: Timestamp,
    /// While the Tenant is being deleted: when its outstanding events are given up.
    deletion_deadline: Option<Timestamp>,
}

impl Attempt<'_> {
    /// Delivers `entry` to the webhook when it is due; false when the webhook's later
    /// events must wait (this one is not due, or failed and is retried).
    async fn run(&self, entry: &mut PendingNotification, round: &mut Round) -> bool {
        let Some(index) = entry.webhooks.iter().position(|d| d.name == self.webhook) else {
            return true;
        };
        if let Some(at) = entry.webhooks[index].next_attempt_time.as_ref().map(|t| t.0).filter(|at| *at > self.now) {
            round.wait_until(at);
            return false;
        }
        let event = notify::cloud_event(self.notifier.source(), &entry.id, entry.type_, entry.time.0, self.data.clone());
        let result = self.notifier.deliver(self.webhook, &notify::body(&event)).await;
        let what = format!("{} (id {})", entry.type_.event_type(), entry.id);
        match result {
            Ok(()) => {
                entry.webhooks.remove(index);
                entry.delivered_to.push(self.webhook.to_string());
                round.notes.push(Note {
                    warning: false,
                    reason: DELIVERED,
                    message: format!("delivered {what} to webhook {}", self.webhook),
                });
                true
            }
            Err(error) if error.is_retryable() && self.now < self.deadline(entry) => {
                let deadline = self.deadline(entry);
                let retry_at = self.schedule_retry(&mut entry.webhooks[index], &error, deadline);
                let attempts = entry.webhooks[index].attempts;
                if attempts == 1 {
                    let message = format!("could not deliver {what} to webhook {}: {error}; retrying with backoff", self.webhook);
                    round.notes.push(Note { warning: true, reason: DELAYED, message });
                }
                round.wait_until(retry_at);
                let message = error.to_string();
                round.failure.get_or_insert(Undelivered { id: entry.id.clone(), webhook: self.webhook.to_string(), message, retry_at });
                false
            }
            Err(error) => {
                let delivery = entry.webhooks.remove(index);
                let (reason, why) = match &error {
                    DeliveryError::Refused { .. } | DeliveryError::Redirected => (REFUSED, format!("{error}; it is not sent again")),
                    DeliveryError::NotConfigured => (ABANDONED, error.to_string()),
                    DeliveryError::Transient(_) => (ABANDONED, format!("given up after {} attempts: {error}", delivery.attempts + 1)),
                };
                round.notes.push(Note { warning: true, reason, message: format!("webhook {} did not get {what}: {why}", self.webhook) });
                entry.failed.push(FailedDelivery { name: self.webhook.to_string(), reason: why });
                true
            }
        }
    }

    /// When the delivery of `entry` is given up: `giveUpAfter` after the event, and
    /// during a deletion no later than `deletionGiveUpAfter` after it started.
    fn deadline(&self, entry: &PendingNotification) -> Timestamp {
        let give_up_after = SignedDuration::try_from(self.notifier.retry().give_up_after).unwrap_or(SignedDuration::MAX);
        let deadline = entry.time.0.checked_add(give_up_after).unwrap_or(Timestamp::MAX);
        self.deletion_deadline.map_or(deadline, |d| deadline.min(d))
    }

    /// Counts the failed attempt and sets the next one: the backoff with 10 % jitter,
    /// never after the deadline (the last attempt is made at the deadline).
    fn schedule_retry(&self, delivery: &mut WebhookDelivery, error: &DeliveryError, deadline: Timestamp) -> Timestamp {
        delivery.attempts = delivery.attempts.saturating_add(1);
        let delay = backoff(self.notifier.retry(), delivery.attempts);
        let at = ceil_seconds((self.now + delay).min(deadline));
        delivery.next_attempt_time = Some(Time(at));
        delivery.last_error = Some(error.to_string());
        at
    }
}

fn backoff(policy: &RetryPolicy, attempts: u32) -> SignedDuration {
    SignedDuration::try_from(super::jittered(policy.backoff(attempts), 0.1)).unwrap_or(SignedDuration::MAX)
}

/// Moves the events every webhook is done with from the outbox to `delivered`, where
/// each replaces the previous event of its type.
fn complete(outbox: &mut NotificationStatus, now: Timestamp) {
    let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut outbox.pending).into_iter().partition(|p| p.webhooks.is_empty());
    outbox.pending = pending;
    for entry in done {
        outbox.delivered.retain(|d| d.type_ != entry.type_);
        outbox.delivered.push(DeliveredNotification {
            type_: entry.type_,
            id: entry.id,
            time: entry.time,
            completion_time: Time(whole_seconds(now)),
            delivered_to: entry.delivered_to,
            failed: entry.failed,
        });
    }
}

/// Delivers what is due, writes the outcome to the status when it changed and
/// publishes the Events. Ok with the time the next waiting delivery is due; Err when
/// an attempt failed and is retried at the time the error carries.
pub async fn deliver(tenant: &Tenant, status: &mut TenantStatus, ctx: &Context, now: Timestamp) -> Result<Option<Timestamp>, Error> {
    let Some(notifier) = ctx.providers.notifier() else {
        return Ok(None);
    };
    match next_due(status) {
        None => return Ok(None),
        Some(at) if at > now => return Ok(Some(at)),
        Some(_) => {}
    }
    // The cache may not hold the status written after the last deliveries yet: the
    // outbox is read fresh, so a delivered event is never sent again.
    match fresh_status(tenant, ctx).await? {
        Some(fresh) => status.notifications = fresh.notifications,
        None => return Ok(None),
    }
    let before = status.clone();
    let round = deliver_due(tenant, status, notifier, now).await;
    if *status != before {
        super::tenant::patch_status(tenant, status, ctx).await?;
    }
    for note in round.notes {
        let type_ = if note.warning { EventType::Warning } else { EventType::Normal };
        ctx.event(tenant, type_, note.reason, ACTION, note.message).await;
    }
    match round.failure {
        Some(failure) => Err(failure.into()),
        None => Ok(round.next_attempt),
    }
}

/// Delivers what is outstanding before a deletion completes: Ok once the outbox is
/// empty (delivered, refused or given up), Err while a delivery waits for its retry.
pub async fn deliver_before_deletion(tenant: &Tenant, status: &mut TenantStatus, ctx: &Context) -> Result<(), Error> {
    let Some(retry_at) = deliver(tenant, status, ctx, Timestamp::now()).await? else {
        return Ok(());
    };
    let waiting = status.notifications.as_ref().and_then(|n| n.pending.first());
    Err(Undelivered {
        id: waiting.map(|p| p.id.clone()).unwrap_or_default(),
        webhook: waiting.and_then(|p| p.webhooks.first()).map(|d| d.name.clone()).unwrap_or_default(),
        message: "waiting for the next attempt before the deletion completes".into(),
        retry_at,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: TenantPhase) -> TenantStatus {
        TenantStatus { phase: Some(phase), ..TenantStatus::default() }
    }

    fn with_announced(mut s: TenantStatus, announced: NotificationType) -> TenantStatus {
        s.first_ready_time = Some(Time(Timestamp::UNIX_EPOCH));
        s.notifications = Some(NotificationStatus { announced: Some(announced), ..NotificationStatus::default() });
        s
    }

    #[test]
    fn the_first_ready_is_announced_once() {
        let provisioning = status(TenantPhase::Provisioning);
        assert_eq!(lifecycle_event(&provisioning, &status(TenantPhase::Ready)), Some(NotificationType::Ready));
        let ready = with_announced(status(TenantPhase::Ready), NotificationType::Ready);
        assert_eq!(lifecycle_event(&ready, &status(TenantPhase::Ready)), None, "an unchanged Ready tenant");
        let mut blip = with_announced(status(TenantPhase::Provisioning), NotificationType::Ready);
        assert_eq!(lifecycle_event(&blip, &status(TenantPhase::Ready)), None, "Ready again after a backend outage");
        blip.notifications = None;
        assert_eq!(lifecycle_event(&blip, &status(TenantPhase::Ready)), None, "Ready before notifications were configured");
        let upgraded = status(TenantPhase::Ready);
        assert_eq!(lifecycle_event(&upgraded, &status(TenantPhase::Ready)), None, "Ready before firstReadyTime existed");
    }

    #[test]
    fn disabling_and_enabling_follow_what_was_announced() {
        let ready = with_announced(status(TenantPhase::Ready), NotificationType::Ready);
        assert_eq!(lifecycle_event(&ready, &status(TenantPhase::Disabled)), Some(NotificationType::Disabled));
        let disabled = with_announced(status(TenantPhase::Disabled), NotificationType::Disabled);
        assert_eq!(lifecycle_event(&disabled, &status(TenantPhase::Ready)), Some(NotificationType::Enabled));
        assert_eq!(lifecycle_event(&disabled, &status(TenantPhase::Disabled)), None);
        let mut via_provisioning = with_announced(status(TenantPhase::Provisioning), NotificationType::Disabled);
        assert_eq!(lifecycle_event(&via_provisioning, &status(TenantPhase::Ready)), Some(NotificationType::Enabled));
        via_provisioning.notifications = None;
        via_provisioning.first_ready_time = None;
        assert_eq!(lifecycle_event(&via_provisioning, &status(TenantPhase::Disabled)), None, "a tenant created disabled is not announced");
        assert_eq!(lifecycle_event(&via_provisioning, &status(TenantPhase::Ready)), Some(NotificationType::Ready));
    }

    #[test]
    fn deletion_is_announced_once_for_announced_tenants() {
        assert_eq!(deletion_event(&status(TenantPhase::Provisioning)), None, "never announced");
        assert_eq!(
            deletion_event(&with_announced(status(TenantPhase::Disabled), NotificationType::Disabled)),
            Some(NotificationType::Deleted)
        );
        assert_eq!(deletion_event(&with_announced(status(TenantPhase::Deleting), NotificationType::Deleted)), None);
        let mut before_notifications = status(TenantPhase::Ready);
        before_notifications.first_ready_time = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(deletion_event(&before_notifications), Some(NotificationType::Deleted));
    }

    #[test]
    fn recorded_events_get_sequential_ids_and_whole_second_times() {
        let mut s = status(TenantPhase::Ready);
        let now: Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let webhooks = ["a".to_string(), "b".to_string()];
        assert_eq!(record(&mut s, NotificationType::Ready, "uid", &webhooks, now), "uid.1");
        assert_eq!(record(&mut s, NotificationType::Disabled, "uid", &webhooks, now), "uid.2");
        let n = s.notifications.as_ref().unwrap();
        assert_eq!(n.announced, Some(NotificationType::Disabled));
        assert_eq!(n.pending.len(), 2);
        assert_eq!(n.pending[0].time.0.to_string(), "2026-01-02T03:04:05Z");
        assert_eq!(n.pending[0].webhooks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // A status written and read back is unchanged, so retries send the same body.
        let round_trip: TenantStatus = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(round_trip, s);
    }

    #[test]
    fn finished_events_replace_the_last_of_their_type() {
        let mut s = status(TenantPhase::Ready);
        let t0: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        record(&mut s, NotificationType::Ready, "uid", &["a".to_string()], t0);
        record(&mut s, NotificationType::Disabled, "uid", &["a".to_string()], t0);
        let outbox = s.notifications.as_mut().unwrap();
        outbox.pending[0].webhooks.clear();
        outbox.pending[0].delivered_to.push("a".into());
        complete(outbox, t0);
        assert_eq!(outbox.pending.len(), 1, "the disabled event is still pending");
        assert_eq!(outbox.delivered.len(), 1);
        assert_eq!((outbox.delivered[0].type_, outbox.delivered[0].id.as_str()), (NotificationType::Ready, "uid.1"));
        assert_eq!(outbox.delivered[0].delivered_to, ["a"]);
    }

    #[test]
    fn retries_are_never_due_before_their_backoff() {
        let t: Timestamp = "2026-01-02T03:04:05.001Z".parse().unwrap();
        assert_eq!(ceil_seconds(t).to_string(), "2026-01-02T03:04:06Z");
        let whole: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(ceil_seconds(whole), whole);
    }
}
