//! The OIDC plugin's configuration: the `config` table of the plugin
//! instance, as JSON. Unknown keys are refused.

use serde::Deserialize;

use crate::error::quote;
use crate::jwt::alg::Alg;

/// Default `algorithms`.
pub const DEFAULT_ALGORITHMS: [Alg; 2] = [Alg::RS256, Alg::ES256];
/// Default `leeway_seconds`.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;
/// Largest `leeway_seconds` an operator may configure.
pub const MAX_LEEWAY_SECONDS: u64 = 300;
/// Default `max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Largest `max_token_bytes` an operator may configure.
pub const MAX_MAX_TOKEN_BYTES: usize = 65_536;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer identifier, compared byte for byte with `iss`.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted `alg` values (never `none` or `HS*`).
    pub algorithms: Vec<Alg>,
    /// Allowed clock skew for `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// When set, the JOSE header `typ` must equal this (case-insensitive,
    /// an `application/` prefix is ignored), e.g. `at+jwt`.
    pub required_typ: Option<String>,
    /// When set, the claim (an array of strings) listing the subject's groups.
    pub groups_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    required_typ: Option<String>,
    #[serde(default)]
    groups_claim: Option<String>,
}

fn bad(reason: impl std::fmt::Display) -> String {
    format!("invalid oidc plugin config: {reason}")
}

impl OidcConfig {
    /// Parses and validates the JSON configuration; the error names the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
        if !value.is_object() {
            return Err(bad("expected a JSON object"));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(bad)?;

        check_issuer(&raw.issuer)?;

        if raw.audiences.is_empty() {
            return Err(bad("`audiences` must list at least one audience"));
        }
        if raw.audiences.iter().any(String::is_empty) {
            return Err(bad("`audiences` must not contain an empty string"));
        }

        let algorithms = match raw.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(bad("`algorithms` must list at least one algorithm"));
            }
            Some(names) => {
                let mut algs = Vec::with_capacity(names.len());
                for name in &names {
                    let alg = Alg::parse(name).map_err(|e| bad(format!("`algorithms`: {e}")))?;
                    if !algs.contains(&alg) {
                        algs.push(alg);
                    }
                }
                algs
            }
        };

        let leeway_seconds = raw.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS);
        if leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(bad(format!(
                "`leeway_seconds` is {leeway_seconds}, over the maximum of {MAX_LEEWAY_SECONDS}"
            )));
        }

        let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if max_token_bytes == 0 || max_token_bytes > MAX_MAX_TOKEN_BYTES {
            return Err(bad(format!(
                "`max_token_bytes` must be between 1 and {MAX_MAX_TOKEN_BYTES}, got {max_token_bytes}"
            )));
        }

        if raw.required_typ.as_deref() == Some("") {
            return Err(bad(
                "`required_typ` must not be empty (leave it out instead)",
            ));
        }
        if raw.groups_claim.as_deref() == Some("") {
            return Err(bad(
                "`groups_claim` must not be empty (leave it out instead)",
            ));
        }

        Ok(Self {
            issuer: raw.issuer,
            audiences: raw.audiences,
            algorithms,
            leeway_seconds,
            max_token_bytes,
            required_typ: raw.required_typ,
            groups_claim: raw.groups_claim,
        })
    }

    /// Whether `http://` URLs are acceptable for this issuer's documents
    /// (only for a loopback issuer, i.e. a local test issuer).
    pub fn allows_plain_http(&self) -> bool {
        self.issuer.starts_with("http://")
    }
}

/// An issuer must be an `https://` URL with a host and without query or
/// fragment (OIDC Discovery §2). `http://` is accepted only for loopback
/// hosts, for local test issuers. Principal ids are `<issuer>#<sub>`, so the
/// "no fragment" rule also keeps the first `#` an unambiguous separator.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let rest = if let Some(rest) = issuer.strip_prefix("https://") {
        rest
    } else if let Some(rest) = issuer.strip_prefix("http://") {
        if !is_loopback_authority(rest) {
            return Err(bad(format!(
                "`issuer` {} uses http://, which is accepted only for loopback test issuers \
                 (127.0.0.1, [::1], localhost); use https://",
                quote(issuer)
            )));
        }
        rest
    } else {
        return Err(bad(format!(
            "`issuer` {} must be an https:// URL",
            quote(issuer)
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad(format!("`issuer` {} has no host", quote(issuer))));
    }
    if let Some(c) = issuer
        .chars()
        .find(|c| matches!(c, '#' | '?' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!(
            "`issuer` {} must not contain {}",
            quote(issuer),
            quote(&c.to_string())
        )));
    }
    if authority.contains('@') {
        return Err(bad(format!(
            "`issuer` {} must not contain user information",
            quote(issuer)
        )));
    }
    Ok(())
}

fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']')
            .next()
            .map(|h| format!("[{h}]"))
            .unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    matches!(host.as_str(), "127.0.0.1" | "[::1]" | "localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"issuer":"https://id.example.com","audiences":["api"]}"#;

    #[test]
    fn defaults() {
        let c = OidcConfig::parse(MIN).unwrap();
        assert_eq!(c.issuer, "https://id.example.com");
        assert_eq!(c.audiences, vec!["api"]);
        assert_eq!(c.algorithms, vec![Alg::RS256, Alg::ES256]);
        assert_eq!(c.leeway_seconds, 60);
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.required_typ, None);
        assert_eq!(c.groups_claim, None);
    }

    #[test]
    fn all_keys() {
        let c = OidcConfig::parse(
            r#"{"issuer":"http://127.0.0.1:8080/realms/x","audiences":["a","b"],
                "algorithms":["PS256","EdDSA","PS256"],"leeway_seconds":0,"max_token_bytes":100,
                "required_typ":"at+jwt","groups_claim":"groups"}"#,
        )
        .unwrap();
        assert_eq!(c.algorithms, vec![Alg::PS256, Alg::EdDSA]);
        assert_eq!(c.leeway_seconds, 0);
        assert_eq!(c.max_token_bytes, 100);
        assert_eq!(c.required_typ.as_deref(), Some("at+jwt"));
        assert_eq!(c.groups_claim.as_deref(), Some("groups"));
        assert!(c.allows_plain_http());
    }

    #[test]
    fn rejects_bad_config() {
        for (json, needle) in [
            ("[]", "expected a JSON object"),
            (r#"{"audiences":["a"]}"#, "missing field `issuer`"),
            (r#"{"issuer":"https://i"}"#, "missing field `audiences`"),
            (
                r#"{"issuer":"https://i","audiences":["a"],"audience":"a"}"#,
                "unknown field `audience`",
            ),
            (
                r#"{"issuer":"https://i","audiences":[]}"#,
                "at least one audience",
            ),
            (r#"{"issuer":"https://i","audiences":[""]}"#, "empty string"),
            (
                r#"{"issuer":"id.example.com","audiences":["a"]}"#,
                "must be an https:// URL",
            ),
            (
                r#"{"issuer":"http://id.example.com","audiences":["a"]}"#,
                "only for loopback",
            ),
            (
                r#"{"issuer":"http://127.0.0.1.evil.com","audiences":["a"]}"#,
                "only for loopback",
            ),
            (r#"{"issuer":"https://","audiences":["a"]}"#, "has no host"),
            (
                r#"{"issuer":"https://i/#x","audiences":["a"]}"#,
                "must not contain `#`",
            ),
            (
                r#"{"issuer":"https://i/?x","audiences":["a"]}"#,
                "must not contain `?`",
            ),
            (
                r#"{"issuer":"https://u@i","audiences":["a"]}"#,
                "user information",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"algorithms":[]}"#,
                "at least one algorithm",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"algorithms":["none"]}"#,
                "algorithm `none` is not allowed",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"algorithms":["RS256","HS256"]}"#,
                "algorithm `HS256` is not allowed",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"algorithms":["ES512"]}"#,
                "not supported",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"leeway_seconds":301}"#,
                "over the maximum of 300",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"max_token_bytes":0}"#,
                "between 1 and",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"required_typ":""}"#,
                "`required_typ` must not be empty",
            ),
            (
                r#"{"issuer":"https://i","audiences":["a"],"groups_claim":""}"#,
                "`groups_claim` must not be empty",
            ),
        ] {
            let e = OidcConfig::parse(json).unwrap_err();
            assert!(e.starts_with("invalid oidc plugin config: "), "{e}");
            assert!(e.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn loopback_issuers() {
        for issuer in [
            "http://localhost:3000",
            "http://[::1]:80/x",
            "http://127.0.0.1",
        ] {
            let json = format!(r#"{{"issuer":"{issuer}","audiences":["a"]}}"#);
            assert!(OidcConfig::parse(&json).is_ok(), "{issuer}");
        }
    }
}
