//! The objects of a namespaced kind by namespace, kept by the watch that feeds its
//! cache, so that finding a tenant's Agents or quotas costs what the tenant has, not
//! what the fleet has.

use std::{
    collections::{HashMap, HashSet},
    fmt::Debug,
    hash::Hash,
    sync::{Arc, RwLock},
};

use kube::{
    Resource, ResourceExt,
    runtime::{reflector::ObjectRef, watcher},
};

/// Keys of a namespaced kind, by namespace.
pub struct NamespaceIndex<K: Resource> {
    inner: Arc<RwLock<Inner<K>>>,
}

struct Inner<K: Resource> {
    by_namespace: HashMap<String, HashSet<ObjectRef<K>>>,
    /// The next content while a (re)list is under way; it replaces the index at its end,
    /// as the cache does.
    relist: Option<HashMap<String, HashSet<ObjectRef<K>>>>,
}

impl<K: Resource> Clone for NamespaceIndex<K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K: Resource> Default for NamespaceIndex<K> {
    fn default() -> Self {
        Self { inner: Arc::new(RwLock::new(Inner { by_namespace: HashMap::new(), relist: None })) }
    }
}

impl<K> NamespaceIndex<K>
where
    K: Resource + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Debug,
{
    /// Follows one watch event; true when an Apply added a key or a Delete removed one
    /// (the set of objects of a namespace changed).
    pub fn apply(&self, event: &watcher::Event<K>) -> bool {
        let mut inner = self.inner.write().expect("namespace index lock");
        match event {
            watcher::Event::Apply(obj) => insert(&mut inner.by_namespace, obj),
            watcher::Event::Delete(obj) => {
                let namespace = obj.namespace().unwrap_or_default();
                let Some(keys) = inner.by_namespace.get_mut(&namespace) else { return false };
                let removed = keys.remove(&ObjectRef::from_obj(obj));
                if keys.is_empty() {
                    inner.by_namespace.remove(&namespace);
                }
                removed
            }
            watcher::Event::Init => {
                inner.relist = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(obj) => {
                if let Some(next) = inner.relist.as_mut() {
                    insert(next, obj);
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(next) = inner.relist.take() {
                    inner.by_namespace = next;
                }
                false
            }
        }
    }

    /// The keys of the objects in `namespace`.
    pub fn keys_in(&self, namespace: &str) -> Vec<ObjectRef<K>> {
        let inner = self.inner.read().expect("namespace index lock");
        inner.by_namespace.get(namespace).map(|keys| keys.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Adds the object's key; true when it was not there.
fn insert<K>(map: &mut HashMap<String, HashSet<ObjectRef<K>>>, obj: &K) -> bool
where
    K: Resource,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    map.entry(obj.namespace().unwrap_or_default()).or_default().insert(ObjectRef::from_obj(obj))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(namespace: &str, name: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some(namespace.into());
        cm
    }

    fn names(index: &NamespaceIndex<ConfigMap>, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = index.keys_in(namespace).into_iter().map(|k| k.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let index = NamespaceIndex::<ConfigMap>::default();
        assert!(index.apply(&watcher::Event::Apply(cm("a", "one"))), "a new object changes its namespace");
        assert!(index.apply(&watcher::Event::Apply(cm("a", "two"))));
        assert!(index.apply(&watcher::Event::Apply(cm("b", "three"))));
        assert!(!index.apply(&watcher::Event::Apply(cm("a", "one"))), "a change to a known object does not");
        assert_eq!(names(&index, "a"), ["one", "two"]);
        assert!(index.apply(&watcher::Event::Delete(cm("a", "one"))));
        assert!(!index.apply(&watcher::Event::Delete(cm("a", "one"))), "deleting it again changes nothing");
        assert_eq!(names(&index, "a"), ["two"]);
        // A relist replaces the content only when it is complete.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(cm("c", "four")));
        assert_eq!(names(&index, "a"), ["two"]);
        index.apply(&watcher::Event::InitDone);
        assert!(names(&index, "a").is_empty() && names(&index, "b").is_empty());
        assert_eq!(names(&index, "c"), ["four"]);
    }
}
