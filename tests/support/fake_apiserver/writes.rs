//! Create, update, patch and server-side apply: the write pipeline of the generic registry
//! (system metadata, status isolation, defaulting, validation, managed fields, no-op
//! detection, generation) ending in one store commit.

use super::crd;
use super::defaults;
use super::errors::{ApiError, ApiResult, Cause};
use super::fieldset::FieldSet;
use super::kinds::{ResourceType, Special};
use super::managed::{self, Identity, ManagerEntry, Operation, Scope};
use super::meta::{self, NameRule};
use super::patch::{self, PatchKind};
use super::request::{FieldValidation, Target, WriteCtx};
use super::schema::{self, FieldErrorKind};
use super::store::State;
use super::typeinfo::Ty;
use serde_json::{Value, json};

/// How the managed fields of a write are computed.
enum Ownership {
    /// A non-apply write: the writer takes what it changed.
    Update,
    /// Server-side apply already computed the entries.
    Applied(Vec<ManagerEntry>),
}

fn identity(t: &Target, ctx: &WriteCtx, operation: Operation) -> Identity {
    Identity { manager: ctx.manager.clone(), operation, api_version: t.api_version(), subresource: t.sub().to_string() }
}

/// Fields a write through this endpoint may not change; their changes are discarded
/// and never owned.
fn reset_fields(t: &Target) -> FieldSet {
    match (t.sub(), t.rt.status_subresource) {
        ("status", _) => managed::top_level(&["spec"]),
        ("", true) => managed::top_level(&["status"]),
        _ => FieldSet::default(),
    }
}

fn merge_schema(t: &Target) -> &Value {
    match t.rt.version(&t.version) {
        Some(v) => &v.merge_schema,
        None => &Value::Null,
    }
}

fn ty(t: &Target) -> Ty<'_> {
    if t.rt.custom { Ty::strict(merge_schema(t)) } else { Ty::loose(merge_schema(t)) }
}

fn openapi_schema(t: &Target) -> Option<&Value> {
    t.rt.version(&t.version).and_then(|v| v.schema.as_ref())
}

/// Checks `apiVersion` and `kind` against the endpoint, filling them in when absent.
fn check_type(t: &Target, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON or YAML object"));
    }
    let expected_version = t.api_version();
    let kind = t.rt.kind.clone();
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(kind),
        Some(k) if k == kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {kind}): kind {k:?} does not match"
            )));
        }
    }
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(expected_version),
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    meta::normalize(obj).map_err(ApiError::bad_request)?;
    meta::metadata_mut(obj);
    Ok(())
}

fn check_namespace(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let meta = meta::metadata_mut(obj);
    if t.rt.namespaced {
        let ns = t.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(ns));
            }
            Some(given) if given == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

fn check_name(t: &Target, obj: &mut Value) -> ApiResult<()> {
    let url_name = t.name().to_string();
    let meta = meta::metadata_mut(obj);
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("name".into(), json!(url_name));
            Ok(())
        }
        Some(n) if n == url_name => Ok(()),
        Some(n) => Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({url_name})"))),
    }
}

/// Runs the CRD schema: unknown fields per `fieldValidation`, pruning, defaulting, then
/// validation. Built-in kinds get their defaults and spec checks instead.
fn schema_pipeline(t: &Target, obj: &mut Value, old: Option<&Value>, ctx: &mut WriteCtx) -> ApiResult<Vec<Cause>> {
    let rt = &t.rt;
    if !rt.custom {
        defaults::apply(rt, obj);
        return Ok(defaults::validate(rt, obj, old));
    }
    let Some(schema) = openapi_schema(t) else {
        return Ok(Vec::new());
    };
    reject_unknown_fields(schema, obj, ctx)?;
    schema::prune(schema, obj);
    schema::apply_defaults(schema, obj);
    Ok(schema::validate(schema, obj, old)
        .into_iter()
        .filter(|e| e.kind != FieldErrorKind::Unknown)
        .map(|e| Cause::new(cause_reason(e.kind), &e.path, e.message))
        .collect())
}

fn cause_reason(kind: FieldErrorKind) -> &'static str {
    match kind {
        FieldErrorKind::Required => "FieldValueRequired",
        FieldErrorKind::Invalid => "FieldValueInvalid",
        FieldErrorKind::NotSupported => "FieldValueNotSupported",
        FieldErrorKind::TooLong => "FieldValueTooLong",
        FieldErrorKind::TooMany => "FieldValueTooMany",
        FieldErrorKind::Forbidden => "FieldValueForbidden",
        FieldErrorKind::Unknown => "FieldValueNotFound",
    }
}

