//! Validation of custom resources against a CustomResourceDefinition's
//! `openAPIV3Schema`, and acceptance checks for CustomResourceDefinitions.
//!
//! The behaviour and the error wording follow kube-apiserver: the
//! apiextensions-apiserver request pipeline (strict decoding, pruning, null
//! pruning, defaulting, object metadata validation, schema validation with
//! ratcheting, embedded resource checks, list-type checks and CEL rules), the
//! kube-openapi schema validator and apimachinery's `field.Error` rendering.
//! CEL rules are evaluated with `kube::core::cel::Validator`.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use kube::core::cel::{CompilationError, ErrorKind as CelErrorKind, Validator as CelValidator, compile_schema};
use regex::Regex;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------

/// One field-specific problem, shaped like the API server's `field.Error`.
///
/// `path` is the field path the API server reports (`spec.queues[2]`,
/// `<nil>` for the object itself) and `message` is the error body the API
/// server puts in a `StatusCause` message (`Invalid value: "XX": ...`,
/// `Required value`, `Too long: may not be more than 5 bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path of the offending field.
    pub path: String,
    /// The category of the problem.
    pub kind: FieldErrorKind,
    /// The error body, without the path.
    pub message: String,
}

/// The categories of `field.Error` the validator produces.
///
/// The API server's `FieldValueTypeInvalid` and `FieldValueDuplicate` errors are
/// reported as [`FieldErrorKind::Invalid`]; their messages keep the API
/// server's wording (`Invalid value: ...`, `Duplicate value: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing (`FieldValueRequired`).
    Required,
    /// A value is malformed, out of range, of the wrong type or duplicated.
    Invalid,
    /// A value is not one of the enumerated values (`FieldValueNotSupported`).
    NotSupported,
    /// A string is longer than allowed (`FieldValueTooLong`).
    TooLong,
    /// A list or map has too many items (`FieldValueTooMany`).
    TooMany,
    /// A field the schema does not declare; the API server's strict field
    /// validation rejects the request with `strict decoding error: <message>`.
    Unknown,
    /// A field that may not be set (`FieldValueForbidden`).
    Forbidden,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Validate `obj` (a whole object: apiVersion, kind, metadata, spec, status ...)
/// against the version's `openAPIV3Schema`, like the API server on create
/// (`old` is `None`) or update (`old` is `Some`).
///
/// The object goes through the API server's request pipeline on a copy:
/// unknown fields are reported first (kind [`FieldErrorKind::Unknown`], the
/// strict field validation that stops a request at decoding; callers that
/// want `Warn` or `Ignore` filter those out), then the copy is pruned,
/// non-nullable nulls are dropped and defaults are applied, and the result is
/// validated: object metadata, the OpenAPI schema (ratcheting unchanged
/// fields on update), embedded resources, `x-kubernetes-list-type` sets and
/// maps, and finally the `x-kubernetes-validations` CEL rules, which are
/// skipped with the API server's notice when a type, required, enum or size
/// violation was found.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut issues: Vec<Issue> = unknown_field_paths(schema, obj).iter().map(|p| unknown_field(p)).collect();
    let new = decoded(schema, obj);
    let old = old.map(|o| decoded(schema, o));
    issues.extend(validate_decoded(schema, &new, old.as_ref()));
    issues.into_iter().map(|i| i.error).collect()
}

/// Remove every field the schema does not declare, like the API server's
/// pruning when it decodes a request: `apiVersion`, `kind` and `metadata` are
/// kept at the root and in `x-kubernetes-embedded-resource` objects, subtrees
/// under `x-kubernetes-preserve-unknown-fields` keep unknown fields, `null`
/// values of non-nullable fields without a default are dropped, and
/// `metadata` keeps only the fields of `ObjectMeta`.
pub fn prune(schema: &Value, obj: &mut Value) {
    prune_node(obj, Some(schema), "", true, &mut None);
    prune_nulls(obj, Some(schema));
}

/// Apply `default` values from the schema, like the API server's structural
/// defaulting: a default applies where the field is absent, or is `null` while
/// the field is not nullable; a defaulted object then gets its own
/// properties' defaults; map values and list items are defaulted too.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_node(obj, Some(schema));
}

/// Check that an `openAPIV3Schema` is structural and otherwise acceptable to
/// the API server: the generic schema rules of CRD validation, the structural
/// schema rules ("Specifying a structural schema"), defaults (pruned,
/// valid against the schema and its CEL rules) and `x-kubernetes-validations`
/// (well-formed and compiling). Each problem is reported with its schema
/// path, rooted at `openAPIV3Schema`; empty means accepted.
pub fn check_structural(schema: &Value) -> Vec<String> {
    check_schema(schema, "openAPIV3Schema", false).into_iter().map(|i| i.error.to_string()).collect()
}

/// Check a whole `apiextensions.k8s.io/v1` CustomResourceDefinition (as JSON)
/// the way the API server validates one on create: metadata name, group,
/// names, scope, versions (exactly one storage version), every version's
/// schema (see [`check_structural`]), subresources, additional printer
/// columns, selectable fields and conversion. Paths are the API server's:
/// identical per-version schemas, subresources and columns are reported
/// under `spec.validation`, `spec.subresources` and
/// `spec.additionalPrinterColumns`. Two checks go beyond the API server (it
/// accepts both): printer column JSON paths must name fields the schema
/// declares, and a status subresource requires a `status` property. Empty
/// means accepted.
pub fn check_crd(crd: &Value) -> Vec<String> {
    crd_issues(crd).into_iter().map(|i| i.error.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Field errors, rendered like apimachinery's field.Error
// ---------------------------------------------------------------------------

/// A field error plus whether it makes the API server skip CEL rules
/// (`hasBlockingErr`: type, required, enum, length and size violations).
#[derive(Debug, Clone)]
struct Issue {
    error: FieldError,
    blocking: bool,
}

fn issue(path: &str, kind: FieldErrorKind, message: String, blocking: bool) -> Issue {
    Issue { error: FieldError { path: display_path(path), kind, message }, blocking }
}

/// `field.Path.String()` renders the nil path as `<nil>`.
fn display_path(path: &str) -> String {
    if path.is_empty() { "<nil>".to_string() } else { path.to_string() }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() { head } else { format!("{head}: {detail}") }
}

fn required(path: &str, detail: &str) -> Issue {
    issue(path, FieldErrorKind::Required, with_detail("Required value".into(), detail), true)
}

fn forbidden(path: &str, detail: &str) -> Issue {
    issue(path, FieldErrorKind::Forbidden, with_detail("Forbidden".into(), detail), false)
}

/// `field.Invalid`; `bad` is the rendered value, `None` for an omitted value.
fn invalid(path: &str, bad: Option<String>, detail: &str) -> Issue {
    let head = match bad {
        Some(b) => format!("Invalid value: {b}"),
        None => "Invalid value".to_string(),
    };
    issue(path, FieldErrorKind::Invalid, with_detail(head, detail), false)
}

/// `field.TypeInvalid`: rendered like `Invalid value` but blocks CEL rules.
fn type_invalid(path: &str, bad: String, detail: &str) -> Issue {
    Issue { blocking: true, ..invalid(path, Some(bad), detail) }
}

fn not_supported(path: &str, bad: String, supported: &[String]) -> Issue {
    let detail = if supported.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    issue(path, FieldErrorKind::NotSupported, with_detail(format!("Unsupported value: {bad}"), &detail), true)
}

fn too_long(path: &str, max: i64) -> Issue {
    let unit = if max == 1 { "byte" } else { "bytes" };
    issue(path, FieldErrorKind::TooLong, format!("Too long: may not be more than {max} {unit}"), true)
}

fn too_many(path: &str, actual: i64, max: i64) -> Issue {
    let unit = if max == 1 { "item" } else { "items" };
    issue(path, FieldErrorKind::TooMany, format!("Too many: {actual}: must have at most {max} {unit}"), true)
}

fn duplicate(path: &str, bad: Option<String>) -> Issue {
    let message = match bad {
        Some(b) => format!("Duplicate value: {b}"),
        None => "Duplicate value".to_string(),
    };
    issue(path, FieldErrorKind::Invalid, message, false)
}

fn unknown_field(path: &str) -> Issue {
    issue(path, FieldErrorKind::Unknown, format!("unknown field {}", go_quote(path)), false)
}

/// Renders a bad value the way `field.Error.ErrorBody` does: strings quoted,
/// numbers and booleans plain, everything else as Go's JSON.
fn bad(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => match number(v) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => go_float(f),
            None => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        _ => go_json(v),
    }
}

// ---------------------------------------------------------------------------
// Field paths (field.Path semantics; the empty string is the nil path)
// ---------------------------------------------------------------------------

fn fp_child(base: &str, name: &str) -> String {
    if base.is_empty() { name.to_string() } else { format!("{base}.{name}") }
}

fn fp_key(base: &str, key: &str) -> String {
    format!("{base}[{key}]")
}

fn fp_index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

// ---------------------------------------------------------------------------
// Go formatting helpers
// ---------------------------------------------------------------------------

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Shortest digits and decimal exponent of a finite, non-zero float.
fn float_parts(f: f64) -> (String, i32) {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    (mantissa.to_string(), exp.parse().unwrap_or(0))
}

/// `fmt.Sprintf("%v", f)` for a float64 (`%g` with the shortest digits).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (mantissa, exp) = float_parts(f);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// `encoding/json` rendering of a float64.
fn go_json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (mantissa, exp) = float_parts(f);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// `json.Marshal` of a decoded JSON value: sorted keys, HTML-safe escaping.
fn go_json(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(_) => match number(v) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => go_json_float(f),
            None => v.to_string(),
        },
        Value::String(s) => go_json_string(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_json).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys.iter().map(|k| format!("{}:{}", go_json_string(k), go_json(&m[k.as_str()]))).collect();
            format!("{{{}}}", parts.join(","))
        }
    }
}

fn go_json_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A JSON number as the API server's JSON decoder produces it.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn number(v: &Value) -> Option<Num> {
    if let Some(i) = v.as_i64() {
        return Some(Num::Int(i));
    }
    v.as_f64().map(Num::Float)
}

fn num_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

/// `swag.IsFloat64AJSONInteger`.
fn is_json_integer(f: f64) -> bool {
    const MAX_JSON_FLOAT: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || f.abs() > MAX_JSON_FLOAT {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    let g = f.round();
    let diff = (f - g).abs();
    diff / (f.abs() + g.abs()) < 1e-9
}

/// Deep equality with the API server's view of numbers (`1` and `1.0` are
/// different values for equality, as they decode to int64 and float64).
fn json_equal(a: &Value, b: &Value) -> bool {
    a == b
}

// ---------------------------------------------------------------------------
// Schema accessors
// ---------------------------------------------------------------------------

fn s_str<'a>(s: &'a Value, key: &str) -> &'a str {
    s.get(key).and_then(Value::as_str).unwrap_or("")
}

fn s_flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn s_type(s: &Value) -> &str {
    s_str(s, "type")
}

fn s_props(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn s_prop<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s_props(s).and_then(|p| p.get(name))
}

fn s_items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

fn s_array<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn s_i64(s: &Value, key: &str) -> Option<i64> {
    s.get(key).and_then(|v| match number(v)? {
        Num::Int(i) => Some(i),
        Num::Float(f) => Some(f as i64),
    })
}

fn s_f64(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// `additionalProperties`: absent, a boolean, or a schema.
#[derive(Clone, Copy)]
enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

fn s_additional(s: &Value) -> Additional<'_> {
    match s.get("additionalProperties") {
        None | Some(Value::Null) => Additional::Absent,
        Some(Value::Bool(b)) => Additional::Bool(*b),
        Some(other) => Additional::Schema(other),
    }
}

fn additional_schema(s: &Value) -> Option<&Value> {
    match s_additional(s) {
        Additional::Schema(a) => Some(a),
        _ => None,
    }
}

fn is_nullable(s: &Value) -> bool {
    s_flag(s, "nullable")
}

fn preserves_unknown(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-preserve-unknown-fields")
}

fn is_embedded(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-embedded-resource")
}

fn is_int_or_string(s: &Value) -> bool {
    s_flag(s, "x-kubernetes-int-or-string")
}

fn list_type(s: &Value) -> &str {
    s_str(s, "x-kubernetes-list-type")
}

fn list_map_keys(s: &Value) -> Vec<&str> {
    s_array(s, "x-kubernetes-list-map-keys").iter().filter_map(Value::as_str).collect()
}

/// A non-null `default` (the API server treats `default: null` as absent).
fn s_default(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

fn rules_of(s: &Value) -> &[Value] {
    s_array(s, "x-kubernetes-validations")
}

// ---------------------------------------------------------------------------
// Regular expressions (Go RE2 syntax)
// ---------------------------------------------------------------------------

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Result<Regex, String>>> =
        RefCell::new(HashMap::new());
}

/// Compiles a pattern written in Rust regex syntax, once per thread.
fn cached_regex(pattern: &str) -> Result<Regex, String> {
    REGEX_CACHE.with(|cache| {
        cache.borrow_mut().entry(pattern.to_string()).or_insert_with(|| Regex::new(pattern).map_err(|e| e.to_string())).clone()
    })
}

fn re_match(pattern: &str, v: &str) -> bool {
    cached_regex(pattern).is_ok_and(|re| re.is_match(v))
}

/// Compiles a Go (RE2) pattern. Go's Perl classes are ASCII-only while the
/// regex crate's are Unicode-aware, so they are rewritten to ASCII classes.
fn go_regex(pattern: &str) -> Result<Regex, String> {
    cached_regex(&translate_go_pattern(pattern))
}

