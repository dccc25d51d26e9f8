//! The control loops a real control plane runs beside the API server that operators rely
//! on: the garbage collector, the namespace controller and the CRD finalizer.

use super::Shared;
use super::crd;
use super::deletion::{self, DeleteOptions, FOREGROUND, ORPHAN, Propagation};
use super::fieldset::FieldSet;
use super::kinds::{ResKey, Special};
use super::managed::{self, Identity, Operation, Scope};
use super::meta;
use super::store::{ObjKey, State, ns_key};
use super::typeinfo::Ty;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The manager name the controllers write under.
const MANAGER: &str = "kube-controller-manager";

/// Runs the loops after a write they act on (see `State::gc_epoch`), and every 2 s as a
/// safety net. The loops scan every object: running them after every write would make
/// each write cost as much as the whole store.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut seen = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
        let mut st = shared.lock();
        let due = last_full.elapsed() >= Duration::from_secs(2);
        if seen == Some(st.gc_epoch) && !due {
            continue;
        }
        reconcile(&mut st);
        seen = Some(st.gc_epoch);
        last_full = tokio::time::Instant::now();
    }
}

/// Runs passes until nothing changes (bounded, so that a cycle cannot spin).
pub(crate) fn reconcile(st: &mut State) {
    for _ in 0..100 {
        let changed = namespaces(st) | crds(st) | orphan(st) | foreground(st) | dependents(st);
        if !changed {
            break;
        }
    }
}

/// Writes a controller's change, recording it in managedFields, and removes the object
/// when that change released its last finalizer.
fn save(st: &mut State, res: &ResKey, old: &Value, mut new: Value) {
    if let Some(rt) = st.types.get(res).cloned() {
        let api_version = new.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
        let version = api_version.rsplit('/').next().unwrap_or("");
        let schema = rt.version(version).or(rt.versions.first()).map(|v| v.merge_schema.clone()).unwrap_or(Value::Null);
        let ty = if rt.custom { Ty::strict(&schema) } else { Ty::loose(&schema) };
        let who = Identity { manager: MANAGER.to_string(), operation: Operation::Update, api_version, subresource: String::new() };
        let entries = managed::record_update(
            Some(old),
            &new,
            managed::decode(old),
            &who,
            Scope { ty, reset: &FieldSet::default(), now: &meta::now() },
        );
        managed::encode_into(&mut new, entries);
    }
    let is_namespace = *res == ns_key();
    let finished = meta::deletion_timestamp(&new).is_some()
        && meta::finalizers(&new).is_empty()
        && (!is_namespace || new.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty));
    let is_crd = *res == crd::crd_key();
    if finished {
        st.remove(res, &meta::obj_key(&new));
        if is_crd && let Some(defined) = crd::defined_key(&new) {
            st.unregister(&defined);
        }
    } else {
        let stored = st.put(res, new);
        if is_crd {
            crd::after_write(st, &stored);
        }
    }
}

fn background_delete(st: &mut State, res: &ResKey, key: &ObjKey, propagation: Propagation) -> bool {
    let Some(rt) = st.types.get(res).cloned() else {
        return false;
    };
    let opts = DeleteOptions { propagation: Some(propagation), ..DeleteOptions::default() };
    match deletion::delete(st, &rt, key, &opts) {
        Ok(deletion::Deleted::Gone(obj)) => {
            if rt.special == Special::Crd
                && let Some(defined) = crd::defined_key(&obj)
            {
                st.unregister(&defined);
            }
            true
        }
        Ok(deletion::Deleted::Pending(_)) => true,
        Err(_) => false,
    }
}

/// Namespaces being deleted: delete their content, then drop the `kubernetes` finalizer.
fn namespaces(st: &mut State) -> bool {
    let terminating: Vec<Value> = st
        .tables
        .get(&ns_key())
        .map(|t| t.objects.values().filter(|o| meta::deletion_timestamp(o).is_some()).cloned().collect())
        .unwrap_or_default();
    let mut changed = false;
    for ns in terminating {
        let name = meta::name(&ns).to_string();
        let content: Vec<(ResKey, ObjKey, bool)> = st
            .tables
            .iter()
            .filter(|(res, _)| st.types.get(*res).is_some_and(|rt| rt.namespaced))
            .flat_map(|(res, table)| {
                table
                    .objects
                    .iter()
                    .filter(|((ns, _), _)| *ns == name)
                    .map(|(key, obj)| (res.clone(), key.clone(), meta::deletion_timestamp(obj).is_some()))
            })
            .collect();
        if content.is_empty() {
            let finalizers: Vec<Value> = ns.pointer("/spec/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            if !finalizers.is_empty() {
                let mut updated = ns.clone();
                updated["spec"]["finalizers"] = Value::Array(finalizers.into_iter().filter(|f| f != "kubernetes").collect());
                save(st, &ns_key(), &ns, updated);
                changed = true;
            }
            continue;
        }
        for (res, key, deleting) in content {
            if !deleting {
                changed |= background_delete(st, &res, &key, Propagation::Background);
            }
        }
    }
    changed
}

