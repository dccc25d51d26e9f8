//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

use super::errors::{ApiError, ApiResult, Cause};
use super::typeinfo::{PatchMerge, Ty};
use serde_json::{Map, Value};

/// The patch formats a PATCH request can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchKind::Apply),
            _ => None,
        }
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// RFC 7386: objects merge, `null` deletes, everything else replaces.
pub(crate) fn merge_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("json: cannot unmarshal into Go value of type map[string]interface {}"));
    }
    json_patch::merge(target, &patch);
    Ok(())
}

/// RFC 6902, failing with 422 like the API server when an operation does not apply.
///
/// As in the API server's JSON patch library, a `test` for `null` succeeds on a missing
/// path (kube-runtime's finalizer helper relies on this).
pub(crate) fn json_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    for op in patch.0 {
        if let json_patch::PatchOperation::Test(test) = &op
            && test.value.is_null()
            && target.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(target, std::slice::from_ref(&op))
            .map_err(|e| ApiError::generic_invalid(Cause::new("UnexpectedServerResponse", "", e.to_string())))?;
    }
    Ok(())
}

/// Strategic merge patch for built-in kinds: like a merge patch, except that lists the
/// upstream type marks `patchStrategy: merge` merge item by item (by their merge key, or
/// as a set for scalar lists), and the `$patch`, `$retainKeys`,
/// `$deleteFromPrimitiveList` and `$setElementOrder` directives are honoured.
pub(crate) fn strategic_merge_patch(target: &mut Value, body: &[u8], ty: Ty) -> ApiResult<()> {
    let patch = parse_json(body)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("json: cannot unmarshal into Go value of type map[string]interface {}"));
    };
    apply_object(target, &patch, ty)
}

fn apply_object(target: &mut Value, patch: &Map<String, Value>, ty: Ty) -> ApiResult<()> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = Value::Object(strip_directives(patch));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => return Err(ApiError::bad_request(format!("Unknown patch type: {other}"))),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(map) = target.as_object_mut() else {
        return Ok(());
    };
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) = (map.get_mut(field), value.as_array()) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            map.remove(key);
            continue;
        }
        let child_ty = ty.field(key).0;
        match value {
            Value::Object(child_patch) => {
                let entry = map.entry(key.clone()).or_insert(Value::Null);
                apply_object(entry, child_patch, child_ty)?;
            }
            Value::Array(items) => {
                let merged = match (child_ty.patch_merge_key(), map.get(key)) {
                    (Some(strategy), Some(Value::Array(existing))) => merge_list(existing, items, &strategy, child_ty)?,
                    _ => Value::Array(items.iter().map(strip_value).collect()),
                };
                map.insert(key.clone(), merged);
            }
            other => {
                map.insert(key.clone(), other.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        map.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(())
}

fn merge_list(existing: &[Value], patch: &[Value], strategy: &PatchMerge, ty: Ty) -> ApiResult<Value> {
    if patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace")) {
        return Ok(Value::Array(patch.iter().filter(|p| p.get("$patch").is_none()).map(strip_value).collect()));
    }
    let mut out: Vec<Value> = existing.to_vec();
    match strategy {
        PatchMerge::Primitive => {
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
        }
        PatchMerge::Key(key) => {
            for item in patch {
                let Some(id) = item.get(key) else {
                    return Err(ApiError::bad_request(format!("map: {item} does not contain declared merge key: {key}")));
                };
                let position = out.iter().position(|e| e.get(key) == Some(id));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        if let Value::Object(item_patch) = item {
                            apply_object(&mut out[i], item_patch, ty.items())?;
                        }
                    }
                    (None, false) => out.push(strip_value(item)),
                }
            }
        }
    }
    Ok(Value::Array(out))
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_value(v))).collect()
}

fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_value).collect()),
        other => other.clone(),
    }
}