fn translate_go_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('Q') => {
                    let mut literal = String::new();
                    while let Some(l) = chars.next() {
                        if l == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        literal.push(l);
                    }
                    out.push_str(&regex::escape(&literal));
                }
                Some(e) => out.push_str(&translate_escape(e, class_depth > 0)),
                None => out.push('\\'),
            },
            '[' => {
                class_depth += 1;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                // A leading ']' is a literal in Go character classes.
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn translate_escape(e: char, in_class: bool) -> String {
    let ascii = |inner: &str, negated: bool| match (in_class, negated) {
        (true, false) => inner.to_string(),
        (true, true) | (false, true) => format!("[^{inner}]"),
        (false, false) => format!("[{inner}]"),
    };
    match e {
        'd' => ascii("0-9", false),
        'D' => ascii("0-9", true),
        'w' => ascii("0-9A-Za-z_", false),
        'W' => ascii("0-9A-Za-z_", true),
        's' => ascii("\\t\\n\\f\\r ", false),
        'S' => ascii("\\t\\n\\f\\r ", true),
        'b' if !in_class => "(?-u:\\b)".to_string(),
        'B' if !in_class => "(?-u:\\B)".to_string(),
        other => format!("\\{other}"),
    }
}

// ---------------------------------------------------------------------------
// String formats (kube-openapi strfmt, as supported for CRDs)
// ---------------------------------------------------------------------------

/// Formats the API server validates in CRD schemas; others are ignored.
const SUPPORTED_FORMATS: [&str; 24] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// The schema's format if the API server validates it, or "".
fn effective_format(s: &Value) -> &str {
    let format = s_str(s, "format");
    if SUPPORTED_FORMATS.contains(&format.replace('-', "").as_str()) { format } else { "" }
}

fn format_valid(format: &str, v: &str) -> bool {
    match format.replace('-', "").as_str() {
        "datetime" => is_date_time(v),
        "date" => is_date(v),
        "email" => is_email(v),
        "uuid" => re_match(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", v),
        "uuid3" => re_match(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$", v),
        "uuid4" => re_match(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", v),
        "uuid5" => re_match(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$", v),
        "ipv4" => v.parse::<IpAddr>().is_ok() && v.contains('.'),
        "ipv6" => v.parse::<IpAddr>().is_ok() && v.contains(':'),
        "cidr" => is_cidr(v),
        "mac" => is_mac(v),
        "hostname" => is_hostname(v),
        "byte" => re_match(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$", v),
        "bsonobjectid" => v.len() == 24 && v.chars().all(|c| c.is_ascii_hexdigit()),
        "hexcolor" => re_match(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", v),
        "rgbcolor" => re_match(
            r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$",
            v,
        ),
        "ssn" => v.len() == 11 && re_match(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$", v),
        "isbn" => is_isbn10(v) || is_isbn13(v),
        "isbn10" => is_isbn10(v),
        "isbn13" => is_isbn13(v),
        "creditcard" => is_credit_card(v),
        "uri" => is_request_uri(v),
        "duration" => is_duration(v),
        _ => true,
    }
}

/// strfmt's `IsDateTime`: an RFC 3339 full date, `T` (either case), and a
/// time with optional fraction and a `Z` or numeric offset; leap seconds and
/// out-of-range dates are rejected.
fn is_date_time(v: &str) -> bool {
    if v.len() < 4 {
        return false;
    }
    let lower = v.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    let Ok(re) = cached_regex(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$") else {
        return false;
    };
    let Some(caps) = re.captures(parts[1]) else {
        return false;
    };
    &caps[1] <= "23" && &caps[2] <= "59" && &caps[3] <= "59"
}

/// `time.Parse("2006-01-02", v)`.
fn is_date(v: &str) -> bool {
    let Ok(re) = cached_regex(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$") else {
        return false;
    };
    let Some(caps) = re.captures(v) else {
        return false;
    };
    let (Ok(y), Ok(m), Ok(d)) = (caps[1].parse::<i16>(), caps[2].parse::<i8>(), caps[3].parse::<i8>()) else {
        return false;
    };
    jiff::civil::Date::new(y, m, d).is_ok()
}

/// A loose `net/mail.ParseAddress`: an addr-spec, optionally as
/// `Display Name <addr-spec>`.
fn is_email(v: &str) -> bool {
    let v = v.trim();
    let addr = match v.rfind('<') {
        Some(start) if v.ends_with('>') => &v[start + 1..v.len() - 1],
        Some(_) => return false,
        None => v,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let dot_atom = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\p{L}\p{N}]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\p{L}\p{N}]+)*$";
    let local_ok = re_match(dot_atom, local) || re_match(r#"^"([^"\\]|\\.)*"$"#, local);
    let domain_ok = re_match(dot_atom, domain) || re_match(r"^\[[^\[\]\\]*\]$", domain);
    local_ok && domain_ok
}

/// `net.ParseCIDR`.
fn is_cidr(v: &str) -> bool {
    let Some((ip, bits)) = v.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    if bits.is_empty() || !bits.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// `net.ParseMAC`: EUI-48, EUI-64 and 20-octet addresses in colon, dash or
/// dot notation.
fn is_mac(v: &str) -> bool {
    let hex = |g: &str, n: usize| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit());
    if v.len() >= 3 && (v.as_bytes()[2] == b':' || v.as_bytes()[2] == b'-') {
        let sep = v.as_bytes()[2] as char;
        let groups: Vec<&str> = v.split(sep).collect();
        return [6, 8, 20].contains(&groups.len()) && groups.iter().all(|g| hex(g, 2));
    }
    if v.len() >= 5 && v.as_bytes()[4] == b'.' {
        let groups: Vec<&str> = v.split('.').collect();
        return [3, 4, 10].contains(&groups.len()) && groups.iter().all(|g| hex(g, 4));
    }
    false
}

fn is_hostname(v: &str) -> bool {
    let pattern = r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z0-9\p{S}\p{L}])(-?[a-zA-Z0-9\p{S}\p{L}]){1,62})$";
    re_match(pattern, v) && v.len() <= 255 && v.split('.').all(|p| p.len() <= 63)
}

fn isbn_digits(v: &str) -> String {
    v.chars().filter(|c| !c.is_whitespace() && *c != '-').collect()
}

fn is_isbn10(v: &str) -> bool {
    let s = isbn_digits(v);
    if !re_match(r"^(?:[0-9]{9}X|[0-9]{10})$", &s) {
        return false;
    }
    let sum: u32 = s
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let d = if c == 'X' { 10 } else { c.to_digit(10).unwrap_or(0) };
            (i as u32 + 1) * d
        })
        .sum();
    sum.is_multiple_of(11)
}

fn is_isbn13(v: &str) -> bool {
    let s = isbn_digits(v);
    if !re_match(r"^[0-9]{13}$", &s) {
        return false;
    }
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits[..12].iter().enumerate().map(|(i, d)| if i % 2 == 0 { *d } else { 3 * d }).sum();
    (10 - sum % 10) % 10 == digits[12]
}

fn is_credit_card(v: &str) -> bool {
    let s: String = v.chars().filter(char::is_ascii_digit).collect();
    let pattern = r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$";
    if !re_match(pattern, &s) {
        return false;
    }
    let sum: u32 = s
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A loose `url.ParseRequestURI`: an absolute URI or an absolute path.
fn is_request_uri(v: &str) -> bool {
    if v.is_empty() || v.chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
        return false;
    }
    if v == "*" || v.starts_with('/') {
        return true;
    }
    let Some((scheme, rest)) = v.split_once(':') else {
        return false;
    };
    re_match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*$", scheme)
        && !(rest.starts_with("//") && rest[2..].split('/').next().is_some_and(|h| h.contains(' ')))
}

/// strfmt's `ParseDuration`: a Go duration, or numbers followed by unit
/// names such as `3 days` or `1h30min`.
fn is_duration(v: &str) -> bool {
    if re_match(r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$", v) {
        return true;
    }
    let units: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let Ok(re) = cached_regex(r"((\d+)\s*([A-Za-zµ]+))") else {
        return false;
    };
    re.captures_iter(v).any(|caps| {
        let unit = caps[3].trim().to_lowercase();
        units.iter().any(|variants| {
            let last = variants.len() - 1;
            variants.iter().enumerate().any(|(i, variant)| (i == last && unit.starts_with(variant)) || unit == *variant)
        })
    })
}

// ---------------------------------------------------------------------------
// Request decoding: unknown fields, pruning, null pruning, defaulting
// ---------------------------------------------------------------------------

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The fields of `ObjectMeta`; decoding drops any other metadata field.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Paths of the fields strict field validation reports, sorted like the API
/// server's list.
fn unknown_field_paths(schema: &Value, obj: &Value) -> Vec<String> {
    let mut copy = obj.clone();
    let mut found = Some(Vec::new());
    prune_node(&mut copy, Some(schema), "", true, &mut found);
    let mut paths = found.unwrap_or_default();
    paths.sort();
    paths
}

/// The object as the API server holds it after decoding a request.
fn decoded(schema: &Value, obj: &Value) -> Value {
    let mut copy = obj.clone();
    prune(schema, &mut copy);
    apply_defaults(schema, &mut copy);
    copy
}

fn append_key(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn record(found: &mut Option<Vec<String>>, path: String) {
    if let Some(list) = found {
        list.push(path);
    }
}

/// The structural pruning algorithm; `root` marks the resource root, which
/// is treated as an embedded resource.
fn prune_node(x: &mut Value, s: Option<&Value>, path: &str, root: bool, found: &mut Option<Vec<String>>) {
    if let Some(s) = s.filter(|s| preserves_unknown(s)) {
        skip_prune(x, s, path, root, found);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                for k in m.keys() {
                    record(found, append_key(path, k));
                }
                m.clear();
                return;
            };
            let embedded = root || is_embedded(s);
            if embedded {
                coerce_metadata(m, path, found);
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child_path = append_key(path, &k);
                let Some(v) = m.get_mut(&k) else { continue };
                if let Some(p) = s_prop(s, &k) {
                    prune_node(v, Some(p), &child_path, false, found);
                } else if !matches!(s_additional(s), Additional::Absent) {
                    prune_node(v, additional_schema(s), &child_path, false, found);
                } else {
                    if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                        record(found, child_path);
                    }
                    m.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(s_items);
            for (i, v) in items.iter_mut().enumerate() {
                prune_node(v, item_schema, &fp_index(path, i), false, found);
            }
        }
        _ => {}
    }
}

fn skip_prune(x: &mut Value, s: &Value, path: &str, root: bool, found: &mut Option<Vec<String>>) {
    match x {
        Value::Object(m) => {
            let embedded = root || is_embedded(s);
            if embedded {
                coerce_metadata(m, path, found);
            }
            for (k, v) in m.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child_path = append_key(path, k);
                if let Some(p) = s_prop(s, k) {
                    prune_node(v, Some(p), &child_path, false, found);
                } else if !matches!(s_additional(s), Additional::Absent) {
                    prune_node(v, additional_schema(s), &child_path, false, found);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s_items(s) {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, &fp_index(path, i), false, found);
                }
            }
        }
        _ => {}
    }
}

/// Metadata is decoded into `ObjectMeta`, which drops unknown fields.
fn coerce_metadata(m: &mut Map<String, Value>, path: &str, found: &mut Option<Vec<String>>) {
    let Some(Value::Object(meta)) = m.get_mut("metadata") else {
        return;
    };
    let meta_path = append_key(path, "metadata");
    let unknown: Vec<String> = meta.keys().filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str())).cloned().collect();
    for k in unknown {
        record(found, append_key(&meta_path, &k));
        meta.remove(&k);
    }
}

