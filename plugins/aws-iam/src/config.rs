//! The aws-iam plugin's configuration: the `config` table of the plugin
//! instance, as JSON. Unknown keys are refused; every value is checked here,
//! so `check-config` catches mistakes at load time.

use serde::Deserialize;

use crate::error::quote;
use crate::headers::FIXED_HEADERS;

/// Default `audience_header`.
pub const DEFAULT_AUDIENCE_HEADER: &str = "x-intentgate-audience";
/// Default `max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Largest `max_token_bytes` an operator may configure.
pub const MAX_MAX_TOKEN_BYTES: usize = 65_536;
/// Default `max_clock_skew_seconds`: STS accepts a SigV4 signature for 15
/// minutes, so a larger window would only let the host cache identities STS
/// would no longer vouch for.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 900;
/// Largest `max_clock_skew_seconds`.
pub const MAX_MAX_CLOCK_SKEW_SECONDS: u64 = 900;
/// Longest `audience` value.
pub const MAX_AUDIENCE_BYTES: usize = 256;

/// The global STS endpoint (signed for `us-east-1`).
pub const GLOBAL_STS_HOST: &str = "sts.amazonaws.com";

/// The standard commercial (`aws` partition) regions whose regional STS
/// endpoint `sts.<region>.amazonaws.com` is in the default `sts_hosts`.
/// Kept explicit on purpose: a host that is not here (or in a configured
/// list) is never called. China, GovCloud, ISO and sovereign partitions,
/// FIPS and dual-stack hosts need a configured `sts_hosts`.
pub const DEFAULT_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
];

/// Header names the audience header may not take: headers with a fixed
/// meaning in the token, and hop-by-hop headers the host does not forward.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "date",
];

/// Where replays are sent when `sts_endpoint` is set (tests against a local
/// STS double): `scheme://host[:port]`, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub String);

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsIamConfig {
    /// The value the audience header must carry (names this deployment).
    pub audience: String,
    /// The audience header's name, lowercase.
    pub audience_header: String,
    /// STS hosts a token may name, lowercase, exact.
    pub sts_hosts: Vec<String>,
    /// Where to send the replay instead of the token's URL (tests only).
    pub sts_endpoint: Option<Endpoint>,
    /// Credentials longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// How far `X-Amz-Date` may be from now, either way; also how long an
    /// identity may be cached after `X-Amz-Date`.
    pub max_clock_skew_seconds: u64,
    /// 12-digit account ids whose roles are accepted.
    pub trusted_accounts: Vec<String>,
    /// Role name patterns (`*`, `?`); empty means any role.
    pub role_patterns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    audience: String,
    #[serde(default)]
    audience_header: Option<String>,
    #[serde(default)]
    sts_hosts: Option<Vec<String>>,
    #[serde(default)]
    sts_endpoint: Option<String>,
    #[serde(default)]
    max_token_bytes: Option<usize>,
    #[serde(default)]
    max_clock_skew_seconds: Option<u64>,
    trusted_accounts: Vec<String>,
    #[serde(default)]
    role_patterns: Option<Vec<String>>,
}

fn bad(reason: impl std::fmt::Display) -> String {
    format!("invalid aws-iam plugin config: {reason}")
}

