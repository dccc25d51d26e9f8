//! CustomResourceDefinitions: defaulting, validation, registration of the kind they define,
//! and the status conditions the apiextensions controllers set.

use super::errors::Cause;
use super::kinds::{self, ResKey};
use super::meta;
use super::schema;
use super::store::State;
use serde_json::{Value, json};

/// The finalizer that keeps a CRD until its custom resources are gone.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub(crate) fn crd_key() -> ResKey {
    ("apiextensions.k8s.io".to_string(), "customresourcedefinitions".to_string())
}

/// Defaults of a new CRD and its cleanup finalizer.
pub(crate) fn prepare_create(crd: &mut Value) {
    let mut finalizers = meta::finalizers(crd);
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        finalizers.push(CLEANUP_FINALIZER.to_string());
    }
    meta::set_finalizers(crd, &finalizers);
    let Some(spec) = crd.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").filter(|n| n.is_object()) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        if names.get("singular").is_none() {
            names["singular"] = json!(kind.to_lowercase());
        }
        if names.get("listKind").is_none() {
            names["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec.get("conversion").is_none() {
        spec["conversion"] = json!({"strategy": "None"});
    }
}

/// `check_crd` of the schema module, plus the naming rule the registration relies on.
pub(crate) fn validate(crd: &Value) -> Vec<Cause> {
    let mut messages = schema::check_crd(crd);
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let name = meta::name(crd);
    if name != format!("{plural}.{group}") {
        let own = format!("metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group");
        if !messages.iter().any(|m| m.starts_with("metadata.name:")) {
            messages.push(own);
        }
    }
    if kinds::from_crd(crd).is_none() && messages.is_empty() {
        messages.push("spec: Invalid value: \"\": must define group, names.kind, names.plural and versions".to_string());
    }
    messages
        .into_iter()
        .map(|m| match m.split_once(": ") {
            Some((field, message)) if !field.contains(' ') => Cause::new("FieldValueInvalid", field, message),
            _ => Cause::new("FieldValueInvalid", "", m),
        })
        .collect()
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// After a CRD write: (re)registers its kind and, when missing, sets the accepted names,
/// stored versions and the NamesAccepted/Established conditions in a status write of its
/// own, as the apiextensions controllers do. Returns the latest stored CRD.
pub(crate) fn after_write(st: &mut State, crd: &Value) -> Value {
    let Some(mut rt) = kinds::from_crd(crd) else {
        return crd.clone();
    };
    let terminating = meta::deletion_timestamp(crd).is_some();
    rt.terminating = terminating;
    st.register(rt);
    if terminating
        || crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|x| x.get("type") == Some(&json!("Established"))))
    {
        return crd.clone();
    }
    let now = meta::now();
    let mut updated = crd.clone();
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).filter_map(|v| v.get("name").cloned()).collect()
        })
        .unwrap_or_default();
    updated["status"] = json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "conditions": [
            condition("NamesAccepted", "True", "NoConflicts", "no conflicts found", &now),
            condition("Established", "True", "InitialNamesAccepted", "the initial names have been accepted", &now),
        ],
        "storedVersions": storage,
    });
    st.put(&crd_key(), updated)
}

/// Marks a terminating CRD with the Terminating condition, once.
pub(crate) fn mark_terminating(crd: &Value) -> Option<Value> {
    let conditions = crd.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    if conditions.iter().any(|c| c.get("type") == Some(&json!("Terminating"))) {
        return None;
    }
    let mut updated = crd.clone();
    let mut list = conditions;
    list.push(condition("Terminating", "True", "InstanceDeletionInProgress", "CustomResource deletion is in progress", &meta::now()));
    meta::set_in(&mut updated, &["status", "conditions"], Value::Array(list));
    Some(updated)
}

/// The storage key of the kind a CRD defines.
pub(crate) fn defined_key(crd: &Value) -> Option<ResKey> {
    let group = crd.pointer("/spec/group")?.as_str()?;
    let plural = crd.pointer("/spec/names/plural")?.as_str()?;
    Some((group.to_string(), plural.to_string()))
}
