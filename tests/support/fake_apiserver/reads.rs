//! GET of one object and LIST with selectors and pagination.

use super::errors::{ApiError, ApiResult};
use super::kinds::ResourceType;
use super::meta;
use super::request::{Params, Target};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ObjKey, State};
use serde_json::{Value, json};

/// An object as served at the requested version.
pub(crate) fn present(t: &Target, obj: &Value) -> Value {
    let mut out = obj.clone();
    if out.is_object() {
        out["apiVersion"] = json!(t.api_version());
        out["kind"] = json!(t.rt.kind);
    }
    out
}

/// A list item: built-in list items carry no type fields, custom resource items do, as
/// the API server serialises typed and unstructured lists.
fn list_item(t: &Target, obj: &Value) -> Value {
    let mut out = present(t, obj);
    if !t.rt.custom
        && let Some(map) = out.as_object_mut()
    {
        map.remove("apiVersion");
        map.remove("kind");
    }
    out
}

pub(crate) fn get(st: &State, t: &Target) -> ApiResult<Value> {
    st.get(&t.rt.key(), &t.key()).map(|obj| present(t, obj)).ok_or_else(|| ApiError::not_found(&t.rt.group_resource(), t.name()))
}

/// The selectors of a list or watch request.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(t: &Target, params: &Params) -> ApiResult<Filter> {
        Ok(Filter {
            namespace: t.namespace.clone(),
            labels: LabelSelector::parse(params.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or(""), &t.rt.extra_field_labels(&t.version))?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| meta::namespace(obj) == ns) && self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}\u{0}", key.0, key.1)});
    meta::base64_encode(token.to_string().as_bytes())
}

fn decode_continue(token: &str) -> ApiResult<(u64, ObjKey)> {
    let invalid = |detail: &str| ApiError::bad_request(format!("continue key is not valid: {detail}"));
    let bytes = meta::base64_decode(token).ok_or_else(|| invalid("illegal base64 data"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&e.to_string()))?;
    if value.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
    }
    let rv = value.get("rv").and_then(Value::as_u64).ok_or_else(|| invalid("missing rv"))?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(|| invalid("missing start"))?;
    let start = start.trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(|| invalid("malformed start"))?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

/// LIST: selectors, `limit`/`continue` pagination and the list resourceVersion.
pub(crate) fn list(st: &State, t: &Target, params: &Params) -> ApiResult<Value> {
    let filter = Filter::parse(t, params)?;
    let rv_param = params.get("resourceVersion");
    let token = params.get("continue").map(decode_continue).transpose()?;
    if token.is_some() && rv_param.is_some_and(|rv| rv != "0") {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    if let Some(rv) = rv_param
        && rv.parse::<u64>().is_err()
    {
        return Err(ApiError::bad_request(format!("resourceVersion: Invalid value: {rv:?}: must be a number")));
    }
    // Lists at resourceVersion 0 come from the watch cache, which does not paginate.
    let limit = match (rv_param, &token) {
        (Some("0"), None) => None,
        _ => params.number("limit")?.filter(|l| *l > 0).map(|l| l as usize),
    };
    let (list_rv, start) = match token {
        Some((rv, key)) => (rv, Some(key)),
        None => (st.rv, None),
    };
    let table = st.tables.get(&t.rt.key());
    let matching: Vec<(&ObjKey, &Value)> = table
        .into_iter()
        .flat_map(|tb| tb.objects.iter())
        .filter(|(key, _)| start.as_ref().is_none_or(|s| *key > s))
        .filter(|(_, obj)| filter.matches(obj))
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    let page: Vec<Value> = match limit {
        Some(limit) if matching.len() > limit => {
            let last = matching[limit - 1].0;
            metadata["continue"] = json!(encode_continue(list_rv, last));
            metadata["remainingItemCount"] = json!(matching.len() - limit);
            matching[..limit].iter().map(|(_, o)| list_item(t, o)).collect()
        }
        _ => matching.iter().map(|(_, o)| list_item(t, o)).collect(),
    };
    Ok(list_body(&t.rt, &t.api_version(), metadata, page))
}

pub(crate) fn list_body(rt: &ResourceType, api_version: &str, metadata: Value, items: Vec<Value>) -> Value {
    json!({
        "kind": rt.list_kind,
        "apiVersion": api_version,
        "metadata": metadata,
        "items": items,
    })
}