impl AwsIamConfig {
    /// Parses and validates the JSON configuration; the error names the key.
    pub fn parse(json: &str) -> Result<Self, String> {
        let value = crate::json::parse(json.as_bytes()).map_err(bad)?;
        if !value.is_object() {
            return Err(bad("expected a JSON object"));
        }
        let raw: RawConfig = serde_json::from_value(value).map_err(bad)?;

        check_audience(&raw.audience)?;
        let audience_header = match raw.audience_header {
            None => DEFAULT_AUDIENCE_HEADER.to_string(),
            Some(name) => check_audience_header(&name)?,
        };
        let sts_hosts = match raw.sts_hosts {
            None => default_sts_hosts(),
            Some(hosts) if hosts.is_empty() => {
                return Err(bad("`sts_hosts` must list at least one host"));
            }
            Some(hosts) => {
                let mut out: Vec<String> = Vec::with_capacity(hosts.len());
                for host in hosts {
                    check_dns_name(&host).map_err(|e| bad(format!("`sts_hosts`: {e}")))?;
                    if !out.contains(&host) {
                        out.push(host);
                    }
                }
                out
            }
        };
        let sts_endpoint = raw
            .sts_endpoint
            .as_deref()
            .map(check_endpoint)
            .transpose()?;

        let max_token_bytes = raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        if max_token_bytes == 0 || max_token_bytes > MAX_MAX_TOKEN_BYTES {
            return Err(bad(format!(
                "`max_token_bytes` must be between 1 and {MAX_MAX_TOKEN_BYTES}, got {max_token_bytes}"
            )));
        }
        let max_clock_skew_seconds = raw
            .max_clock_skew_seconds
            .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECONDS);
        if max_clock_skew_seconds == 0 || max_clock_skew_seconds > MAX_MAX_CLOCK_SKEW_SECONDS {
            return Err(bad(format!(
                "`max_clock_skew_seconds` must be between 1 and {MAX_MAX_CLOCK_SKEW_SECONDS} \
                 (STS accepts a signature for 15 minutes), got {max_clock_skew_seconds}"
            )));
        }

        if raw.trusted_accounts.is_empty() {
            return Err(bad("`trusted_accounts` must list at least one account id"));
        }
        let mut trusted_accounts: Vec<String> = Vec::with_capacity(raw.trusted_accounts.len());
        for account in raw.trusted_accounts {
            if !is_account_id(&account) {
                return Err(bad(format!(
                    "`trusted_accounts`: {} is not a 12-digit AWS account id",
                    quote(&account)
                )));
            }
            if !trusted_accounts.contains(&account) {
                trusted_accounts.push(account);
            }
        }

        let role_patterns = raw.role_patterns.unwrap_or_default();
        for pattern in &role_patterns {
            check_role_pattern(pattern)?;
        }

        Ok(Self {
            audience: raw.audience,
            audience_header,
            sts_hosts,
            sts_endpoint,
            max_token_bytes,
            max_clock_skew_seconds,
            trusted_accounts,
            role_patterns,
        })
    }
}

/// `sts.amazonaws.com` and `sts.<region>.amazonaws.com` for every region in
/// [`DEFAULT_REGIONS`].
pub fn default_sts_hosts() -> Vec<String> {
    std::iter::once(GLOBAL_STS_HOST.to_string())
        .chain(
            DEFAULT_REGIONS
                .iter()
                .map(|r| format!("sts.{r}.amazonaws.com")),
        )
        .collect()
}

/// Whether `s` is a 12-digit account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The audience is compared byte for byte with the header value, which
/// SigV4 canonicalisation trims: printable ASCII, no surrounding spaces.
fn check_audience(audience: &str) -> Result<(), String> {
    if audience.is_empty() {
        return Err(bad("`audience` must not be empty"));
    }
    if audience.len() > MAX_AUDIENCE_BYTES {
        return Err(bad(format!(
            "`audience` is {} bytes, over the {MAX_AUDIENCE_BYTES}-byte limit",
            audience.len()
        )));
    }
    if !audience.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad(format!(
            "`audience` {} must be printable ASCII (it travels in an HTTP header)",
            quote(audience)
        )));
    }
    if audience.starts_with(' ') || audience.ends_with(' ') {
        return Err(bad(format!(
            "`audience` {} must not start or end with a space",
            quote(audience)
        )));
    }
    Ok(())
}

/// A lowercase header name that does not collide with the token's other
/// headers, is not `x-amz-*` and is forwarded by the host.
fn check_audience_header(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 64
        && lower.starts_with(|c: char| c.is_ascii_lowercase())
        && lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(bad(format!(
            "`audience_header` {} must be a header name of letters, digits and `-` (at most 64)",
            quote(name)
        )));
    }
    if lower.starts_with("x-amz-") {
        return Err(bad(format!(
            "`audience_header` {} must not be an `x-amz-*` header",
            quote(name)
        )));
    }
    if FIXED_HEADERS.contains(&lower.as_str()) || RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(bad(format!(
            "`audience_header` {} is a header with its own meaning; pick another name",
            quote(name)
        )));
    }
    Ok(lower)
}

