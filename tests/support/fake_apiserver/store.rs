//! The object store: one global resourceVersion counter (as etcd's revision), objects by
//! type, per-type event history for watch resumption, and the live watchers.

use super::kinds::{ResKey, ResourceType, builtins};
use super::meta;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// How many events each type keeps for watches to resume from, unless a test says otherwise.
pub(crate) const DEFAULT_WATCH_HISTORY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as the watch machinery sees it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The state before a modification, so that selector-filtered watches can tell an
    /// object entering or leaving their selection.
    pub prev: Option<Arc<Value>>,
}

/// Where an object lives, found by uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjRef {
    pub res: ResKey,
    pub key: ObjKey,
}

/// The objects and history of one type.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub objects: BTreeMap<ObjKey, Value>,
    pub history: VecDeque<Event>,
    /// Watches may resume from this resourceVersion or any later one.
    pub floor: u64,
    pub watchers: Vec<UnboundedSender<Event>>,
}

/// Everything the server stores.
#[derive(Debug)]
pub(crate) struct State {
    pub rv: u64,
    pub types: BTreeMap<ResKey, Arc<ResourceType>>,
    pub tables: HashMap<ResKey, Table>,
    pub uids: HashMap<String, ObjRef>,
    pub history_limit: usize,
    pub next_cluster_ip: u32,
    pub next_node_port: u32,
    /// Counts the writes the control loops act on at once: a removal and a write of an
    /// object that is being deleted. Other writes leave it alone, so the loops (which
    /// scan every object) do not run per write and a large fleet stays fast; a dependent
    /// created with an owner that is already gone is collected by the periodic pass.
    pub gc_epoch: u64,
}

pub(crate) fn ns_key() -> ResKey {
    (String::new(), "namespaces".to_string())
}

impl State {
    pub fn new() -> State {
        let mut state = State {
            rv: 1,
            types: BTreeMap::new(),
            tables: HashMap::new(),
            uids: HashMap::new(),
            history_limit: DEFAULT_WATCH_HISTORY,
            // 10.96.0.1 belongs to the `kubernetes` service of a real cluster.
            next_cluster_ip: 2,
            next_node_port: 30000,
            gc_epoch: 0,
        };
        for rt in builtins() {
            state.register(rt);
        }
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": meta::new_uid(),
                    "creationTimestamp": meta::now(),
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            state.put(&ns_key(), ns);
        }
        state
    }

    /// Adds or replaces a type; its objects and history survive a replacement.
    pub fn register(&mut self, rt: ResourceType) {
        let key = rt.key();
        let rv = self.rv;
        self.tables.entry(key.clone()).or_insert_with(|| Table { floor: rv, ..Table::default() });
        self.types.insert(key, Arc::new(rt));
    }

    /// Removes a type with its objects; dropping the table ends its watches.
    pub fn unregister(&mut self, key: &ResKey) {
        self.types.remove(key);
        if let Some(table) = self.tables.remove(key) {
            for obj in table.objects.values() {
                if let Some(uid) = meta::uid(obj) {
                    self.uids.remove(uid);
                }
            }
        }
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let rt = self.types.get(&(group.to_string(), plural.to_string()))?;
        rt.version(version)?;
        Some(rt.clone())
    }

    pub fn get(&self, res: &ResKey, key: &ObjKey) -> Option<&Value> {
        self.tables.get(res)?.objects.get(key)
    }

    /// `Some(terminating)` when the namespace exists.
    pub fn namespace_phase(&self, ns: &str) -> Option<bool> {
        let obj = self.get(&ns_key(), &(String::new(), ns.to_string()))?;
        Some(meta::deletion_timestamp(obj).is_some())
    }

    /// Stores `obj` with the next resourceVersion and emits ADDED or MODIFIED.
    pub fn put(&mut self, res: &ResKey, mut obj: Value) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = meta::obj_key(&obj);
        if let Some(uid) = meta::uid(&obj) {
            self.uids.insert(uid.to_string(), ObjRef { res: res.clone(), key: key.clone() });
        }
        let Some(table) = self.tables.get_mut(res) else {
            return obj;
        };
        let prev = table.objects.insert(key, obj.clone());
        if meta::deletion_timestamp(&obj).is_some() {
            self.gc_epoch += 1;
        }
        let event = Event {
            rv,
            kind: if prev.is_some() { EventType::Modified } else { EventType::Added },
            object: Arc::new(obj.clone()),
            prev: prev.map(Arc::new),
        };
        let limit = self.history_limit;
        Self::publish(table, event, limit);
        obj
    }

    /// Removes an object with the next resourceVersion and emits DELETED.
    pub fn remove(&mut self, res: &ResKey, key: &ObjKey) -> Option<Value> {
        let limit = self.history_limit;
        let table = self.tables.get_mut(res)?;
        let mut obj = table.objects.remove(key)?;
        self.gc_epoch += 1;
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(uid) = meta::uid(&obj) {
            self.uids.remove(uid);
        }
        let event = Event { rv, kind: EventType::Deleted, object: Arc::new(obj.clone()), prev: None };
        Self::publish(table, event, limit);
        Some(obj)
    }

    fn publish(table: &mut Table, event: Event, limit: usize) {
        table.watchers.retain(|w| w.send(event.clone()).is_ok());
        table.history.push_back(event);
        Self::trim(table, limit);
    }

    fn trim(table: &mut Table, limit: usize) {
        while table.history.len() > limit {
            if let Some(old) = table.history.pop_front() {
                table.floor = old.rv;
            }
        }
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        for table in self.tables.values_mut() {
            Self::trim(table, limit);
        }
    }

    /// Every object of every type, as (type, key) pairs; a snapshot for the controllers.
    pub fn all_keys(&self) -> Vec<(ResKey, ObjKey)> {
        let mut out = Vec::new();
        for (res, table) in &self.tables {
            for key in table.objects.keys() {
                out.push((res.clone(), key.clone()));
            }
        }
        out.sort();
        out
    }
}
