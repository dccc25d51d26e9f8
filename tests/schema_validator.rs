#[path = "support/schema.rs"]
mod schema;

use schema::{FieldError, FieldErrorKind};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A root schema whose `spec` has the given properties.
fn spec_schema(props: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": props}
        }
    })
}

/// A root schema whose `spec` is exactly `spec`.
fn schema_with_spec(spec: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec
        }
    })
}

/// A well-formed object with the given spec.
fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": spec
    })
}

fn rendered(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Asserts the validation errors are exactly `expected` (rendered).
fn assert_errors(schema: &Value, obj: &Value, old: Option<&Value>, expected: &[&str]) {
    let errors = schema::validate(schema, obj, old);
    assert_eq!(rendered(&errors), expected, "object: {obj}");
}

/// Like [`assert_errors`] for errors whose order depends on map iteration.
fn assert_errors_unordered(schema: &Value, obj: &Value, expected: &[&str]) {
    let mut got = rendered(&schema::validate(schema, obj, None));
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "object: {obj}");
}

/// Asserts one `spec.<field>` value is accepted, or rejected with exactly the
/// given (kind, rendered error) pairs.
struct Case {
    name: &'static str,
    prop: Value,
    value: Value,
    expected: Vec<(FieldErrorKind, &'static str)>,
}

fn run_cases(cases: Vec<Case>) {
    for case in cases {
        let schema = spec_schema(json!({ "f": case.prop }));
        let errors = schema::validate(&schema, &object(json!({ "f": case.value })), None);
        let got: Vec<(FieldErrorKind, String)> = errors.iter().map(|e| (e.kind, e.to_string())).collect();
        let want: Vec<(FieldErrorKind, String)> = case.expected.iter().map(|(k, m)| (*k, m.to_string())).collect();
        assert_eq!(got, want, "case {}", case.name);
    }
}

fn ok(name: &'static str, prop: Value, value: Value) -> Case {
    Case { name, prop, value, expected: Vec::new() }
}

fn bad(name: &'static str, prop: Value, value: Value, kind: FieldErrorKind, msg: &'static str) -> Case {
    Case { name, prop, value, expected: vec![(kind, msg)] }
}

const BLOCKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

use FieldErrorKind::{Forbidden, Invalid, NotSupported, Required, TooLong, TooMany, Unknown};

// ---------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------

#[test]
fn display_joins_path_and_body() {
    let e = FieldError { path: "spec.admin.email".into(), kind: Required, message: "Required value".into() };
    assert_eq!(e.to_string(), "spec.admin.email: Required value");
}

// ---------------------------------------------------------------------------
// Types and nullability
// ---------------------------------------------------------------------------

#[test]
fn types_accept_matching_values() {
    run_cases(vec![
        ok("object", json!({"type": "object"}), json!({})),
        ok("array", json!({"type": "array", "items": {"type": "string"}}), json!(["a"])),
        ok("string", json!({"type": "string"}), json!("x")),
        ok("integer", json!({"type": "integer"}), json!(3)),
        ok("integral float as integer", json!({"type": "integer"}), json!(2.0)),
        ok("number from integer", json!({"type": "number"}), json!(3)),
        ok("number", json!({"type": "number"}), json!(1.5)),
        ok("boolean", json!({"type": "boolean"}), json!(false)),
    ]);
}

#[test]
fn types_reject_other_values() {
    run_cases(vec![
        bad(
            "string as integer",
            json!({"type": "integer"}),
            json!("3"),
            Invalid,
            r#"spec.f: Invalid value: "string": spec.f in body must be of type integer: "string""#,
        ),
        bad(
            "fraction as integer",
            json!({"type": "integer"}),
            json!(1.5),
            Invalid,
            r#"spec.f: Invalid value: "number": spec.f in body must be of type integer: "number""#,
        ),
        bad(
            "array as object",
            json!({"type": "object"}),
            json!([1]),
            Invalid,
            r#"spec.f: Invalid value: "array": spec.f in body must be of type object: "array""#,
        ),
        bad(
            "object as array",
            json!({"type": "array", "items": {"type": "string"}}),
            json!({}),
            Invalid,
            r#"spec.f: Invalid value: "object": spec.f in body must be of type array: "object""#,
        ),
        bad(
            "number as string",
            json!({"type": "string"}),
            json!(7),
            Invalid,
            r#"spec.f: Invalid value: "integer": spec.f in body must be of type string: "integer""#,
        ),
        bad(
            "string as boolean",
            json!({"type": "boolean"}),
            json!("true"),
            Invalid,
            r#"spec.f: Invalid value: "string": spec.f in body must be of type boolean: "string""#,
        ),
    ]);
}

#[test]
fn type_errors_block_cel_rules() {
    let schema = spec_schema(json!({
        "n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0"}]}
    }));
    assert_errors(
        &schema,
        &object(json!({"n": "x"})),
        None,
        &[r#"spec.n: Invalid value: "string": spec.n in body must be of type integer: "string""#, BLOCKED],
    );
}

