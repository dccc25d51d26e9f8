//! Field ownership (`metadata.managedFields`) for updates and server-side apply, following
//! the structured-merge-diff algorithm the API server uses: compare old and new objects
//! field by field, give changed fields to the writer, detect apply conflicts, and remove
//! fields an applier stopped applying when nobody else owns them.

use super::fieldset::{FieldSet, Path, PathElement, path_string};
use super::typeinfo::{Shape, Ty};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManagerEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: FieldSet,
}

/// Who writes: entries with the same identity are one manager. Appliers are identified
/// without their apiVersion, updaters with it, as the API server does.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
}

impl Identity {
    fn matches(&self, e: &ManagerEntry) -> bool {
        e.manager == self.manager
            && e.operation == self.operation
            && e.subresource == self.subresource
            && (self.operation == Operation::Apply || e.api_version == self.api_version)
    }

    fn entry(&self, set: FieldSet, time: Option<String>) -> ManagerEntry {
        ManagerEntry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            time,
            subresource: self.subresource.clone(),
            set,
        }
    }
}

/// How conflict messages name a manager: `"m"`, `"m" using v1`, `"m" with subresource "status"`.
fn describe(e: &ManagerEntry) -> String {
    let name = format!("{:?}", e.manager);
    if e.operation == Operation::Update {
        format!("{name} using {}", e.api_version)
    } else if !e.subresource.is_empty() {
        format!("{name} with subresource {:?}", e.subresource)
    } else {
        name
    }
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub manager: String,
    pub path: String,
}

/// Reads `metadata.managedFields`; malformed content counts as none, as the API server
/// resets undecodable managed fields.
pub(crate) fn decode(obj: &Value) -> Vec<ManagerEntry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in list {
        let operation = match item.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Vec::new(),
        };
        let Some(set) = item.get("fieldsV1").and_then(FieldSet::from_fields_v1) else {
            return Vec::new();
        };
        let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.push(ManagerEntry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: item.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: text("subresource"),
            set,
        });
    }
    out
}

/// Writes entries into `metadata.managedFields` in the API server's order.
pub(crate) fn encode_into(obj: &mut Value, mut entries: Vec<ManagerEntry>) {
    entries.sort_by(|a, b| {
        (a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = Map::new();
            v.insert("manager".into(), json!(e.manager));
            v.insert("operation".into(), json!(e.operation.as_str()));
            v.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                v.insert("time".into(), json!(t));
            }
            v.insert("fieldsType".into(), json!("FieldsV1"));
            v.insert("fieldsV1".into(), e.set.to_fields_v1());
            if !e.subresource.is_empty() {
                v.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(v)
        })
        .collect();
    let meta = super::meta::metadata_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// A copy of `obj` without `metadata.managedFields`.
pub(crate) fn without_managed(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// Paths never tracked: the type and the system-owned metadata.
fn stripped() -> FieldSet {
    let mut set = FieldSet::default();
    for p in ["apiVersion", "kind", "metadata"] {
        set.insert(&[PathElement::Field(p.into())]);
    }
    for p in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        set.insert(&[PathElement::Field("metadata".into()), PathElement::Field(p.into())]);
    }
    set
}

fn strip(set: &FieldSet, reset: &FieldSet) -> FieldSet {
    let mut out = set.difference(&stripped());
    if let Some(managed) = out.children.get_mut(&PathElement::Field("metadata".into())).map(std::mem::take) {
        let mut managed = managed;
        managed.children.remove(&PathElement::Field("managedFields".into()));
        if !managed.is_empty() {
            out.children.insert(PathElement::Field("metadata".into()), managed);
        }
    }
    out.recursive_difference(reset)
}

/// A set holding the given top-level fields, for the fields a write may not touch.
pub(crate) fn top_level(fields: &[&str]) -> FieldSet {
    let mut set = FieldSet::default();
    for f in fields {
        set.insert(&[PathElement::Field((*f).into())]);
    }
    set
}

/// What ownership bookkeeping needs besides the objects: the type, the fields the
/// endpoint resets, and the time to stamp on changed entries.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub ty: Ty<'a>,
    pub reset: &'a FieldSet,
    pub now: &'a str,
}

/// Records a create, update or non-apply patch: the writer takes every field it added or
/// changed (from anyone), and removed fields leave every manager.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: Vec<ManagerEntry>,
    who: &Identity,
    scope: Scope,
) -> Vec<ManagerEntry> {
    let Scope { ty, reset, now } = scope;
    let empty = json!({});
    let old = old.map(without_managed).unwrap_or(empty);
    let cmp = compare(&old, &without_managed(new), ty);
    let changed = strip(&cmp.added.union(&cmp.modified), reset);
    let removed = strip(&cmp.removed, reset);
    let mut out = Vec::new();
    let mut previous = None;
    for mut e in entries {
        e.set = e.set.difference(&changed).difference(&removed);
        if who.matches(&e) {
            previous = Some(e);
        } else if !e.set.is_empty() {
            out.push(e);
        }
    }
    if !changed.is_empty() {
        let set = match previous {
            Some(p) => p.set.union(&changed),
            None => changed,
        };
        out.push(who.entry(set, Some(now.to_string())));
    } else if let Some(p) = previous.filter(|p| !p.set.is_empty()) {
        out.push(p);
    }
    out
}

