//! Step 2: the request headers. Names are case-insensitive; each may appear
//! once; only an allow-list may appear at all (any other `x-amz-*` header
//! could change what STS does, e.g. `x-amz-target`); `host` must be the
//! URL's host.

use std::collections::BTreeMap;

use crate::error::{AuthFailure, invalid, malformed, quote};

/// Headers a token may carry besides the audience header.
pub const FIXED_HEADERS: &[&str] = &[
    "host",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "authorization",
    "content-type",
    "content-length",
    "accept",
    "user-agent",
];

/// `Accept` values whose answer we can read.
const ACCEPT_VALUES: &[&str] = &["application/json", "application/xml", "text/xml", "*/*"];

/// Headers every token must carry besides the audience header.
const REQUIRED_HEADERS: &[&str] = &["host", "x-amz-date", "authorization"];

/// The checked headers, by lowercase name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMap(BTreeMap<String, String>);

impl HeaderMap {
    /// The value of the header `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether the header `name` (lowercase) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Checks `headers` against the allow-list and the request's host and body.
pub fn check(
    headers: &[(String, String)],
    audience_header: &str,
    url_host: &str,
    body: &str,
) -> Result<HeaderMap, AuthFailure> {
    let mut map = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !FIXED_HEADERS.contains(&lower.as_str()) && lower != audience_header {
            return Err(invalid(if lower.starts_with("x-amz-") {
                format!(
                    "header {} is not allowed: the only x-amz-* headers accepted are \
                     x-amz-date, x-amz-security-token and x-amz-content-sha256",
                    quote(name)
                )
            } else {
                format!(
                    "header {} is not allowed; allowed: {}, {audience_header}",
                    quote(name),
                    FIXED_HEADERS.join(", ")
                )
            }));
        }
        if let Some(b) = value.bytes().find(|b| !(0x20..0x7f).contains(b)) {
            return Err(malformed(format!(
                "header {} contains the byte 0x{b:02x}; header values must be printable ASCII",
                quote(name)
            )));
        }
        if map.insert(lower, value.clone()).is_some() {
            return Err(invalid(format!(
                "header {} appears more than once (names are case-insensitive)",
                quote(name)
            )));
        }
    }
    let map = HeaderMap(map);

    for required in REQUIRED_HEADERS {
        if !map.contains(required) {
            return Err(invalid(format!("the request has no `{required}` header")));
        }
    }
    if !map.contains(audience_header) {
        return Err(invalid(format!(
            "the audience header `{audience_header}` is missing; the request must carry it, \
             signed, with this deployment's audience"
        )));
    }
    if let Some(host) = map.get("host")
        && host != url_host
    {
        return Err(invalid(format!(
            "the Host header {} is not the URL's host {}",
            quote(host),
            quote(url_host)
        )));
    }
    if let Some(length) = map.get("content-length")
        && length != body.len().to_string()
    {
        return Err(invalid(format!(
            "Content-Length {} does not match the {}-byte body",
            quote(length),
            body.len()
        )));
    }
    if let Some(content_type) = map.get("content-type")
        && !is_form_content_type(content_type)
    {
        return Err(invalid(format!(
            "Content-Type {} is not allowed; only application/x-www-form-urlencoded (optionally with ; charset=utf-8)",
            quote(content_type)
        )));
    }
    if let Some(accept) = map.get("accept")
        && !ACCEPT_VALUES.contains(&accept.to_ascii_lowercase().as_str())
    {
        return Err(invalid(format!(
            "Accept {} is not allowed; STS answers XML, or JSON for `application/json` \
             (allowed: {})",
            quote(accept),
            ACCEPT_VALUES.join(", ")
        )));
    }
    if let Some(hash) = map.get("x-amz-content-sha256")
        && !is_lower_hex(hash, 64)
    {
        return Err(invalid(
            "X-Amz-Content-Sha256 must be the hex SHA-256 of the body (64 lowercase hex digits)",
        ));
    }
    if map.get("x-amz-security-token") == Some("") {
        return Err(invalid("X-Amz-Security-Token is empty"));
    }
    Ok(map)
}