#[test]
fn null_is_accepted_only_where_nullable() {
    let schema = spec_schema(json!({
        "opt": {"type": "string", "nullable": true},
        "list": {"type": "array", "items": {"type": "string"}},
        "nullableItems": {"type": "array", "items": {"type": "string", "nullable": true}}
    }));
    assert_errors(&schema, &object(json!({"opt": null, "nullableItems": [null]})), None, &[]);
    assert_errors(
        &schema,
        &object(json!({"list": ["a", null]})),
        None,
        &[r#"spec.list[1]: Invalid value: "null": spec.list[1] in body must be of type string: "null""#],
    );
}

#[test]
fn null_of_non_nullable_field_is_dropped_like_the_api_server() {
    // The API server drops such nulls while decoding, so a required field
    // set to null is reported as missing.
    let schema = schema_with_spec(json!({
        "type": "object",
        "required": ["email"],
        "properties": {"email": {"type": "string"}, "note": {"type": "string"}}
    }));
    assert_errors(&schema, &object(json!({"email": null, "note": null})), None, &["spec.email: Required value"]);
}

// ---------------------------------------------------------------------------
// Objects: required, properties, unknown fields, additionalProperties
// ---------------------------------------------------------------------------

#[test]
fn required_fields_are_reported_at_their_path() {
    let schema = schema_with_spec(json!({
        "type": "object",
        "required": ["admin"],
        "properties": {"admin": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}}
    }));
    assert_errors(&schema, &object(json!({"admin": {"email": "a@b.c"}})), None, &[]);
    let errors = schema::validate(&schema, &object(json!({"admin": {}})), None);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, Required);
    assert_eq!(errors[0].path, "spec.admin.email");
    assert_errors(&schema, &object(json!({})), None, &["spec.admin: Required value"]);
    let root = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}});
    assert_errors(&root, &json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "a"}}), None, &["spec: Required value"]);
}

