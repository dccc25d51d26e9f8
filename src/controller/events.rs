//! Publishes `events.k8s.io/v1` Events.
//!
//! kube's `Recorder` folds every Event with the same object, type, reason and action
//! into one series and keeps the note of the first. This operator tells in the note
//! which operation happened ("created user bob", "reset the password of user bob"),
//! so a repeated reason with a new note must be a new Event; only a true repeat
//! (same note as well) becomes a series, as `kubectl events` shows it.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as KubeEvent, events::v1::EventSeries},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use tokio::sync::Mutex;

/// How long a published Event is remembered for folding repeats into its series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The API server refuses notes longer than this many bytes.
pub const MAX_NOTE_BYTES: usize = 1024;

/// What makes two Events the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventKey {
    /// The object the Event is about.
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
    /// `Normal` or `Warning`.
    type_: &'static str,
    /// The machine-readable reason.
    reason: String,
    /// What the operator did or failed to do.
    action: String,
    /// The human-readable note.
    note: String,
}

struct Published {
    name: String,
    namespace: String,
    count: i32,
    at: Instant,
}

/// Publishes Events, folding exact repeats into series.
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<EventKey, Published>>,
}

impl EventPublisher {
    /// A publisher reporting as `controller` from `instance` (the pod).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self { client, controller: controller.into(), instance: instance.into(), published: Mutex::default() }
    }

    /// Publishes an Event about `regarding`, or counts a repeat of one published in
    /// the last minutes.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, MAX_NOTE_BYTES);
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = EventKey {
            regarding: (regarding.namespace.clone(), regarding.kind.clone(), regarding.name.clone(), regarding.uid.clone()),
            type_,
            reason: reason.into(),
            action: action.into(),
            note,
        };
        let mut published = self.published.lock().await;
        published.retain(|_, p| p.at.elapsed() < SERIES_WINDOW);
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        if let Some(p) = published.get_mut(&key) {
            p.count += 1;
            p.at = Instant::now();
            let series = EventSeries { count: p.count, last_observed_time: MicroTime(Timestamp::now()) };
            let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &p.namespace);
            match api.patch(&p.name, &PatchParams::default(), &Patch::Merge(json!({ "series": series }))).await {
                Ok(_) => return Ok(()),
                // Deleted by its TTL or by hand: start anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(regarding, &key, &namespace);
        let name = event.metadata.name.clone().unwrap_or_default();
        Api::<KubeEvent>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        published.insert(key, Published { name, namespace, count: 1, at: Instant::now() });
        Ok(())
    }

    fn event(&self, regarding: &ObjectReference, key: &EventKey, namespace: &str) -> KubeEvent {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase();
        let object = regarding.name.clone().unwrap_or_else(|| "object".into());
        KubeEvent {
            metadata: ObjectMeta { name: Some(format!("{object}.{suffix}")), namespace: Some(namespace.into()), ..ObjectMeta::default() },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some(key.action.clone()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            type_: Some(key.type_.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..KubeEvent::default()
        }
    }
}

/// `note` cut at a character boundary to at most `max` bytes, marked with `…`.
fn truncate(mut note: String, max: usize) -> String {
    if note.len() <= max {
        return note;
    }
    let marker = "…";
    let mut end = max - marker.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(marker);
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let note = "ä".repeat(600);
        let cut = truncate(note, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short".into(), MAX_NOTE_BYTES), "short");
    }
}
