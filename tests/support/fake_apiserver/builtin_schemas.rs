//! Partial schemas of built-in kinds: only the parts whose merge behaviour differs from
//! "objects merge field by field, lists are replaced whole", that is the associative
//! lists (`x-kubernetes-list-type`), string maps, atomic structs and the
//! strategic-merge-patch keys of the upstream types.

use serde_json::{Value, json};

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn keyed(keys: &[&str], patch_key: Option<&str>, item: Value) -> Value {
    let mut list = json!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": keys,
    });
    if let Some(key) = patch_key {
        list["x-kubernetes-patch-strategy"] = json!("merge");
        list["x-kubernetes-patch-merge-key"] = json!(key);
    }
    list
}

fn conditions() -> Value {
    keyed(&["type"], Some("type"), json!({"type": "object"}))
}

fn atomic_object() -> Value {
    json!({"type": "object", "x-kubernetes-map-type": "atomic"})
}

/// `metav1.ObjectMeta`, shared by every kind including custom resources.
pub(crate) fn object_meta() -> Value {
    json!({
        "type": "object",
        "properties": {
            "labels": string_map(),
            "annotations": string_map(),
            "finalizers": {
                "type": "array",
                "items": {"type": "string"},
                "x-kubernetes-list-type": "set",
                "x-kubernetes-patch-strategy": "merge",
            },
            "ownerReferences": keyed(&["uid"], Some("uid"), json!({"type": "object"})),
        }
    })
}

fn container() -> Value {
    json!({
        "type": "object",
        "properties": {
            "ports": keyed(
                &["containerPort", "protocol"],
                Some("containerPort"),
                json!({"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}),
            ),
            "env": keyed(&["name"], Some("name"), json!({"type": "object"})),
            "volumeMounts": keyed(&["mountPath"], Some("mountPath"), json!({"type": "object"})),
            "volumeDevices": keyed(&["devicePath"], Some("devicePath"), json!({"type": "object"})),
            "resources": {
                "type": "object",
                "properties": {"limits": string_map(), "requests": string_map()}
            },
        }
    })
}

fn pod_spec() -> Value {
    json!({
        "type": "object",
        "properties": {
            "containers": keyed(&["name"], Some("name"), container()),
            "initContainers": keyed(&["name"], Some("name"), container()),
            "ephemeralContainers": keyed(&["name"], Some("name"), container()),
            "volumes": keyed(&["name"], Some("name"), json!({"type": "object"})),
            "imagePullSecrets": keyed(&["name"], Some("name"), json!({"type": "object"})),
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "atomic"},
            "hostAliases": keyed(&["ip"], Some("ip"), json!({"type": "object"})),
        }
    })
}

fn pod_template() -> Value {
    json!({"type": "object", "properties": {"metadata": object_meta(), "spec": pod_spec()}})
}

fn with_meta(mut schema: Value) -> Value {
    schema["properties"]["metadata"] = object_meta();
    schema["properties"]["apiVersion"] = json!({"type": "string"});
    schema["properties"]["kind"] = json!({"type": "string"});
    schema
}

/// The hint schema of a built-in kind.
pub(crate) fn for_kind(group: &str, kind: &str) -> Value {
    let body = match (group, kind) {
        ("", "ConfigMap") => json!({"properties": {"data": string_map(), "binaryData": string_map()}}),
        ("", "Secret") => json!({"properties": {"data": string_map(), "stringData": string_map()}}),
        ("", "Namespace") => json!({"properties": {"status": {"properties": {"conditions": conditions()}}}}),
        ("", "Service") => json!({"properties": {
            "spec": {"properties": {
                "ports": keyed(
                    &["port", "protocol"],
                    Some("port"),
                    json!({"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}),
                ),
                "selector": {"type": "object", "additionalProperties": {"type": "string"}, "x-kubernetes-map-type": "atomic"},
            }},
            "status": {"properties": {"conditions": conditions()}},
        }}),
        ("", "Pod") => json!({"properties": {
            "spec": pod_spec(),
            "status": {"properties": {"conditions": conditions()}},
        }}),
        ("apps", "Deployment") | ("apps", "StatefulSet") => json!({"properties": {
            "spec": {"properties": {"selector": atomic_object(), "template": pod_template()}},
            "status": {"properties": {"conditions": conditions()}},
        }}),
        ("policy", "PodDisruptionBudget") => json!({"properties": {
            "spec": {"properties": {"selector": atomic_object()}},
            "status": {"properties": {"conditions": conditions()}},
        }}),
        ("networking.k8s.io", "Ingress") => json!({"properties": {
            "status": {"properties": {"loadBalancer": {"properties": {}}}},
        }}),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => json!({"properties": {
            "status": {"properties": {"conditions": conditions()}},
        }}),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => json!({"properties": {
            "webhooks": keyed(&["name"], Some("name"), json!({"type": "object", "properties": {
                "namespaceSelector": atomic_object(),
                "objectSelector": atomic_object(),
            }})),
        }}),
        _ => json!({"properties": {}}),
    };
    let mut schema = json!({"type": "object"});
    if let Some(props) = body.get("properties") {
        schema["properties"] = props.clone();
    }
    with_meta(schema)
}

/// The schema server-side apply uses for a custom resource version: the CRD's schema with
/// `metadata` replaced by `ObjectMeta`, as the API server does.
pub(crate) fn for_custom(schema: Option<&Value>) -> Value {
    let mut root = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
    if root.get("properties").is_none() {
        root["properties"] = json!({});
    }
    with_meta(root)
}
