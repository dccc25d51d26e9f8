//! HTTP: routing, verbs, body decoding, content negotiation, responses and request records.

use super::controllers;
use super::deletion::{self, DeleteOptions, Deleted};
use super::discovery;
use super::errors::{ApiError, ApiResult};
use super::kinds::Special;
use super::patch::PatchKind;
use super::present::{self, Format};
use super::reads::{self, Filter};
use super::request::{Params, Target, WriteCtx, percent_decode};
use super::store::State;
use super::watch;
use super::writes;
use super::{RequestRecord, Shared};
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// The largest request body the API server accepts (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// What a handler answers.
enum Reply {
    Json { status: u16, body: Value, format: Format, warnings: Vec<String> },
    Stream { body: Body, format: Format },
    Text(&'static str),
}

impl Reply {
    fn ok(body: Value, format: Format) -> Reply {
        Reply::Json { status: 200, body, format, warnings: Vec::new() }
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The entry point for every request.
pub(crate) async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let user_agent = header_text(&parts.headers, header::USER_AGENT);
    let user = authenticate(&shared, &parts.headers);
    let mut record = RequestRecord {
        verb: String::new(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        user: user.as_ref().ok().cloned().flatten().unwrap_or_default(),
        user_agent: user_agent.clone(),
        status: 0,
        created: false,
        path: parts.uri.path().to_string(),
    };
    let result = match user {
        Ok(_) => route(&shared, &parts.method, &parts.uri, &parts.headers, body, &user_agent, &mut record).await,
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(reply) => render(reply),
        Err(e) => json_response(e.code, &e.status(), Format::Json, &[]),
    };
    record.status = response.status().as_u16();
    // Only a create and a server-side apply of a missing object answer 201.
    record.created = record.status == 201 && !record.resource.is_empty();
    tracing::debug!(
        verb = %record.verb,
        path = %record.path,
        status = record.status,
        "fake apiserver request"
    );
    shared.record(record);
    shared.wake.notify_one();
    response
}

/// The user named by the request's bearer token: `Ok(None)` without credentials, 401
/// Unauthorized for a token this server did not issue (as a real server answers an
/// unknown token).
fn authenticate(shared: &Shared, headers: &HeaderMap) -> ApiResult<Option<String>> {
    let authorization = header_text(headers, header::AUTHORIZATION);
    if authorization.is_empty() {
        return Ok(None);
    }
    authorization.strip_prefix("Bearer ").and_then(|token| shared.user_of_token(token.trim())).map(Some).ok_or_else(ApiError::unauthorized)
}

fn render(reply: Reply) -> Response {
    match reply {
        Reply::Json { status, body, format, warnings } => json_response(status, &body, format, &warnings),
        Reply::Stream { body, format } => {
            let mut response = Response::new(body);
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            response
        }
        Reply::Text(text) => {
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
    }
}

fn json_response(status: u16, body: &Value, format: Format, warnings: &[String]) -> Response {
    let text = if format == Format::Yaml { serde_yaml_ng::to_string(body).unwrap_or_default() } else { body.to_string() };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            headers.append(header::WARNING, v);
        }
    }
    response
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
    user_agent: &str,
    record: &mut RequestRecord,
) -> ApiResult<Reply> {
    record.verb = method.as_str().to_lowercase();
    let segments = uri.path().split('/').filter(|s| !s.is_empty()).map(|s| percent_decode(s, false)).collect::<ApiResult<Vec<String>>>()?;
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let format = present::negotiate(&header_text(headers, header::ACCEPT))?;
    let params = Params::parse(uri.query())?;
    if *method == Method::GET {
        record.verb = "get".into();
        let st = shared.lock();
        let answer = match seg.as_slice() {
            ["version"] => Some(discovery::version()),
            ["healthz" | "livez" | "readyz"] => return Ok(Reply::Text("ok")),
            ["api"] if format == Format::Discovery => {
                return Ok(Reply::ok(discovery::aggregated(&st, true), Format::Discovery));
            }
            ["apis"] if format == Format::Discovery => {
                return Ok(Reply::ok(discovery::aggregated(&st, false), Format::Discovery));
            }
            ["api"] => Some(discovery::core_versions(&shared.addr.to_string())),
            ["apis"] => Some(discovery::group_list(&st)),
            ["api", "v1"] => discovery::resource_list(&st, "", "v1"),
            ["apis", group] => discovery::group(&st, group),
            ["apis", group, version] => discovery::resource_list(&st, group, version),
            _ => None,
        };
        if let Some(answer) = answer {
            return Ok(Reply::ok(answer, Format::Json));
        }
    }
    let (group, version, rest) = match seg.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Err(ApiError::no_such_route()),
    };
    let (target, legacy_watch) = resolve(&shared.lock(), group, version, rest)?;
    record.group = target.rt.group.clone();
    record.version = target.version.clone();
    record.resource = target.rt.plural.clone();
    record.subresource = target.sub().to_string();
    record.namespace = target.namespace.clone().unwrap_or_default();
    record.name = target.name().to_string();
    let verb = verb(method, &target, &params, legacy_watch)?;
    record.verb = verb.to_string();
    if matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection") {
        shared.count_mutation();
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large("the request body is too large: limit is 3145728 bytes"))?;
    let content_type = header_text(headers, header::CONTENT_TYPE);
    serve(shared, verb, &target, &params, &bytes, &content_type, user_agent, format)
}