/// Unknown fields: an error under `Strict`, a `Warning` header under `Warn`.
fn reject_unknown_fields(schema: &Value, obj: &Value, ctx: &mut WriteCtx) -> ApiResult<()> {
    if ctx.validation == FieldValidation::Ignore {
        return Ok(());
    }
    let unknown: Vec<String> = schema::validate(schema, obj, None)
        .into_iter()
        .filter(|e| e.kind == FieldErrorKind::Unknown)
        .map(|e| format!("unknown field {:?}", e.path))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    if ctx.validation == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))));
    }
    ctx.warnings.extend(unknown);
    Ok(())
}

fn name_rule(rt: &ResourceType) -> NameRule {
    match rt.special {
        Special::Namespace => NameRule::Label,
        Special::Service => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

fn name_causes(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let name = meta::name(obj);
    if name.is_empty() {
        return vec![Cause::required("metadata.name", "name or generateName is required")];
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return vec![Cause::invalid("metadata.name", &json!(name), "may not contain '/' or '%', and may not be '.' or '..'")];
    }
    meta::name_problems(name, name_rule(rt)).into_iter().map(|p| Cause::invalid("metadata.name", &json!(name), &p)).collect()
}

fn invalid(t: &Target, obj: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&t.rt.group, &t.rt.kind, meta::name(obj), causes)
}

/// Everything but `metadata` (and `status` where a status subresource exists): the part
/// of an object whose change bumps `metadata.generation`.
fn generation_view(rt: &ResourceType, obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        if rt.status_subresource {
            map.remove("status");
        }
    }
    copy
}

/// Handles POST.
pub(crate) fn create(st: &mut State, t: &Target, mut obj: Value, ctx: &mut WriteCtx) -> ApiResult<Value> {
    check_type(t, &mut obj)?;
    if !meta::resource_version(&obj).is_empty() {
        return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
    }
    finish_create(st, t, obj, ctx, Ownership::Update)
}

fn finish_create(st: &mut State, t: &Target, mut obj: Value, ctx: &mut WriteCtx, ownership: Ownership) -> ApiResult<Value> {
    let rt = t.rt.clone();
    check_namespace(t, &mut obj)?;
    if rt.terminating {
        return Err(ApiError::method_not_allowed("create not allowed while custom resource definition is terminating"));
    }
    if let Some(ns) = &t.namespace {
        match st.namespace_phase(ns) {
            None => return Err(ApiError::not_found(&super::errors::GroupResource::new("", "namespaces"), ns)),
            Some(true) => {
                return Err(ApiError::forbidden(
                    &rt.group_resource(),
                    meta::name(&obj),
                    &format!("unable to create new content in namespace {ns} because it is being terminated"),
                ));
            }
            Some(false) => {}
        }
    }
    let generate = meta::name(&obj).is_empty();
    let prefix = obj.pointer("/metadata/generateName").and_then(Value::as_str).filter(|_| generate).map(str::to_string);
    if let Some(prefix) = &prefix {
        obj["metadata"]["name"] = json!(meta::generate_name(prefix));
    }
    let m = meta::metadata_mut(&mut obj);
    for system in ["uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        m.remove(system);
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(ctx.now));
    if rt.tracks_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    prepare_create(st, &rt, &mut obj);
    let mut causes = name_causes(&rt, &obj);
    causes.extend(meta::metadata_causes(&obj));
    causes.extend(schema_pipeline(t, &mut obj, None, ctx)?);
    if rt.special == Special::Crd {
        causes.extend(crd::validate(&obj));
    }
    if !causes.is_empty() {
        return Err(invalid(t, &obj, causes));
    }
    let entries = match ownership {
        Ownership::Update => managed::record_update(
            None,
            &obj,
            Vec::new(),
            &identity(t, ctx, Operation::Update),
            Scope { ty: ty(t), reset: &reset_fields(t), now: &ctx.now },
        ),
        Ownership::Applied(entries) => entries,
    };
    managed::encode_into(&mut obj, entries);
    let res = rt.key();
    let mut key = meta::obj_key(&obj);
    if st.get(&res, &key).is_some() {
        let Some(prefix) = &prefix else {
            return Err(ApiError::already_exists(&rt.group_resource(), &key.1));
        };
        // The API server retries a generated name that collides.
        for _ in 0..8 {
            obj["metadata"]["name"] = json!(meta::generate_name(prefix));
            key = meta::obj_key(&obj);
            if st.get(&res, &key).is_none() {
                break;
            }
        }
        if st.get(&res, &key).is_some() {
            return Err(ApiError::already_exists(&rt.group_resource(), &key.1));
        }
    }
    if ctx.dry_run {
        return Ok(obj);
    }
    let stored = st.put(&res, obj);
    if rt.special == Special::Crd {
        return Ok(crd::after_write(st, &stored));
    }
    Ok(stored)
}

