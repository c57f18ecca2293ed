//! The plugin's rejection type, mirroring the WIT `auth-error` variant so the
//! pure logic does not depend on the generated bindings.

use std::fmt::Write as _;

/// Why a credential was refused. Every variant carries a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential could not be parsed.
    Malformed(String),
    /// Well-formed but not valid (signature, audience, algorithm, key, ...).
    Invalid(String),
    /// Expired or not valid yet.
    Expired(String),
    /// Names an issuer that is not trusted.
    Untrusted(String),
    /// A dependency (discovery, JWKS) could not be used; fail closed.
    Unavailable(String),
}

impl AuthFailure {
    /// The reason text, whatever the variant.
    #[cfg(test)]
    pub fn reason(&self) -> &str {
        match self {
            Self::Malformed(s)
            | Self::Invalid(s)
            | Self::Expired(s)
            | Self::Untrusted(s)
            | Self::Unavailable(s) => s,
        }
    }
}

/// Quotes a value that may come from an unverified token or a remote
/// document for use inside an error message: backticks, escaped control and
/// quote characters, cut at 96 characters.
pub fn quote(s: &str) -> String {
    const MAX: usize = 96;
    let mut out = String::with_capacity(s.len().min(MAX) + 5);
    out.push('`');
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push_str("...");
            break;
        }
        let _ = write!(out, "{}", c.escape_debug());
    }
    out.push('`');
    out
}

/// Quotes each value and joins them with `, `.
pub fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items.into_iter().map(quote).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a"), "`a`");
        assert_eq!(quote("a\nb\"c"), "`a\\nb\\\"c`");
        assert_eq!(quote(&"x".repeat(200)), format!("`{}...`", "x".repeat(96)));
        assert_eq!(quote_list(["a", "b"]), "`a`, `b`");
    }
}