/// The result of a server-side apply.
pub(crate) struct Applied {
    pub object: Value,
    pub entries: Vec<ManagerEntry>,
}

/// Server-side apply of `config` onto `live` (`None` when creating).
pub(crate) fn apply(
    live: &Value,
    config: &Value,
    entries: Vec<ManagerEntry>,
    who: &Identity,
    force: bool,
    scope: Scope,
) -> Result<Applied, Vec<Conflict>> {
    let Scope { ty, reset, now } = scope;
    let live = without_managed(live);
    let mut merged = merge(&live, config, ty);
    let set = strip(&to_field_set(config, ty), reset);
    let (mine, others): (Vec<ManagerEntry>, Vec<ManagerEntry>) = entries.into_iter().partition(|e| who.matches(e));
    let previous = mine.into_iter().next();
    if let Some(last) = &previous {
        let owned = others.iter().fold(set.clone(), |acc, e| acc.union(&e.set));
        prune(&mut merged, &last.set, &owned, ty, true);
    }
    let cmp = compare(&live, &merged, ty);
    let changed = strip(&cmp.added.union(&cmp.modified), reset);
    let removed = strip(&cmp.removed, reset);
    let mut conflicts = Vec::new();
    for e in &others {
        for path in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict { manager: describe(e), path: path_string(&path) });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut out: Vec<ManagerEntry> = others
        .into_iter()
        .map(|mut e| {
            e.set = e.set.difference(&changed).difference(&removed);
            e
        })
        .filter(|e| !e.set.is_empty())
        .collect();
    let time = if merged != live {
        Some(now.to_string())
    } else {
        previous.as_ref().and_then(|p| p.time.clone()).or_else(|| Some(now.to_string()))
    };
    if !set.is_empty() {
        out.push(who.entry(set, time));
    }
    Ok(Applied { object: merged, entries: out })
}

/// The API server's conflict message: `Apply failed with 1 conflict: conflict with "m": .spec.x`.
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", only.manager, only.path);
    }
    let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
    for c in conflicts {
        match by_manager.iter_mut().find(|(m, _)| *m == c.manager) {
            Some((_, paths)) => paths.push(c.path.clone()),
            None => by_manager.push((c.manager.clone(), vec![c.path.clone()])),
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, paths)| {
            if let [p] = paths.as_slice() {
                format!("{m}: {p}")
            } else {
                let lines: String = paths.iter().map(|p| format!("\n- {p}")).collect();
                format!("{m}:{lines}")
            }
        })
        .collect();
    format!("Apply failed with {n} conflicts: {n} conflicts with {}", parts.join(", "), n = conflicts.len())
}

