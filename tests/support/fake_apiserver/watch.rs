//! `?watch=true`: newline-delimited JSON events, resumption from history, bookmarks,
//! streaming initial events, selector filtering and the 410 of an expired resourceVersion.

use super::Shared;
use super::errors::{ApiError, ApiResult, Cause};
use super::present::{Format, partial};
use super::reads::{Filter, present};
use super::request::{Params, Target};
use super::store::{Event, EventType};
use axum::body::{Body, Bytes};
use futures::channel::mpsc as body_channel;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// The watch length when the client names none (the API server picks 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

type Line = Result<Bytes, Infallible>;

/// Renders events for one watch.
struct Renderer {
    target: Target,
    filter: Filter,
    format: Format,
}

impl Renderer {
    fn object(&self, obj: &Value) -> Value {
        let full = present(&self.target, obj);
        if self.format == Format::Metadata { partial(&full) } else { full }
    }

    fn line(kind: &str, object: Value) -> Bytes {
        let mut text = json!({"type": kind, "object": object}).to_string();
        text.push('\n');
        Bytes::from(text)
    }

    /// The event this watch sees, if any: objects entering the selection are ADDED,
    /// leaving it DELETED (with the previous content at the new resourceVersion).
    fn render(&self, ev: &Event) -> Option<Bytes> {
        let now = self.filter.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let (kind, obj) = match (ev.kind, before, now) {
            (EventType::Added, _, true) => (EventType::Added, (*ev.object).clone()),
            (EventType::Deleted, _, true) => (EventType::Deleted, (*ev.object).clone()),
            (EventType::Modified, true, true) => (EventType::Modified, (*ev.object).clone()),
            (EventType::Modified, false, true) => (EventType::Added, (*ev.object).clone()),
            (EventType::Modified, true, false) => {
                let mut prev = ev.prev.as_deref().cloned().unwrap_or(Value::Null);
                prev["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                (EventType::Deleted, prev)
            }
            _ => return None,
        };
        Some(Self::line(kind.as_str(), self.object(&obj)))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = if self.format == Format::Metadata {
            ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string())
        } else {
            (self.target.rt.kind.clone(), self.target.api_version())
        };
        Self::line("BOOKMARK", json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}))
    }
}

fn list_options_invalid(causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("meta.k8s.io", "ListOptions", "", causes)
}

/// Starts a watch; the body streams until the timeout, the client leaves, the type is
/// removed or the server shuts down.
pub(crate) fn start(shared: &Arc<Shared>, t: &Target, params: &Params, format: Format) -> ApiResult<Body> {
    let filter = Filter::parse(t, params)?;
    let bookmarks = params.flag("allowWatchBookmarks")?;
    let send_initial = params.flag("sendInitialEvents")?;
    let rv_param = params.get("resourceVersion").map(str::to_string);
    if send_initial {
        let mut causes = Vec::new();
        if params.get("resourceVersionMatch") != Some("NotOlderThan") {
            causes
                .push(Cause::forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
        }
        if !bookmarks {
            causes.push(Cause::required("allowWatchBookmarks", "sendInitialEvents requires setting allowWatchBookmarks to true"));
        }
        if !causes.is_empty() {
            return Err(list_options_invalid(causes));
        }
    }
    let requested: Option<u64> = match rv_param.as_deref() {
        None | Some("0") => None,
        Some(rv) => {
            Some(rv.parse().map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: {rv:?}: must be a number")))?)
        }
    };
    let timeout =
        params.number("timeoutSeconds")?.filter(|s| *s > 0).map(|s| Duration::from_secs((s as u64).min(86_400))).unwrap_or(DEFAULT_TIMEOUT);
    let renderer = Renderer { target: t.clone(), filter, format };
    let (out, body) = body_channel::unbounded::<Line>();
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    {
        let mut st = shared.lock();
        let current = st.rv;
        let Some(table) = st.tables.get_mut(&t.rt.key()) else {
            return Err(ApiError::no_such_route());
        };
        match requested {
            Some(rv) if !send_initial && rv < table.floor => {
                let gone = ApiError::expired(format!("too old resource version: {rv} ({})", table.floor + 1));
                let _ = out.unbounded_send(Ok(Renderer::line("ERROR", gone.status())));
                return Ok(Body::from_stream(body));
            }
            Some(rv) if !send_initial => {
                for ev in table.history.iter().filter(|e| e.rv > rv) {
                    if let Some(line) = renderer.render(ev) {
                        let _ = out.unbounded_send(Ok(line));
                    }
                }
            }
            _ => {
                for obj in table.objects.values().filter(|o| renderer.filter.matches(o)) {
                    let _ = out.unbounded_send(Ok(Renderer::line("ADDED", renderer.object(obj))));
                }
                if send_initial {
                    let _ = out.unbounded_send(Ok(renderer.bookmark(current, true)));
                }
            }
        }
        table.watchers.push(tx);
    }
    tokio::spawn(pump(shared.clone(), renderer, rx, out, bookmarks, timeout));
    Ok(Body::from_stream(body))
}

async fn pump(
    shared: Arc<Shared>,
    renderer: Renderer,
    mut rx: mpsc::UnboundedReceiver<Event>,
    out: body_channel::UnboundedSender<Line>,
    bookmarks: bool,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
    tick.tick().await;
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if let Some(line) = renderer.render(&ev)
                    && out.unbounded_send(Ok(line)).is_err()
                {
                    break;
                }
            }
            _ = tick.tick() => {
                if out.is_closed() {
                    break;
                }
                if bookmarks {
                    // Everything committed up to `rv` is already queued, so the bookmark
                    // goes after draining the queue.
                    let rv = shared.lock().rv;
                    while let Ok(ev) = rx.try_recv() {
                        if let Some(line) = renderer.render(&ev) {
                            let _ = out.unbounded_send(Ok(line));
                        }
                    }
                    if out.unbounded_send(Ok(renderer.bookmark(rv, false))).is_err() {
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
    }
}