/// Kind-specific initial state on create.
fn prepare_create(st: &mut State, rt: &ResourceType, obj: &mut Value) {
    if rt.status_subresource
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    match rt.special {
        Special::Namespace => {
            let name = meta::name(obj).to_string();
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            meta::set_in(obj, &["metadata", "labels", "kubernetes.io/metadata.name"], json!(name));
        }
        Special::Deployment | Special::StatefulSet => obj["status"] = json!({}),
        Special::Service => {
            obj["status"] = json!({"loadBalancer": {}});
            allocate_service(st, obj, None);
        }
        Special::Pod => obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
        Special::Crd => crd::prepare_create(obj),
        _ => {}
    }
}

/// Allocates a cluster IP and node ports, or keeps those of the previous state.
fn allocate_service(st: &mut State, obj: &mut Value, old: Option<&Value>) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let old_spec = old.and_then(|o| o.get("spec"));
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if kind != "ExternalName" && spec.get("clusterIP").and_then(Value::as_str).is_none_or(str::is_empty) {
        let ip = match old_spec.and_then(|s| s.get("clusterIP")).filter(|ip| ip.is_string()) {
            Some(ip) => ip.clone(),
            None => {
                let n = st.next_cluster_ip;
                st.next_cluster_ip += 1;
                json!(format!("10.96.{}.{}", n / 256, n % 256))
            }
        };
        spec["clusterIP"] = ip.clone();
        spec["clusterIPs"] = json!([ip]);
    } else if let Some(ip) = spec.get("clusterIP").cloned()
        && spec.get("clusterIPs").is_none()
    {
        spec["clusterIPs"] = json!([ip]);
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let old_ports = old_spec.and_then(|s| s.get("ports")).and_then(Value::as_array).cloned().unwrap_or_default();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.is_object() && p.get("nodePort").is_none() {
                    let previous = old_ports.iter().find(|o| o.get("port") == p.get("port")).and_then(|o| o.get("nodePort")).cloned();
                    let port = previous.unwrap_or_else(|| {
                        let n = st.next_node_port;
                        st.next_node_port += 1;
                        json!(n)
                    });
                    p["nodePort"] = port;
                }
            }
        }
    }
}

/// Handles PUT on the main resource, `/status` or a namespace's `/finalize`.
pub(crate) fn update(st: &mut State, t: &Target, mut obj: Value, ctx: &mut WriteCtx) -> ApiResult<Value> {
    check_type(t, &mut obj)?;
    check_name(t, &mut obj)?;
    check_namespace(t, &mut obj)?;
    let rt = &t.rt;
    let Some(old) = st.get(&rt.key(), &t.key()).cloned() else {
        return Err(ApiError::not_found(&rt.group_resource(), t.name()));
    };
    let given_rv = meta::resource_version(&obj).to_string();
    if given_rv.is_empty() {
        if rt.custom {
            return Err(invalid(t, &obj, vec![Cause::invalid("metadata.resourceVersion", &json!(0), "must be specified for an update")]));
        }
    } else if given_rv != meta::resource_version(&old) {
        return Err(ApiError::stale(&rt.group_resource(), t.name()));
    }
    finish_update(st, t, &old, obj, ctx, Ownership::Update)
}