#[test]
fn unknown_fields_are_reported_with_their_full_path() {
    let schema = spec_schema(json!({
        "known": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}
    }));
    let obj = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "colour": "red"},
        "spec": {"known": "x", "foo": 1, "items": [{"a": "x", "b": 2}]},
        "extra": true
    });
    let errors = schema::validate(&schema, &obj, None);
    let unknown: Vec<(&str, &str)> = errors.iter().filter(|e| e.kind == Unknown).map(|e| (e.path.as_str(), e.message.as_str())).collect();
    assert_eq!(
        unknown,
        vec![
            ("extra", r#"unknown field "extra""#),
            ("metadata.colour", r#"unknown field "metadata.colour""#),
            ("spec.foo", r#"unknown field "spec.foo""#),
            ("spec.items[0].b", r#"unknown field "spec.items[0].b""#),
        ]
    );
    assert!(errors.iter().all(|e| e.kind == Unknown), "{errors:?}");
    assert_eq!(rendered(&errors)[2], r#"spec.foo: unknown field "spec.foo""#);
}

#[test]
fn unknown_fields_are_accepted_under_preserve_unknown_fields() {
    let schema = spec_schema(json!({
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "raw": {"x-kubernetes-preserve-unknown-fields": true}
    }));
    assert_errors(&schema, &object(json!({"free": {"a": {"b": [1, 2]}}, "raw": [1, "x", null]})), None, &[]);
}

#[test]
fn additional_properties_validate_map_values() {
    let schema = spec_schema(json!({
        "config": {"type": "object", "additionalProperties": {"type": "integer", "maximum": 10}},
        "any": {"type": "object", "additionalProperties": true}
    }));
    assert_errors(&schema, &object(json!({"config": {"a": 1, "b": 2}, "any": {"x": 1}})), None, &[]);
    assert_errors_unordered(
        &schema,
        &object(json!({"config": {"key": "x", "big": 11}})),
        &[
            r#"spec.config.big: Invalid value: 11: spec.config.big in body should be less than or equal to 10"#,
            r#"spec.config.key: Invalid value: "string": spec.config.key in body must be of type integer: "string""#,
        ],
    );
}

#[test]
fn min_and_max_properties() {
    run_cases(vec![
        ok(
            "within bounds",
            json!({"type": "object", "minProperties": 1, "maxProperties": 2, "additionalProperties": {"type": "string"}}),
            json!({"a": "1"}),
        ),
        bad(
            "too few",
            json!({"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}}),
            json!({"a": "1"}),
            Invalid,
            "spec.f: Invalid value: 1: spec.f in body should have at least 2 properties",
        ),
        bad(
            "too many",
            json!({"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}),
            json!({"a": "1", "b": "2"}),
            TooMany,
            "spec.f: Too many: 2: must have at most 1 item",
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Arrays
// ---------------------------------------------------------------------------

#[test]
fn array_items_and_sizes() {
    run_cases(vec![
        ok("items", json!({"type": "array", "items": {"type": "integer"}}), json!([1, 2])),
        bad(
            "item type",
            json!({"type": "array", "items": {"type": "integer"}}),
            json!([1, "two"]),
            Invalid,
            r#"spec.f[1]: Invalid value: "string": spec.f[1] in body must be of type integer: "string""#,
        ),
        bad(
            "min items",
            json!({"type": "array", "minItems": 2, "items": {"type": "integer"}}),
            json!([1]),
            Invalid,
            "spec.f: Invalid value: 1: spec.f in body should have at least 2 items",
        ),
        bad(
            "max items",
            json!({"type": "array", "maxItems": 2, "items": {"type": "integer"}}),
            json!([1, 2, 3]),
            TooMany,
            "spec.f: Too many: 3: must have at most 2 items",
        ),
        bad(
            "unique items",
            json!({"type": "array", "uniqueItems": true, "items": {"type": "integer"}}),
            json!([1, 2, 1]),
            Invalid,
            r#"spec.f: Invalid value: "": spec.f in body shouldn't contain duplicates"#,
        ),
        ok("unique items distinct", json!({"type": "array", "uniqueItems": true, "items": {"type": "integer"}}), json!([1, 2])),
    ]);
}

#[test]
fn list_type_set_rejects_duplicates() {
    let schema = spec_schema(json!({
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
    }));
    assert_errors(&schema, &object(json!({"tags": ["a", "b"]})), None, &[]);
    let errors = schema::validate(&schema, &object(json!({"tags": ["a", "b", "a"]})), None);
    assert_eq!(rendered(&errors), [r#"spec.tags[2]: Duplicate value: "a""#]);
    assert_eq!(errors[0].kind, Invalid);
}

#[test]
fn list_type_map_requires_keys_and_rejects_duplicate_keys() {
    let schema = spec_schema(json!({
        "ports": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name", "protocol"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "protocol": {"type": "string", "default": "TCP"},
                    "port": {"type": "integer"}
                }
            }
        }
    }));
    assert_errors(
        &schema,
        &object(json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "protocol": "UDP", "port": 80}]})),
        None,
        &[],
    );
    assert_errors(
        &schema,
        &object(json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})),
        None,
        &[r#"spec.ports[1]: Duplicate value: {"name":"http","protocol":"TCP"}"#],
    );
    assert_errors(&schema, &object(json!({"ports": [{"port": 80}]})), None, &["spec.ports[0].name: Required value"]);
}

// ---------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------

#[test]
fn enum_values() {
    run_cases(vec![
        ok("listed", json!({"type": "string", "enum": ["1-10", "11-50"]}), json!("11-50")),
        bad(
            "not listed",
            json!({"type": "string", "enum": ["1-10", "11-50"]}),
            json!("huge"),
            NotSupported,
            r#"spec.f: Unsupported value: "huge": supported values: "1-10", "11-50""#,
        ),
        bad(
            "integer enum",
            json!({"type": "integer", "enum": [1, 2]}),
            json!(3),
            NotSupported,
            r#"spec.f: Unsupported value: 3: supported values: "1", "2""#,
        ),
        ok("integer enum matches", json!({"type": "integer", "enum": [1, 2]}), json!(2)),
    ]);
}

#[test]
fn pattern_uses_go_semantics() {
    run_cases(vec![
        ok("anchored", json!({"type": "string", "pattern": "^[A-Z]{2}$"}), json!("DE")),
        bad(
            "anchored mismatch",
            json!({"type": "string", "pattern": "^[A-Z]{2}$"}),
            json!("XX1"),
            Invalid,
            r#"spec.f: Invalid value: "XX1": spec.f in body should match '^[A-Z]{2}$'"#,
        ),
        ok("unanchored search", json!({"type": "string", "pattern": "[0-9]"}), json!("ab1cd")),
        bad(
            "perl digit class is ASCII only",
            json!({"type": "string", "pattern": "^\\d+$"}),
            json!("١٢٣"),
            Invalid,
            r#"spec.f: Invalid value: "١٢٣": spec.f in body should match '^\d+$'"#,
        ),
        ok("digit class inside brackets", json!({"type": "string", "pattern": "^[\\d-]+$"}), json!("12-3")),
    ]);
}

#[test]
fn string_lengths_count_characters() {
    run_cases(vec![
        ok("three characters, six bytes", json!({"type": "string", "maxLength": 3}), json!("ééé")),
        bad(
            "too long",
            json!({"type": "string", "maxLength": 3}),
            json!("éééé"),
            TooLong,
            "spec.f: Too long: may not be more than 3 bytes",
        ),
        bad(
            "too short",
            json!({"type": "string", "minLength": 2}),
            json!("é"),
            Invalid,
            r#"spec.f: Invalid value: "é": spec.f in body should be at least 2 chars long"#,
        ),
        ok("long enough", json!({"type": "string", "minLength": 2}), json!("éé")),
    ]);
}

#[test]
fn formats() {
    run_cases(vec![
        ok("date-time utc", json!({"type": "string", "format": "date-time"}), json!("2024-02-29T10:00:00Z")),
        ok("date-time offset and fraction", json!({"type": "string", "format": "date-time"}), json!("2024-01-01T10:00:00.123+02:00")),
        bad(
            "date-time garbage",
            json!({"type": "string", "format": "date-time"}),
            json!("yesterday"),
            Invalid,
            r#"spec.f: Invalid value: "yesterday": spec.f in body must be of type date-time: "yesterday""#,
        ),
        bad(
            "date-time without offset",
            json!({"type": "string", "format": "date-time"}),
            json!("2024-01-01T10:00:00"),
            Invalid,
            r#"spec.f: Invalid value: "2024-01-01T10:00:00": spec.f in body must be of type date-time: "2024-01-01T10:00:00""#,
        ),
        bad(
            "date-time impossible day",
            json!({"type": "string", "format": "date-time"}),
            json!("2023-02-29T10:00:00Z"),
            Invalid,
            r#"spec.f: Invalid value: "2023-02-29T10:00:00Z": spec.f in body must be of type date-time: "2023-02-29T10:00:00Z""#,
        ),
        bad(
            "date-time leap second",
            json!({"type": "string", "format": "date-time"}),
            json!("2016-12-31T23:59:60Z"),
            Invalid,
            r#"spec.f: Invalid value: "2016-12-31T23:59:60Z": spec.f in body must be of type date-time: "2016-12-31T23:59:60Z""#,
        ),
        ok("email", json!({"type": "string", "format": "email"}), json!("ops@example.com")),
        ok("email with display name", json!({"type": "string", "format": "email"}), json!("Ops <ops@example.com>")),
        bad(
            "email without domain",
            json!({"type": "string", "format": "email"}),
            json!("ops"),
            Invalid,
            r#"spec.f: Invalid value: "ops": spec.f in body must be of type email: "ops""#,
        ),
        ok("uuid", json!({"type": "string", "format": "uuid"}), json!("123e4567-e89b-12d3-a456-426614174000")),
        bad(
            "ipv4",
            json!({"type": "string", "format": "ipv4"}),
            json!("300.1.1.1"),
            Invalid,
            r#"spec.f: Invalid value: "300.1.1.1": spec.f in body must be of type ipv4: "300.1.1.1""#,
        ),
        ok("unsupported format is ignored", json!({"type": "string", "format": "k8s-name-of-my-own"}), json!("ANY thing")),
        // The API server strips the int32/int64 formats before validating.
        ok("int32 is not range-checked", json!({"type": "integer", "format": "int32"}), json!(3_000_000_000_i64)),
    ]);
}

#[test]
fn format_errors_block_cel_rules() {
    let schema = spec_schema(json!({
        "when": {"type": "string", "format": "date-time", "x-kubernetes-validations": [{"rule": "true"}]}
    }));
    let errors = schema::validate(&schema, &object(json!({"when": "soon"})), None);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[1].to_string(), BLOCKED);
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

#[test]
fn numeric_bounds() {
    run_cases(vec![
        ok("inclusive bounds", json!({"type": "integer", "minimum": 1, "maximum": 5}), json!(5)),
        bad(
            "below minimum",
            json!({"type": "integer", "minimum": 1}),
            json!(0),
            Invalid,
            "spec.f: Invalid value: 0: spec.f in body should be greater than or equal to 1",
        ),
        bad(
            "above maximum",
            json!({"type": "integer", "maximum": 5}),
            json!(7),
            Invalid,
            "spec.f: Invalid value: 7: spec.f in body should be less than or equal to 5",
        ),
        bad(
            "exclusive minimum",
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}),
            json!(0.0),
            Invalid,
            "spec.f: Invalid value: 0: spec.f in body should be greater than 0",
        ),
        bad(
            "exclusive maximum",
            json!({"type": "number", "maximum": 1.5, "exclusiveMaximum": true}),
            json!(1.5),
            Invalid,
            "spec.f: Invalid value: 1.5: spec.f in body should be less than 1.5",
        ),
        ok("multiple of", json!({"type": "integer", "multipleOf": 5}), json!(15)),
        bad(
            "not a multiple",
            json!({"type": "integer", "multipleOf": 5}),
            json!(12),
            Invalid,
            "spec.f: Invalid value: 12: spec.f in body should be a multiple of 5",
        ),
        bad(
            "fractional multiple",
            json!({"type": "number", "multipleOf": 0.5}),
            json!(1.25),
            Invalid,
            "spec.f: Invalid value: 1.25: spec.f in body should be a multiple of 0.5",
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Kubernetes extensions
// ---------------------------------------------------------------------------

#[test]
fn int_or_string() {
    run_cases(vec![
        ok("integer", json!({"x-kubernetes-int-or-string": true}), json!(8080)),
        ok("string", json!({"x-kubernetes-int-or-string": true}), json!("http")),
        bad(
            "boolean",
            json!({"x-kubernetes-int-or-string": true}),
            json!(true),
            Invalid,
            r#"spec.f: Invalid value: "boolean": spec.f in body must be of type integer,string: "boolean""#,
        ),
    ]);
}

#[test]
fn embedded_resource_requires_type_meta_and_valid_metadata() {
    let schema = spec_schema(json!({
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
    }));
    assert_errors(
        &schema,
        &object(json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}})),
        None,
        &[],
    );
    assert_errors(
        &schema,
        &object(json!({"template": {"metadata": {"name": "a/b"}}})),
        None,
        &[
            "spec.template.apiVersion: Required value",
            "spec.template.kind: Required value",
            r#"spec.template.metadata.name: Invalid value: "a/b": may not contain '/'"#,
        ],
    );
    assert_errors(
        &schema,
        &object(json!({"template": {"apiVersion": "a/b/c", "kind": "Pod_Template"}})),
        None,
        &[
            r#"spec.template.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#,
            r#"spec.template.kind: Invalid value: "Pod_Template": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
        ],
    );
}

// ---------------------------------------------------------------------------
// Logical junctors
// ---------------------------------------------------------------------------

#[test]
fn any_of() {
    let prop = json!({"type": "string", "anyOf": [{"pattern": "^a"}, {"pattern": "^b"}]});
    run_cases(vec![
        ok("second branch", prop.clone(), json!("bee")),
        Case {
            name: "no branch",
            prop,
            value: json!("cat"),
            expected: vec![
                (Invalid, r#"<nil>: Invalid value: "": "spec.f" must validate at least one schema (anyOf)"#),
                (Invalid, r#"spec.f: Invalid value: "cat": spec.f in body should match '^a'"#),
            ],
        },
    ]);
}

#[test]
fn one_of() {
    let prop = json!({
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
    });
    run_cases(vec![
        ok("exactly one", prop.clone(), json!({"a": "x"})),
        Case {
            name: "both",
            prop: prop.clone(),
            value: json!({"a": "x", "b": "y"}),
            expected: vec![(
                Invalid,
                r#"<nil>: Invalid value: "": "spec.f" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
            )],
        },
        Case {
            name: "none",
            prop,
            value: json!({}),
            expected: vec![
                (Invalid, r#"<nil>: Invalid value: "": "spec.f" must validate one and only one schema (oneOf). Found none valid"#),
                (Required, "spec.f.a: Required value"),
            ],
        },
    ]);
}

#[test]
fn all_of_and_not() {
    let all_of = json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]});
    let not = json!({"type": "string", "not": {"enum": ["root"]}});
    run_cases(vec![
        ok("all of", all_of.clone(), json!(2)),
        Case {
            name: "all of fails",
            prop: all_of,
            value: json!(4),
            expected: vec![
                (Invalid, "spec.f: Invalid value: 4: spec.f in body should be less than or equal to 3"),
                (Invalid, r#"<nil>: Invalid value: "": "spec.f" must validate all the schemas (allOf)"#),
            ],
        },
        ok("not", not.clone(), json!("user")),
        bad("not fails", not, json!("root"), Invalid, r#"<nil>: Invalid value: "": "spec.f" must not validate the schema (not)"#),
    ]);
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

fn with_metadata(metadata: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata, "spec": {}})
}

#[test]
fn metadata_name_must_be_a_dns_subdomain() {
    let schema = spec_schema(json!({}));
    assert_errors(&schema, &with_metadata(json!({"name": "good.name-1"})), None, &[]);
    let errors = schema::validate(&schema, &with_metadata(json!({"name": "Bad_Name"})), None);
    assert_eq!(
        rendered(&errors),
        [
            r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
    assert_errors(&schema, &with_metadata(json!({})), None, &["metadata.name: Required value: name or generateName is required"]);
    assert_errors(&schema, &with_metadata(json!({"generateName": "widget-"})), None, &[]);
}

#[test]
fn metadata_labels_and_annotations() {
    let schema = spec_schema(json!({}));
    assert_errors(
        &schema,
        &with_metadata(json!({"name": "a", "labels": {"app.kubernetes.io/name": "web"}, "annotations": {"Example.com/Note": "any text"}})),
        None,
        &[],
    );
    let errors = schema::validate(&schema, &with_metadata(json!({"name": "a", "labels": {"bad key": "x", "ok": "bad value!"}})), None);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.path == "metadata.labels" && e.kind == Invalid));
    assert!(errors[0].message.starts_with(r#"Invalid value: "bad key": name part must consist of"#));
    assert!(errors[1].message.starts_with(r#"Invalid value: "bad value!": a valid label must be an empty string"#));
}

#[test]
fn schema_constraints_on_metadata_name_apply() {
    let schema = json!({
        "type": "object",
        "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}}}
    });
    assert_errors(
        &schema,
        &json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "toolong"}}),
        None,
        &["metadata.name: Too long: may not be more than 5 bytes"],
    );
}

#[test]
fn metadata_name_is_immutable_on_update() {
    let schema = spec_schema(json!({}));
    let old = with_metadata(json!({"name": "a"}));
    let new = with_metadata(json!({"name": "b"}));
    assert_errors(&schema, &new, Some(&old), &[r#"metadata.name: Invalid value: "b": field is immutable"#]);
}

// ---------------------------------------------------------------------------
// Ratcheting on update
// ---------------------------------------------------------------------------

#[test]
fn unchanged_invalid_fields_are_ratcheted_on_update() {
    let schema = spec_schema(json!({
        "name": {"type": "string", "pattern": "^[a-z]+$"},
        "replicas": {"type": "integer"}
    }));
    let old = object(json!({"name": "UPPER", "replicas": 1}));
    let unchanged = object(json!({"name": "UPPER", "replicas": 2}));
    assert_errors(&schema, &unchanged, Some(&old), &[]);
    let changed = object(json!({"name": "OTHER", "replicas": 2}));
    assert_errors(&schema, &changed, Some(&old), &[r#"spec.name: Invalid value: "OTHER": spec.name in body should match '^[a-z]+$'"#]);
    // The same object is rejected on create.
    assert_errors(&schema, &unchanged, None, &[r#"spec.name: Invalid value: "UPPER": spec.name in body should match '^[a-z]+$'"#]);
}

// ---------------------------------------------------------------------------
// CEL rules
// ---------------------------------------------------------------------------

#[test]
fn cel_creation_rule() {
    let schema = spec_schema(json!({
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == self.lowerAscii()", "message": "name must be lowercase"}]}
    }));
    assert_errors(&schema, &object(json!({"name": "web"})), None, &[]);
    let errors = schema::validate(&schema, &object(json!({"name": "Web"})), None);
    assert_eq!(rendered(&errors), [r#"spec.name: Invalid value: "Web": name must be lowercase"#]);
    assert_eq!(errors[0].kind, Invalid);
}

#[test]
fn cel_transition_rule_makes_a_field_immutable() {
    let schema = spec_schema(json!({
        "region": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "region is immutable"}]},
        "replicas": {"type": "integer"}
    }));
    let created = object(json!({"region": "eu", "replicas": 1}));
    assert_errors(&schema, &created, None, &[]);
    let scaled = object(json!({"region": "eu", "replicas": 3}));
    assert_errors(&schema, &scaled, Some(&created), &[]);
    let moved = object(json!({"region": "us", "replicas": 1}));
    assert_errors(&schema, &moved, Some(&created), &[r#"spec.region: Invalid value: "us": region is immutable"#]);
}

#[test]
fn cel_optional_old_self_rule_runs_on_create_and_update() {
    let schema = spec_schema(json!({
        "owner": {"type": "string", "x-kubernetes-validations": [{
            "rule": "oldSelf.hasValue() ? self == oldSelf.value() : self.startsWith('team-')",
            "optionalOldSelf": true,
            "message": "owner must start with team- and never change"
        }]}
    }));
    let created = object(json!({"owner": "team-a"}));
    assert_errors(&schema, &created, None, &[]);
    assert_errors(
        &schema,
        &object(json!({"owner": "alice"})),
        None,
        &[r#"spec.owner: Invalid value: "alice": owner must start with team- and never change"#],
    );
    assert_errors(&schema, &created, Some(&created), &[]);
    assert_errors(
        &schema,
        &object(json!({"owner": "team-b"})),
        Some(&created),
        &[r#"spec.owner: Invalid value: "team-b": owner must start with team- and never change"#],
    );
}

#[test]
fn cel_cross_field_rule() {
    let schema = schema_with_spec(json!({
        "type": "object",
        "properties": {"minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"}]
    }));
    assert_errors(&schema, &object(json!({"minReplicas": 1, "maxReplicas": 3})), None, &[]);
    assert_errors(
        &schema,
        &object(json!({"minReplicas": 4, "maxReplicas": 3})),
        None,
        &["spec: Invalid value: minReplicas must not exceed maxReplicas"],
    );
}

#[test]
fn cel_message_expression_field_path_and_reason() {
    let schema = schema_with_spec(json!({
        "type": "object",
        "properties": {"replicas": {"type": "integer"}, "mode": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.replicas <= 5", "messageExpression": "'replicas is ' + string(self.replicas)", "fieldPath": ".replicas"},
            {"rule": "self.mode != 'legacy'", "message": "legacy mode is retired", "reason": "FieldValueForbidden", "fieldPath": ".mode"},
            {"rule": "self.replicas > 0"}
        ]
    }));
    let errors = schema::validate(&schema, &object(json!({"replicas": 9, "mode": "legacy"})), None);
    assert_eq!(rendered(&errors), ["spec.replicas: Invalid value: replicas is 9", "spec.mode: Forbidden: legacy mode is retired",]);
    assert_eq!(errors[1].kind, Forbidden);
    assert_errors(&schema, &object(json!({"replicas": 0, "mode": "x"})), None, &["spec: Invalid value: failed rule: self.replicas > 0"]);
}

#[test]
fn cel_rules_see_defaults() {
    let schema = schema_with_spec(json!({
        "type": "object",
        "properties": {"mode": {"type": "string", "default": "fast"}},
        "x-kubernetes-validations": [{"rule": "self.mode == 'fast'", "message": "mode must be fast"}]
    }));
    assert_errors(&schema, &object(json!({})), None, &[]);
}

#[test]
fn unchanged_fields_ratchet_cel_rules_on_update() {
    let schema = spec_schema(json!({
        "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == self.lowerAscii()", "message": "name must be lowercase"}]},
        "replicas": {"type": "integer"}
    }));
    let old = object(json!({"name": "UPPER", "replicas": 1}));
    assert_errors(&schema, &object(json!({"name": "UPPER", "replicas": 2})), Some(&old), &[]);
    assert_errors(
        &schema,
        &object(json!({"name": "OTHER", "replicas": 2})),
        Some(&old),
        &[r#"spec.name: Invalid value: "OTHER": name must be lowercase"#],
    );
}

#[test]
fn cel_rules_on_map_values_report_keyed_paths() {
    let schema = spec_schema(json!({
        "limits": {"type": "object", "additionalProperties": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= 0", "message": "must not be negative"}]}}
    }));
    assert_errors(&schema, &object(json!({"limits": {"cpu": -1}})), None, &["spec.limits[cpu]: Invalid value: -1: must not be negative"]);
}

// ---------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------

#[test]
fn prune_removes_undeclared_fields() {
    let schema = spec_schema(json!({
        "known": {"type": "string"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "integer"}}}}
    }));
    let mut obj = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}, "colour": "red"},
        "status": {"x": 1},
        "spec": {
            "known": "k",
            "unknown": 1,
            "free": {"anything": [1], "inner": {"a": "x", "b": "dropped"}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "other": 1},
            "list": [{"a": 1, "b": 2}]
        }
    });
    schema::prune(&schema, &mut obj);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {
                "known": "k",
                "free": {"anything": [1], "inner": {"a": "x"}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                "list": [{"a": 1}]
            }
        })
    );
}

#[test]
fn type_meta_and_metadata_survive_a_schema_that_omits_them() {
    // kube-derive does not declare apiVersion, kind or metadata.
    let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}});
    let mut obj = object(json!({"a": "x"}));
    let original = obj.clone();
    schema::prune(&schema, &mut obj);
    assert_eq!(obj, original);
    assert_errors(&schema, &original, None, &[]);
}

#[test]
fn prune_drops_nulls_of_non_nullable_fields_without_defaults() {
    let schema = spec_schema(json!({
        "plain": {"type": "string"},
        "nullable": {"type": "string", "nullable": true},
        "defaulted": {"type": "string", "default": "d"}
    }));
    let mut obj = object(json!({"plain": null, "nullable": null, "defaulted": null}));
    schema::prune(&schema, &mut obj);
    assert_eq!(obj["spec"], json!({"nullable": null, "defaulted": null}));
}

// ---------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------

#[test]
fn defaults_apply_to_absent_fields_and_nested_objects() {
    let schema = spec_schema(json!({
        "mode": {"type": "string", "default": "fast"},
        "kept": {"type": "string", "default": "d"},
        "limits": {"type": "object", "default": {}, "properties": {"cpu": {"type": "string", "default": "1"}, "memory": {"type": "string"}}},
        "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "integer", "default": 1}}}}
    }));
    let mut obj = object(json!({"kept": "mine", "ports": [{}, {"protocol": "UDP"}], "labels": {"a": {}}}));
    schema::apply_defaults(&schema, &mut obj);
    assert_eq!(
        obj["spec"],
        json!({
            "mode": "fast",
            "kept": "mine",
            "limits": {"cpu": "1"},
            "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
            "labels": {"a": {"v": 1}}
        })
    );
}

#[test]
fn defaults_replace_null_only_when_not_nullable() {
    let schema = spec_schema(json!({
        "mode": {"type": "string", "default": "fast"},
        "opt": {"type": "string", "nullable": true, "default": "x"},
        "items": {"type": "array", "items": {"type": "string", "default": "item"}}
    }));
    let mut obj = object(json!({"mode": null, "opt": null, "items": [null, "a"]}));
    schema::apply_defaults(&schema, &mut obj);
    assert_eq!(obj["spec"], json!({"mode": "fast", "opt": null, "items": ["item", "a"]}));
}

// ---------------------------------------------------------------------------
// Structural schema checks
// ---------------------------------------------------------------------------

/// A valid root schema with `spec` replaced.
fn root_with_spec(spec: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec}})
}