/// `PruneNonNullableNullsWithoutDefaults`.
fn prune_nulls(x: &mut Value, s: Option<&Value>) {
    match x {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let field_schema = s.and_then(|s| s_prop(s, &k).or_else(|| additional_schema(s)));
                let drop = m[&k].is_null() && field_schema.is_some_and(|fs| !is_nullable(fs) && s_default(fs).is_none());
                if drop {
                    m.remove(&k);
                } else if let Some(v) = m.get_mut(&k) {
                    prune_nulls(v, field_schema);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.and_then(s_items);
            for v in items {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

/// The structural defaulting algorithm.
fn default_node(x: &mut Value, s: Option<&Value>) {
    let Some(s) = s else { return };
    match x {
        Value::Object(m) => {
            if let Some(props) = s_props(s) {
                for (k, prop) in props {
                    let Some(d) = s_default(prop) else { continue };
                    let missing = match m.get(k) {
                        None => true,
                        Some(v) => v.is_null() && !is_nullable(prop),
                    };
                    if missing {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            let additional = s_additional(s);
            for (k, v) in m.iter_mut() {
                if let Some(p) = s_prop(s, k) {
                    default_node(v, Some(p));
                } else if !matches!(additional, Additional::Absent) {
                    let value_schema = additional_schema(s);
                    default_null(v, value_schema);
                    default_node(v, value_schema);
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s_items(s);
            for v in items {
                default_null(v, item_schema);
                default_node(v, item_schema);
            }
        }
        _ => {}
    }
}

fn default_null(v: &mut Value, s: Option<&Value>) {
    if let Some(s) = s
        && v.is_null()
        && !is_nullable(s)
        && let Some(d) = s_default(s)
    {
        *v = d.clone();
    }
}

// ---------------------------------------------------------------------------
// Validation of a decoded object (customResourceStrategy.Validate/Update)
// ---------------------------------------------------------------------------

fn validate_decoded(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<Issue> {
    let mut issues = match old {
        None => validate_root_meta_create(new),
        Some(o) => validate_root_meta_update(new, o),
    };
    issues.extend(Oapi { prefix: "" }.validate(schema, new, "", old).issues);
    issues.extend(embedded_meta(schema, new, ""));
    let list_errors = list_sets_and_maps(schema, new, "");
    let ratcheted = old.is_some_and(|o| list_sets_and_maps(schema, o, "").is_empty());
    if old.is_none() || ratcheted {
        issues.extend(list_errors);
    }
    if has_rules(schema) {
        if issues.iter().any(|i| i.blocking) {
            issues.push(invalid(
                "",
                Some("null".into()),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            let ratchet = Ratchet { current: old, parent_equal: false };
            let mut cel = CelPass { issues: Vec::new(), ratcheting: old.is_some() };
            cel.node(schema, CelAt::root(new, old, ratchet));
            issues.extend(cel.issues);
        }
    }
    issues
}

fn has_rules(s: &Value) -> bool {
    if !rules_of(s).is_empty() {
        return true;
    }
    s_props(s).is_some_and(|p| p.values().any(has_rules))
        || s_items(s).is_some_and(has_rules)
        || additional_schema(s).is_some_and(has_rules)
        || s_array(s, "allOf").iter().any(has_rules)
}

// ---------------------------------------------------------------------------
// Object metadata (apimachinery ValidateObjectMetaAccessor)
// ---------------------------------------------------------------------------

fn meta_str<'a>(meta: Option<&'a Value>, key: &str) -> &'a str {
    meta.and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("")
}

fn validate_root_meta_create(obj: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let meta = obj.get("metadata");
    if let Some(m) = meta.filter(|m| !m.is_object()) {
        out.push(invalid("metadata", Some(bad(m)), "must be an object"));
        return out;
    }
    let name = meta_str(meta, "name");
    let generate_name = meta_str(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_is_dns_subdomain(generate_name, true) {
            out.push(invalid("metadata.generateName", Some(go_quote(generate_name)), &msg));
        }
    }
    if name.is_empty() {
        // The API server generates the name from generateName before
        // validation; only a missing pair is an error here.
        if generate_name.is_empty() {
            out.push(required("metadata.name", "name or generateName is required"));
        }
    } else {
        for msg in name_is_dns_subdomain(name, false) {
            out.push(invalid("metadata.name", Some(go_quote(name)), &msg));
        }
    }
    let namespace = meta_str(meta, "namespace");
    if !namespace.is_empty() {
        for msg in is_dns1123_label(namespace) {
            out.push(invalid("metadata.namespace", Some(go_quote(namespace)), &msg));
        }
    }
    if let Some(g) = meta.and_then(|m| m.get("generation")).and_then(Value::as_i64)
        && g < 0
    {
        out.push(invalid("metadata.generation", Some(g.to_string()), "must be greater than or equal to 0"));
    }
    out.extend(validate_meta_maps(meta, "metadata"));
    out
}

fn validate_root_meta_update(new: &Value, old: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let meta = new.get("metadata");
    let old_meta = old.get("metadata");
    for field in ["name", "namespace"] {
        let now = meta_str(meta, field);
        if now != meta_str(old_meta, field) {
            out.push(invalid(&format!("metadata.{field}"), Some(go_quote(now)), "field is immutable"));
        }
    }
    out.extend(validate_meta_maps(meta, "metadata"));
    out
}

/// Labels, annotations and finalizers of an `ObjectMeta`.
fn validate_meta_maps(meta: Option<&Value>, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let labels_path = fp_child(path, "labels");
    if let Some(labels) = meta.and_then(|m| m.get("labels")).and_then(Value::as_object) {
        for (k, v) in labels {
            for msg in is_qualified_name(k) {
                out.push(invalid(&labels_path, Some(go_quote(k)), &msg));
            }
            let value = v.as_str().unwrap_or("");
            for msg in is_valid_label_value(value) {
                out.push(invalid(&labels_path, Some(go_quote(value)), &msg));
            }
        }
    }
    let annotations_path = fp_child(path, "annotations");
    if let Some(annotations) = meta.and_then(|m| m.get("annotations")).and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in annotations {
            for msg in is_qualified_name(&k.to_lowercase()) {
                out.push(invalid(&annotations_path, Some(go_quote(k)), &msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            out.push(too_long(&annotations_path, TOTAL_ANNOTATION_SIZE_LIMIT as i64));
        }
    }
    let finalizers_path = fp_child(path, "finalizers");
    for f in s_array(meta.unwrap_or(&Value::Null), "finalizers") {
        let f = f.as_str().unwrap_or("");
        for msg in is_qualified_name(f) {
            out.push(invalid(&finalizers_path, Some(go_quote(f)), &msg));
        }
    }
    out
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn dns1123_subdomain_fmt() -> String {
    format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*")
}

/// apimachinery's `RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let listed: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", listed.join(" or "))
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn full_match(fmt: &str, v: &str) -> bool {
    re_match(&format!("^(?:{fmt})$"), v)
}

fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let fmt = dns1123_subdomain_fmt();
    if !full_match(&fmt, v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            &fmt,
            &["example.com"],
        ));
    }
    errs
}

fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !full_match(DNS1123_LABEL_FMT, v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !full_match(DNS1035_LABEL_FMT, v) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `NameIsDNSSubdomain`; a generateName prefix may end with '-'.
fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') && name.is_char_boundary(name.len() - 2) {
        masked = format!("{}a", &name[..name.len() - 2]);
        masked.as_str()
    } else {
        name
    };
    is_dns1123_subdomain(name)
}

fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !full_match(QUALIFIED_NAME_FMT, name) {
        errs.push(format!("name part {}", regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])));
    }
    errs
}

fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    let fmt = format!("({QUALIFIED_NAME_FMT})?");
    if !full_match(&fmt, v) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            &fmt,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

// ---------------------------------------------------------------------------
// OpenAPI schema validation (kube-openapi's SchemaValidator with ratcheting)
// ---------------------------------------------------------------------------

/// Errors of one schema node plus kube-openapi's match count, which picks the
/// closest failing branch of `anyOf`/`oneOf`.
#[derive(Default)]
struct Outcome {
    issues: Vec<Issue>,
    matches: usize,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.issues.extend(other.issues);
        self.matches += other.matches;
    }

    fn push(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    fn is_valid(&self) -> bool {
        self.issues.is_empty()
    }
}

/// A schema validation run. `prefix` is the field path the API server passes
/// with the value (the nil path for objects, `...default` for defaults);
/// kube-openapi names below it are appended to it.
struct Oapi<'p> {
    prefix: &'p str,
}

impl Oapi<'_> {
    /// Error path for a kube-openapi name (`spec.x`, `.key` at the root).
    fn path(&self, name: &str) -> String {
        if name.is_empty() || name == "." {
            return self.prefix.to_string();
        }
        fp_child(self.prefix, name.strip_prefix('.').unwrap_or(name))
    }

    /// Validates a value whose old counterpart is `old` when it can be
    /// correlated; an unchanged value has its errors ratcheted away.
    fn validate(&self, s: &Value, data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        if old.is_some_and(|o| json_equal(o, data)) {
            return Outcome { issues: Vec::new(), matches: 1 };
        }
        self.node(s, data, name, old)
    }

    fn node(&self, s: &Value, data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        if data.is_null() {
            if let Some(i) = self.check_type(s, data, name) {
                out.push(i);
            }
            if let Some(i) = self.check_enum(s, data, name) {
                out.push(i);
            }
            return out;
        }
        if !s_type(s).is_empty() || is_int_or_string(s) || !effective_format(s).is_empty() {
            out.matches += 1;
            if let Some(i) = self.check_type(s, data, name) {
                out.push(i);
            }
        }
        out.merge(self.junctors(s, data, name, old));
        if let Value::String(text) = data {
            out.matches += 1;
            if let Some(i) = self.check_string(s, text, name) {
                out.push(i);
            }
            if let Some(i) = self.check_format(s, text, name) {
                out.push(i);
            }
        }
        if let Some(n) = number(data) {
            out.matches += 1;
            out.issues.extend(self.check_number(s, data, n, name));
        }
        if let Value::Array(items) = data {
            out.merge(self.check_array(s, items, name, old));
        }
        out.matches += 1;
        if let Some(i) = self.check_enum(s, data, name) {
            out.push(i);
        }
        if let Value::Object(m) = data {
            out.merge(self.check_object(s, m, name, old));
        }
        out
    }

    fn type_error(&self, name: &str, type_name: &str, value: &str) -> Issue {
        type_invalid(&self.path(name), go_quote(value), &format!("{name} in body must be of type {type_name}: {}", go_quote(value)))
    }

    fn check_type(&self, s: &Value, data: &Value, name: &str) -> Option<Issue> {
        let types: Vec<&str> = if is_int_or_string(s) {
            vec!["integer", "string"]
        } else if s_type(s).is_empty() {
            Vec::new()
        } else {
            vec![s_type(s)]
        };
        let format = effective_format(s);
        if types.is_empty() && format.is_empty() {
            return None;
        }
        if data.is_null() {
            if !types.is_empty() && !is_nullable(s) {
                return Some(self.type_error(name, &types.join(","), "null"));
            }
            return None;
        }
        let (sch_type, data_format) = data_type_info(data);
        let is_float_int = sch_type == "number" && data.as_f64().is_some_and(is_json_integer) && types.contains(&"integer");
        let is_int_float = sch_type == "integer" && types.contains(&"number");
        let string_or_array = data.is_string() || data.is_array();
        let type_matches = types.contains(&sch_type) || is_float_int || is_int_float;
        // A non-string value must match the format's own type.
        if !(string_or_array || format.is_empty() || type_matches || data_format == format) {
            return Some(self.type_error(name, format, data_format));
        }
        let numeric = types.contains(&"number") || types.contains(&"integer");
        if !numeric && !format.is_empty() && string_or_array {
            return None;
        }
        if !type_matches {
            return Some(self.type_error(name, &types.join(","), sch_type));
        }
        None
    }

    fn check_string(&self, s: &Value, text: &str, name: &str) -> Option<Issue> {
        let path = self.path(name);
        let length = text.chars().count() as i64;
        if let Some(max) = s_i64(s, "maxLength")
            && length > max
        {
            return Some(too_long(&path, max));
        }
        if let Some(min) = s_i64(s, "minLength")
            && length < min
        {
            return Some(invalid(&path, Some(go_quote(text)), &format!("{name} in body should be at least {min} chars long")));
        }
        let pattern = s_str(s, "pattern");
        if pattern.is_empty() {
            return None;
        }
        let detail = match go_regex(pattern) {
            Ok(re) if re.is_match(text) => return None,
            Ok(_) => format!("{name} in body should match '{pattern}'"),
            Err(e) => {
                format!("{name} in body should match '{pattern}, but pattern is invalid: {e}'")
            }
        };
        Some(invalid(&path, Some(go_quote(text)), &detail))
    }

    fn check_format(&self, s: &Value, text: &str, name: &str) -> Option<Issue> {
        let format = effective_format(s);
        if format.is_empty() || format_valid(format, text) {
            return None;
        }
        Some(type_invalid(&self.path(name), go_quote(text), &format!("{name} in body must be of type {format}: {}", go_quote(text))))
    }

    fn check_number(&self, s: &Value, data: &Value, n: Num, name: &str) -> Vec<Issue> {
        let path = self.path(name);
        let value = Some(bad(data));
        let mut out = Vec::new();
        if let Some(factor) = s_f64(s, "multipleOf")
            && let Some(detail) = multiple_of_error(n, factor, name)
        {
            out.push(invalid(&path, value.clone(), &detail));
        }
        if let Some(min) = s_f64(s, "minimum") {
            let exclusive = s_flag(s, "exclusiveMinimum");
            if let Some(detail) = bound_error(n, min, exclusive, name, false) {
                out.push(invalid(&path, value.clone(), &detail));
            }
        }
        if let Some(max) = s_f64(s, "maximum") {
            let exclusive = s_flag(s, "exclusiveMaximum");
            if let Some(detail) = bound_error(n, max, exclusive, name, true) {
                out.push(invalid(&path, value, &detail));
            }
        }
        out
    }

    fn check_array(&self, s: &Value, items: &[Value], name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        if let Some(item_schema) = s_items(s) {
            for (i, item) in items.iter().enumerate() {
                let old_item = correlate_index(s, old, item);
                out.merge(self.validate(item_schema, item, &fp_index(name, i), old_item));
            }
        }
        let path = self.path(name);
        let size = items.len() as i64;
        if let Some(min) = s_i64(s, "minItems")
            && size < min
        {
            out.push(invalid(&path, Some(size.to_string()), &format!("{name} in body should have at least {min} items")));
        }
        if let Some(max) = s_i64(s, "maxItems")
            && size > max
        {
            out.push(too_many(&path, size, max));
        }
        if s_flag(s, "uniqueItems") && has_duplicates(items) {
            out.push(invalid(&path, Some(go_quote("")), &format!("{name} in body shouldn't contain duplicates")));
        }
        out.matches += 1;
        out
    }

    fn check_enum(&self, s: &Value, data: &Value, name: &str) -> Option<Issue> {
        let allowed = s_array(s, "enum");
        if allowed.is_empty() || allowed.iter().any(|e| enum_equal(data, e)) {
            return None;
        }
        let values: Vec<String> = allowed
            .iter()
            .map(|e| match e {
                Value::String(text) => text.clone(),
                other => go_json(other),
            })
            .collect();
        Some(not_supported(&self.path(name), bad(data), &values))
    }

    fn check_object(&self, s: &Value, m: &Map<String, Value>, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let path = self.path(name);
        let count = m.len() as i64;
        if let Some(min) = s_i64(s, "minProperties")
            && count < min
        {
            out.push(invalid(&path, Some(count.to_string()), &format!("{name} in body should have at least {min} properties")));
            return out;
        }
        if let Some(max) = s_i64(s, "maxProperties")
            && count > max
        {
            out.push(too_many(&path, count, max));
            return out;
        }
        let props = s_props(s);
        let declared = |k: &str| props.is_some_and(|p| p.contains_key(k));
        match s_additional(s) {
            Additional::Bool(false) => {
                for k in m.keys().filter(|k| !declared(k)) {
                    out.push(invalid(&path, Some(go_quote(k)), &format!("{name}.{k} in body is a forbidden property")));
                }
            }
            Additional::Schema(a) => {
                for (k, v) in m.iter().filter(|(k, _)| !declared(k)) {
                    let old_v = correlate_key(s, old, name, k);
                    out.merge(self.validate(a, v, &format!("{name}.{k}"), old_v));
                }
            }
            _ => {}
        }
        if let Some(props) = props {
            for (k, prop) in props {
                if let Some(v) = m.get(k) {
                    let old_v = correlate_key(s, old, name, k);
                    out.merge(self.validate(prop, v, &fp_child(name, k), old_v));
                }
            }
        }
        for k in s_array(s, "required").iter().filter_map(Value::as_str) {
            if !m.contains_key(k) {
                out.push(required(&self.path(&format!("{name}.{k}")), ""));
            }
        }
        out.matches += 1;
        out
    }

    /// A composite error from `anyOf`/`oneOf`/`allOf`/`not`, which the API
    /// server reports at the validation root with an empty value.
    fn composite(&self, detail: String) -> Issue {
        invalid(self.prefix, Some(go_quote("")), &detail)
    }

    fn junctors(&self, s: &Value, data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let branches = |key| s_array(s, key);
        if !branches("anyOf").is_empty() {
            out.merge(self.any_of(branches("anyOf"), data, name, old));
        }
        if !branches("oneOf").is_empty() {
            out.merge(self.one_of(branches("oneOf"), data, name, old));
        }
        if !branches("allOf").is_empty() {
            out.merge(self.all_of(branches("allOf"), data, name, old));
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && self.node(not, data, name, old).is_valid()
        {
            out.push(self.composite(format!("{} must not validate the schema (not)", go_quote(name))));
        }
        out.matches += 1;
        out
    }

    /// Reports the failure plus the errors of the branch that got closest.
    fn any_of(&self, branches: &[Value], data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let mut best: Option<Outcome> = None;
        for branch in branches {
            let r = self.node(branch, data, name, old);
            if r.is_valid() {
                out.merge(r);
                return out;
            }
            if best.as_ref().is_none_or(|b| r.matches > b.matches) {
                best = Some(r);
            }
        }
        out.push(self.composite(format!("{} must validate at least one schema (anyOf)", go_quote(name))));
        if let Some(r) = best {
            out.merge(r);
        }
        out
    }

    fn one_of(&self, branches: &[Value], data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let mut best: Option<Outcome> = None;
        let mut first_success: Option<Outcome> = None;
        let mut validated = 0;
        for branch in branches {
            let r = self.node(branch, data, name, old);
            if r.is_valid() {
                validated += 1;
                best = None;
                first_success.get_or_insert(r);
            } else if validated == 0 && best.as_ref().is_none_or(|b| r.matches > b.matches) {
                best = Some(r);
            }
        }
        if validated == 1 {
            if let Some(r) = first_success {
                out.merge(r);
            }
            return out;
        }
        let found = if validated == 0 { "Found none valid".to_string() } else { format!("Found {validated} valid alternatives") };
        out.push(self.composite(format!("{} must validate one and only one schema (oneOf). {found}", go_quote(name))));
        if let Some(r) = best {
            out.merge(r);
        }
        out
    }

    fn all_of(&self, branches: &[Value], data: &Value, name: &str, old: Option<&Value>) -> Outcome {
        let mut out = Outcome::default();
        let mut validated = 0;
        for branch in branches {
            let r = self.node(branch, data, name, old);
            if r.is_valid() {
                validated += 1;
            }
            out.merge(r);
        }
        if validated != branches.len() {
            let none = if validated == 0 { ". None validated" } else { "" };
            out.push(self.composite(format!("{} must validate all the schemas (allOf){none}", go_quote(name))));
        }
        out
    }
}

/// kube-openapi's JSON type and format of a decoded value.
fn data_type_info(data: &Value) -> (&'static str, &'static str) {
    match data {
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(_) => match number(data) {
            Some(Num::Int(_)) => ("integer", "int64"),
            _ => ("number", "float64"),
        },
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
        Value::Null => ("", ""),
    }
}

fn multiple_of_error(n: Num, factor: f64, name: &str) -> Option<String> {
    if factor < 0.0 {
        return Some(format!("factor MultipleOf declared for {name} must be positive: {}", go_float(factor)));
    }
    let message = |shown: String| format!("{name} in body should be a multiple of {shown}");
    if let Num::Int(i) = n {
        let whole = factor as i64;
        if whole != 0 {
            return (i % whole != 0).then(|| message(whole.to_string()));
        }
    }
    let data = num_f64(n);
    let mult = if factor < 1.0 { 1.0 / factor * data } else { data / factor };
    (!is_json_integer(mult)).then(|| message(go_float(factor)))
}

/// Minimum and maximum checks; integer data is compared with the bound
/// truncated to an integer, as kube-openapi does.
fn bound_error(n: Num, bound: f64, exclusive: bool, name: &str, upper: bool) -> Option<String> {
    let (fails, shown) = match n {
        Num::Int(i) => {
            let b = bound as i64;
            let fails = match (upper, exclusive) {
                (true, false) => i > b,
                (true, true) => i >= b,
                (false, false) => i < b,
                (false, true) => i <= b,
            };
            (fails, b.to_string())
        }
        Num::Float(f) => {
            let fails = match (upper, exclusive) {
                (true, false) => f > bound,
                (true, true) => f >= bound,
                (false, false) => f < bound,
                (false, true) => f <= bound,
            };
            (fails, go_float(bound))
        }
    };
    let relation = match (upper, exclusive) {
        (true, false) => "less than or equal to",
        (true, true) => "less than",
        (false, false) => "greater than or equal to",
        (false, true) => "greater than",
    };
    fails.then(|| format!("{name} in body should be {relation} {shown}"))
}

fn has_duplicates(items: &[Value]) -> bool {
    items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_equal(a, b)))
}

/// Enum membership; numbers compare by value, `null` never matches.
fn enum_equal(data: &Value, allowed: &Value) -> bool {
    match (data, allowed) {
        (Value::Null, _) => false,
        (Value::Number(_), Value::Number(_)) => match (number(data), number(allowed)) {
            (Some(a), Some(b)) => num_f64(a) == num_f64(b),
            _ => false,
        },
        _ => json_equal(data, allowed),
    }
}

/// The old value of a property or map entry, when ratcheting can correlate
/// it; `name` is the object's kube-openapi name (empty at the root, where
/// `apiVersion` and `kind` are never ratcheted).
fn correlate_key<'v>(s: &Value, old: Option<&'v Value>, name: &str, key: &str) -> Option<&'v Value> {
    if name.is_empty() && is_type_meta(key) {
        return None;
    }
    ratchet_key(s, old, key)
}

fn is_type_meta(key: &str) -> bool {
    key == "apiVersion" || key == "kind"
}

fn ratchet_key<'v>(s: &Value, old: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    if s_prop(s, key).is_none() && additional_schema(s).is_none() {
        return None;
    }
    old?.as_object()?.get(key)
}