/// Handles PATCH; returns the object and whether it was created (apply only).
pub(crate) fn patch(st: &mut State, t: &Target, kind: PatchKind, body: &[u8], ctx: &mut WriteCtx) -> ApiResult<(Value, bool)> {
    let rt = t.rt.clone();
    if kind == PatchKind::Apply {
        return apply(st, t, body, ctx);
    }
    if ctx.force {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::forbidden("force", "may not be specified for non-apply patch")],
        ));
    }
    if kind == PatchKind::Strategic && rt.custom {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let Some(old) = st.get(&rt.key(), &t.key()).cloned() else {
        return Err(ApiError::not_found(&rt.group_resource(), t.name()));
    };
    let mut target = old.clone();
    target["apiVersion"] = json!(t.api_version());
    match kind {
        PatchKind::Merge => patch::merge_patch(&mut target, body)?,
        PatchKind::Json => patch::json_patch(&mut target, body)?,
        PatchKind::Strategic => patch::strategic_merge_patch(&mut target, body, ty(t))?,
        PatchKind::Apply => {}
    }
    check_type(t, &mut target)?;
    check_name(t, &mut target)?;
    check_namespace(t, &mut target)?;
    if meta::resource_version(&target) != meta::resource_version(&old) {
        return Err(ApiError::stale(&rt.group_resource(), t.name()));
    }
    Ok((finish_update(st, t, &old, target, ctx, Ownership::Update)?, false))
}

fn apply(st: &mut State, t: &Target, body: &[u8], ctx: &mut WriteCtx) -> ApiResult<(Value, bool)> {
    let rt = t.rt.clone();
    if !ctx.explicit_manager {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::required("fieldManager", "is required for apply patch")],
        ));
    }
    let mut config: Value = serde_yaml_ng::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request("error decoding YAML: the applied configuration must be an object"));
    }
    for field in ["apiVersion", "kind"] {
        if config.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!("invalid object type: {field} must be set in an applied configuration")));
        }
    }
    check_type(t, &mut config)?;
    check_name(t, &mut config)?;
    check_namespace(t, &mut config)?;
    if config.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let live = st.get(&rt.key(), &t.key()).cloned();
    let given_rv = meta::resource_version(&config).to_string();
    if let Some(map) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        map.remove("resourceVersion");
        map.remove("managedFields");
    }
    if !given_rv.is_empty() && live.as_ref().is_none_or(|l| meta::resource_version(l) != given_rv) {
        return Err(ApiError::stale(&rt.group_resource(), t.name()));
    }
    restrict_to_endpoint(t, &mut config);
    if let Some(schema) = openapi_schema(t) {
        reject_unknown_fields(schema, &config, ctx)?;
        schema::prune(schema, &mut config);
    }
    let base = match &live {
        Some(l) => l.clone(),
        None if t.subresource.is_some() => {
            return Err(ApiError::not_found(&rt.group_resource(), t.name()));
        }
        None => {
            let mut base = json!({
                "apiVersion": t.api_version(),
                "kind": rt.kind,
                "metadata": {"name": t.name()},
            });
            if let Some(ns) = &t.namespace {
                base["metadata"]["namespace"] = json!(ns);
            }
            base
        }
    };
    let mut base_for_merge = base.clone();
    base_for_merge["apiVersion"] = json!(t.api_version());
    let who = identity(t, ctx, Operation::Apply);
    let entries = live.as_ref().map(managed::decode).unwrap_or_default();
    let applied =
        managed::apply(&base_for_merge, &config, entries, &who, ctx.force, Scope { ty: ty(t), reset: &reset_fields(t), now: &ctx.now })
            .map_err(|conflicts| {
                let causes =
                    conflicts.iter().map(|c| Cause::new("FieldManagerConflict", &c.path, format!("conflict with {}", c.manager))).collect();
                ApiError::apply_conflict(managed::conflict_message(&conflicts), causes)
            })?;
    match live {
        None => Ok((finish_create(st, t, applied.object, ctx, Ownership::Applied(applied.entries))?, true)),
        Some(old) => Ok((finish_update(st, t, &old, applied.object, ctx, Ownership::Applied(applied.entries))?, false)),
    }
}

/// Drops from an applied configuration what the endpoint may not write, so that the
/// applier neither changes nor owns it.
fn restrict_to_endpoint(t: &Target, config: &mut Value) {
    let Some(map) = config.as_object_mut() else {
        return;
    };
    if t.sub() == "status" {
        map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        if let Some(Value::Object(m)) = map.get_mut("metadata") {
            m.retain(|k, _| k == "name" || k == "namespace");
        }
    } else if t.rt.status_subresource {
        map.remove("status");
    }
}