fn is_form_content_type(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("application/x-www-form-urlencoded") else {
        return false;
    };
    let rest = rest.trim_start();
    rest.is_empty()
        || rest
            .strip_prefix(';')
            .is_some_and(|p| p.trim() == "charset=utf-8")
}

/// Whether `s` is exactly `len` lowercase hex digits.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &str = "x-intentgate-audience";
    const HOST: &str = "sts.amazonaws.com";

    fn base() -> Vec<(String, String)> {
        [
            ("Host", HOST),
            ("X-Amz-Date", "20260101T000000Z"),
            ("Authorization", "AWS4-HMAC-SHA256 ..."),
            ("X-Intentgate-Audience", "gw"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = base();
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        h
    }

    #[test]
    fn accepts_allowed_headers_in_any_case() {
        let h = with(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Content-Length", "0"),
            ("accept", "application/json"),
            ("user-agent", "sidecar/1"),
            ("x-amz-security-token", "FQoG"),
            ("x-amz-content-sha256", &"e3".repeat(32)),
        ]);
        let map = check(&h, AUD, HOST, "").unwrap();
        assert_eq!(map.get("x-intentgate-audience"), Some("gw"));
        assert_eq!(map.get("host"), Some(HOST));
    }

    #[test]
    fn refuses_bad_headers() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (
                with(&[("host", HOST)]),
                "header `host` appears more than once",
            ),
            (
                with(&[("x-intentgate-audience", "gw")]),
                "`x-intentgate-audience` appears more than once",
            ),
            (
                with(&[(
                    "X-Amz-Target",
                    "AWSSecurityTokenServiceV20110615.AssumeRole",
                )]),
                "header `X-Amz-Target` is not allowed: the only x-amz-*",
            ),
            (
                with(&[("x-forwarded-for", "1.2.3.4")]),
                "header `x-forwarded-for` is not allowed",
            ),
            (
                with(&[("user-agent", "a\r\nb: c")]),
                "contains the byte 0x0d",
            ),
            (
                with(&[("content-length", "5")]),
                "does not match the 0-byte body",
            ),
            (
                with(&[("content-type", "application/json")]),
                "Content-Type `application/json`",
            ),
            (
                with(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]),
                "64 lowercase hex",
            ),
            (
                with(&[("x-amz-security-token", "")]),
                "X-Amz-Security-Token is empty",
            ),
            (base()[1..].to_vec(), "no `host` header"),
            (
                base()
                    .into_iter()
                    .filter(|(k, _)| k != "X-Amz-Date")
                    .collect(),
                "no `x-amz-date` header",
            ),
            (
                base()[..3].to_vec(),
                "audience header `x-intentgate-audience` is missing",
            ),
        ];
        for (h, needle) in cases {
            let e = check(&h, AUD, HOST, "").unwrap_err();
            assert!(e.reason().contains(needle), "{h:?}: {e:?}");
        }
        let mut h = base();
        h[0].1 = "sts.us-east-1.amazonaws.com".to_string();
        let e = check(&h, AUD, HOST, "").unwrap_err();
        assert_eq!(
            e,
            AuthFailure::Invalid(
                "the Host header `sts.us-east-1.amazonaws.com` is not the URL's host `sts.amazonaws.com`"
                    .to_string()
            )
        );
    }

    #[test]
    fn content_types() {
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=utf-8",
        ] {
            assert!(is_form_content_type(ok), "{ok}");
        }
        for bad in [
            "application/x-www-form-urlencodedx",
            "application/x-www-form-urlencoded; charset=latin1",
            "text/plain",
        ] {
            assert!(!is_form_content_type(bad), "{bad}");
        }
    }
}
