//! Sets of field paths, as server-side apply tracks ownership, and their `FieldsV1` encoding.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One step of a field path. The order (field, key, value, index) matches the
/// order in which the API server lists children in `FieldsV1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// A field of a struct or an entry of a map: `f:name`.
    Field(String),
    /// An item of an associative list, by its key fields (sorted, values as JSON text): `k:{...}`.
    Key(Vec<(String, String)>),
    /// An item of a set-like list, as JSON text: `v:"x"`.
    Value(String),
    /// An item of a list by position: `i:0`.
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(keys) => {
                let inner: Vec<String> = keys.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect();
                format!("k:{{{}}}", inner.join(","))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(text: &str) -> Option<PathElement> {
        let (prefix, rest) = text.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Value::Object(map) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                let mut keys: Vec<(String, String)> = map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                keys.sort();
                Some(PathElement::Key(keys))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::Value(v.to_string()))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// The notation of conflict messages: `.spec`, `[name="c"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(keys) => {
                let inner: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", inner.join(","))
            }
            PathElement::Value(v) => format!("[={v}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// A path of elements from the object root.
pub(crate) type Path = Vec<PathElement>;

/// Renders a path like the API server's conflict messages: `.spec.ports[port=80,protocol="TCP"].name`.
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A tree of paths. A node is a member when the path itself is in the set; children
/// exist only when they hold at least one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }

    /// The subtree at `path`, if any member lies at or below it.
    pub fn get(&self, path: &[PathElement]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((head, rest)) => self.children.get(head)?.get(rest),
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { member: self.member && !other.member, children: BTreeMap::new() };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Members of `self` not at or below any member of `other`.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        if other.member {
            return FieldSet::default();
        }
        let mut out = FieldSet { member: self.member, children: BTreeMap::new() };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { member: self.member && other.member, children: BTreeMap::new() };
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, depth first.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON form: `{"f:spec":{"f:replicas":{}}}`, with `".": {}` marking
    /// a member that also has children.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            map.insert(pe.encode(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Parses `FieldsV1` JSON; `None` when it is malformed.
    pub fn from_fields_v1(value: &Value) -> Option<FieldSet> {
        let mut root = Self::decode_node(value)?;
        root.member = false;
        Some(root)
    }

    fn decode_node(value: &Value) -> Option<FieldSet> {
        let map = value.as_object()?;
        let mut set = FieldSet { member: map.is_empty(), children: BTreeMap::new() };
        for (key, child) in map {
            if key == "." {
                set.member = true;
                continue;
            }
            let pe = PathElement::decode(key)?;
            let node = Self::decode_node(child)?;
            if !node.is_empty() {
                set.children.insert(pe, node);
            }
        }
        Some(set)
    }
}
