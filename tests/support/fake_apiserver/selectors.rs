//! `labelSelector` and `fieldSelector` parsing and matching.

use super::errors::{ApiError, ApiResult};
use super::meta;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Greater(i64),
    Less(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

fn parse_error(detail: String) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {detail}"))
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn check_key(key: &str) -> ApiResult<()> {
    let valid = !key.is_empty() && key.len() <= 316 && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid { Ok(()) } else { Err(parse_error(format!("key: Invalid value: {key:?}: invalid label key"))) }
}

fn check_value(value: &str) -> ApiResult<()> {
    let valid = value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(parse_error(format!(
            "values[0][{value}]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
        )))
    }
}

fn parse_set(text: &str) -> ApiResult<Vec<String>> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| parse_error(format!("found '{text}', expected: '('")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &values {
        check_value(v)?;
    }
    Ok(values)
}

impl LabelSelector {
    pub fn parse(text: &str) -> ApiResult<LabelSelector> {
        let mut reqs = Vec::new();
        if text.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                return Err(parse_error("found '', expected: identifier".to_string()));
            }
            reqs.push(Self::parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    fn parse_requirement(part: &str) -> ApiResult<Requirement> {
        if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            check_key(key)?;
            return Ok(Requirement { key: key.to_string(), op: Op::DoesNotExist });
        }
        for (token, build) in [("!=", Op::NotEquals as fn(String) -> Op), ("==", Op::Equals), ("=", Op::Equals)] {
            if let Some((key, value)) = part.split_once(token) {
                let (key, value) = (key.trim(), value.trim());
                check_key(key)?;
                check_value(value)?;
                return Ok(Requirement { key: key.to_string(), op: build(value.to_string()) });
            }
        }
        for (token, greater) in [(">", true), ("<", false)] {
            if let Some((key, value)) = part.split_once(token) {
                let key = key.trim();
                check_key(key)?;
                let n: i64 =
                    value.trim().parse().map_err(|_| parse_error("for 'Gt', 'Lt' operators, the value must be an integer".to_string()))?;
                let op = if greater { Op::Greater(n) } else { Op::Less(n) };
                return Ok(Requirement { key: key.to_string(), op });
            }
        }
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        if let [key, rest] = words.as_slice() {
            let rest = rest.trim();
            if let Some(set) = rest.strip_prefix("notin") {
                check_key(key)?;
                return Ok(Requirement { key: key.to_string(), op: Op::NotIn(parse_set(set)?) });
            }
            if let Some(set) = rest.strip_prefix("in") {
                check_key(key)?;
                return Ok(Requirement { key: key.to_string(), op: Op::In(parse_set(set)?) });
            }
            return Err(parse_error(format!("found '{rest}', expected: in, notin, =, ==, !=, gt, lt")));
        }
        check_key(part)?;
        Ok(Requirement { key: part.to_string(), op: Op::Exists })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = meta::labels(obj);
        self.0.iter().all(|r| {
            let value = labels.get(&r.key).and_then(Value::as_str);
            match &r.op {
                Op::Equals(v) => value == Some(v.as_str()),
                Op::NotEquals(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => value.is_none_or(|x| !vs.iter().any(|v| v == x)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Greater(n) => value.and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n),
                Op::Less(n) => value.and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n),
            }
        })
    }
}

/// A parsed field selector over the field labels a type supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// `labels` maps each supported field label (besides `metadata.name` and
    /// `metadata.namespace`) to the dotted path it reads.
    pub fn parse(text: &str, labels: &[(String, String)]) -> ApiResult<FieldSelector> {
        let mut out = Vec::new();
        if text.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for part in text.split(',') {
            let part = part.trim();
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{text}'; can't understand '{part}'")));
            };
            let field = field.trim();
            let path = match field {
                "metadata.name" | "metadata.namespace" => field.to_string(),
                other => match labels.iter().find(|(label, _)| label == other) {
                    Some((_, path)) => path.clone(),
                    None => {
                        return Err(ApiError::bad_request(format!("field label not supported: {other}")));
                    }
                },
            };
            out.push((path, equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut current = Some(obj);
            for part in path.split('.') {
                current = current.and_then(|c| c.get(part));
            }
            let actual = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}
