//! Defaulting and the few validations of built-in kinds that operators commonly trip over.

use super::errors::Cause;
use super::kinds::{ResourceType, Special};
use super::meta;
use serde_json::{Map, Value, json};

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        map.entry(key.to_string()).or_insert(value);
    }
}

fn each_item(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe_defaults(probe: &mut Value) {
    set_default(probe, "timeoutSeconds", json!(1));
    set_default(probe, "periodSeconds", json!(10));
    set_default(probe, "successThreshold", json!(1));
    set_default(probe, "failureThreshold", json!(3));
    if let Some(http) = probe.get_mut("httpGet") {
        set_default(http, "scheme", json!("HTTP"));
    }
}

fn container_defaults(c: &mut Value) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "resources", json!({}));
    each_item(c, "ports", |p| set_default(p, "protocol", json!("TCP")));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            probe_defaults(p);
        }
    }
    each_item(c, "env", |e| {
        if let Some(field_ref) = e.pointer_mut("/valueFrom/fieldRef") {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    });
}

fn pod_spec_defaults(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    each_item(spec, "containers", container_defaults);
    each_item(spec, "initContainers", container_defaults);
    each_item(spec, "volumes", |v| {
        for source in ["configMap", "secret"] {
            if let Some(s) = v.get_mut(source) {
                set_default(s, "defaultMode", json!(420));
            }
        }
    });
}

fn template_defaults(spec: &mut Value) {
    if let Some(pod_spec) = spec.pointer_mut("/template/spec") {
        pod_spec_defaults(pod_spec);
    }
}

fn deployment_defaults(spec: &mut Value) {
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(spec, "strategy", json!({}));
    if let Some(strategy) = spec.get_mut("strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy.get_mut("rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    template_defaults(spec);
}

fn statefulset_defaults(spec: &mut Value) {
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
    set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    template_defaults(spec);
}

fn service_defaults(spec: &mut Value) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    each_item(spec, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set_default(p, "targetPort", port);
        }
    });
}

fn webhook_defaults(obj: &mut Value, mutating: bool) {
    each_item(obj, "webhooks", |w| {
        set_default(w, "failurePolicy", json!("Fail"));
        set_default(w, "matchPolicy", json!("Equivalent"));
        set_default(w, "namespaceSelector", json!({}));
        set_default(w, "objectSelector", json!({}));
        set_default(w, "timeoutSeconds", json!(10));
        if mutating {
            set_default(w, "reinvocationPolicy", json!("Never"));
        }
        each_item(w, "rules", |r| set_default(r, "scope", json!("*")));
        if let Some(service) = w.pointer_mut("/clientConfig/service") {
            set_default(service, "port", json!(443));
        }
    });
}

/// Moves Secret `stringData` into base64 `data`, as the API server does on every write.
fn secret_string_data(obj: &mut Value) {
    set_default(obj, "type", json!("Opaque"));
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = Value::Object(Map::new());
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or("").to_string();
        obj["data"][k] = json!(meta::base64_encode(text.as_bytes()));
    }
}

/// Applies the defaults of built-in kinds.
pub(crate) fn apply(rt: &ResourceType, obj: &mut Value) {
    let spec = obj.get_mut("spec").filter(|s| s.is_object());
    match (rt.special, spec) {
        (Special::Deployment, Some(spec)) => deployment_defaults(spec),
        (Special::StatefulSet, Some(spec)) => statefulset_defaults(spec),
        (Special::Pod, Some(spec)) => pod_spec_defaults(spec),
        (Special::Service, Some(spec)) => service_defaults(spec),
        _ => {}
    }
    match rt.special {
        Special::Secret => secret_string_data(obj),
        Special::Webhook => webhook_defaults(obj, rt.kind.starts_with("Mutating")),
        _ => {}
    }
}

/// Validations of built-in specs beyond metadata.
pub(crate) fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    if matches!(rt.special, Special::Deployment | Special::StatefulSet) {
        let selector = obj.pointer("/spec/selector");
        match selector {
            None => causes.push(Cause::required("spec.selector", "")),
            Some(sel) => {
                let template_labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
                let wanted = sel.get("matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
                let empty = wanted.is_empty() && sel.get("matchExpressions").and_then(Value::as_array).is_none_or(Vec::is_empty);
                if empty {
                    causes.push(Cause::invalid("spec.selector", &json!("{}"), "empty selector is invalid for deployment"));
                } else if wanted.iter().any(|(k, v)| template_labels.get(k) != Some(v)) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(template_labels),
                        "`selector` does not match template `labels`",
                    ));
                }
                if let Some(old_sel) = old.and_then(|o| o.pointer("/spec/selector"))
                    && old_sel != sel
                {
                    causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
                }
            }
        }
    }
    if rt.special == Special::Secret
        && let (Some(old), Some(new_type)) = (old, obj.get("type"))
        && old.get("type").is_some_and(|t| t != new_type)
    {
        causes.push(Cause::invalid("type", new_type, "field is immutable"));
    }
    causes
}