/// A lowercase DNS name with at least two labels; IP literals are refused
/// (STS is always reached by name; local doubles go through `sts_endpoint`).
pub fn check_dns_name(host: &str) -> Result<(), String> {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{} is not a lowercase DNS host name (no scheme, port or path)",
            quote(host)
        ));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{} is an IP address; STS hosts are DNS names",
            quote(host)
        ));
    }
    Ok(())
}

/// `http(s)://host[:port]` with an optional trailing `/`. `http://` only for
/// loopback hosts (a local STS double such as moto).
fn check_endpoint(text: &str) -> Result<Endpoint, String> {
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    let (scheme, authority) = if let Some(rest) = trimmed.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(bad(format!(
            "`sts_endpoint` {} must be `https://host[:port]` (or `http://` for a loopback test double)",
            quote(text)
        )));
    };
    let (host, port) = split_authority(authority).ok_or_else(|| {
        bad(format!(
            "`sts_endpoint` {} must be `scheme://host[:port]`, without user information, path or query",
            quote(text)
        ))
    })?;
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad(format!(
            "`sts_endpoint` {} has an invalid port",
            quote(text)
        )));
    }
    if scheme == "http" && !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
        return Err(bad(format!(
            "`sts_endpoint` {} uses http://, which is accepted only for loopback test doubles \
             (127.0.0.1, [::1], localhost); use https://",
            quote(text)
        )));
    }
    Ok(Endpoint(format!(
        "{scheme}://{}",
        authority.to_ascii_lowercase()
    )))
}

/// Splits `host[:port]` (host may be a bracketed IPv6 literal); `None` when
/// anything but host name characters appears.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some((host, port))
}