/// CRDs being deleted: mark them Terminating, delete their custom resources, then drop
/// the cleanup finalizer.
fn crds(st: &mut State) -> bool {
    let terminating: Vec<Value> = st
        .tables
        .get(&crd::crd_key())
        .map(|t| t.objects.values().filter(|o| meta::deletion_timestamp(o).is_some()).cloned().collect())
        .unwrap_or_default();
    let mut changed = false;
    for crd_obj in terminating {
        if let Some(marked) = crd::mark_terminating(&crd_obj) {
            save(st, &crd::crd_key(), &crd_obj, marked);
            changed = true;
            continue;
        }
        let Some(defined) = crd::defined_key(&crd_obj) else {
            continue;
        };
        let items: Vec<(ObjKey, bool)> = st
            .tables
            .get(&defined)
            .map(|t| t.objects.iter().map(|(k, o)| (k.clone(), meta::deletion_timestamp(o).is_some())).collect())
            .unwrap_or_default();
        if items.is_empty() {
            let finalizers = meta::finalizers(&crd_obj);
            if finalizers.iter().any(|f| f == crd::CLEANUP_FINALIZER) {
                let mut updated = crd_obj.clone();
                let rest: Vec<String> = finalizers.into_iter().filter(|f| f != crd::CLEANUP_FINALIZER).collect();
                meta::set_finalizers(&mut updated, &rest);
                save(st, &crd::crd_key(), &crd_obj, updated);
                changed = true;
            }
            continue;
        }
        for (key, deleting) in items {
            if !deleting {
                changed |= background_delete(st, &defined, &key, Propagation::Background);
            }
        }
    }
    changed
}

/// Every object, by the uids of the owners it references.
fn dependents_index(st: &State) -> HashMap<String, Vec<(ResKey, ObjKey)>> {
    let mut index: HashMap<String, Vec<(ResKey, ObjKey)>> = HashMap::new();
    for (res, table) in &st.tables {
        for (key, obj) in &table.objects {
            for owner in meta::owner_references(obj) {
                if let Some(uid) = owner.get("uid").and_then(Value::as_str) {
                    index.entry(uid.to_string()).or_default().push((res.clone(), key.clone()));
                }
            }
        }
    }
    index
}

fn objects_with_finalizer(st: &State, finalizer: &str) -> Vec<(ResKey, Value)> {
    let mut out = Vec::new();
    for (res, table) in &st.tables {
        for obj in table.objects.values() {
            if meta::deletion_timestamp(obj).is_some() && meta::finalizers(obj).iter().any(|f| f == finalizer) {
                out.push((res.clone(), obj.clone()));
            }
        }
    }
    out
}

fn without_finalizer(obj: &Value, finalizer: &str) -> Value {
    let mut updated = obj.clone();
    let rest: Vec<String> = meta::finalizers(obj).into_iter().filter(|f| f != finalizer).collect();
    meta::set_finalizers(&mut updated, &rest);
    updated
}

fn without_owner(obj: &Value, uids: &[String]) -> Value {
    let mut updated = obj.clone();
    let kept: Vec<Value> = meta::owner_references(obj)
        .into_iter()
        .filter(|o| !o.get("uid").and_then(Value::as_str).is_some_and(|u| uids.iter().any(|x| x == u)))
        .collect();
    let m = meta::metadata_mut(&mut updated);
    if kept.is_empty() {
        m.remove("ownerReferences");
    } else {
        m.insert("ownerReferences".into(), Value::Array(kept));
    }
    updated
}

