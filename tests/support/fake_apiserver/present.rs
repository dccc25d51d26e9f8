//! Content negotiation and the response shapes: full objects, YAML,
//! `PartialObjectMetadata(List)` and `Table`.

use super::errors::{ApiError, ApiResult};
use serde_json::{Value, json};

/// What the client accepts, first acceptable alternative of the Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Yaml,
    Metadata,
    Table,
    /// Aggregated discovery (`apidiscovery.k8s.io/v2`).
    Discovery,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Yaml => "application/yaml",
            Format::Metadata => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            Format::Table => "application/json;as=Table;g=meta.k8s.io;v=v1",
            Format::Discovery => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        }
    }
}

/// Picks the first media range of the Accept header the server can produce.
pub(crate) fn negotiate(accept: &str) -> ApiResult<Format> {
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let mut as_kind = None;
        let mut group = None;
        let mut version = None;
        for p in parts {
            match p.split_once('=') {
                Some(("as", v)) => as_kind = Some(v),
                Some(("g", v)) => group = Some(v),
                Some(("v", v)) => version = Some(v),
                _ => {}
            }
        }
        let format = match (media, as_kind, group, version) {
            ("application/json" | "*/*" | "application/*", None, _, _) => Some(Format::Json),
            ("application/yaml", None, _, _) => Some(Format::Yaml),
            ("application/json", Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1")) => {
                Some(Format::Metadata)
            }
            ("application/json", Some("Table"), Some("meta.k8s.io"), Some("v1")) => Some(Format::Table),
            ("application/json", Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => Some(Format::Discovery),
            _ => None,
        };
        if let Some(f) = format {
            return Ok(f);
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json;as=Table;g=meta.k8s.io;v=v1",
    ))
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn table_columns() -> Value {
    json!([
        {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0},
        {"name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "priority": 0},
    ])
}

fn table_row(obj: &Value) -> Value {
    json!({
        "cells": [
            obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
        ],
        "object": partial(obj),
    })
}

/// A single object in the negotiated shape.
pub(crate) fn object_as(format: Format, obj: Value) -> Value {
    match format {
        Format::Metadata => partial(&obj),
        Format::Table => json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)},
            "columnDefinitions": table_columns(),
            "rows": [table_row(&obj)],
        }),
        _ => obj,
    }
}

/// A list in the negotiated shape.
pub(crate) fn list_as(format: Format, list: Value) -> Value {
    let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let meta = list.get("metadata").cloned().unwrap_or_else(|| json!({}));
    match format {
        Format::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        Format::Table => json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "columnDefinitions": table_columns(),
            "rows": items.iter().map(table_row).collect::<Vec<_>>(),
        }),
        _ => list,
    }
}