/// Fields that differ between two objects.
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

pub(crate) fn compare(old: &Value, new: &Value, ty: Ty) -> Comparison {
    let mut out = Comparison { added: FieldSet::default(), modified: FieldSet::default(), removed: FieldSet::default() };
    compare_into(&mut Vec::new(), Some(old), Some(new), ty, &mut out);
    out
}

fn empty_container(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    matches!((a, b), (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)))
}

fn compare_into(path: &mut Path, l: Option<&Value>, r: Option<&Value>, ty: Ty, out: &mut Comparison) {
    let Some(probe) = r.or(l) else {
        return;
    };
    let shape = ty.shape(probe);
    let mismatched = matches!((l, r), (Some(a), Some(b)) if !same_type(a, b));
    if shape == Shape::Leaf || mismatched || (empty_container(l) && empty_container(r)) {
        match (l, r) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(a), Some(b)) if a != b => out.modified.insert(path),
            _ => {}
        }
        return;
    }
    match shape {
        Shape::Struct | Shape::Map => {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = r.and_then(Value::as_object).unwrap_or(&empty);
            let mut keys: Vec<&String> = lm.keys().collect();
            keys.extend(rm.keys().filter(|k| !lm.contains_key(*k)));
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                compare_into(path, lm.get(k), rm.get(k), ty.field(k).0, out);
                path.pop();
            }
        }
        Shape::Set | Shape::Keyed(_) => {
            let li = index_items(l, &shape, ty);
            let ri = index_items(r, &shape, ty);
            let mut pes: Vec<&PathElement> = li.iter().map(|(pe, _)| pe).collect();
            pes.extend(ri.iter().map(|(pe, _)| pe).filter(|pe| !li.iter().any(|(x, _)| x == *pe)));
            for pe in pes {
                let lv = li.iter().find(|(x, _)| x == pe).map(|(_, v)| *v);
                let rv = ri.iter().find(|(x, _)| x == pe).map(|(_, v)| *v);
                path.push(pe.clone());
                compare_into(path, lv, rv, ty.items(), out);
                path.pop();
            }
        }
        Shape::Leaf => {}
    }
    if !path.is_empty() {
        if l.is_none() {
            out.added.insert(path);
        } else if r.is_none() {
            out.removed.insert(path);
        }
    }
}

/// The items of a set or keyed list with their path elements; the first of duplicates wins.
fn index_items<'v>(list: Option<&'v Value>, shape: &Shape, ty: Ty) -> Vec<(PathElement, &'v Value)> {
    let mut out: Vec<(PathElement, &Value)> = Vec::new();
    for (i, item) in list.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let pe = ty.item_element(shape, item).unwrap_or(PathElement::Index(i));
        if !out.iter().any(|(x, _)| *x == pe) {
            out.push((pe, item));
        }
    }
    out
}

/// The fields an applied configuration sets.
pub(crate) fn to_field_set(config: &Value, ty: Ty) -> FieldSet {
    let mut out = FieldSet::default();
    field_set_into(&mut Vec::new(), config, ty, &mut out);
    out
}