/// The common tail of update, patch and apply.
fn finish_update(st: &mut State, t: &Target, old: &Value, mut new: Value, ctx: &mut WriteCtx, ownership: Ownership) -> ApiResult<Value> {
    let rt = t.rt.clone();
    if let Some(given) = meta::uid(&new)
        && Some(given) != meta::uid(old)
    {
        let uid = json!(given);
        return Err(invalid(t, old, vec![Cause::invalid("metadata.uid", &uid, "field is immutable")]));
    }
    new = isolate(t, old, new);
    let m = meta::metadata_mut(&mut new);
    for system in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "resourceVersion"] {
        match old.pointer(&format!("/metadata/{system}")) {
            Some(v) => m.insert(system.into(), v.clone()),
            None => m.remove(system),
        };
    }
    m.remove("selfLink");
    if meta::deletion_timestamp(old).is_some() {
        let before = meta::finalizers(old);
        let added: Vec<String> = meta::finalizers(&new).into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            return Err(invalid(
                t,
                old,
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        list.join(", ")
                    ),
                )],
            ));
        }
    }
    prepare_update(st, &rt, old, &mut new);
    let mut causes = meta::metadata_causes(&new);
    causes.extend(schema_pipeline(t, &mut new, Some(old), ctx)?);
    if rt.special == Special::Crd {
        causes.extend(crd::validate(&new));
    }
    if !causes.is_empty() {
        return Err(invalid(t, &new, causes));
    }
    let entries = match ownership {
        Ownership::Update => {
            // Clients that echo managedFields back unchanged, or send none, keep the
            // stored ones; a different non-empty list replaces them.
            let sent = managed::decode(&new);
            let base = if sent.is_empty() { managed::decode(old) } else { sent };
            managed::record_update(
                Some(old),
                &new,
                base,
                &identity(t, ctx, Operation::Update),
                Scope { ty: ty(t), reset: &reset_fields(t), now: &ctx.now },
            )
        }
        Ownership::Applied(entries) => entries,
    };
    managed::encode_into(&mut new, entries);
    let mut stored_view = old.clone();
    stored_view["apiVersion"] = new["apiVersion"].clone();
    if new == stored_view {
        return Ok(old.clone());
    }
    if rt.tracks_generation && generation_view(&rt, old) != generation_view(&rt, &new) {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        new["metadata"]["generation"] = json!(generation + 1);
    }
    if ctx.dry_run {
        return Ok(new);
    }
    Ok(commit(st, t, new))
}

/// Stores an updated object, or removes it when it was waiting only for its last finalizer.
pub(crate) fn commit(st: &mut State, t: &Target, new: Value) -> Value {
    let res = t.rt.key();
    let finished = meta::deletion_timestamp(&new).is_some()
        && meta::finalizers(&new).is_empty()
        && (t.rt.special != Special::Namespace || new.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty));
    if finished {
        let key = meta::obj_key(&new);
        return st.remove(&res, &key).unwrap_or(new);
    }
    let stored = st.put(&res, new);
    if t.rt.special == Special::Crd {
        return crd::after_write(st, &stored);
    }
    stored
}

/// Keeps what this endpoint may not change: non-status fields on `/status`, `.status`
/// on the main resource of kinds with a status subresource, and a namespace's
/// `spec.finalizers` outside `/finalize`.
fn isolate(t: &Target, old: &Value, new: Value) -> Value {
    let rt = &t.rt;
    match t.sub() {
        "status" => {
            let mut out = old.clone();
            out["apiVersion"] = new["apiVersion"].clone();
            if let Some(Value::Array(m)) = new.pointer("/metadata/managedFields") {
                out["metadata"]["managedFields"] = Value::Array(m.clone());
            }
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(map) = out.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            out
        }
        "finalize" => {
            let mut out = old.clone();
            out["spec"]["finalizers"] = new.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
            out
        }
        _ => {
            let mut out = new;
            if rt.status_subresource {
                match old.get("status") {
                    Some(s) => out["status"] = s.clone(),
                    None => {
                        if let Some(map) = out.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            if rt.special == Special::Namespace {
                out["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
            }
            out
        }
    }
}

fn prepare_update(st: &mut State, rt: &ResourceType, old: &Value, new: &mut Value) {
    match rt.special {
        Special::Namespace => {
            let name = meta::name(old).to_string();
            meta::set_in(new, &["metadata", "labels", "kubernetes.io/metadata.name"], json!(name));
        }
        Special::Service => allocate_service(st, new, Some(old)),
        _ => {}
    }
}