#[test]
fn structural_schema_is_accepted() {
    let accepted = [
        spec_schema(json!({
            "name": {"type": "string", "pattern": "^[a-z]+$", "default": "web"},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "raw": {"x-kubernetes-preserve-unknown-fields": true},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "choice": {"type": "object", "properties": {"a": {"type": "string"}}, "oneOf": [{"required": ["a"]}]},
            "immutable": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}
        })),
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}}}}),
    ];
    for schema in accepted {
        assert_eq!(schema::check_structural(&schema), Vec::<String>::new(), "{schema}");
    }
}

#[test]
fn structural_violations_are_detected() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("root type missing", json!({"properties": {}}), "openAPIV3Schema.type: Required value: must not be empty at the root"),
        ("root type not object", json!({"type": "string"}), r#"openAPIV3Schema.type: Invalid value: "string": must be object at the root"#),
        (
            "root nullable",
            json!({"type": "object", "nullable": true}),
            "openAPIV3Schema.nullable: Forbidden: nullable cannot be true at the root",
        ),
        (
            "field without type",
            root_with_spec(json!({"type": "object", "properties": {"a": {"description": "x"}}})),
            "openAPIV3Schema.properties[spec].properties[a].type: Required value: must not be empty for specified object fields",
        ),
        (
            "item without type",
            root_with_spec(json!({"type": "array", "items": {"description": "x"}})),
            "openAPIV3Schema.properties[spec].items.type: Required value: must not be empty for specified array items",
        ),
        (
            "array without items",
            root_with_spec(json!({"type": "array"})),
            "openAPIV3Schema.properties[spec].items: Required value: must be specified",
        ),
        (
            "$ref",
            root_with_spec(json!({"$ref": "#/definitions/x"})),
            "openAPIV3Schema.properties[spec].$ref: Forbidden: $ref is not supported",
        ),
        (
            "additionalProperties with properties",
            root_with_spec(json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}})),
            "openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ),
        (
            "additionalProperties at the root",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            "openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root",
        ),
        (
            "description in anyOf",
            root_with_spec(json!({"type": "string", "anyOf": [{"description": "x", "pattern": "a"}]})),
            "openAPIV3Schema.properties[spec].anyOf[0].description: Forbidden: must be empty to be structural",
        ),
        (
            "type in allOf",
            root_with_spec(json!({"type": "string", "allOf": [{"type": "string"}]})),
            "openAPIV3Schema.properties[spec].allOf[0].type: Forbidden: must be empty to be structural",
        ),
        (
            "default in oneOf",
            root_with_spec(json!({"type": "string", "oneOf": [{"default": "a"}]})),
            "openAPIV3Schema.properties[spec].oneOf[0].default: Forbidden: must be undefined to be structural",
        ),
        (
            "additionalProperties in not",
            root_with_spec(json!({"type": "object", "not": {"additionalProperties": {"type": "string"}}})),
            "openAPIV3Schema.properties[spec].not.additionalProperties: Forbidden: must be undefined to be structural",
        ),
        (
            "nullable in anyOf",
            root_with_spec(json!({"type": "string", "anyOf": [{"nullable": true}]})),
            "openAPIV3Schema.properties[spec].anyOf[0].nullable: Forbidden: must be false to be structural",
        ),
        (
            "field only inside a junctor",
            json!({"type": "object", "anyOf": [{"properties": {"b": {"pattern": "x"}}}]}),
            "openAPIV3Schema.properties[b]: Required value: because it is defined in openAPIV3Schema.anyOf[0].properties[b]",
        ),
        (
            "metadata restricted to name and generateName",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            "openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        ),
        (
            "default with unknown fields",
            root_with_spec(json!({"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": "y"}})),
            r#"openAPIV3Schema.properties[spec].default: Invalid value: {"a":"x","b":"y"}: must not have unknown fields"#,
        ),
        (
            "default of the wrong type",
            root_with_spec(json!({"type": "object", "properties": {"n": {"type": "integer", "default": "one"}}})),
            r#"openAPIV3Schema.properties[spec].properties[n].default: Invalid value: "string":  in body must be of type integer: "string""#,
        ),
        (
            "default breaking a rule",
            root_with_spec(
                json!({"type": "object", "properties": {"n": {"type": "integer", "default": 0, "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}]}}}),
            ),
            "openAPIV3Schema.properties[spec].properties[n].default: Invalid value: 0: must be positive",
        ),
        (
            "rule that does not compile",
            root_with_spec(json!({"type": "integer", "x-kubernetes-validations": [{"rule": "self >"}]})),
            r#"openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "self >": compilation failed: "#,
        ),
        (
            "transition rule on list items",
            root_with_spec(
                json!({"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}),
            ),
            r#"openAPIV3Schema.properties[spec].items.x-kubernetes-validations[0].rule: Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within openAPIV3Schema.properties[spec].items"#,
        ),
        (
            "bad rule reason",
            root_with_spec(json!({"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "reason": "Nope"}]})),
            r#"openAPIV3Schema.properties[spec].x-kubernetes-validations[0].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#,
        ),
        (
            "uniqueItems",
            root_with_spec(json!({"type": "array", "uniqueItems": true, "items": {"type": "string"}})),
            "openAPIV3Schema.properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
        (
            "invalid pattern",
            root_with_spec(json!({"type": "string", "pattern": "(unclosed"})),
            r#"openAPIV3Schema.properties[spec].pattern: Invalid value: "(unclosed": must be a valid regular expression, but isn't: "#,
        ),
        (
            "preserve-unknown-fields false",
            root_with_spec(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
            "openAPIV3Schema.properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
        ),
        (
            "list map key neither required nor defaulted",
            root_with_spec(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}),
            ),
            "openAPIV3Schema.properties[spec].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
        ),
        (
            "embedded resource without properties",
            root_with_spec(json!({"type": "object", "x-kubernetes-embedded-resource": true})),
            "openAPIV3Schema.properties[spec].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ),
        (
            "unsupported type",
            root_with_spec(json!({"type": "float"})),
            r#"openAPIV3Schema.properties[spec].type: Unsupported value: "float": supported values: "array", "boolean", "integer", "number", "object", "string""#,
        ),
        (
            "default in top-level metadata",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}}}),
            "openAPIV3Schema.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata",
        ),
    ];
    for (name, schema, expected) in cases {
        let problems = schema::check_structural(&schema);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "case {name}: expected a problem starting with\n  {expected}\ngot\n  {problems:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// CustomResourceDefinition checks
// ---------------------------------------------------------------------------

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "selectableFields": [{"jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "title": "Widget",
                    "required": ["spec"],
                    "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}},
                        "status": {"type": "object", "nullable": true, "properties": {"conditions": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}
                    }
                }}
            }]
        }
    })
}