/// Resolves the part after `/api/v1` or `/apis/{group}/{version}`.
fn resolve(st: &State, group: &str, version: &str, rest: &[&str]) -> ApiResult<(Target, bool)> {
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        other => (false, other),
    };
    let namespaced_path = rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, tail) = if namespaced_path { (Some(rest[1].to_string()), &rest[2..]) } else { (None, rest) };
    let (plural, name, sub) = match tail {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_such_route()),
    };
    let rt = st.find_type(group, version, plural).ok_or_else(ApiError::no_such_route)?;
    if namespace.is_some() && !rt.namespaced {
        return Err(ApiError::no_such_route());
    }
    if namespace.is_none() && rt.namespaced && name.is_some() {
        return Err(ApiError::no_such_route());
    }
    if let Some(sub) = &sub
        && !rt.subresources().iter().any(|(s, _)| s == sub)
    {
        return Err(ApiError::no_such_route());
    }
    Ok((Target { rt, version: version.to_string(), namespace, name, subresource: sub }, legacy_watch))
}

fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

/// The Kubernetes authorization verb of a request.
fn verb(method: &Method, t: &Target, params: &Params, legacy_watch: bool) -> ApiResult<&'static str> {
    let collection = t.name.is_none();
    let all_namespaces = collection && t.rt.namespaced && t.namespace.is_none();
    let sub_allows = |verb: &str| match &t.subresource {
        None => true,
        Some(sub) => t.rt.subresources().iter().any(|(s, verbs)| s == sub && verbs.contains(&verb)),
    };
    let verb = match *method {
        Method::GET if collection && (legacy_watch || params.flag("watch")?) => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST if collection && !all_namespaces => "create",
        Method::PUT if !collection => "update",
        Method::PATCH if !collection => "patch",
        Method::DELETE if !collection => "delete",
        Method::DELETE if collection && !all_namespaces && t.rt.verbs().contains(&"deletecollection") => "deletecollection",
        _ => return Err(not_allowed()),
    };
    if !sub_allows(verb) {
        return Err(not_allowed());
    }
    Ok(verb)
}

fn decode_body(bytes: &[u8], content_type: &str) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))
        }
        "application/yaml" => {
            serde_yaml_ng::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
        }
        _ => Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    shared: &Arc<Shared>,
    verb: &str,
    t: &Target,
    params: &Params,
    body: &[u8],
    content_type: &str,
    user_agent: &str,
    format: Format,
) -> ApiResult<Reply> {
    let written = |status: u16, obj: &Value, ctx: WriteCtx| Reply::Json {
        status,
        body: present::object_as(format, reads::present(t, obj)),
        format,
        warnings: ctx.warnings,
    };
    match verb {
        "get" => {
            let obj = reads::get(&shared.lock(), t)?;
            Ok(Reply::ok(present::object_as(format, obj), format))
        }
        "list" => {
            let list = reads::list(&shared.lock(), t, params)?;
            Ok(Reply::ok(present::list_as(format, list), format))
        }
        "watch" => {
            if !matches!(format, Format::Json | Format::Metadata) {
                return Err(ApiError::not_acceptable(
                    "only application/json and application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1 are served for watches",
                ));
            }
            Ok(Reply::Stream { body: watch::start(shared, t, params, format)?, format })
        }
        "create" => {
            let mut ctx = WriteCtx::from_request(params, user_agent)?;
            let obj = decode_body(body, content_type)?;
            let created = writes::create(&mut shared.lock(), t, obj, &mut ctx)?;
            Ok(written(201, &created, ctx))
        }
        "update" => {
            let mut ctx = WriteCtx::from_request(params, user_agent)?;
            let obj = decode_body(body, content_type)?;
            let updated = writes::update(&mut shared.lock(), t, obj, &mut ctx)?;
            Ok(written(200, &updated, ctx))
        }
        "patch" => {
            let mut ctx = WriteCtx::from_request(params, user_agent)?;
            let kind = PatchKind::from_content_type(content_type).ok_or_else(|| {
                ApiError::unsupported_media_type(if t.rt.custom {
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                } else {
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                })
            })?;
            let (obj, created) = writes::patch(&mut shared.lock(), t, kind, body, &mut ctx)?;
            Ok(written(if created { 201 } else { 200 }, &obj, ctx))
        }
        "delete" => {
            let opts = DeleteOptions::parse(body, params)?;
            let mut st = shared.lock();
            match deletion::delete(&mut st, &t.rt, &t.key(), &opts)? {
                Deleted::Gone(obj) => {
                    if t.rt.special == Special::Crd && !opts.dry_run {
                        controllers::after_crd_removal(&mut st, &obj);
                    }
                    Ok(Reply::ok(deletion::gone_body(&t.rt, &reads::present(t, &obj)), Format::Json))
                }
                Deleted::Pending(obj) => Ok(Reply::ok(reads::present(t, &obj), Format::Json)),
            }
        }
        "deletecollection" => {
            let opts = DeleteOptions::parse(body, params)?;
            let filter = Filter::parse(t, params)?;
            let mut st = shared.lock();
            let keys: Vec<(String, String)> = st
                .tables
                .get(&t.rt.key())
                .map(|table| table.objects.iter().filter(|(_, o)| filter.matches(o)).map(|(k, _)| k.clone()).collect())
                .unwrap_or_default();
            let mut items = Vec::new();
            for key in keys {
                match deletion::delete(&mut st, &t.rt, &key, &opts) {
                    Ok(Deleted::Gone(obj)) => {
                        if t.rt.special == Special::Crd && !opts.dry_run {
                            controllers::after_crd_removal(&mut st, &obj);
                        }
                        items.push(reads::present(t, &obj));
                    }
                    Ok(Deleted::Pending(obj)) => items.push(reads::present(t, &obj)),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let metadata = json!({"resourceVersion": st.rv.to_string()});
            Ok(Reply::ok(reads::list_body(&t.rt, &t.api_version(), metadata, items), Format::Json))
        }
        _ => Err(not_allowed()),
    }
}
