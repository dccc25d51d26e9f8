//! DELETE: preconditions, propagation policies, finalizers and graceful marking.

use super::errors::{ApiError, ApiResult, GroupResource};
use super::kinds::{ResourceType, Special};
use super::meta;
use super::request::Params;
use super::store::{ObjKey, State};
use serde_json::{Value, json};

/// The finalizer the garbage collector handles for `propagationPolicy=Orphan`.
pub(crate) const ORPHAN: &str = "orphan";
/// The finalizer the garbage collector handles for `propagationPolicy=Foreground`.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// `DeleteOptions` from the body and query.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn parse(body: &[u8], params: &Params) -> ApiResult<DeleteOptions> {
        let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or_else(|| params.get("propagationPolicy"))
            .map(|p| match p {
                "Orphan" => Ok(Propagation::Orphan),
                "Background" => Ok(Propagation::Background),
                "Foreground" => Ok(Propagation::Foreground),
                other => Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ))),
            })
            .transpose()?;
        let orphan_flag = body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or(params.flag("orphanDependents").ok().filter(|_| params.get("orphanDependents").is_some()));
        let propagation = policy.or(orphan_flag.map(|o| if o { Propagation::Orphan } else { Propagation::Background }));
        let dry_run = match body.get("dryRun").and_then(Value::as_array) {
            Some(values) => values.iter().any(|v| v == "All"),
            None => params.dry_run()?,
        };
        let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
        Ok(DeleteOptions {
            propagation,
            uid: text("/preconditions/uid"),
            resource_version: text("/preconditions/resourceVersion"),
            dry_run,
        })
    }
}

/// What a delete did.
#[derive(Debug, Clone)]
pub(crate) enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// The object waits for finalizers; its current state.
    Pending(Value),
}

/// The finalizers an object gets from a delete with this policy.
fn finalizers_for(obj: &Value, policy: Option<Propagation>) -> Vec<String> {
    let current = meta::finalizers(obj);
    let had = |f: &str| current.iter().any(|x| x == f);
    let orphan = match policy {
        Some(p) => p == Propagation::Orphan,
        None => had(ORPHAN),
    };
    let foreground = match policy {
        Some(p) => p == Propagation::Foreground,
        None => had(FOREGROUND),
    };
    let mut out: Vec<String> = current.into_iter().filter(|f| f != ORPHAN && f != FOREGROUND).collect();
    if orphan {
        out.push(ORPHAN.to_string());
    }
    if foreground {
        out.push(FOREGROUND.to_string());
    }
    out
}

/// Marks an object as being deleted: deletionTimestamp, zero grace period, and a
/// generation bump the first time, as the generic registry does.
fn mark_deleting(obj: &mut Value) {
    if meta::deletion_timestamp(obj).is_none() {
        if let Some(generation) = obj.pointer("/metadata/generation").and_then(Value::as_i64)
            && generation > 0
        {
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        obj["metadata"]["deletionTimestamp"] = json!(meta::now());
    }
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
}

/// Deletes one object as the API server's DELETE does.
pub(crate) fn delete(st: &mut State, rt: &ResourceType, key: &ObjKey, opts: &DeleteOptions) -> ApiResult<Deleted> {
    let gr = rt.group_resource();
    let Some(obj) = st.get(&rt.key(), key).cloned() else {
        return Err(ApiError::not_found(&gr, &key.1));
    };
    if let Some(uid) = &opts.uid
        && Some(uid.as_str()) != meta::uid(&obj)
    {
        return Err(ApiError::conflict(
            &gr,
            &key.1,
            &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::uid(&obj).unwrap_or("")),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta::resource_version(&obj)
    {
        return Err(ApiError::conflict(
            &gr,
            &key.1,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::resource_version(&obj)
            ),
        ));
    }
    if rt.special == Special::Namespace {
        return delete_namespace(st, rt, key, obj, opts);
    }
    let finalizers = finalizers_for(&obj, opts.propagation);
    if finalizers.is_empty() {
        if opts.dry_run {
            return Ok(Deleted::Gone(obj));
        }
        return Ok(Deleted::Gone(st.remove(&rt.key(), key).unwrap_or(obj)));
    }
    let mut updated = obj.clone();
    mark_deleting(&mut updated);
    meta::set_finalizers(&mut updated, &finalizers);
    if updated == obj || opts.dry_run {
        return Ok(Deleted::Pending(updated));
    }
    let stored = st.put(&rt.key(), updated);
    if rt.special == Special::Crd {
        return Ok(Deleted::Pending(super::crd::after_write(st, &stored)));
    }
    Ok(Deleted::Pending(stored))
}

const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

fn delete_namespace(st: &mut State, rt: &ResourceType, key: &ObjKey, obj: Value, opts: &DeleteOptions) -> ApiResult<Deleted> {
    if PROTECTED_NAMESPACES.contains(&key.1.as_str()) {
        return Err(ApiError::forbidden(&GroupResource::new("", "namespaces"), &key.1, "this namespace may not be deleted"));
    }
    if meta::deletion_timestamp(&obj).is_some() {
        return Ok(Deleted::Pending(obj));
    }
    let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let finalizers = finalizers_for(&obj, opts.propagation);
    if !spec_finalizers && finalizers.is_empty() {
        if opts.dry_run {
            return Ok(Deleted::Gone(obj));
        }
        return Ok(Deleted::Gone(st.remove(&rt.key(), key).unwrap_or(obj)));
    }
    let mut updated = obj;
    mark_deleting(&mut updated);
    meta::set_finalizers(&mut updated, &finalizers);
    meta::set_in(&mut updated, &["status", "phase"], json!("Terminating"));
    if opts.dry_run {
        return Ok(Deleted::Pending(updated));
    }
    Ok(Deleted::Pending(st.put(&rt.key(), updated)))
}

/// The body answering a finished delete: the generic registry answers with a success
/// Status, the kinds that return the deleted object with the object.
pub(crate) fn gone_body(rt: &ResourceType, obj: &Value) -> Value {
    if rt.special == Special::ServiceAccount {
        return obj.clone();
    }
    let mut details = json!({"name": meta::name(obj), "kind": rt.plural});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    if let Some(uid) = meta::uid(obj) {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
