//! Turns an HTTP call into one Cedar request: action = the method,
//! resource = the path, context = method, path, raw query and the
//! configured headers.

use serde_json::{Map, Value, json};

use crate::config::HttpConfig;
use crate::path;

/// The Cedar type of the actions, e.g. `Http::Action::"GET"`.
pub const ACTION_TYPE: &str = "Http::Action";
/// The Cedar type of resources and their parents, e.g. `Http::Path::"/orders"`.
pub const PATH_TYPE: &str = "Http::Path";

/// The result of classifying one call, independent of the WIT bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The method, also the action id.
    pub method: String,
    /// The path without the query: the resource id.
    pub path: String,
    /// The proper prefixes of `path`, nearest first: the resource's parents.
    pub parents: Vec<String>,
    /// The context JSON object (the host adds `gate`).
    pub context_json: String,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call is malformed or ambiguous.
    Malformed(String),
    /// The call is outside what this connector understands.
    Unsupported(String),
}

/// The action group (`read` or `write`) of a supported method.
pub fn method_group(method: &str) -> Option<&'static str> {
    match method {
        "GET" | "HEAD" | "OPTIONS" => Some("read"),
        "POST" | "PUT" | "PATCH" | "DELETE" => Some("write"),
        _ => None,
    }
}

/// Classifies one call. `headers` are the request headers (names lowercase).
pub fn classify(
    config: &HttpConfig,
    protocol: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<Classified, Refusal> {
    if protocol != "http" {
        return Err(Refusal::Unsupported(format!(
            "the http connector classifies HTTP calls only, not `{}`",
            protocol.escape_debug()
        )));
    }
    if method_group(method).is_none() {
        let shown: String = method.chars().take(32).collect();
        return Err(Refusal::Unsupported(format!(
            "HTTP method `{}` is not supported (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE)",
            shown.escape_debug()
        )));
    }
    let target = path::parse_target(target, config.max_path_bytes).map_err(Refusal::Malformed)?;

    let mut context_headers = Map::new();
    for name in &config.context_headers {
        let first = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        if let Some(value) = first {
            context_headers.insert(name.clone(), Value::String(value));
        }
    }
    let context = json!({
        "method": method,
        "path": target.path,
        "query": target.query,
        "headers": context_headers,
    });

    Ok(Classified {
        method: method.to_string(),
        path: target.path.to_string(),
        parents: path::ancestors(target.path)
            .into_iter()
            .map(str::to_string)
            .collect(),
        context_json: context.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HttpConfig {
        HttpConfig::parse(r#"{"context_headers":["x-tenant","x-absent"]}"#).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classifies_get_with_query_and_headers() {
        let c = classify(
            &config(),
            "http",
            "GET",
            "/orders/42/items?a=b",
            &h(&[("x-tenant", "t1"), ("x-tenant", "t2"), ("x-other", "o")]),
        )
        .unwrap();
        assert_eq!(c.method, "GET");
        assert_eq!(c.path, "/orders/42/items");
        assert_eq!(c.parents, vec!["/orders/42", "/orders", "/"]);
        let ctx: Value = serde_json::from_str(&c.context_json).unwrap();
        assert_eq!(
            ctx,
            json!({"method":"GET","path":"/orders/42/items","query":"a=b","headers":{"x-tenant":"t1"}})
        );
    }

    #[test]
    fn method_groups() {
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(method_group(m), Some("read"));
        }
        for m in ["POST", "PUT", "PATCH", "DELETE"] {
            assert_eq!(method_group(m), Some("write"));
        }
        for m in ["get", "TRACE", "CONNECT", "PROPFIND", ""] {
            assert_eq!(method_group(m), None);
            assert!(matches!(
                classify(&config(), "http", m, "/", &[]),
                Err(Refusal::Unsupported(_))
            ));
        }
    }

    #[test]
    fn refuses_grpc_and_bad_paths() {
        assert!(matches!(
            classify(&config(), "grpc", "POST", "/a.B/C", &[]),
            Err(Refusal::Unsupported(_))
        ));
        assert_eq!(
            classify(&config(), "http", "GET", "/a/../b", &[]),
            Err(Refusal::Malformed(
                "path `/a/../b` has a `..` segment; dot segments are not allowed".to_string()
            ))
        );
    }

    #[test]
    fn root_has_no_parents_and_empty_query() {
        let c = classify(&config(), "http", "HEAD", "/", &[]).unwrap();
        assert!(c.parents.is_empty());
        let ctx: Value = serde_json::from_str(&c.context_json).unwrap();
        assert_eq!(ctx["query"], "");
        assert_eq!(ctx["headers"], json!({}));
    }
}
