//! How server-side apply and strategic merge see a value: struct, map, list kind, or leaf.
//!
//! Types come from an OpenAPI v3 schema: a CRD's `openAPIV3Schema`, or the partial
//! schemas in `builtin_schemas` for built-in kinds. Built-in schemas are partial, so
//! they are read "loosely": an undeclared object is a struct and an undeclared list is
//! atomic, as most built-in fields are. CRD schemas are read strictly: an object under
//! `x-kubernetes-preserve-unknown-fields` is a map whose every key is owned on its own.

use super::fieldset::PathElement;
use serde_json::Value;

/// The merge behaviour of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A scalar, or anything replaced as a whole.
    Leaf,
    /// An object with named fields, merged field by field.
    Struct,
    /// An object whose keys are entries, merged key by key.
    Map,
    /// A list of scalars merged as a set.
    Set,
    /// A list of objects merged by the given key fields.
    Keyed(Vec<String>),
}

/// A position in a schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ty<'a> {
    node: Option<&'a Value>,
    loose: bool,
}

impl<'a> Ty<'a> {
    /// The root of a CRD version's schema (strict reading).
    pub fn strict(schema: &'a Value) -> Ty<'a> {
        Ty { node: Some(schema), loose: false }
    }

    /// The root of a built-in hint schema (loose reading).
    pub fn loose(schema: &'a Value) -> Ty<'a> {
        Ty { node: Some(schema), loose: true }
    }

    fn unknown(self) -> Ty<'a> {
        Ty { node: None, loose: self.loose }
    }

    fn deduced() -> Ty<'a> {
        Ty { node: None, loose: false }
    }

    /// The shape this type gives `value`.
    pub fn shape(&self, value: &Value) -> Shape {
        match value {
            Value::Object(_) => self.object_shape(),
            Value::Array(_) => self.list_shape(),
            _ => Shape::Leaf,
        }
    }

    fn object_shape(&self) -> Shape {
        let Some(node) = self.node else {
            return if self.loose { Shape::Struct } else { Shape::Map };
        };
        if node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
            return Shape::Leaf;
        }
        if node.get("properties").is_some() {
            return Shape::Struct;
        }
        if node.get("additionalProperties").is_some() || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Shape::Map;
        }
        if self.loose { Shape::Struct } else { Shape::Map }
    }

    fn list_shape(&self) -> Shape {
        let Some(node) = self.node else {
            return Shape::Leaf;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => Shape::Set,
            Some("map") => Shape::Keyed(
                node.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
            ),
            _ => Shape::Leaf,
        }
    }

    /// The type of field `name` and whether it is a declared field (as opposed to a map entry).
    pub fn field(&self, name: &str) -> (Ty<'a>, bool) {
        let Some(node) = self.node else {
            return if self.loose { (self.unknown(), true) } else { (Ty::deduced(), false) };
        };
        if let Some(prop) = node.get("properties").and_then(|p| p.get(name)) {
            return (Ty { node: Some(prop), loose: self.loose }, true);
        }
        if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
            return (Ty { node: Some(additional), loose: self.loose }, false);
        }
        if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || node.get("additionalProperties") == Some(&Value::Bool(true))
        {
            return (Ty::deduced(), false);
        }
        if self.loose { (self.unknown(), true) } else { (Ty::deduced(), false) }
    }

    /// The type of list items.
    pub fn items(&self) -> Ty<'a> {
        match self.node.and_then(|n| n.get("items")).filter(|i| i.is_object()) {
            Some(items) => Ty { node: Some(items), loose: self.loose },
            None => self.unknown(),
        }
    }

    /// The strategic-merge key of a list, when the list merges rather than replaces.
    pub fn patch_merge_key(&self) -> Option<PatchMerge> {
        let node = self.node?;
        if node.get("x-kubernetes-patch-strategy").and_then(Value::as_str) != Some("merge") {
            return None;
        }
        Some(match node.get("x-kubernetes-patch-merge-key").and_then(Value::as_str) {
            Some(key) => PatchMerge::Key(key.to_string()),
            None => PatchMerge::Primitive,
        })
    }

    /// The path element of one item of a set or keyed list; `None` when a key field is
    /// missing and has no default.
    pub fn item_element(&self, shape: &Shape, item: &Value) -> Option<PathElement> {
        match shape {
            Shape::Set => Some(PathElement::Value(item.to_string())),
            Shape::Keyed(keys) => {
                let item_ty = self.items();
                let mut out = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match item.get(key) {
                        Some(v) => v.clone(),
                        None => item_ty
                            .node
                            .and_then(|n| n.get("properties"))
                            .and_then(|p| p.get(key))
                            .and_then(|p| p.get("default"))
                            .cloned()?,
                    };
                    out.push((key.clone(), value.to_string()));
                }
                out.sort();
                Some(PathElement::Key(out))
            }
            _ => None,
        }
    }
}

/// How a strategic merge patch combines a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatchMerge {
    /// Items are objects matched by this field.
    Key(String),
    /// Items are scalars; the patch adds the missing ones.
    Primitive,
}
