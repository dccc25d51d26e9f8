//! Failure responses as `metav1.Status` bodies, worded the way kube-apiserver words them.

use serde_json::{Value, json};

/// A resource type as named in error messages: `configmaps`, `deployments.apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        GroupResource { group: group.to_string(), resource: resource.to_string() }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() { write!(f, "{}", self.resource) } else { write!(f, "{}.{}", self.resource, self.group) }
    }
}

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Self {
        Cause { reason: reason.to_string(), message: message.into(), field: field.to_string() }
    }

    /// `Required value` or `Required value: detail`.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause::new("FieldValueRequired", field, message)
    }

    /// `Invalid value: <value>: detail`, the value rendered like Go's `%#v` for JSON values.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let message = if detail.is_empty() {
            format!("Invalid value: {}", go_repr(value))
        } else {
            format!("Invalid value: {}: {detail}", go_repr(value))
        };
        Cause::new("FieldValueInvalid", field, message)
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }

    fn render(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// Renders a JSON value the way Go's `%#v` prints the matching Go value in field errors.
pub(crate) fn go_repr(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// An error answer: HTTP code plus the `metav1.Status` fields.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError { code, reason: reason.to_string(), message: message.into(), details: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn resource_details(gr: &GroupResource, name: &str) -> Value {
        let mut details = json!({});
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !gr.group.is_empty() {
            details["group"] = json!(gr.group);
        }
        details["kind"] = json!(gr.resource);
        details
    }

    /// The body of the response.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        ApiError::new(404, "NotFound", format!("{gr} {name:?} not found")).with_details(Self::resource_details(gr, name))
    }

    /// A path that names no resource the server serves.
    pub fn no_such_route() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        ApiError::new(409, "AlreadyExists", format!("{gr} {name:?} already exists")).with_details(Self::resource_details(gr, name))
    }

    /// `Operation cannot be fulfilled on <gr> "<name>": <detail>`.
    pub fn conflict(gr: &GroupResource, name: &str, detail: &str) -> Self {
        ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {gr} {name:?}: {detail}"))
            .with_details(Self::resource_details(gr, name))
    }

    /// The stale-resourceVersion conflict of an update.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        ApiError::conflict(gr, name, "the object has been modified; please apply your changes to the latest version and try again")
    }

    /// A server-side apply conflict, with one `FieldManagerConflict` cause per field.
    pub fn apply_conflict(message: String, causes: Vec<Cause>) -> Self {
        ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes_json(&causes) }))
    }

    /// 422 with one cause per field error; `kind` is the Kind, as in `ConfigMap "x" is invalid`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let message = match rendered.len() {
            0 => format!("{qualified} {name:?} is invalid"),
            1 => format!("{qualified} {name:?} is invalid: {}", rendered[0]),
            _ => format!("{qualified} {name:?} is invalid: [{}]", rendered.join(", ")),
        };
        let mut details = json!({ "kind": kind, "causes": causes_json(&causes) });
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError::new(422, "Invalid", message).with_details(details)
    }

    /// The 422 of a patch that cannot be applied, as `NewGenericServerResponse` words it.
    pub fn generic_invalid(cause: Cause) -> Self {
        ApiError::new(422, "Invalid", "the server rejected our request due to an error in our request")
            .with_details(json!({ "causes": causes_json(&[cause]) }))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// `<gr> "<name>" is forbidden: <detail>`.
    pub fn forbidden(gr: &GroupResource, name: &str, detail: &str) -> Self {
        ApiError::new(403, "Forbidden", format!("{gr} {name:?} is forbidden: {detail}")).with_details(Self::resource_details(gr, name))
    }

    /// A request with credentials the server does not know.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message).with_details(json!({}))
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    /// The watch answer to a resourceVersion older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(500, "InternalError", format!("Internal error occurred: {message}"))
            .with_details(json!({ "causes": [{ "message": message }] }))
    }
}

fn causes_json(causes: &[Cause]) -> Value {
    Value::Array(
        causes
            .iter()
            .map(|c| {
                let mut v = json!({ "reason": c.reason, "message": c.message });
                if !c.field.is_empty() {
                    v["field"] = json!(c.field);
                }
                v
            })
            .collect(),
    )
}

/// Shorthand for handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
