//! The HTTP connector's configuration (`config` table of the plugin instance).

use serde::Deserialize;

/// Default for `max_path_bytes`.
pub const DEFAULT_MAX_PATH_BYTES: usize = 2048;
/// Upper bound an operator may configure for `max_path_bytes`.
pub const MAX_MAX_PATH_BYTES: usize = 65_536;
/// Headers that carry credentials: they never belong in a policy context
/// (and the host strips them before classification anyway).
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Header names (lowercase, unique) copied into the context's `headers`.
    pub context_headers: Vec<String>,
    /// Longest accepted path (without the query), in bytes.
    pub max_path_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    context_headers: Vec<String>,
    #[serde(default)]
    max_path_bytes: Option<usize>,
}

impl HttpConfig {
    /// Parses and validates the JSON configuration; the error names the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        // Parsed straight into the struct (this runs on every call); serde
        // would also accept a JSON array for a struct, so insist on an object.
        if !json.trim_start().starts_with('{') {
            return Err("invalid http plugin config: expected a JSON object".to_string());
        }
        let raw: RawConfig =
            serde_json::from_str(json).map_err(|e| format!("invalid http plugin config: {e}"))?;
        let mut context_headers: Vec<String> = Vec::with_capacity(raw.context_headers.len());
        for name in raw.context_headers {
            let lower = name.to_ascii_lowercase();
            if !is_token(&lower) {
                return Err(format!(
                    "invalid http plugin config: `context_headers` entry {:?} is not a valid header name",
                    name
                ));
            }
            if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
                return Err(format!(
                    "invalid http plugin config: `context_headers` must not include the credential header `{lower}`"
                ));
            }
            if context_headers.contains(&lower) {
                return Err(format!(
                    "invalid http plugin config: `context_headers` lists `{lower}` twice"
                ));
            }
            context_headers.push(lower);
        }
        let max_path_bytes = raw.max_path_bytes.unwrap_or(DEFAULT_MAX_PATH_BYTES);
        if max_path_bytes == 0 || max_path_bytes > MAX_MAX_PATH_BYTES {
            return Err(format!(
                "invalid http plugin config: `max_path_bytes` must be between 1 and {MAX_MAX_PATH_BYTES}, got {max_path_bytes}"
            ));
        }
        Ok(Self {
            context_headers,
            max_path_bytes,
        })
    }
}

/// RFC 9110 `token` (the grammar of a header field name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = HttpConfig::parse("{}").unwrap();
        assert!(c.context_headers.is_empty());
        assert_eq!(c.max_path_bytes, 2048);
    }

    #[test]
    fn headers_are_lowercased() {
        let c =
            HttpConfig::parse(r#"{"context_headers":["X-Tenant","accept"],"max_path_bytes":10}"#)
                .unwrap();
        assert_eq!(c.context_headers, vec!["x-tenant", "accept"]);
        assert_eq!(c.max_path_bytes, 10);
    }

    #[test]
    fn rejects_bad_config() {
        for (json, needle) in [
            (r#"{"context_header":[]}"#, "unknown field `context_header`"),
            (
                r#"{"context_headers":["x tenant"]}"#,
                "not a valid header name",
            ),
            (r#"{"context_headers":[""]}"#, "not a valid header name"),
            (r#"{"context_headers":["x\"y"]}"#, "not a valid header name"),
            (
                r#"{"context_headers":["Authorization"]}"#,
                "credential header `authorization`",
            ),
            (r#"{"context_headers":["a","A"]}"#, "lists `a` twice"),
            (
                r#"{"max_path_bytes":0}"#,
                "`max_path_bytes` must be between",
            ),
            (
                r#"{"max_path_bytes":100000}"#,
                "`max_path_bytes` must be between",
            ),
            (r#"{"max_path_bytes":-1}"#, "invalid http plugin config"),
            ("[]", "invalid http plugin config"),
        ] {
            let err = HttpConfig::parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