/// The old item of a `x-kubernetes-list-type: map` list with the same keys;
/// items of other lists cannot be correlated.
fn correlate_index<'v>(s: &Value, old: Option<&'v Value>, item: &Value) -> Option<&'v Value> {
    if list_type(s) != "map" {
        return None;
    }
    let keys = list_map_keys(s);
    let item = item.as_object()?;
    if keys.is_empty() || keys.iter().any(|k| !item.contains_key(*k)) {
        return None;
    }
    old?.as_array()?.iter().find(|o| o.as_object().is_some_and(|oo| keys.iter().all(|k| oo.get(*k) == item.get(*k))))
}

// ---------------------------------------------------------------------------
// Embedded resources (schemaobjectmeta.Validate)
// ---------------------------------------------------------------------------

fn embedded_meta(s: &Value, x: &Value, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    match x {
        Value::Object(m) => {
            if is_embedded(s) && !path.is_empty() {
                out.extend(embedded_resource(m, path));
            }
            for (k, v) in m {
                if let Some(p) = s_prop(s, k) {
                    out.extend(embedded_meta(p, v, &fp_child(path, k)));
                } else if let Some(a) = additional_schema(s) {
                    out.extend(embedded_meta(a, v, &fp_key(path, k)));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s_items(s) {
                for (i, v) in items.iter().enumerate() {
                    out.extend(embedded_meta(item_schema, v, &fp_index(path, i)));
                }
            }
        }
        _ => {}
    }
    out
}

fn embedded_resource(m: &Map<String, Value>, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    for field in ["apiVersion", "kind"] {
        if !m.contains_key(field) {
            out.push(required(&fp_child(path, field), ""));
        }
    }
    if let Some(v) = m.get("apiVersion") {
        let p = fp_child(path, "apiVersion");
        match v.as_str() {
            None => out.push(invalid(&p, Some(bad(v)), "must be a string")),
            Some("") => out.push(invalid(&p, Some(go_quote("")), "must not be empty")),
            Some(av) if av.matches('/').count() > 1 => {
                out.push(invalid(&p, Some(go_quote(av)), &format!("unexpected GroupVersion string: {av}")))
            }
            Some(_) => {}
        }
    }
    if let Some(v) = m.get("kind") {
        let p = fp_child(path, "kind");
        match v.as_str() {
            None => out.push(invalid(&p, Some(bad(v)), "must be a string")),
            Some("") => out.push(invalid(&p, Some(go_quote("")), "must not be empty")),
            Some(kind) => {
                let errs = is_dns1035_label(&kind.to_lowercase());
                if !errs.is_empty() {
                    out.push(invalid(
                        &p,
                        Some(go_quote(kind)),
                        &format!("may have mixed case, but should otherwise match: {}", errs.join(",")),
                    ));
                }
            }
        }
    }
    if let Some(meta) = m.get("metadata") {
        out.extend(embedded_object_meta(meta, &fp_child(path, "metadata")));
    }
    out
}

fn embedded_object_meta(meta: &Value, path: &str) -> Vec<Issue> {
    if !meta.is_object() {
        return vec![invalid(path, Some(bad(meta)), "must be an object")];
    }
    let mut out = Vec::new();
    let name = meta_str(Some(meta), "name");
    for msg in path_segment_name_errors(name, false) {
        out.push(invalid(&fp_child(path, "name"), Some(go_quote(name)), &msg));
    }
    let generate_name = meta_str(Some(meta), "generateName");
    if !generate_name.is_empty() {
        for msg in path_segment_name_errors(generate_name, true) {
            out.push(invalid(&fp_child(path, "generateName"), Some(go_quote(generate_name)), &msg));
        }
    }
    let namespace = meta_str(Some(meta), "namespace");
    if !namespace.is_empty() {
        for msg in is_dns1123_label(namespace) {
            out.push(invalid(&fp_child(path, "namespace"), Some(go_quote(namespace)), &msg));
        }
    }
    out.extend(validate_meta_maps(Some(meta), path));
    out
}

/// `ValidatePathSegmentName`.
fn path_segment_name_errors(name: &str, prefix: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if !prefix {
        for illegal in [".", ".."] {
            if name == illegal {
                errs.push(format!("may not be '{illegal}'"));
            }
        }
    }
    for illegal in ["/", "%"] {
        if name.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// x-kubernetes-list-type set and map (listtype.ValidateListSetsAndMaps)
// ---------------------------------------------------------------------------

fn list_sets_and_maps(s: &Value, x: &Value, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    match x {
        Value::Object(m) => {
            for (k, v) in m {
                if let Some(a) = additional_schema(s) {
                    out.extend(list_sets_and_maps(a, v, &fp_key(path, k)));
                }
                if let Some(p) = s_prop(s, k) {
                    out.extend(list_sets_and_maps(p, v, &fp_child(path, k)));
                }
            }
        }
        Value::Array(items) => {
            match list_type(s) {
                "set" => {
                    for i in non_unique(items) {
                        out.push(duplicate(&fp_index(path, i), Some(bad(&items[i]))));
                    }
                }
                "map" => out.extend(list_map_duplicates(s, items, path)),
                _ => {}
            }
            if let Some(item_schema) = s_items(s) {
                for (i, v) in items.iter().enumerate() {
                    out.extend(list_sets_and_maps(item_schema, v, &fp_index(path, i)));
                }
            }
        }
        _ => {}
    }
    out
}

/// Indices of the second occurrence of each repeated value.
fn non_unique(items: &[Value]) -> Vec<usize> {
    let mut seen: Vec<(&Value, usize)> = Vec::new();
    let mut result = Vec::new();
    for (i, x) in items.iter().enumerate() {
        match seen.iter_mut().find(|(v, _)| json_equal(v, x)) {
            Some((_, times)) => {
                *times += 1;
                if *times == 2 {
                    result.push(i);
                }
            }
            None => seen.push((x, 1)),
        }
    }
    result
}

fn list_map_duplicates(s: &Value, items: &[Value], path: &str) -> Vec<Issue> {
    if let Some((i, x)) = items.iter().enumerate().find(|(_, x)| !x.is_null() && !x.is_object()) {
        return vec![invalid(&fp_index(path, i), Some(bad(x)), "must be an object for an array of list-type map")];
    }
    let keys = list_map_keys(s);
    let key_values: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            for k in &keys {
                if let Some(v) = x.get(*k) {
                    key.insert((*k).to_string(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    non_unique(&key_values).into_iter().map(|i| duplicate(&fp_index(path, i), Some(go_json(&key_values[i])))).collect()
}

// ---------------------------------------------------------------------------
// CEL rules (x-kubernetes-validations)
// ---------------------------------------------------------------------------

thread_local! {
    static CEL: CelValidator = CelValidator::new();
}

/// Ratcheting state of a node: the correlated old value, and whether the
/// nearest correlated ancestor is unchanged.
#[derive(Clone, Copy)]
struct Ratchet<'v> {
    current: Option<&'v Value>,
    parent_equal: bool,
}

impl<'v> Ratchet<'v> {
    fn should_ratchet(&self, data: &Value) -> bool {
        match self.current {
            Some(o) => json_equal(o, data),
            None => self.parent_equal,
        }
    }

    fn child(&self, data: &Value, next: Option<&'v Value>) -> Ratchet<'v> {
        match self.current {
            None => *self,
            Some(o) => Ratchet { current: next, parent_equal: json_equal(o, data) },
        }
    }
}

/// A node of the CEL walk: where it is, its value, the old value `oldSelf`
/// binds to, and ratcheting state.
struct CelAt<'v> {
    path: String,
    data: &'v Value,
    old: Option<&'v Value>,
    ratchet: Ratchet<'v>,
    resource_root: bool,
}

impl<'v> CelAt<'v> {
    fn root(data: &'v Value, old: Option<&'v Value>, ratchet: Ratchet<'v>) -> Self {
        CelAt { path: String::new(), data, old, ratchet, resource_root: true }
    }
}

struct CelPass {
    issues: Vec<Issue>,
    ratcheting: bool,
}

impl CelPass {
    fn node(&mut self, s: &Value, at: CelAt<'_>) {
        if at.data.is_null() {
            return;
        }
        self.rules(s, rules_of(s), &at, at.ratchet);
        for branch in s_array(s, "allOf") {
            let branch_ratchet = Ratchet { current: None, parent_equal: at.ratchet.parent_equal };
            self.rules(s, rules_of(branch), &at, branch_ratchet);
        }
        match at.data {
            Value::Object(m) => self.children_of_object(s, m, &at),
            Value::Array(items) => self.children_of_array(s, items, &at),
            _ => {}
        }
    }

    fn children_of_object(&mut self, s: &Value, m: &Map<String, Value>, at: &CelAt<'_>) {
        let correlatable = s_str(s, "x-kubernetes-map-type") != "atomic";
        let old_map = at.old.and_then(Value::as_object);
        for (k, v) in m {
            let (child_schema, path) = if let Some(p) = s_prop(s, k) {
                (p, fp_child(&at.path, k))
            } else if let Some(a) = additional_schema(s) {
                (a, fp_key(&at.path, k))
            } else {
                continue;
            };
            let old_v = old_map.and_then(|o| o.get(k)).filter(|_| correlatable);
            let ratchet_next = if at.path.is_empty() && is_type_meta(k) {
                Ratchet { current: None, parent_equal: false }
            } else {
                at.ratchet.child(at.data, ratchet_key(s, at.ratchet.current, k))
            };
            self.node(child_schema, CelAt { path, data: v, old: old_v, ratchet: ratchet_next, resource_root: is_embedded(child_schema) });
        }
    }

    fn children_of_array(&mut self, s: &Value, items: &[Value], at: &CelAt<'_>) {
        let Some(item_schema) = s_items(s) else {
            return;
        };
        for (i, v) in items.iter().enumerate() {
            let old_v = correlate_index(s, at.old, v);
            let ratchet_next = at.ratchet.child(at.data, correlate_index(s, at.ratchet.current, v));
            self.node(
                item_schema,
                CelAt { path: fp_index(&at.path, i), data: v, old: old_v, ratchet: ratchet_next, resource_root: is_embedded(item_schema) },
            );
        }
    }

    fn rules(&mut self, s: &Value, rules: &[Value], at: &CelAt<'_>, ratchet: Ratchet<'_>) {
        if rules.is_empty() {
            return;
        }
        let node_schema = strip_rules(s);
        let data = cel_view(at.data, at.resource_root);
        let old = at.old.map(|o| cel_view(o, at.resource_root));
        for rule in rules {
            self.rule(&node_schema, rule, at, ratchet, (&data, old.as_ref()));
        }
    }

    fn rule(&mut self, node_schema: &Value, rule: &Value, at: &CelAt<'_>, ratchet: Ratchet<'_>, (data, old): (&Value, Option<&Value>)) {
        let type_name = go_quote(s_type(node_schema));
        let transition = match compile_rule(rule) {
            Ok(t) => t,
            Err(e) => {
                self.issues.push(invalid(&at.path, Some(type_name), &format!("rule compile error: {e}")));
                return;
            }
        };
        let optional_old_self = s_flag(rule, "optionalOldSelf");
        if transition && old.is_none() && !optional_old_self {
            return;
        }
        // An unchanged value's non-transition errors are only warnings.
        if self.ratcheting && !transition && ratchet.should_ratchet(at.data) {
            return;
        }
        let eval_rule = rule_for_evaluation(rule, optional_old_self, old.is_some());
        let mut single = node_schema.clone();
        single["x-kubernetes-validations"] = json!([eval_rule]);
        let Err(errors) = CEL.with(|v| v.validate(&single, data, old)) else {
            return;
        };
        for e in errors.iter() {
            let issue = if e.kind == CelErrorKind::ValidationFailure {
                rule_failure(rule, &at.path, at.data, node_schema, &e.message)
            } else {
                let cause = e.message.trim_start_matches("rule evaluation error: ");
                invalid(&at.path, Some(type_name.clone()), &format!("{cause} evaluating rule: {}", rule_error_string(rule)))
            };
            self.issues.push(issue);
        }
    }
}

/// The rule as kube-cel evaluates it. The API server binds `oldSelf` of an
/// `optionalOldSelf` rule to an optional value, while kube-cel binds the
/// plain value, so such rules get `oldSelf` wrapped in `optional.of(...)`
/// (or replaced by `optional.none()` on create).
fn rule_for_evaluation(rule: &Value, optional_old_self: bool, has_old: bool) -> Value {
    let replacement = if has_old { "optional.of(oldSelf)" } else { "optional.none()" };
    let adapt = |expr: &str| {
        if optional_old_self { replace_old_self(expr, replacement) } else { expr.to_string() }
    };
    let mut eval_rule = json!({ "rule": adapt(s_str(rule, "rule")) });
    if let Some(expr) = rule.get("messageExpression").and_then(Value::as_str) {
        eval_rule["messageExpression"] = json!(adapt(expr));
    }
    eval_rule
}

/// Replaces the `oldSelf` identifier (not string contents or field names
/// such as `self.oldSelf`) in a CEL expression.
fn replace_old_self(expr: &str, replacement: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let end = string_literal_end(&chars, i);
            out.extend(&chars[i..end]);
            i = end;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let member = chars[..start].iter().rev().find(|c| !c.is_whitespace()).is_some_and(|c| *c == '.');
            if word == "oldSelf" && !member {
                out.push('(');
                out.push_str(replacement);
                out.push(')');
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Index just past the string literal starting at `start` (single, double
/// or triple quoted, with backslash escapes).
fn string_literal_end(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let triple = chars.len() >= start + 3 && chars[start + 1] == quote && chars[start + 2] == quote;
    let delimiter = if triple { 3 } else { 1 };
    let mut i = start + delimiter;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote && (!triple || chars[i..].starts_with(&[quote, quote, quote])) {
            return (i + delimiter).min(chars.len());
        }
        i += 1;
    }
    chars.len()
}

thread_local! {
    static COMPILED_RULES: RefCell<HashMap<String, Result<bool, String>>> = RefCell::new(HashMap::new());
}

/// Compiles one rule, once per thread (every write of a kind validates the same rules);
/// `Ok(true)` for a transition rule (uses `oldSelf`). The error is the CEL parser's
/// message, without kube-cel's prefix.
fn compile_rule(rule: &Value) -> Result<bool, String> {
    let key = rule.to_string();
    if let Some(known) = COMPILED_RULES.with(|c| c.borrow().get(&key).cloned()) {
        return known;
    }
    let result = compile_rule_uncached(rule);
    COMPILED_RULES.with(|c| c.borrow_mut().insert(key, result.clone()));
    result
}

fn compile_rule_uncached(rule: &Value) -> Result<bool, String> {
    let compiled = compile_schema(&json!({ "x-kubernetes-validations": [rule] }));
    match compiled.validations.into_iter().next() {
        Some(Ok(result)) => Ok(result.is_transition_rule),
        Some(Err(CompilationError::Parse { source, .. })) => Err(source.to_string()),
        Some(Err(CompilationError::MessageExpressionParse { source, .. })) => {
            Err(format!("messageExpression compilation failed: {source}"))
        }
        Some(Err(other)) => Err(other.to_string()),
        None => Ok(false),
    }
}

/// The field error for a rule that evaluated to false, at the rule's
/// `fieldPath` and with its `reason`.
fn rule_failure(rule: &Value, path: &str, data: &Value, s: &Value, cel_message: &str) -> Issue {
    let rule_text = s_str(rule, "rule");
    let from_expression = cel_message.trim();
    let detail = if rule.get("messageExpression").is_some()
        && cel_message != format!("failed rule: {rule_text}")
        && !from_expression.is_empty()
        && !from_expression.contains('\n')
    {
        from_expression.to_string()
    } else {
        rule_message_or_default(rule)
    };
    let path = match s_str(rule, "fieldPath") {
        "" => path.to_string(),
        fp => match valid_field_path(fp, s, true) {
            Ok((normalized, _)) => fp_child(path, &normalized),
            Err(_) => path.to_string(),
        },
    };
    let value = match s_type(s) {
        "object" | "array" => None,
        _ => Some(bad(data)),
    };
    match s_str(rule, "reason") {
        "FieldValueForbidden" => forbidden(&path, &detail),
        "FieldValueRequired" => required(&path, &detail),
        "FieldValueDuplicate" => duplicate(&path, value),
        _ => invalid(&path, value, &detail),
    }
}

fn rule_message_or_default(rule: &Value) -> String {
    let message = s_str(rule, "message");
    if message.is_empty() { format!("failed rule: {}", rule_error_string(rule)) } else { message.trim().to_string() }
}

fn rule_error_string(rule: &Value) -> String {
    let message = s_str(rule, "message");
    if message.is_empty() { s_str(rule, "rule").trim().to_string() } else { message.trim().to_string() }
}

/// The value CEL sees: at a resource root only `metadata.name` and
/// `metadata.generateName` are visible.
fn cel_view(data: &Value, resource_root: bool) -> Value {
    let mut view = data.clone();
    if resource_root && let Some(Value::Object(meta)) = view.get_mut("metadata") {
        meta.retain(|k, _| k == "name" || k == "generateName");
    }
    view
}

/// A copy of a schema node without the rules of the node and its
/// descendants, so kube-cel evaluates exactly one rule per call.
fn strip_rules(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.as_str() {
                    "x-kubernetes-validations" | "default" | "enum" | "example" => {}
                    "properties" => {
                        let props =
                            v.as_object().map(|p| p.iter().map(|(name, ps)| (name.clone(), strip_rules(ps))).collect()).unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" | "not" => {
                        out.insert(k.clone(), strip_rules(v));
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        let branches = s_array(s, k).iter().map(strip_rules).collect();
                        out.insert(k.clone(), Value::Array(branches));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `ValidFieldPath`: a JSON path of field and map accessors (`.a.b`,
/// `.m['key']`) resolved against the schema; returns the field path and the
/// schema it points to.
fn valid_field_path<'s>(json_path: &str, schema: &'s Value, allow_array_notation: bool) -> Result<(String, &'s Value), String> {
    let tokens = field_path_tokens(json_path);
    let mut tokens = tokens.iter().map(String::as_str);
    let mut path = String::new();
    let mut s = schema;
    while let Some(tok) = tokens.next() {
        let name = match tok {
            "[" => {
                if !allow_array_notation {
                    return Err("array notation is not allowed".into());
                }
                let quoted = tokens.next().ok_or("unexpected end of JSON path")?;
                if quoted.len() < 2 || !quoted.starts_with('\'') || !quoted.ends_with('\'') {
                    return Err(format!("expected single quoted string but got {quoted}"));
                }
                let name = unescape_single_quote(&quoted[1..quoted.len() - 1])?;
                match tokens.next() {
                    Some("]") => {}
                    Some(other) => return Err(format!("expected ] but got {other}")),
                    None => return Err("unexpected end of JSON path".into()),
                }
                name
            }
            "." => tokens.next().ok_or("unexpected end of JSON path")?.to_string(),
            other => return Err(format!("expected [ or . but got: {other}")),
        };
        if s.get("properties").is_some() {
            path = fp_child(&path, &name);
            s = s_prop(s, &name).ok_or("does not refer to a valid field")?;
        } else if !matches!(s_additional(s), Additional::Absent) {
            path = fp_key(&path, &name);
            s = additional_schema(s).ok_or("does not refer to a valid field")?;
        } else {
            return Err("does not refer to a valid field".into());
        }
    }
    Ok((path, s))
}

fn field_path_tokens(json_path: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = json_path.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '[' | ']') {
            tokens.push(c.to_string());
            i += 1;
        } else if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && !(chars[j] == '\'' && chars[j - 1] != '\\') {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            tokens.push(chars[i..end].iter().collect());
            i = end;
        } else {
            let mut j = i;
            while j < chars.len() && !matches!(chars[j], '.' | '[' | ']') {
                j += 1;
            }
            tokens.push(chars[i..j].iter().collect());
            i = j;
        }
    }
    tokens
}

fn unescape_single_quote(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next() {
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('v') => '\u{b}',
            Some('\'') => '\'',
            Some('\\') => '\\',
            Some(other) => {
                return Err(format!("invalid string literal: invalid escape char \\{other}"));
            }
            None => return Err("invalid string literal: invalid escape char \\".into()),
        };
        out.push(escaped);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Schema acceptance (CRD OpenAPI validation, structural schema, defaults)
// ---------------------------------------------------------------------------

/// All checks the API server runs on one version's `openAPIV3Schema`; `path`
/// is the schema's own field path.
fn check_schema(schema: &Value, path: &str, status_enabled: bool) -> Vec<Issue> {
    let mut out = Vec::new();
    if !schema.is_object() {
        out.push(invalid(path, Some(bad(schema)), "must be an object"));
        return out;
    }
    if status_enabled {
        out.extend(status_root_restrictions(schema, path));
    }
    if is_nullable(schema) {
        out.push(forbidden(&fp_child(path, "nullable"), "nullable cannot be true at the root"));
    }
    let mut generic = GenericCheck { issues: Vec::new() };
    let ssv = SchemaContext::default();
    generic.node(schema, path, &ssv, true);
    let unsupported = has_unsupported_keywords(schema);
    out.extend(generic.issues);
    if unsupported && !out.is_empty() {
        return out;
    }
    let mut structural = structural_invariants(schema, Level::Root, path);
    structural.extend(structural_completeness(schema, path));
    structural.sort_by_key(|i| i.error.to_string());
    if !structural.is_empty() {
        out.extend(structural);
        return out;
    }
    out.extend(validate_defaults(schema, path, false, true));
    out
}

const ROOT_FIELDS_WITH_STATUS: [&str; 22] = [
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

fn status_root_restrictions(schema: &Value, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let ty = s_type(schema);
    if !ty.is_empty() && ty != "object" {
        out.push(invalid(
            &fp_child(path, "type"),
            Some(go_quote(ty)),
            "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
        ));
    }
    let disallowed = schema.as_object().is_some_and(|m| m.keys().any(|k| !ROOT_FIELDS_WITH_STATUS.contains(&k.as_str())));
    if disallowed {
        out.push(invalid(
            path,
            None,
            "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled",
        ));
    }
    out
}

/// Keywords a structural schema cannot represent; their generic errors make
/// the API server skip the structural checks.
fn has_unsupported_keywords(s: &Value) -> bool {
    let Some(m) = s.as_object() else {
        return false;
    };
    let here = ["id", "$ref", "additionalItems", "patternProperties", "definitions", "dependencies"].iter().any(|k| m.contains_key(*k))
        || m.get("items").is_some_and(Value::is_array);
    here || schema_children(s).iter().any(|(_, c)| has_unsupported_keywords(c))
}

/// Every sub-schema with its relative path segment.
fn schema_children(s: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            out.push((format!("properties[{k}]"), v));
        }
    }
    if let Some(items) = s_items(s) {
        out.push(("items".into(), items));
    }
    if let Some(a) = additional_schema(s) {
        out.push(("additionalProperties".into(), a));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, b) in s_array(s, key).iter().enumerate() {
            out.push((format!("{key}[{i}]"), b));
        }
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object()) {
        out.push(("not".into(), not));
    }
    out
}

/// Options threaded through the generic schema checks.
#[derive(Clone, Default)]
struct SchemaContext {
    forbidden_defaults: Option<String>,
    inside_meta: bool,
    uncorrelatable: Option<String>,
}

impl SchemaContext {
    fn forbid_defaults(&self, reason: &str) -> Self {
        SchemaContext { forbidden_defaults: Some(reason.to_string()), ..self.clone() }
    }

    fn uncorrelatable_at(&self, path: &str) -> Self {
        SchemaContext { uncorrelatable: self.uncorrelatable.clone().or(Some(path.to_string())), ..self.clone() }
    }
}

const OPENAPI_V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// `ValidateCustomResourceDefinitionOpenAPISchema` with the v1 options.
struct GenericCheck {
    issues: Vec<Issue>,
}

impl GenericCheck {
    fn node(&mut self, s: &Value, path: &str, ctx: &SchemaContext, is_root: bool) {
        if !s.is_object() {
            return;
        }
        self.keywords(s, path, ctx);
        self.additional_properties(s, path, ctx);
        if let Some(props) = s_props(s) {
            let atomic = s_str(s, "x-kubernetes-map-type") == "atomic";
            for (k, v) in props {
                let child_path = format!("{path}.properties[{k}]");
                let mut sub = ctx.clone();
                if (is_root || is_embedded(s)) && META_FIELDS.contains(&k.as_str()) {
                    sub.inside_meta = true;
                    if is_root {
                        sub = sub.forbid_defaults(&format!("in top-level {k}"));
                    }
                }
                if atomic {
                    sub = sub.uncorrelatable_at(&child_path);
                }
                self.node(v, &child_path, &sub, false);
            }
        }
        if let Some(not) = s.get("not") {
            self.node(not, &fp_child(path, "not"), ctx, false);
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for (i, b) in s_array(s, key).iter().enumerate() {
                self.node(b, &format!("{path}.{key}[{i}]"), ctx, false);
            }
        }
        if let Some(items) = s_items(s) {
            let items_path = fp_child(path, "items");
            let sub = if list_type(s) == "map" { ctx.clone() } else { ctx.uncorrelatable_at(&items_path) };
            self.node(items, &items_path, &sub, false);
        }
        self.extensions(s, path);
        self.list_type(s, path);
        self.map_list_keys(s, path);
        self.rules(s, path, ctx);
    }

    fn keywords(&mut self, s: &Value, path: &str, ctx: &SchemaContext) {
        let ty = s_type(s);
        if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
            let supported: Vec<String> = OPENAPI_V3_TYPES.iter().map(|t| t.to_string()).collect();
            self.issues.push(not_supported(&fp_child(path, "type"), go_quote(ty), &supported));
        }
        if s_default(s).is_some()
            && let Some(reason) = &ctx.forbidden_defaults
        {
            self.issues.push(forbidden(&fp_child(path, "default"), &format!("must not be set {reason}")));
        }
        let unsupported = [
            ("id", "id is not supported"),
            ("additionalItems", "additionalItems is not supported"),
            ("patternProperties", "patternProperties is not supported"),
            ("definitions", "definitions is not supported"),
            ("dependencies", "dependencies is not supported"),
            ("$ref", "$ref is not supported"),
        ];
        for (key, detail) in unsupported {
            if s.get(key).is_some() {
                self.issues.push(forbidden(&fp_child(path, key), detail));
            }
        }
        if ty == "null" {
            self.issues.push(forbidden(&fp_child(path, "type"), "type cannot be set to null, use nullable as an alternative"));
        }
        if s.get("items").is_some_and(Value::is_array) {
            self.issues.push(forbidden(&fp_child(path, "items"), "items must be a schema object and not an array"));
        }
        if ctx.inside_meta && is_embedded(s) {
            self.issues.push(forbidden(&fp_child(path, "x-kubernetes-embedded-resource"), "must not be used inside of resource meta"));
        }
        if s_flag(s, "uniqueItems") {
            self.issues.push(forbidden(
                &fp_child(path, "uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ));
        }
    }

    fn additional_properties(&mut self, s: &Value, path: &str, ctx: &SchemaContext) {
        let additional = s_additional(s);
        if matches!(additional, Additional::Absent) {
            return;
        }
        let has_props = s_props(s).is_some_and(|p| !p.is_empty());
        if has_props && matches!(additional, Additional::Bool(false) | Additional::Schema(_)) {
            self.issues
                .push(forbidden(&fp_child(path, "additionalProperties"), "additionalProperties and properties are mutual exclusive"));
        }
        if let Additional::Schema(a) = additional {
            let child_path = fp_child(path, "additionalProperties");
            let mut sub =
                if ctx.inside_meta { ctx.forbid_defaults("inside additionalProperties applying to object metadata") } else { ctx.clone() };
            if s_str(s, "x-kubernetes-map-type") == "atomic" {
                sub = sub.uncorrelatable_at(&child_path);
            }
            self.node(a, &child_path, &sub, false);
        }
    }

    fn extensions(&mut self, s: &Value, path: &str) {
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
            self.issues.push(invalid(
                &fp_child(path, "x-kubernetes-preserve-unknown-fields"),
                Some("false".into()),
                "must be true or undefined",
            ));
        }
        let ty = s_type(s);
        if let Some(map_type) = s.get("x-kubernetes-map-type") {
            if ty != "object" {
                self.type_must_be(path, ty, "must be object if x-kubernetes-map-type is specified");
            }
            let mt = map_type.as_str().unwrap_or("");
            if mt != "atomic" && mt != "granular" {
                self.issues.push(not_supported(
                    &fp_child(path, "x-kubernetes-map-type"),
                    bad(map_type),
                    &["atomic".into(), "granular".into()],
                ));
            }
        }
    }

    fn type_must_be(&mut self, path: &str, ty: &str, detail: &str) {
        let p = fp_child(path, "type");
        if ty.is_empty() {
            self.issues.push(required(&p, detail));
        } else {
            self.issues.push(invalid(&p, Some(go_quote(ty)), detail));
        }
    }

    fn list_type(&mut self, s: &Value, path: &str) {
        let Some(lt_value) = s.get("x-kubernetes-list-type") else {
            if !list_map_keys(s).is_empty() {
                self.issues
                    .push(required(&fp_child(path, "x-kubernetes-list-type"), "must be map if x-kubernetes-list-map-keys is non-empty"));
            }
            return;
        };
        let lt = lt_value.as_str().unwrap_or("");
        let ty = s_type(s);
        if ty != "array" {
            self.type_must_be(path, ty, "must be array if x-kubernetes-list-type is specified");
        } else if lt == "set"
            && let Some(items) = s_items(s)
        {
            self.set_items_atomic(items, path);
        }
        if !["atomic", "set", "map"].contains(&lt) {
            self.issues.push(not_supported(
                &fp_child(path, "x-kubernetes-list-type"),
                bad(lt_value),
                &["atomic".into(), "set".into(), "map".into()],
            ));
        }
        if !list_map_keys(s).is_empty() && lt != "map" {
            self.issues.push(invalid(
                &fp_child(path, "x-kubernetes-list-type"),
                Some(go_quote(lt)),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            ));
        }
    }

    fn set_items_atomic(&mut self, items: &Value, path: &str) {
        let items_path = fp_child(path, "items");
        match s_type(items) {
            "array" if !matches!(list_type(items), "" | "atomic") => {
                self.issues.push(invalid(
                    &fp_child(&items_path, "x-kubernetes-list-type"),
                    Some(go_quote(list_type(items))),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ));
            }
            "object" if s_str(items, "x-kubernetes-map-type") != "atomic" => {
                self.issues.push(invalid(
                    &fp_child(&items_path, "x-kubernetes-map-type"),
                    Some("null".into()),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ));
            }
            _ => {}
        }
    }

    fn map_list_keys(&mut self, s: &Value, path: &str) {
        let lt = list_type(s);
        let items = s_items(s);
        if lt == "map" {
            let keys = list_map_keys(s);
            if keys.is_empty() {
                self.issues
                    .push(required(&fp_child(path, "x-kubernetes-list-map-keys"), "must not be empty if x-kubernetes-list-type is map"));
            }
            match items {
                None => self.issues.push(required(&fp_child(path, "items"), "must have a schema if x-kubernetes-list-type is map")),
                Some(i) if s_type(i) != "object" => self.issues.push(invalid(
                    &format!("{path}.items.type"),
                    Some(go_quote(s_type(i))),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )),
                Some(i) => self.map_keys_of_items(i, &keys, path),
            }
        }
        if (lt == "set" || lt == "map")
            && let Some(i) = items
            && is_nullable(i)
        {
            self.issues
                .push(forbidden(&format!("{path}.items.nullable"), &format!("cannot be nullable when x-kubernetes-list-type is {lt}")));
        }
    }

    fn map_keys_of_items(&mut self, items: &Value, keys: &[&str], path: &str) {
        let keys_path = fp_child(path, "x-kubernetes-list-map-keys");
        let keys_value = go_json(&json!(keys));
        let required_keys: BTreeSet<&str> = s_array(items, "required").iter().filter_map(Value::as_str).collect();
        let mut seen = BTreeSet::new();
        for k in keys {
            let key_path = format!("{path}.items.properties[{k}]");
            match s_prop(items, k) {
                Some(p) => {
                    if matches!(s_type(p), "array" | "object") {
                        self.issues.push(invalid(
                            &fp_child(&key_path, "type"),
                            Some(go_quote("object")),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        ));
                    }
                    if !required_keys.contains(k) && s_default(p).is_none() {
                        self.issues.push(required(
                            &fp_child(&key_path, "default"),
                            "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                        ));
                    }
                    if is_nullable(p) {
                        self.issues.push(forbidden(
                            &fp_child(&key_path, "nullable"),
                            "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                        ));
                    }
                }
                None => self.issues.push(invalid(&keys_path, Some(keys_value.clone()), "entries must all be names of item properties")),
            }
            if !seen.insert(*k) {
                self.issues.push(invalid(&keys_path, Some(keys_value.clone()), "must not contain duplicate entries"));
            }
        }
    }

    fn rules(&mut self, s: &Value, path: &str, ctx: &SchemaContext) {
        for (i, rule) in rules_of(s).iter().enumerate() {
            let rule_path = format!("{path}.x-kubernetes-validations[{i}]");
            self.rule_fields(s, rule, &rule_path);
            let text = s_str(rule, "rule");
            if text.trim().is_empty() {
                continue;
            }
            match compile_rule(rule) {
                Err(e) => {
                    self.issues.push(invalid(&fp_child(&rule_path, "rule"), Some(go_quote(text)), &format!("compilation failed: {e}")))
                }
                Ok(true) if !s_flag(rule, "optionalOldSelf") => {
                    if let Some(uncorrelatable) = &ctx.uncorrelatable {
                        self.issues.push(invalid(
                            &fp_child(&rule_path, "rule"),
                            Some(go_quote(text)),
                            &format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {uncorrelatable}"),
                        ));
                    }
                }
                Ok(_) => {}
            }
        }
    }

    fn rule_fields(&mut self, s: &Value, rule: &Value, rule_path: &str) {
        let text = s_str(rule, "rule").trim();
        let message = s_str(rule, "message");
        let message_expr = s_str(rule, "messageExpression");
        if text.is_empty() {
            self.issues.push(required(&fp_child(rule_path, "rule"), "rule is not specified"));
        } else if !message.is_empty() && message.trim().is_empty() {
            self.issues.push(invalid(&fp_child(rule_path, "message"), Some(go_quote(message)), "message must be non-empty if specified"));
        } else if message.trim().contains('\n') {
            self.issues.push(invalid(&fp_child(rule_path, "message"), Some(go_quote(message)), "message must not contain line breaks"));
        } else if text.contains('\n') && message.trim().is_empty() && message_expr.trim().is_empty() {
            self.issues.push(required(&fp_child(rule_path, "message"), "message must be specified if rule contains line breaks"));
        }
        if !message_expr.is_empty() && message_expr.trim().is_empty() {
            self.issues.push(required(&fp_child(rule_path, "messageExpression"), "messageExpression must be non-empty if specified"));
        }
        if let Some(reason) = rule.get("reason") {
            let supported = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];
            if !reason.as_str().is_some_and(|r| supported.contains(&r)) {
                let listed: Vec<String> = supported.iter().map(|r| r.to_string()).collect();
                self.issues.push(not_supported(&fp_child(rule_path, "reason"), bad(reason), &listed));
            }
        }
        let field_path = s_str(rule, "fieldPath");
        if !field_path.is_empty() {
            let p = fp_child(rule_path, "fieldPath");
            if field_path.trim().is_empty() {
                self.issues.push(invalid(&p, Some(go_quote(field_path)), "fieldPath must be non-empty if specified"));
            } else if field_path.contains('\n') {
                self.issues.push(invalid(&p, Some(go_quote(field_path)), "fieldPath must not contain line breaks"));
            } else if valid_field_path(field_path, s, true).is_err() {
                self.issues.push(invalid(&p, Some(go_quote(field_path)), "fieldPath must be a valid path"));
            }
        }
    }
}

/// Nesting level of a structural node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `validateStructuralInvariants`.
fn structural_invariants(s: &Value, level: Level, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let ty = s_type(s);
    if ty == "array" && s_items(s).is_none() {
        out.push(required(&fp_child(path, "items"), "must be specified"));
    }
    if let Some(items) = s_items(s) {
        out.extend(structural_invariants(items, Level::Item, &fp_child(path, "items")));
    }
    if let Some(props) = s_props(s) {
        for (k, v) in props {
            out.extend(structural_invariants(v, Level::Field, &format!("{path}.properties[{k}]")));
        }
    }
    let additional = s_additional(s);
    if !matches!(additional, Additional::Absent) {
        if level == Level::Root {
            out.push(forbidden(&fp_child(path, "additionalProperties"), "must not be used at the root"));
        }
        if let Additional::Schema(a) = additional {
            out.extend(structural_invariants(a, Level::Field, &fp_child(path, "additionalProperties")));
        }
    }
    out.extend(structural_extensions(s, path));
    out.extend(value_validation(s, is_int_or_string_any_of(s), is_int_or_string_all_of(s), level, path));
    out.extend(structural_types(s, level, path));
    out.extend(structural_meta_fields(s, level, path));
    out
}

fn structural_extensions(s: &Value, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    if is_int_or_string(s) && preserves_unknown(s) {
        out.push(invalid(
            &fp_child(path, "x-kubernetes-preserve-unknown-fields"),
            Some("true".into()),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if is_int_or_string(s) && is_embedded(s) {
        out.push(invalid(
            &fp_child(path, "x-kubernetes-embedded-resource"),
            Some("true".into()),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    out
}

fn structural_types(s: &Value, level: Level, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let ty = s_type(s);
    let type_path = fp_child(path, "type");
    if is_embedded(s) && ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if ty.is_empty() {
            out.push(required(&type_path, detail));
        } else {
            out.push(invalid(&type_path, Some(go_quote(ty)), detail));
        }
    } else if ty.is_empty() && !is_int_or_string(s) && !preserves_unknown(s) {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(required(&type_path, detail));
    }
    if is_embedded(s) && !matches!(s_additional(s), Additional::Absent) {
        out.push(forbidden(&fp_child(path, "additionalProperties"), "must not be used if x-kubernetes-embedded-resource is set"));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(invalid(&type_path, Some(go_quote(ty)), "must be object at the root"));
    }
    out
}

fn structural_meta_fields(s: &Value, level: Level, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let check_metadata = level == Level::Root || is_embedded(s);
    for field in ["kind", "apiVersion"] {
        if let Some(p) = s_prop(s, field)
            && check_metadata
            && s_type(p) != "string"
        {
            out.push(invalid(&format!("{path}.properties[{field}].type"), Some(go_quote(s_type(p))), "must be string"));
        }
    }
    if let Some(meta) = s_prop(s, "metadata") {
        let meta_path = format!("{path}.properties[metadata]");
        if check_metadata && s_type(meta) != "object" {
            out.push(invalid(&fp_child(&meta_path, "type"), Some(go_quote(s_type(meta))), "must be object"));
        }
        if level == Level::Root && !metadata_schema_is_implicit(meta) {
            out.push(forbidden(
                &meta_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if is_embedded(s) && !preserves_unknown(s) && s_props(s).is_none_or(Map::is_empty) {
        out.push(required(
            &fp_child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
    out
}

/// The root `metadata` schema may only restrict `name` and `generateName`.
fn metadata_schema_is_implicit(meta: &Value) -> bool {
    let Some(m) = meta.as_object() else {
        return true;
    };
    m.iter().all(|(k, v)| match k.as_str() {
        "type" | "default" | "example" => true,
        "properties" => v.as_object().is_some_and(|p| !p.is_empty() && p.keys().all(|name| name == "name" || name == "generateName")),
        "required" | "enum" | "allOf" | "anyOf" | "oneOf" => v.as_array().is_some_and(Vec::is_empty),
        _ => false,
    })
}

fn is_int_or_string_branches(branches: &[Value]) -> bool {
    branches.len() == 2 && branches[0] == json!({ "type": "integer" }) && branches[1] == json!({ "type": "string" })
}

fn is_int_or_string_any_of(s: &Value) -> bool {
    is_int_or_string_branches(s_array(s, "anyOf"))
}

fn is_int_or_string_all_of(s: &Value) -> bool {
    s_array(s, "allOf").first().is_some_and(|first| is_int_or_string_branches(s_array(first, "anyOf")))
}

/// `validateValueValidation`: the logical junctors of a node.
fn value_validation(v: &Value, skip_any_of: bool, skip_first_all_of_any_of: bool, level: Level, path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    if !skip_any_of {
        for (i, b) in s_array(v, "anyOf").iter().enumerate() {
            out.extend(nested_value_validation(b, false, level, &format!("{path}.anyOf[{i}]")));
        }
    }
    for (i, b) in s_array(v, "allOf").iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        out.extend(nested_value_validation(b, skip, level, &format!("{path}.allOf[{i}]")));
    }
    for (i, b) in s_array(v, "oneOf").iter().enumerate() {
        out.extend(nested_value_validation(b, false, level, &format!("{path}.oneOf[{i}]")));
    }
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        out.extend(nested_value_validation(not, false, level, &fp_child(path, "not")));
    }
    let pattern = s_str(v, "pattern");
    if !pattern.is_empty()
        && let Err(e) = go_regex(pattern)
    {
        out.push(invalid(
            &fp_child(path, "pattern"),
            Some(go_quote(pattern)),
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    out
}

/// `validateNestedValueValidation`: a schema inside a logical junctor.
fn nested_value_validation(v: &Value, skip_any_of: bool, level: Level, path: &str) -> Vec<Issue> {
    let mut out = value_validation(v, skip_any_of, false, level, path);
    if let Some(items) = s_items(v) {
        out.extend(nested_value_validation(items, false, level, &fp_child(path, "items")));
    }
    if let Some(props) = s_props(v) {
        for (k, p) in props {
            out.extend(nested_value_validation(p, false, Level::Field, &format!("{path}.properties[{k}]")));
        }
        if props.contains_key("metadata") {
            out.push(forbidden(&format!("{path}.properties[metadata]"), "must not be specified in a nested context"));
        }
    }
    let forbidden_keys = [
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        ("externalDocs", "must be undefined to be structural"),
        ("x-kubernetes-list-map-keys", "must be empty to be structural"),
        ("x-kubernetes-list-type", "must be undefined to be structural"),
        ("x-kubernetes-map-type", "must be undefined to be structural"),
        ("x-kubernetes-validations", "must be empty to be structural"),
    ];
    for (key, detail) in forbidden_keys {
        let present = match v.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(t)) => !t.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if present {
            out.push(forbidden(&fp_child(path, key), detail));
        }
    }
    let forbidden_flags = [
        ("nullable", "must be false to be structural"),
        ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
        ("x-kubernetes-embedded-resource", "must be false to be structural"),
        ("x-kubernetes-int-or-string", "must be false to be structural"),
    ];
    for (key, detail) in forbidden_flags {
        if s_flag(v, key) {
            out.push(forbidden(&fp_child(path, key), detail));
        }
    }
    out
}

/// `validateStructuralCompleteness`: fields and items named inside the
/// root's logical junctors must also be specified outside of them.
fn structural_completeness(s: &Value, path: &str) -> Vec<Issue> {
    junctor_completeness(s, Some(s), path, path)
}

fn junctor_completeness(v: &Value, s: Option<&Value>, s_path: &str, v_path: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        out.extend(nested_completeness(not, s, s_path, &fp_child(v_path, "not")));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, b) in s_array(v, key).iter().enumerate() {
            out.extend(nested_completeness(b, s, s_path, &format!("{v_path}.{key}[{i}]")));
        }
    }
    out
}

fn nested_completeness(v: &Value, s: Option<&Value>, s_path: &str, v_path: &str) -> Vec<Issue> {
    let Some(s) = s else {
        return vec![required(s_path, &format!("because it is defined in {v_path}"))];
    };
    let mut out = junctor_completeness(v, Some(s), s_path, v_path);
    if let Some(items) = s_items(v) {
        out.extend(nested_completeness(items, s_items(s), &fp_child(s_path, "items"), &fp_child(v_path, "items")));
    }
    if let Some(props) = s_props(v) {
        for (k, p) in props {
            let sp = format!("{s_path}.properties[{k}]");
            let vp = format!("{v_path}.properties[{k}]");
            match s_prop(s, k) {
                Some(sf) => out.extend(nested_completeness(p, Some(sf), &sp, &vp)),
                None => out.push(required(&sp, &format!("because it is defined in {vp}"))),
            }
        }
    }
    out
}

/// `ValidateDefaults`: every default (outside `additionalProperties`) must be
/// pruned, valid against its schema, and pass the schema's CEL rules.
/// `resource_root` treats the node as an embedded resource, as the API
/// server does for the schema root.
fn validate_defaults(s: &Value, path: &str, inside_meta: bool, resource_root: bool) -> Vec<Issue> {
    let mut out = Vec::new();
    let embedded = resource_root || is_embedded(s);
    let inside_meta = inside_meta && !embedded;
    if let Some(d) = s_default(s)
        && !inside_meta
    {
        out.extend(validate_default(s, d, &fp_child(path, "default")));
    }
    if let Some(items) = s_items(s) {
        out.extend(validate_defaults(items, &fp_child(path, "items"), inside_meta, false));
    }
    if let Some(props) = s_props(s) {
        for (k, p) in props {
            let meta = inside_meta || (embedded && META_FIELDS.contains(&k.as_str()));
            out.extend(validate_defaults(p, &format!("{path}.properties[{k}]"), meta, false));
        }
    }
    out
}

fn validate_default(s: &Value, d: &Value, path: &str) -> Vec<Issue> {
    let mut pruned = d.clone();
    prune_node(&mut pruned, Some(s), "", is_embedded(s), &mut None);
    if !json_equal(&pruned, d) {
        return vec![invalid(path, Some(bad(d)), "must not have unknown fields")];
    }
    let mut out = embedded_meta(s, d, path);
    if !out.is_empty() {
        return out;
    }
    out.extend(Oapi { prefix: path }.node(s, d, "", None).issues);
    if out.is_empty() && has_rules(s) {
        let mut cel = CelPass { issues: Vec::new(), ratcheting: false };
        let at = CelAt {
            path: path.to_string(),
            data: d,
            old: Some(d),
            ratchet: Ratchet { current: None, parent_equal: false },
            resource_root: is_embedded(s),
        };
        cel.node(s, at);
        out.extend(cel.issues);
    }
    out
}

// ---------------------------------------------------------------------------
// CustomResourceDefinition checks
// ---------------------------------------------------------------------------

fn crd_issues(crd: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    if s_str(crd, "apiVersion") != "apiextensions.k8s.io/v1" {
        out.push(invalid("apiVersion", Some(go_quote(s_str(crd, "apiVersion"))), "must be apiextensions.k8s.io/v1"));
    }
    if s_str(crd, "kind") != "CustomResourceDefinition" {
        out.push(invalid("kind", Some(go_quote(s_str(crd, "kind"))), "must be CustomResourceDefinition"));
    }
    let Some(spec) = crd.get("spec").filter(|s| s.is_object()) else {
        out.push(required("spec", ""));
        return out;
    };
    out.extend(crd_metadata(crd, spec));
    out.extend(crd_group_and_scope(spec));
    out.extend(crd_names(&defaulted_names(spec)));
    out.extend(crd_versions(spec));
    out.extend(crd_conversion(spec));
    if s_flag(spec, "preserveUnknownFields") {
        out.push(invalid(
            "spec.preserveUnknownFields",
            Some("true".into()),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    out
}

fn crd_metadata(crd: &Value, spec: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let name = meta_str(crd.get("metadata"), "name");
    if name.is_empty() {
        out.push(required("metadata.name", "name or generateName is required"));
        return out;
    }
    let plural = s_str(spec.get("names").unwrap_or(&Value::Null), "plural");
    let mut msgs = is_dns1123_subdomain(name);
    if name != format!("{plural}.{}", s_str(spec, "group")) {
        msgs.push("must be spec.names.plural+\".\"+spec.group".into());
    }
    for msg in msgs {
        out.push(invalid("metadata.name", Some(go_quote(name)), &msg));
    }
    out
}

fn crd_group_and_scope(spec: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let group = s_str(spec, "group");
    if group.is_empty() {
        out.push(required("spec.group", ""));
    } else {
        let errs = is_dns1123_subdomain(group);
        if !errs.is_empty() {
            out.push(invalid("spec.group", Some(go_quote(group)), &errs.join(",")));
        } else if !group.contains('.') {
            out.push(invalid("spec.group", Some(go_quote(group)), "should be a domain with at least one dot"));
        }
    }
    match s_str(spec, "scope") {
        "" => out.push(required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => out.push(not_supported("spec.scope", go_quote(other), &["Cluster".into(), "Namespaced".into()])),
    }
    out
}

/// `spec.names` after the API server's defaulting: `singular` is the
/// lowercased kind and `listKind` is the kind plus `List`.
fn defaulted_names(spec: &Value) -> Value {
    let mut names = spec.get("names").cloned().unwrap_or_else(|| json!({}));
    let kind = s_str(&names, "kind").to_string();
    if !names.is_object() || kind.is_empty() {
        return names;
    }
    if s_str(&names, "singular").is_empty() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if s_str(&names, "listKind").is_empty() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    names
}

fn crd_names(names: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    for field in ["plural", "singular", "kind", "listKind"] {
        if s_str(names, field).is_empty() {
            out.push(required(&format!("spec.names.{field}"), ""));
        }
    }
    for field in ["plural", "singular"] {
        let v = s_str(names, field);
        let errs = is_dns1035_label(v);
        if !v.is_empty() && !errs.is_empty() {
            out.push(invalid(&format!("spec.names.{field}"), Some(go_quote(v)), &errs.join(",")));
        }
    }
    for field in ["kind", "listKind"] {
        let v = s_str(names, field);
        let errs = is_dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            out.push(invalid(
                &format!("spec.names.{field}"),
                Some(go_quote(v)),
                &format!("may have mixed case, but should otherwise match: {}", errs.join(",")),
            ));
        }
    }
    for field in ["shortNames", "categories"] {
        for (i, v) in s_array(names, field).iter().enumerate() {
            let text = v.as_str().unwrap_or("");
            let errs = is_dns1035_label(text);
            if !errs.is_empty() {
                out.push(invalid(&format!("spec.names.{field}[{i}]"), Some(go_quote(text)), &errs.join(",")));
            }
        }
    }
    let kind = s_str(names, "kind");
    if !kind.is_empty() && kind == s_str(names, "listKind") {
        out.push(invalid("spec.names.listKind", Some(go_quote(kind)), "kind and listKind may not be the same"));
    }
    out
}

/// Where the API server reports a per-version part: at the top level when
/// every version has an identical one (the internal CRD hoists it there).
fn hoisted_path(versions: &[Value], field: &str, top: &str, i: usize, nested: &str) -> String {
    let first = versions.first().and_then(|v| v.get(field));
    let identical = versions.iter().all(|v| v.get(field) == first);
    if identical && first.is_some() { top.to_string() } else { format!("spec.versions[{i}].{nested}") }
}

fn crd_versions(spec: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let versions = s_array(spec, "versions");
    let mut names = BTreeSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let name = s_str(v, "name");
        unique &= names.insert(name);
        if s_flag(v, "storage") {
            storage += 1;
        }
        let errs = is_dns1035_label(name);
        if !errs.is_empty() {
            out.push(invalid(&format!("spec.versions[{i}].name"), Some(go_quote(name)), &errs.join(",")));
        }
    }
    if !unique {
        out.push(invalid("spec.versions", None, "must contain unique version names"));
    }
    if storage != 1 {
        out.push(invalid("spec.versions", None, "must have exactly one version marked as storage version"));
    }
    let mut checked_paths = BTreeSet::new();
    for (i, v) in versions.iter().enumerate() {
        out.extend(crd_version(versions, i, v, &mut checked_paths));
    }
    out
}

/// Validates one version; `checked` avoids repeating hoisted parts.
fn crd_version(versions: &[Value], i: usize, v: &Value, checked: &mut BTreeSet<String>) -> Vec<Issue> {
    let mut out = Vec::new();
    let status_enabled = v.get("subresources").and_then(|s| s.get("status")).is_some_and(|s| !s.is_null());
    let schema = v.get("schema").and_then(|s| s.get("openAPIV3Schema"));
    let schema_path = hoisted_path(versions, "schema", "spec.validation", i, "schema");
    match schema {
        None => out.push(required(&format!("spec.versions[{i}].schema.openAPIV3Schema"), "schemas are required")),
        Some(s) if checked.insert(schema_path.clone()) => {
            out.extend(check_schema(s, &fp_child(&schema_path, "openAPIV3Schema"), status_enabled));
        }
        Some(_) => {}
    }
    let sub_path = hoisted_path(versions, "subresources", "spec.subresources", i, "subresources");
    if let Some(sub) = v.get("subresources")
        && checked.insert(sub_path.clone())
    {
        out.extend(crd_subresources(sub, &sub_path, schema));
    }
    let columns_path = hoisted_path(versions, "additionalPrinterColumns", "spec.additionalPrinterColumns", i, "additionalPrinterColumns");
    if checked.insert(columns_path.clone()) {
        for (j, col) in s_array(v, "additionalPrinterColumns").iter().enumerate() {
            out.extend(crd_column(col, &fp_index(&columns_path, j), schema));
        }
    }
    let fields_path = hoisted_path(versions, "selectableFields", "spec.selectableFields", i, "selectableFields");
    if checked.insert(fields_path.clone()) {
        out.extend(crd_selectable_fields(s_array(v, "selectableFields"), &fields_path, schema));
    }
    if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str)
        && w.len() > 256
    {
        out.push(too_long(&format!("spec.versions[{i}].deprecationWarning"), 256));
    }
    out
}

fn validate_simple_json_path(s: &str, path: &str) -> Option<Issue> {
    if s.is_empty() {
        Some(invalid(path, Some(go_quote(s)), "must not be empty"))
    } else if !s.starts_with('.') {
        Some(invalid(path, Some(go_quote(s)), "must be a simple json path starting with ."))
    } else {
        None
    }
}

fn crd_subresources(sub: &Value, path: &str, schema: Option<&Value>) -> Vec<Issue> {
    let mut out = Vec::new();
    if let Some(scale) = sub.get("scale").filter(|s| !s.is_null()) {
        let replicas = [
            ("specReplicasPath", ".spec.", "should be a json path under .spec"),
            ("statusReplicasPath", ".status.", "should be a json path under .status"),
        ];
        for (field, prefix, detail) in replicas {
            let p = format!("{path}.scale.{field}");
            let value = s_str(scale, field);
            if value.is_empty() {
                out.push(required(&p, ""));
            } else if let Some(e) = validate_simple_json_path(value, &p) {
                out.push(e);
            } else if !value.starts_with(prefix) {
                out.push(invalid(&p, Some(go_quote(value)), detail));
            }
        }
        let selector = s_str(scale, "labelSelectorPath");
        if !selector.is_empty() {
            let p = format!("{path}.scale.labelSelectorPath");
            if let Some(e) = validate_simple_json_path(selector, &p) {
                out.push(e);
            } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
                out.push(invalid(&p, Some(go_quote(selector)), "should be a json path under either .spec or .status"));
            }
        }
    }
    let status_enabled = sub.get("status").is_some_and(|s| !s.is_null());
    if status_enabled
        && let Some(s) = schema
        && s_prop(s, "status").is_none()
        && !preserves_unknown(s)
    {
        out.push(invalid(
            &fp_child(path, "status"),
            None,
            "requires a status property in the schema, or status updates are pruned to nothing",
        ));
    }
    out
}

const PRINTER_COLUMN_TYPES: [&str; 5] = ["boolean", "date", "integer", "number", "string"];
const PRINTER_COLUMN_FORMATS: [&str; 8] = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"];

fn crd_column(col: &Value, path: &str, schema: Option<&Value>) -> Vec<Issue> {
    let mut out = Vec::new();
    if s_str(col, "name").is_empty() {
        out.push(required(&fp_child(path, "name"), ""));
    }
    let ty = s_str(col, "type");
    let types: Vec<String> = PRINTER_COLUMN_TYPES.iter().map(|t| t.to_string()).collect();
    if ty.is_empty() {
        out.push(required(&fp_child(path, "type"), &format!("must be one of {}", types.join(","))));
    } else if !PRINTER_COLUMN_TYPES.contains(&ty) {
        out.push(not_supported(&fp_child(path, "type"), go_quote(ty), &types));
    }
    let format = s_str(col, "format");
    if !format.is_empty() && !PRINTER_COLUMN_FORMATS.contains(&format) {
        let formats: Vec<String> = PRINTER_COLUMN_FORMATS.iter().map(|t| t.to_string()).collect();
        out.push(not_supported(&fp_child(path, "format"), go_quote(format), &formats));
    }
    let json_path = s_str(col, "jsonPath");
    let p = fp_child(path, "JSONPath");
    if json_path.is_empty() {
        out.push(required(&p, ""));
    } else if let Some(e) = validate_simple_json_path(json_path, &p) {
        out.push(e);
    } else if let Some(s) = schema
        && !json_path_declared(s, json_path)
    {
        out.push(invalid(&p, Some(go_quote(json_path)), "must refer to a field declared in the schema"));
    }
    out
}

/// Whether a printer column path names a declared field; filters and
/// indexes (`[...]`) select list items, and metadata fields always exist.
fn json_path_declared(schema: &Value, json_path: &str) -> bool {
    let mut s = schema;
    let plain = json_path.split('[').next().unwrap_or("");
    let segments = plain.trim_start_matches('.').split('.').filter(|p| !p.is_empty());
    let mut first = true;
    for seg in segments {
        if first && seg == "metadata" {
            return true;
        }
        first = false;
        if preserves_unknown(s) || is_int_or_string(s) {
            return true;
        }
        s = match s_prop(s, seg).or_else(|| additional_schema(s)) {
            Some(next) => next,
            None => return false,
        };
        while s_type(s) == "array" {
            match s_items(s) {
                Some(items) => s = items,
                None => return true,
            }
        }
    }
    true
}

fn crd_selectable_fields(fields: &[Value], path: &str, schema: Option<&Value>) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, f) in fields.iter().enumerate() {
        let p = format!("{path}[{i}].jsonPath");
        let json_path = s_str(f, "jsonPath");
        if json_path.is_empty() {
            out.push(required(&p, ""));
            continue;
        }
        let Some(s) = schema else { continue };
        match valid_field_path(json_path, s, false) {
            Err(e) => out.push(invalid(&p, Some(go_quote(json_path)), &format!("is an invalid path: {e}"))),
            Ok((field_path, target)) => {
                if !matches!(s_type(target), "string" | "integer" | "boolean") {
                    out.push(invalid(
                        &p,
                        Some(go_quote(json_path)),
                        "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                    ));
                }
                if !seen.insert(field_path.clone()) {
                    out.push(duplicate(&p, Some(go_quote(json_path))));
                } else if field_path == "metadata.name" || field_path == "metadata.namespace" {
                    out.push(invalid(&p, Some(go_quote(json_path)), "must not contain metadata.name or metadata.namespace"));
                }
            }
        }
    }
    const MAX_SELECTABLE_FIELDS: i64 = 8;
    if fields.len() as i64 > MAX_SELECTABLE_FIELDS {
        out.push(too_many(path, fields.len() as i64, MAX_SELECTABLE_FIELDS));
    }
    out
}

fn crd_conversion(spec: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    let Some(conversion) = spec.get("conversion").filter(|c| !c.is_null()) else {
        return out;
    };
    let strategy = s_str(conversion, "strategy");
    let webhook = conversion.get("webhook").filter(|w| !w.is_null());
    match strategy {
        "Webhook" => {
            let client_config = webhook.and_then(|w| w.get("clientConfig")).filter(|c| !c.is_null());
            if client_config.is_none() {
                out.push(required("spec.conversion.webhookClientConfig", "required when strategy is set to Webhook"));
            }
            let review_versions = webhook.map_or(&[][..], |w| s_array(w, "conversionReviewVersions"));
            if review_versions.is_empty() {
                out.push(required("spec.conversion.conversionReviewVersions", "must include at least one of v1, v1beta1"));
            }
        }
        "" | "None" => {
            if webhook.is_some() {
                out.push(forbidden("spec.conversion.webhookClientConfig", "should not be set when strategy is not set to Webhook"));
            }
        }
        other => out.push(not_supported("spec.conversion.strategy", go_quote(other), &["None".into(), "Webhook".into()])),
    }
    out
}
