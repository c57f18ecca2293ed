//! The issuer's documents: discovery (OIDC Discovery §4) and the JWK set,
//! fetched through the host, which caches them.

use crate::error::{AuthFailure, quote};
use crate::jwt::jose::parse_object;
use serde_json::Value;

/// How the host may use its response cache (a subset of the WIT
/// `cache-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Answer from the cache while fresh.
    UseCache,
    /// Refresh now (rate-limited by the host).
    Refresh,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// HTTP GET through the host; the error is the host's reason as text.
pub trait Fetch {
    fn get(&self, url: &str, cache: CacheMode) -> Result<Response, String>;
}

/// The discovery document URL: the issuer without a trailing `/`, then
/// `/.well-known/openid-configuration`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.strip_suffix('/').unwrap_or(issuer)
    )
}

/// Fetches the discovery document and returns its `jwks_uri`, after
/// checking that the document's `issuer` is exactly the configured one.
pub fn jwks_uri(fetch: &dyn Fetch, issuer: &str, allow_http: bool) -> Result<String, AuthFailure> {
    let url = discovery_url(issuer);
    let doc = get_json(fetch, &url, CacheMode::UseCache, "discovery document")?;
    match doc.get("issuer") {
        Some(Value::String(named)) if named == issuer => {}
        Some(Value::String(named)) => {
            return Err(AuthFailure::Untrusted(format!(
                "issuer {} is not the configured issuer (the discovery document at {url} names it instead of {})",
                quote(named),
                quote(issuer)
            )));
        }
        _ => {
            return Err(AuthFailure::Unavailable(format!(
                "discovery document at {url} has no `issuer` string"
            )));
        }
    }
    let Some(Value::String(jwks_uri)) = doc.get("jwks_uri") else {
        return Err(AuthFailure::Unavailable(format!(
            "discovery document at {url} has no `jwks_uri` string"
        )));
    };
    let secure = jwks_uri.starts_with("https://");
    let plain_ok = allow_http && jwks_uri.starts_with("http://");
    if !secure && !plain_ok {
        return Err(AuthFailure::Untrusted(format!(
            "discovery document at {url} names jwks_uri {}, which is not an https:// URL",
            quote(jwks_uri)
        )));
    }
    Ok(jwks_uri.clone())
}

/// GETs `url` and parses the body as a JSON object; any failure is
/// `unavailable` (fail closed).
pub fn get_json(
    fetch: &dyn Fetch,
    url: &str,
    cache: CacheMode,
    what: &str,
) -> Result<serde_json::Map<String, Value>, AuthFailure> {
    let body = get_ok(fetch, url, cache, what)?;
    parse_object(&body)
        .map_err(|e| AuthFailure::Unavailable(format!("{what} at {url} is not a JSON object: {e}")))
}

/// GETs `url` and returns the body of a 200 response.
pub fn get_ok(
    fetch: &dyn Fetch,
    url: &str,
    cache: CacheMode,
    what: &str,
) -> Result<Vec<u8>, AuthFailure> {
    let response = fetch
        .get(url, cache)
        .map_err(|e| AuthFailure::Unavailable(format!("{what} fetch failed: GET {url}: {e}")))?;
    if response.status != 200 {
        return Err(AuthFailure::Unavailable(format!(
            "{what} fetch failed: GET {url} answered HTTP {}",
            response.status
        )));
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls() {
        assert_eq!(
            discovery_url("https://id.example.com"),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://id.example.com/realms/x/"),
            "https://id.example.com/realms/x/.well-known/openid-configuration"
        );
    }
}