#[test]
fn well_formed_crd_is_accepted() {
    assert_eq!(schema::check_crd(&crd()), Vec::<String>::new());
}

#[test]
fn crd_names_are_defaulted_before_checks() {
    // kube-derive leaves out listKind and the API server defaults it.
    let mut c = crd();
    let names = c["spec"]["names"].as_object_mut().unwrap();
    names.remove("listKind");
    names.remove("singular");
    assert_eq!(schema::check_crd(&c), Vec::<String>::new());
    c["spec"]["names"]["kind"] = json!("");
    assert!(schema::check_crd(&c).contains(&"spec.names.kind: Required value".to_string()));
}

/// An edit that introduces one problem into [`crd`].
type Mutation = fn(&mut Value);

#[test]
fn crd_problems_are_detected() {
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "name mismatch",
            |c| c["metadata"]["name"] = json!("gadgets.example.com"),
            r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
        ),
        (
            "group without dot",
            |c| c["spec"]["group"] = json!("example"),
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
        ),
        (
            "uppercase plural",
            |c| c["spec"]["names"]["plural"] = json!("Widgets"),
            r#"spec.names.plural: Invalid value: "Widgets": a DNS-1035 label must consist of"#,
        ),
        ("missing plural", |c| c["spec"]["names"]["plural"] = json!(""), "spec.names.plural: Required value"),
        (
            "kind equals listKind",
            |c| c["spec"]["names"]["listKind"] = json!("Widget"),
            r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#,
        ),
        (
            "bad short name",
            |c| c["spec"]["names"]["shortNames"] = json!(["w_d"]),
            r#"spec.names.shortNames[0]: Invalid value: "w_d": a DNS-1035 label"#,
        ),
        (
            "bad category",
            |c| c["spec"]["names"]["categories"] = json!(["All"]),
            r#"spec.names.categories[0]: Invalid value: "All": a DNS-1035 label"#,
        ),
        (
            "bad scope",
            |c| c["spec"]["scope"] = json!("Global"),
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
        ),
        (
            "no storage version",
            |c| c["spec"]["versions"][0]["storage"] = json!(false),
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        ),
        (
            "two storage versions",
            |c| {
                let v = c["spec"]["versions"][0].clone();
                c["spec"]["versions"].as_array_mut().unwrap().push(v);
            },
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        ),
        (
            "duplicate version names",
            |c| {
                let mut v = c["spec"]["versions"][0].clone();
                v["storage"] = json!(false);
                c["spec"]["versions"].as_array_mut().unwrap().push(v);
            },
            "spec.versions: Invalid value: must contain unique version names",
        ),
        (
            "missing schema",
            |c| c["spec"]["versions"][0].as_object_mut().unwrap().remove("schema").map(drop).unwrap_or(()),
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
        ),
        (
            "non-structural schema",
            |c| c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"] = json!({}),
            "spec.validation.openAPIV3Schema.properties[spec].properties[size].type: Required value: must not be empty for specified object fields",
        ),
        (
            "schema differing per version",
            |c| {
                let mut v = c["spec"]["versions"][0].clone();
                v["name"] = json!("v2");
                v["storage"] = json!(false);
                v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"] = json!({"type": "array"});
                c["spec"]["versions"].as_array_mut().unwrap().push(v);
            },
            "spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[size].items: Required value: must be specified",
        ),
        (
            "printer column for an undeclared field",
            |c| c["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = json!(".spec.colour"),
            r#"spec.additionalPrinterColumns[0].JSONPath: Invalid value: ".spec.colour": must refer to a field declared in the schema"#,
        ),
        (
            "printer column type",
            |c| c["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("text"),
            r#"spec.additionalPrinterColumns[0].type: Unsupported value: "text": supported values: "boolean", "date", "integer", "number", "string""#,
        ),
        (
            "printer column path without dot",
            |c| c["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = json!("spec.size"),
            r#"spec.additionalPrinterColumns[0].JSONPath: Invalid value: "spec.size": must be a simple json path starting with ."#,
        ),
        (
            "selectable field missing",
            |c| c["spec"]["versions"][0]["selectableFields"][0]["jsonPath"] = json!(".spec.colour"),
            r#"spec.selectableFields[0].jsonPath: Invalid value: ".spec.colour": is an invalid path: does not refer to a valid field"#,
        ),
        (
            "selectable field not scalar",
            |c| c["spec"]["versions"][0]["selectableFields"][0]["jsonPath"] = json!(".spec.tags"),
            r#"spec.selectableFields[0].jsonPath: Invalid value: ".spec.tags": must point to a field of type string, boolean or integer"#,
        ),
        (
            "status subresource without status property",
            |c| {
                c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"].as_object_mut().unwrap().remove("status");
                c["spec"]["versions"][0]["additionalPrinterColumns"] = json!([]);
            },
            "spec.subresources.status: Invalid value: requires a status property in the schema",
        ),
        (
            "status subresource with disallowed root keyword",
            |c| c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["minProperties"] = json!(1),
            "spec.validation.openAPIV3Schema: Invalid value: only [Description Type Format Title",
        ),
        (
            "webhook conversion without client config",
            |c| c["spec"]["conversion"] = json!({"strategy": "Webhook"}),
            "spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook",
        ),
        (
            "preserveUnknownFields",
            |c| c["spec"]["preserveUnknownFields"] = json!(true),
            "spec.preserveUnknownFields: Invalid value: true: cannot set to true",
        ),
        (
            "scale path outside spec",
            |c| {
                c["spec"]["versions"][0]["subresources"]["scale"] =
                    json!({"specReplicasPath": ".status.replicas", "statusReplicasPath": ".status.replicas"})
            },
            r#"spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#,
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut c = crd();
        mutate(&mut c);
        let problems = schema::check_crd(&c);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "case {name}: expected a problem starting with\n  {expected}\ngot\n  {problems:#?}"
        );
    }
}