/// Role name patterns: IAM role name characters plus `*` and `?`.
fn check_role_pattern(pattern: &str) -> Result<(), String> {
    let valid = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| crate::arn::is_role_name_byte(b) || b == b'*' || b == b'?');
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "`role_patterns`: {} is not a role name pattern (IAM role name characters, `*` and `?`)",
            quote(pattern)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"audience":"gw.example.com","trusted_accounts":["111122223333"]}"#;

    #[test]
    fn defaults() {
        let c = AwsIamConfig::parse(MIN).unwrap();
        assert_eq!(c.audience, "gw.example.com");
        assert_eq!(c.audience_header, "x-intentgate-audience");
        assert_eq!(c.sts_hosts.len(), 1 + DEFAULT_REGIONS.len());
        assert!(c.sts_hosts.contains(&"sts.amazonaws.com".to_string()));
        assert!(
            c.sts_hosts
                .contains(&"sts.eu-west-1.amazonaws.com".to_string())
        );
        assert_eq!(c.sts_endpoint, None);
        assert_eq!(c.max_token_bytes, 8192);
        assert_eq!(c.max_clock_skew_seconds, 900);
        assert_eq!(c.trusted_accounts, vec!["111122223333"]);
        assert!(c.role_patterns.is_empty());
        for host in default_sts_hosts() {
            check_dns_name(&host).unwrap();
        }
    }

    #[test]
    fn all_keys() {
        let c = AwsIamConfig::parse(
            r#"{"audience":"prod","audience_header":"X-Gateway-Audience",
                "sts_hosts":["sts.us-east-1.amazonaws.com","sts.us-east-1.amazonaws.com"],
                "sts_endpoint":"http://127.0.0.1:5000/","max_token_bytes":4096,
                "max_clock_skew_seconds":300,
                "trusted_accounts":["111122223333","444455556666","111122223333"],
                "role_patterns":["payments-*","batch-?"]}"#,
        )
        .unwrap();
        assert_eq!(c.audience_header, "x-gateway-audience");
        assert_eq!(c.sts_hosts, vec!["sts.us-east-1.amazonaws.com"]);
        assert_eq!(
            c.sts_endpoint,
            Some(Endpoint("http://127.0.0.1:5000".to_string()))
        );
        assert_eq!(c.max_token_bytes, 4096);
        assert_eq!(c.max_clock_skew_seconds, 300);
        assert_eq!(c.trusted_accounts, vec!["111122223333", "444455556666"]);
        assert_eq!(c.role_patterns, vec!["payments-*", "batch-?"]);
        for endpoint in [
            "https://sts.example.internal",
            "https://10.0.0.1:8443",
            "http://[::1]:5000",
            "http://localhost",
        ] {
            let json = format!(
                r#"{{"audience":"a","trusted_accounts":["111122223333"],"sts_endpoint":"{endpoint}"}}"#
            );
            assert!(AwsIamConfig::parse(&json).is_ok(), "{endpoint}");
        }
    }

    #[test]
    fn rejects_bad_config() {
        let base = r#""audience":"a","trusted_accounts":["111122223333"]"#;
        for (json, needle) in [
            ("[]".to_string(), "expected a JSON object"),
            (
                r#"{"trusted_accounts":["111122223333"]}"#.to_string(),
                "missing field `audience`",
            ),
            (
                r#"{"audience":"a"}"#.to_string(),
                "missing field `trusted_accounts`",
            ),
            (
                format!(r#"{{{base},"issuer":"x"}}"#),
                "unknown field `issuer`",
            ),
            (
                format!(r#"{{{base},"max_token_bytes":1,"max_token_bytes":2}}"#),
                "duplicate member `max_token_bytes`",
            ),
            (
                r#"{"audience":"","trusted_accounts":["111122223333"]}"#.to_string(),
                "`audience` must not be empty",
            ),
            (
                r#"{"audience":" a","trusted_accounts":["111122223333"]}"#.to_string(),
                "must not start or end with a space",
            ),
            (
                r#"{"audience":"caf\u00e9","trusted_accounts":["111122223333"]}"#.to_string(),
                "printable ASCII",
            ),
            (
                format!(r#"{{{base},"audience_header":"x-amz-audience"}}"#),
                "must not be an `x-amz-*` header",
            ),
            (
                format!(r#"{{{base},"audience_header":"Authorization"}}"#),
                "its own meaning",
            ),
            (
                format!(r#"{{{base},"audience_header":"connection"}}"#),
                "its own meaning",
            ),
            (
                format!(r#"{{{base},"audience_header":"x aud"}}"#),
                "letters, digits and `-`",
            ),
            (format!(r#"{{{base},"sts_hosts":[]}}"#), "at least one host"),
            (
                format!(r#"{{{base},"sts_hosts":["STS.amazonaws.com"]}}"#),
                "not a lowercase DNS host name",
            ),
            (
                format!(r#"{{{base},"sts_hosts":["https://sts.amazonaws.com"]}}"#),
                "not a lowercase DNS host name",
            ),
            (
                format!(r#"{{{base},"sts_hosts":["sts.amazonaws.com:443"]}}"#),
                "not a lowercase DNS host name",
            ),
            (
                format!(r#"{{{base},"sts_hosts":["127.0.0.1"]}}"#),
                "is an IP address",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"sts.amazonaws.com"}}"#),
                "must be `https://host[:port]`",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"http://sts.amazonaws.com"}}"#),
                "only for loopback",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"http://127.0.0.1.evil.com"}}"#),
                "only for loopback",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"http://u@127.0.0.1"}}"#),
                "without user information",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"http://127.0.0.1:5000/x"}}"#),
                "without user information, path",
            ),
            (
                format!(r#"{{{base},"sts_endpoint":"http://127.0.0.1:99999"}}"#),
                "invalid port",
            ),
            (
                format!(r#"{{{base},"max_token_bytes":0}}"#),
                "between 1 and",
            ),
            (
                format!(r#"{{{base},"max_clock_skew_seconds":901}}"#),
                "between 1 and 900",
            ),
            (
                r#"{"audience":"a","trusted_accounts":[]}"#.to_string(),
                "at least one account id",
            ),
            (
                r#"{"audience":"a","trusted_accounts":["11112222333"]}"#.to_string(),
                "not a 12-digit AWS account id",
            ),
            (
                format!(r#"{{{base},"role_patterns":[""]}}"#),
                "not a role name pattern",
            ),
            (
                format!(r#"{{{base},"role_patterns":["a/b"]}}"#),
                "not a role name pattern",
            ),
        ] {
            let e = AwsIamConfig::parse(&json).unwrap_err();
            assert!(e.starts_with("invalid aws-iam plugin config: "), "{e}");
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
