//! Request parameters: query string, write options and the addressed resource.

use super::errors::{ApiError, ApiResult};
use super::kinds::ResourceType;
use std::collections::HashMap;
use std::sync::Arc;

/// Decodes `%XX` escapes (and `+` as a space in query strings).
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> ApiResult<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request(format!("invalid URL escape in {text:?}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("invalid UTF-8 in {text:?}")))
}

/// The query parameters of a request; a repeated parameter keeps its last value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(HashMap<String, String>);

/// The `fieldValidation` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl Params {
    pub fn parse(query: Option<&str>) -> ApiResult<Params> {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k, true)?, percent_decode(v, true)?);
        }
        Ok(Params(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Go's `strconv.ParseBool` rules; absent means false.
    pub fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!("strconv.ParseBool: parsing {other:?}: invalid syntax"))),
        }
    }

    pub fn number(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))))
            .transpose()
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("dryRun: Unsupported value: {other:?}: supported values: \"All\""))),
        }
    }

    /// `Warn` when absent, the API server's default.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Options shared by every write.
#[derive(Debug, Clone)]
pub(crate) struct WriteCtx {
    /// `fieldManager`, or the user agent's product name when the request names none.
    pub manager: String,
    /// Whether the request named a `fieldManager`.
    pub explicit_manager: bool,
    pub dry_run: bool,
    pub validation: FieldValidation,
    pub force: bool,
    /// Texts for `Warning` response headers.
    pub warnings: Vec<String>,
    pub now: String,
}

impl WriteCtx {
    pub fn from_request(params: &Params, user_agent: &str) -> ApiResult<WriteCtx> {
        let explicit = params.get("fieldManager").map(str::to_string);
        if let Some(m) = &explicit
            && m.chars().count() > 128
        {
            return Err(ApiError::bad_request(format!("fieldManager: Too long: may not be more than 128 bytes, got {:?}", m)));
        }
        let from_agent: String = user_agent.split('/').next().unwrap_or("").chars().filter(|c| !c.is_control()).take(128).collect();
        Ok(WriteCtx {
            explicit_manager: explicit.is_some(),
            manager: explicit.unwrap_or(from_agent),
            dry_run: params.dry_run()?,
            validation: params.field_validation()?,
            force: params.flag("force")?,
            warnings: Vec::new(),
            now: super::meta::now(),
        })
    }
}

/// The resource a request addresses.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub rt: Arc<ResourceType>,
    pub version: String,
    /// The namespace in the path; `None` for cluster-scoped types and all-namespace lists.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn api_version(&self) -> String {
        self.rt.api_version(&self.version)
    }

    /// The storage key of the named object.
    pub fn key(&self) -> (String, String) {
        (self.namespace.clone().unwrap_or_default(), self.name.clone().unwrap_or_default())
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn sub(&self) -> &str {
        self.subresource.as_deref().unwrap_or("")
    }
}