fn field_set_into(path: &mut Path, v: &Value, ty: Ty, out: &mut FieldSet) {
    let shape = ty.shape(v);
    match &shape {
        Shape::Leaf => {
            if !path.is_empty() {
                out.insert(path);
            }
        }
        Shape::Struct | Shape::Map => {
            let Some(map) = v.as_object() else {
                return;
            };
            if map.is_empty() && !path.is_empty() {
                out.insert(path);
            }
            for (k, child) in map {
                let (child_ty, declared) = ty.field(k);
                path.push(PathElement::Field(k.clone()));
                field_set_into(path, child, child_ty, out);
                if !declared {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Shape::Set | Shape::Keyed(_) => {
            for (pe, item) in index_items(Some(v), &shape, ty) {
                path.push(pe);
                field_set_into(path, item, ty.items(), out);
                out.insert(path);
                path.pop();
            }
        }
    }
}

/// Merges an applied configuration into the live object: objects field by field,
/// associative lists item by item, everything else replaced.
pub(crate) fn merge(live: &Value, config: &Value, ty: Ty) -> Value {
    match (ty.shape(config), live, config) {
        (Shape::Struct | Shape::Map, Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, ty.field(k).0),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (shape @ (Shape::Set | Shape::Keyed(_)), Value::Array(_), Value::Array(_)) => merge_list(live, config, &shape, ty),
        _ => config.clone(),
    }
}

/// Interleaves live and applied items the way structured-merge-diff orders them: items
/// only the live list has keep their place, shared and new items follow the applied order.
fn merge_list(live: &Value, config: &Value, shape: &Shape, ty: Ty) -> Value {
    let l = index_items(Some(live), shape, ty);
    let r = index_items(Some(config), shape, ty);
    let in_r = |pe: &PathElement| r.iter().find(|(x, _)| x == pe).map(|(_, v)| *v);
    let in_l = |pe: &PathElement| l.iter().find(|(x, _)| x == pe).map(|(_, v)| *v);
    let shared: Vec<&PathElement> = r.iter().map(|(pe, _)| pe).filter(|pe| in_l(pe).is_some()).collect();
    let mut next_shared = 0;
    let mut done: Vec<&PathElement> = Vec::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    let item_ty = ty.items();
    let merge_item = |lv: Option<&Value>, rv: &Value| match lv {
        Some(lv) => merge(lv, rv, item_ty),
        None => rv.clone(),
    };
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &l[li].0;
            if *pe == r[ri].0 {
                out.push(merge_item(Some(l[li].1), r[ri].1));
                done.push(pe);
                if shared.get(next_shared) == Some(&pe) {
                    next_shared += 1;
                }
                li += 1;
                ri += 1;
                continue;
            }
            if in_r(pe).is_some() && shared.get(next_shared).is_some_and(|s| *s != pe) {
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &l[li].0;
            if in_r(pe).is_none() {
                out.push(l[li].1.clone());
                li += 1;
                continue;
            }
            if done.contains(&pe) {
                li += 1;
                continue;
            }
        }
        if ri < r.len() {
            let pe = &r[ri].0;
            done.push(pe);
            out.push(merge_item(in_l(pe), r[ri].1));
            if shared.get(next_shared) == Some(&pe) {
                next_shared += 1;
            }
            ri += 1;
        }
    }
    Value::Array(out)
}

/// Removes what the applier owned before (`last`) when nobody owns it now (`owned`).
/// The top-level `metadata` is never removed whole, only entries inside it.
fn prune(obj: &mut Value, last: &FieldSet, owned: &FieldSet, ty: Ty, root: bool) {
    for (pe, last_child) in &last.children {
        let owned_child = owned.children.get(pe);
        match pe {
            PathElement::Field(name) => {
                let Some(map) = obj.as_object_mut() else {
                    continue;
                };
                let keep_whole = root && (name == "metadata" || name == "apiVersion" || name == "kind");
                match owned_child {
                    None if !keep_whole => {
                        map.remove(name);
                    }
                    _ => {
                        let empty = FieldSet::default();
                        if let Some(child) = map.get_mut(name) {
                            prune(child, last_child, owned_child.unwrap_or(&empty), ty.field(name).0, false);
                        }
                    }
                }
            }
            _ => {
                let shape = ty.shape(obj);
                let Some(items) = obj.as_array_mut() else {
                    continue;
                };
                let position =
                    items.iter().enumerate().position(|(i, item)| ty.item_element(&shape, item).unwrap_or(PathElement::Index(i)) == *pe);
                let Some(i) = position else {
                    continue;
                };
                match owned_child {
                    None => {
                        items.remove(i);
                    }
                    Some(oc) => prune(&mut items[i], last_child, oc, ty.items(), false),
                }
            }
        }
    }
}