/// Owners deleted with `propagationPolicy=Orphan`: release their dependents, then the owner.
fn orphan(st: &mut State) -> bool {
    let owners = objects_with_finalizer(st, ORPHAN);
    if owners.is_empty() {
        return false;
    }
    let index = dependents_index(st);
    for (res, owner) in owners {
        let uid = meta::uid(&owner).unwrap_or("").to_string();
        for (dep_res, dep_key) in index.get(&uid).cloned().unwrap_or_default() {
            if let Some(dep) = st.get(&dep_res, &dep_key).cloned() {
                let updated = without_owner(&dep, std::slice::from_ref(&uid));
                save(st, &dep_res, &dep, updated);
            }
        }
        if let Some(current) = st.get(&res, &meta::obj_key(&owner)).cloned() {
            let updated = without_finalizer(&current, ORPHAN);
            save(st, &res, &current, updated);
        }
    }
    true
}

/// Owners deleted with `propagationPolicy=Foreground`: they go once no dependent that
/// blocks owner deletion remains. Deleting the dependents is the `dependents` pass's job.
fn foreground(st: &mut State) -> bool {
    let owners = objects_with_finalizer(st, FOREGROUND);
    if owners.is_empty() {
        return false;
    }
    let index = dependents_index(st);
    let mut changed = false;
    for (res, owner) in owners {
        let uid = meta::uid(&owner).unwrap_or("").to_string();
        let blocked = index.get(&uid).into_iter().flatten().any(|(dep_res, dep_key)| {
            st.get(dep_res, dep_key).is_some_and(|dep| {
                meta::owner_references(dep).iter().any(|o| {
                    o.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                        && o.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                })
            })
        });
        if !blocked {
            let updated = without_finalizer(&owner, FOREGROUND);
            save(st, &res, &owner, updated);
            changed = true;
        }
    }
    changed
}

enum OwnerState {
    Solid,
    Dangling,
    Waiting,
}

fn owner_state(st: &State, dependent_ns: &str, dependent_namespaced: bool, uid: &str) -> OwnerState {
    let Some(found) = st.uids.get(uid) else {
        return OwnerState::Dangling;
    };
    let Some(owner) = st.get(&found.res, &found.key) else {
        return OwnerState::Dangling;
    };
    let owner_namespaced = !found.key.0.is_empty();
    // A namespaced owner only counts in its dependent's namespace, and never for a
    // cluster-scoped dependent.
    if owner_namespaced && (!dependent_namespaced || found.key.0 != dependent_ns) {
        return OwnerState::Dangling;
    }
    if meta::deletion_timestamp(owner).is_some() && meta::finalizers(owner).iter().any(|f| f == FOREGROUND) {
        OwnerState::Waiting
    } else {
        OwnerState::Solid
    }
}

/// Dependents whose owners are gone (or waiting for their dependents) are deleted;
/// those that keep a live owner only lose the references to the others.
fn dependents(st: &mut State) -> bool {
    let index = dependents_index(st);
    let mut changed = false;
    let candidates: Vec<(ResKey, ObjKey)> = index.values().flatten().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    for (res, key) in candidates {
        if !seen.insert((res.clone(), key.clone())) {
            continue;
        }
        // Read in place: only a dependent that needs a change is copied (the pass runs
        // over every owned object, most of which are fine).
        let Some(obj) = st.get(&res, &key) else {
            continue;
        };
        if meta::deletion_timestamp(obj).is_some() {
            continue;
        }
        let namespaced = st.types.get(&res).is_some_and(|rt| rt.namespaced);
        let (mut solid, mut gone) = (0, Vec::new());
        let mut waiting = false;
        for owner in meta::owner_references(obj) {
            let uid = owner.get("uid").and_then(Value::as_str).unwrap_or("").to_string();
            match owner_state(st, &key.0, namespaced, &uid) {
                OwnerState::Solid => solid += 1,
                OwnerState::Dangling => gone.push(uid),
                OwnerState::Waiting => {
                    waiting = true;
                    gone.push(uid);
                }
            }
        }
        if gone.is_empty() {
            continue;
        }
        let obj = obj.clone();
        changed = true;
        if solid > 0 {
            let updated = without_owner(&obj, &gone);
            save(st, &res, &obj, updated);
            continue;
        }
        let has_dependents = meta::uid(&obj).is_some_and(|u| index.contains_key(u));
        let policy = if waiting && has_dependents { Propagation::Foreground } else { Propagation::Background };
        background_delete(st, &res, &key, policy);
    }
    changed
}

/// Records a deleted CRD's kind as gone.
pub(crate) fn after_crd_removal(st: &mut State, crd_obj: &Value) {
    if let Some(defined) = crd::defined_key(crd_obj) {
        st.unregister(&defined);
    }
}
