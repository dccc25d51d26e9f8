//! The hand-off between the watches that feed the caches and the controllers that
//! reconcile: a queue per controller that never makes a watch wait.
//!
//! Each watch runs in a task of its own, updates its cache and then pushes the keys of
//! the objects its event concerns into the queues of the controllers that care. A push
//! never blocks and a key already queued is not queued twice, so a queue holds at most
//! one entry per object whatever the size of the fleet, and a controller that is slow
//! (or stopped) can never hold up a watch, a cache, or another controller. See
//! docs/design.md, "Watches, caches and queues".

use std::{
    collections::{HashSet, VecDeque},
    fmt::Debug,
    hash::Hash,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::Stream;
use kube::{Resource, runtime::reflector::ObjectRef};
use tokio::sync::Notify;

/// A deduplicating queue of objects to reconcile, with one consumer.
pub struct TriggerQueue<K: Resource> {
    inner: Arc<Inner<K>>,
}

struct Inner<K: Resource> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K: Resource> {
    order: VecDeque<ObjectRef<K>>,
    queued: HashSet<ObjectRef<K>>,
    /// Since when the oldest waiting key has waited for the consumer: the last take,
    /// or the push that found the queue empty.
    waiting_since: Instant,
}

impl<K: Resource> Clone for TriggerQueue<K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K> Default for TriggerQueue<K>
where
    K: Resource,
    K::DynamicType: Eq + Hash + Clone,
{
    fn default() -> Self {
        let state = State { order: VecDeque::new(), queued: HashSet::new(), waiting_since: Instant::now() };
        Self { inner: Arc::new(Inner { state: Mutex::new(state), notify: Notify::new() }) }
    }
}

impl<K> TriggerQueue<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug,
{
    /// Queues `key` unless it is queued already; never waits.
    pub fn push(&self, key: ObjectRef<K>) {
        let added = {
            let mut state = self.lock();
            if state.queued.contains(&key) {
                false
            } else {
                if state.order.is_empty() {
                    state.waiting_since = Instant::now();
                }
                state.queued.insert(key.clone());
                state.order.push_back(key);
                true
            }
        };
        if added {
            // A permit is stored when the consumer is not waiting, so no wake-up is lost.
            self.inner.notify.notify_one();
        }
    }

    /// Queues every key.
    pub fn extend(&self, keys: impl IntoIterator<Item = ObjectRef<K>>) {
        for key in keys {
            self.push(key);
        }
    }

    /// Keys queued and not yet taken by the controller.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long keys have been waiting without the consumer taking one; zero when the
    /// queue is empty. A controller that stopped taking work shows here.
    pub fn stalled_for(&self) -> std::time::Duration {
        let state = self.lock();
        if state.order.is_empty() { std::time::Duration::ZERO } else { state.waiting_since.elapsed() }
    }

    /// The keys, in the order they were queued, for the controller.
    pub fn stream(&self) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        let inner = self.inner.clone();
        futures::stream::unfold(inner, |inner| async move {
            loop {
                if let Some(key) = Self::pop(&inner) {
                    return Some((key, inner));
                }
                inner.notify.notified().await;
            }
        })
    }

    fn pop(inner: &Inner<K>) -> Option<ObjectRef<K>> {
        let mut state = inner.state.lock().expect("trigger queue lock");
        let key = state.order.pop_front()?;
        state.queued.remove(&key);
        state.waiting_since = Instant::now();
        Some(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.inner.state.lock().expect("trigger queue lock")
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn key(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("ns")
    }

    #[tokio::test]
    async fn a_queued_key_is_not_queued_twice_and_order_is_kept() {
        let queue = TriggerQueue::<ConfigMap>::default();
        queue.extend([key("a"), key("b"), key("a"), key("c"), key("b")]);
        assert_eq!(queue.len(), 3);
        let taken: Vec<_> = queue.stream().take(3).map(|k| k.name).collect().await;
        assert_eq!(taken, ["a", "b", "c"]);
        assert!(queue.is_empty());
        // Once taken, a key can be queued again.
        queue.push(key("a"));
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn pushes_never_wait_for_the_consumer() {
        let queue = TriggerQueue::<ConfigMap>::default();
        // Far more keys than any channel buffer, with nobody consuming.
        queue.extend((0..50_000).map(|i| key(&format!("o{i}"))));
        assert_eq!(queue.len(), 50_000);
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_a_push() {
        let queue = TriggerQueue::<ConfigMap>::default();
        let mut stream = Box::pin(queue.stream());
        let producer = queue.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            producer.push(key("late"));
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.expect("woken");
        assert_eq!(got.map(|k| k.name).as_deref(), Some("late"));
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn keys_waiting_untaken_show_as_a_stall() {
        let queue = TriggerQueue::<ConfigMap>::default();
        assert_eq!(queue.stalled_for(), std::time::Duration::ZERO);
        queue.push(key("a"));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(queue.stalled_for() >= std::time::Duration::from_millis(30));
        let _ = queue.stream().boxed().next().await;
        assert_eq!(queue.stalled_for(), std::time::Duration::ZERO);
    }
}
