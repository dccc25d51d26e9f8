//! Object metadata: accessors, timestamps, uids, and the API server's name and label rules.

use super::errors::Cause;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::LazyLock;

pub(crate) fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn namespace(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid").and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(crate) fn resource_version(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn deletion_timestamp(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/deletionTimestamp").and_then(Value::as_str)
}

pub(crate) fn obj_key(obj: &Value) -> (String, String) {
    (namespace(obj).to_string(), name(obj).to_string())
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Sets `metadata.finalizers`, dropping the field when the list is empty as the API server does.
pub(crate) fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if finalizers.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".to_string(), json!(finalizers));
        }
    }
}

pub(crate) fn owner_references(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default()
}

pub(crate) fn labels(obj: &Value) -> serde_json::Map<String, Value> {
    obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Makes sure `obj.metadata` is an object and returns it.
pub(crate) fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(meta) => meta,
        None => unreachable!("metadata was just made an object"),
    }
}

/// RFC 3339 with seconds, as `metav1.Time` serialises.
pub(crate) fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random version 4 UUID.
pub(crate) fn new_uid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let mut b = bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The five random characters the API server appends to `generateName`.
pub(crate) fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// `generateName` plus a suffix, the prefix cut so that the result stays within 63 characters.
pub(crate) fn generate_name(prefix: &str) -> String {
    let cut: String = prefix.chars().take(58).collect();
    format!("{cut}{}", generated_suffix())
}

static DNS1123_LABEL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
static DNS1123_SUBDOMAIN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid regex"));
static DNS1035_LABEL: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
static QUALIFIED_NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid regex"));
static LABEL_VALUE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("valid regex"));

/// Which rule a kind applies to `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

/// The messages of `IsDNS1123Subdomain`, `IsDNS1123Label` and `IsDNS1035Label`.
pub(crate) fn name_problems(name: &str, rule: NameRule) -> Vec<String> {
    let mut out = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                out.push("must be no more than 253 characters".to_string());
            }
            if !DNS1123_SUBDOMAIN.is_match(name) {
                out.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !DNS1123_LABEL.is_match(name) {
                out.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string());
            }
        }
        NameRule::Dns1035 => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !DNS1035_LABEL.is_match(name) {
                out.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
            }
        }
    }
    out
}

/// `IsQualifiedName`: an optional DNS subdomain prefix and a name part.
fn qualified_name_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match value.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(name_problems(prefix, NameRule::Subdomain).into_iter().map(|m| format!("prefix part {m}")));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !QUALIFIED_NAME.is_match(name) {
            out.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
        }
    }
    out
}

/// Validates labels, annotations keys and owner references as `ValidateObjectMeta` does.
pub(crate) fn metadata_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (key, value) in labels(obj) {
        let field = "metadata.labels";
        for problem in qualified_name_problems(&key) {
            causes.push(Cause::invalid(field, &json!(key), &problem));
        }
        let text = value.as_str().unwrap_or("");
        if text.len() > 63 {
            causes.push(Cause::invalid(field, &value, "must be no more than 63 characters"));
        }
        if !LABEL_VALUE.is_match(text) {
            causes.push(Cause::invalid(field, &value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
    }
    if let Some(annotations) = obj.pointer("/metadata/annotations").and_then(Value::as_object) {
        for key in annotations.keys() {
            for problem in qualified_name_problems(key) {
                causes.push(Cause::invalid("metadata.annotations", &json!(key), &problem));
            }
        }
    }
    let mut controllers = 0;
    for (i, owner) in owner_references(obj).iter().enumerate() {
        let field = format!("metadata.ownerReferences[{i}]");
        for part in ["apiVersion", "kind", "name", "uid"] {
            if owner.get(part).and_then(Value::as_str).is_none_or(str::is_empty) {
                let detail = match part {
                    "uid" => "uid must not be empty",
                    "name" => "name must not be empty",
                    "kind" => "kind must not be empty",
                    _ => "version must not be empty",
                };
                causes.push(Cause::invalid(&format!("{field}.{part}"), &json!(""), detail));
            }
        }
        if owner.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        causes.push(Cause::invalid(
            "metadata.ownerReferences",
            &Value::Array(owner_references(obj)),
            "Only one reference can have Controller set to true",
        ));
    }
    causes
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Secret `data` and continue tokens use.
pub(crate) fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; `None` on malformed input.
pub(crate) fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let text = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Drops `null` metadata fields and rejects fields of the wrong JSON type, as decoding
/// into `ObjectMeta` does (with a 400 naming the field).
pub(crate) fn normalize(obj: &mut Value) -> Result<(), String> {
    let Some(meta) = obj.get_mut("metadata") else {
        return Ok(());
    };
    if meta.is_null() {
        *meta = json!({});
    }
    let Some(map) = meta.as_object_mut() else {
        return Err(format!("json: cannot unmarshal {} into Go struct field of type v1.ObjectMeta", json_type(meta)));
    };
    map.retain(|_, v| !v.is_null());
    let mismatch = |field: &str, v: &Value, want: &str| {
        format!("json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type {want}", json_type(v))
    };
    for (field, value) in map.iter() {
        let ok = match field.as_str() {
            "name" | "namespace" | "generateName" | "uid" | "resourceVersion" | "creationTimestamp" | "deletionTimestamp" | "selfLink" => {
                value.is_string()
            }
            "generation" | "deletionGracePeriodSeconds" => value.is_i64(),
            "labels" | "annotations" => value.as_object().is_some_and(|m| m.values().all(Value::is_string)),
            "finalizers" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "ownerReferences" | "managedFields" => value.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
            _ => true,
        };
        if !ok {
            let want = match field.as_str() {
                "generation" | "deletionGracePeriodSeconds" => "int64",
                "labels" | "annotations" => "map[string]string",
                "finalizers" => "[]string",
                "ownerReferences" => "[]v1.OwnerReference",
                "managedFields" => "[]v1.ManagedFieldsEntry",
                _ => "string",
            };
            return Err(mismatch(field, value, want));
        }
    }
    Ok(())
}

/// Sets a nested field, turning anything in the way into an object.
pub(crate) fn set_in(obj: &mut Value, path: &[&str], value: Value) {
    let mut current = obj;
    for key in path {
        if !current.is_object() {
            *current = json!({});
        }
        current = &mut current[*key];
    }
    *current = value;
}
